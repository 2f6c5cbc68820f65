"""Where a client of the live event stream is: the SSE ``id:`` of each event it received,
given back as ``Last-Event-ID`` when it reconnects.

An inbox id alone is not enough on PostgreSQL, which hands ids out before commit: the
stream may send 6357 while 6356 is still uncommitted, and a client that reconnects with
``6357`` would never get 6356 if it committed while the client was away. So the cursor
also names the ids below it still outstanding when it was sent: ``6357~6356`` (ranges
as ``6340-6345``, comma-separated). A client treats it as opaque text, as SSE intends.

Outstanding ids come and go within seconds (see ``feed.GAP_SECONDS``); should there be
more than ``MAX_RANGES`` runs or ``MAX_PENDING`` ids of them, the cursor falls back to the
id just below the lowest one: a client resuming from it receives some events a second
time, and misses none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...service.views import parse_row_id

MAX_RANGES = 32
MAX_PENDING = 1000  # ids a client may ask to have looked for again
MAX_TEXT = 32 * 42  # MAX_RANGES ranges of two 20-digit ids


@dataclass(frozen=True)
class StreamCursor:
    """Every event of the organization with an id up to ``last`` was sent, except the
    ``pending`` ids (below ``last``), which may still commit."""

    last: int
    pending: frozenset[int] = frozenset()

    def __str__(self) -> str:
        ranges = _ranges(sorted(self.pending))
        if not ranges:
            return str(self.last)
        if len(ranges) > MAX_RANGES or len(self.pending) > MAX_PENDING:
            return str(ranges[0][0] - 1)  # resume below them all: duplicates, never a loss
        return f"{self.last}~" + ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)

    @classmethod
    def parse(cls, text: str | None) -> StreamCursor | None:
        """The cursor ``text`` names; ``None`` for anything else (the stream then starts
        from now, as for a client that gives none)."""
        if not text or len(text) > MAX_TEXT:
            return None
        head, tilde, tail = text.partition("~")
        last = parse_row_id(head)
        if last is None:
            return None
        if not tilde:
            return cls(last)
        pending: set[int] = set()
        for part in tail.split(","):
            low_text, dash, high_text = part.partition("-")
            low, high = parse_row_id(low_text), parse_row_id(high_text if dash else low_text)
            if low is None or high is None or not low <= high < last:
                return None
            if len(pending) + high - low + 1 > MAX_PENDING:
                return None
            pending.update(range(low, high + 1))
        return cls(last, frozenset(pending))


def _ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids as runs of consecutive ones: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for value in ids:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs
