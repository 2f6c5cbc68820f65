"""Keep the cycle collector off the start-up heap while the runtime or the app serves.

After start-up a process holds some 10^5 long-lived objects (modules, SQLAlchemy's
metadata, the registry, the app). Under load many messages and requests are alive at
any moment and get promoted, so full collections come often, and each walked that whole
start-up heap with the GIL held: ~75 ms pauses that stop the event loop and the database
writer alike. They were the p99 of the webhook benchmark (150 ms -> 40 ms without them),
and in the outbox benchmark collections took ~10 µs of CPU per message (of ~65), ~4
with the freeze.

``freeze()`` collects once and moves everything alive to the collector's permanent
generation; reference counting still frees those objects, only cycle detection skips
them. Holders nest (``jackfield serve`` runs the runtime inside the app): each
``freeze()`` also freezes what was built since the last one, and the heap is unfrozen
when the last holder calls ``thaw()``, so cyclic garbage made of start-up objects is
collected again once nothing serves.

(Collecting young objects less often as well -- a threshold of 50,000 instead of 700 --
saved another ~3 µs per message in the outbox, but each young collection then took
~10-100 ms, which put the webhook benchmark's p99 above 100 ms.)
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holders = 0


def freeze() -> None:
    global _holders
    with _lock:
        _holders += 1
        gc.collect()
        gc.freeze()


def thaw() -> None:
    global _holders
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0:
            gc.unfreeze()


def holders() -> int:
    """How many runtimes and apps are serving (for tests)."""
    return _holders
