"""Hand-over bookkeeping: when this node's worker may take new messages without a claim.

An enqueue asks (``reserve``) in its transaction, in the ``GroupCommitter``'s thread;
hand-overs arrive and claims come back on the event loop -- hence the lock. The rules:

* only while the worker runs (``open``) and once a claim has found nothing more due
  (*caught up*): until then older messages may be waiting in the queue;
* within room: the node's ``max_in_flight`` and, per connector, ``batch_size`` messages
  waiting in its buffer (what the dispatcher allows a connector too: a slow connector
  cannot hoard messages whose leases would run out before their turn);
* what does not fit is queued (inserted ``pending``) and makes its connector *behind*:
  its next messages are queued too, rather than overtake those, until a claim that ran
  after that enqueue comes up short. Writes run in order in the committer's thread, so
  such a claim has seen them (``claim_started`` / ``claim_came_up_short``).
"""

from __future__ import annotations

import threading
from collections.abc import Collection


class HandOvers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._caught_up = False
        self._behind: dict[str, int] = {}  # connector -> the queueing that made it behind
        self._queueings = 0
        self._reserved: dict[str, int] = {}  # connector -> granted, not yet handed over
        self.reserved = 0  # in total (room the dispatcher must leave)

    def open(self) -> None:
        with self._lock:
            self._open, self._caught_up = True, False

    def close(self) -> None:
        """No more reservations (reservations granted still arrive or are cancelled)."""
        with self._lock:
            self._open = False

    def reserve(self, connector_id: str, count: int, node_room: int, buffer_room: int) -> int:
        """How many of ``count`` new messages of a connector the worker takes, given the
        room left on the node and in the connector's buffer (reservations not counted)."""
        with self._lock:
            if not (self._open and self._caught_up) or connector_id in self._behind:
                return 0
            mine = self._reserved.get(connector_id, 0)
            granted = max(0, min(count, node_room - self.reserved, buffer_room - mine))
            if granted < count:
                self._queueings += 1
                self._behind[connector_id] = self._queueings
            if granted:
                self._reserved[connector_id] = mine + granted
                self.reserved += granted
            return granted

    def settle(self, connector_id: str, count: int) -> None:
        """A reservation was handed over, or came to nothing."""
        with self._lock:
            left = self._reserved.get(connector_id, 0) - count
            if left > 0:
                self._reserved[connector_id] = left
            else:
                self._reserved.pop(connector_id, None)
            self.reserved -= count

    def claim_started(self) -> int:
        with self._lock:
            return self._queueings

    def claim_came_up_short(self, started: int, excluded: Collection[str]) -> None:
        """A claim found nothing more due (except in ``excluded`` connectors)."""
        with self._lock:
            self._caught_up = True
            self._behind = {
                cid: n for cid, n in self._behind.items() if n > started or cid in excluded
            }
