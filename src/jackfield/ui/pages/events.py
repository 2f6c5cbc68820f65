"""The Events page: the organization's inbound events, newest first, updated live.

The table's first row polls ``/events?after=<newest id>`` every two seconds with htmx
and is replaced by what the answer holds: a new polling row and the events that arrived
since (``hx-select`` picks them out of the full page, so one template serves both).
Polling rather than server-sent events keeps the page free of scripts of its own
(the UI's content security policy allows no inline script). It is a live tail that
drops nothing: a poll takes the oldest ``CATCH_UP`` events of what arrived since, so a
burst of more shows over the next polls, and the polling row says the page is behind
(with a link to the newest events) until it has caught up. A row that commits late with a lower id
(possible on PostgreSQL) shows on the next reload; the REST inbox and the SSE stream
are the complete views. Below a full page, "Older events" pages back (``?before=<id>``);
those pages are not live.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from ...service.events import EventService
from ...service.views import parse_row_id
from ..render import render
from ..session import UiPrincipal, ui_router
from .connectors import app_of

router = ui_router()
PAGE = 50
CATCH_UP = 200  # events a poll adds at most (100 a second): more, and the page says so
POLL_SECONDS = 2
PAYLOAD_PREVIEW = 160


@router.get("/events")
def events_page(
    request: Request, who: UiPrincipal, after: str = "", before: str = ""
) -> HTMLResponse:
    jf = app_of(request)
    since, until = parse_row_id(after), parse_row_id(before)
    events = EventService(jf.db)
    behind = False
    if since is not None:  # the oldest events after the newest shown, shown newest first
        arrived = events.since(who.organization_id, since, limit=CATCH_UP + 1)
        behind = len(arrived) > CATCH_UP
        items = [e.view() for e in reversed(arrived[:CATCH_UP])]
    else:  # the newest page, or (``before``) an older one: not live
        items = events.recent(who, limit=PAGE, before=until)
    names = {c["id"]: c["name"] for c in jf.connectors.list(who)}
    newest = max([i["id"] for i in items], default=since or 0)
    older = f"/events?before={items[-1]['id']}" if since is None and len(items) == PAGE else ""
    return render(
        request,
        "events.html",
        items=[_row(item) for item in items],
        names=names,
        newest=newest,
        live=until is None,
        behind=behind,
        older=older,
        poll_seconds=POLL_SECONDS,
    )


def _row(item: dict[str, Any]) -> dict[str, Any]:
    preview = json.dumps(item["payload"], ensure_ascii=False, default=str)
    if len(preview) > PAYLOAD_PREVIEW:
        preview = preview[: PAYLOAD_PREVIEW - 1] + "…"
    return {**item, "preview": preview}
