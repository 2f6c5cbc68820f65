"""Times on the pages: always UTC, always labelled.

The service hands times over as ISO-8601 text; a page used to show a slice of that text
(its first 16 or 19 characters, or characters 11 to 19 followed by "UTC"), which showed
the database session's local time -- unlabelled, or labelled UTC when it was not. Here
the text is read as a time, converted to UTC and written with its zone.
"""

from __future__ import annotations

from datetime import datetime

from ..service.views import as_utc

FORMATS = {
    "minutes": "%Y-%m-%d %H:%M UTC",
    "seconds": "%Y-%m-%d %H:%M:%S UTC",
    "time": "%H:%M:%S UTC",
}


def utc_text(value: str | datetime | None, precision: str = "seconds") -> str:
    """``2026-12-07T14:52:16-05:00`` -> ``2026-12-07 19:52:16 UTC`` (``precision``:
    ``minutes``, ``seconds`` or ``time`` of day only). Empty for no time; text that is
    not a time is shown as it is rather than breaking the page."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    return as_utc(value).strftime(FORMATS[precision])
