"""The Outbox page: messages by state, newest first; dead letters with Replay and
Discard for admins, and Replay all for the dead letters of one connector (the same
actions as the REST API, decided by ``OutboxService``)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from ...kernel.errors import JackfieldError
from ...service.lookup import connector_id_of
from ...service.messages import STATES
from ..render import flash, redirect, render
from ..session import UiPrincipal, ui_router
from .connectors import app_of, error_text

router = ui_router()
PAGE = 50
TONES = {
    "pending": "enabled",
    "in_flight": "enabled",
    "retrying": "default",
    "delivered": "connected",
    "dead": "error",
    "discarded": "disabled",
}


@router.get("/outbox")
def outbox_page(
    request: Request, who: UiPrincipal, state: str = "", connector_id: str = "", cursor: str = ""
) -> HTMLResponse:
    jf = app_of(request)
    state = state if state in STATES else ""
    try:
        items, next_cursor = jf.runtime.outbox.list(
            who,
            connector_id=connector_id or None,
            state=state or None,
            limit=PAGE,
            cursor=cursor or None,
        )
    except JackfieldError as exc:
        items, next_cursor = [], None
        flash_error = error_text(exc, who)
    else:
        flash_error = ""
    names = {c["id"]: c["name"] for c in jf.connectors.list(who)}
    # the connector filter is set by clicking a connector in the table and kept by every state
    # tab: the page names it, and "all connectors" drops it but keeps the state
    connector_name = names.get(connector_id_of(connector_id), connector_id) if connector_id else ""
    older = _page_url(state, connector_id, next_cursor) if next_cursor else None
    newest = _page_url(state, connector_id, "") if cursor else None  # back to the first page
    return render(
        request,
        "outbox.html",
        items=items,
        state=state,
        tabs=[("All", _page_url("", connector_id, ""), not state)]
        + [(_state_label(s), _page_url(s, connector_id, ""), s == state) for s in STATES],
        shown=_shown(state),
        connector_id=connector_id,
        connector_name=connector_name,
        all_connectors=_page_url(state, "", ""),
        names=names,
        tones=TONES,
        older=older,
        newest=newest,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        error=flash_error,
    )


def _state_label(state: str) -> str:
    return "dead letters" if state == "dead" else state.replace("_", " ")


def _shown(state: str) -> str:
    """What the page lists, for its empty state: "dead letters", "pending messages"..."""
    if state == "dead":
        return "dead letters"
    return f"{_state_label(state)} messages" if state else "messages"


def _page_url(state: str, connector_id: str, cursor: str) -> str:
    pairs = (("state", state), ("connector_id", connector_id), ("cursor", cursor))
    query = urlencode([(key, value) for key, value in pairs if value])
    return f"/outbox?{query}" if query else "/outbox"


@router.post("/outbox/replay-dead")
def outbox_replay_dead(request: Request, who: UiPrincipal, connector_id: str = "") -> Response:
    """Every dead letter of the connector the page is filtered to."""
    response = redirect("/outbox?" + urlencode({"state": "dead", "connector_id": connector_id}))
    try:
        result = app_of(request).runtime.outbox.replay_dead(who, connector_id)
    except JackfieldError as exc:
        flash(request, response, error_text(exc, who), "error")
        return response
    count = result["replayed"]
    flash(request, response, f"{count} dead letter{'' if count == 1 else 's'} queued again.")
    return response


@router.post("/outbox/{envelope_id}/replay")
def outbox_replay(
    request: Request, who: UiPrincipal, envelope_id: str, connector_id: str = "", back: str = ""
) -> Response:
    return _act(request, who, envelope_id, connector_id, back, replay=True)


@router.post("/outbox/{envelope_id}/discard")
def outbox_discard(
    request: Request, who: UiPrincipal, envelope_id: str, connector_id: str = "", back: str = ""
) -> Response:
    return _act(request, who, envelope_id, connector_id, back, replay=False)


def _act(
    request: Request,
    who: UiPrincipal,
    envelope_id: str,
    connector_id: str,
    back: str,
    *,
    replay: bool,
) -> Response:
    """Replay or discard one message, then back to the Outbox page it was on (its
    filter and position), or to the dead letters."""
    outbox = app_of(request).runtime.outbox
    action = outbox.replay if replay else outbox.discard
    response = redirect(back if back.startswith("/outbox?") else "/outbox?state=dead")
    try:
        action(who, envelope_id, connector_id=connector_id or None)
    except JackfieldError as exc:
        flash(request, response, error_text(exc, who), "error")
        return response
    done = "queued again" if replay else "discarded"
    flash(request, response, f"Message {envelope_id} {done}.")
    return response
