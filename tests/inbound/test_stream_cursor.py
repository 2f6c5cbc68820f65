"""The SSE ``id:`` of the event stream: an inbox id, plus the ids below it still open
(PostgreSQL draws ids before commit), as a client gives it back in ``Last-Event-ID``."""

from __future__ import annotations

from jackfield.runtime.inbound.stream_cursor import MAX_RANGES, StreamCursor


def test_a_cursor_names_its_open_ids_as_ranges_and_reads_back():
    cursor = StreamCursor(6357, frozenset({6356, 6340, 6341, 6342, 6300}))
    assert str(cursor) == "6357~6300,6340-6342,6356"
    assert StreamCursor.parse(str(cursor)) == cursor
    assert str(StreamCursor(12)) == "12" and StreamCursor.parse("12") == StreamCursor(12)


def test_too_many_open_ids_fall_back_below_the_lowest():
    """A resumed client then gets some events twice, and misses none."""
    scattered = frozenset(range(1000, 1000 + 2 * (MAX_RANGES + 1), 2))
    text = str(StreamCursor(5000, scattered))
    assert text == "999"
    one_long_run = frozenset(range(1000, 3000))
    assert str(StreamCursor(5000, one_long_run)) == "999"
