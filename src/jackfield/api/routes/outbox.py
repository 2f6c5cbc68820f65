"""The outbox: list and show messages; replay or discard dead letters (admin only).

Every read is scoped to the caller's organization: another organization's message is a
404, exactly like a missing one. ``connector_id`` narrows a lookup when a client reused
one envelope id on several connectors.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from ..deps import JF, Caller
from ..schemas import ConnectorFilter, error_responses
from .messages import MessageOut

router = APIRouter(prefix="/api/outbox", tags=["outbox"])
EnvelopeId = Annotated[str, Path(max_length=100, description="the message's envelope id")]


class MessageList(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None = None


@router.get("", response_model=MessageList, responses=error_responses(401, 422))
def list_messages(
    jf: JF,
    who: Caller,
    connector_id: ConnectorFilter = None,
    state: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Messages of the caller's organization, newest first (``?state=dead``: dead letters)."""
    items, next_cursor = jf.runtime.outbox.list(
        who, connector_id=connector_id, state=state, limit=limit, cursor=cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{envelope_id}", response_model=MessageOut, responses=error_responses(401, 404, 422))
def get_message(
    jf: JF, who: Caller, envelope_id: EnvelopeId, connector_id: ConnectorFilter = None
) -> dict[str, Any]:
    return jf.runtime.outbox.get(who, envelope_id, connector_id=connector_id)


@router.post(
    "/{envelope_id}/replay",
    response_model=MessageOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def replay_message(
    jf: JF, who: Caller, envelope_id: EnvelopeId, connector_id: ConnectorFilter = None
) -> dict[str, Any]:
    """dead -> pending, same envelope id, attempts reset to 0; 409 for any other state."""
    return jf.runtime.outbox.replay(who, envelope_id, connector_id=connector_id)


@router.post(
    "/{envelope_id}/discard",
    response_model=MessageOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def discard_message(
    jf: JF, who: Caller, envelope_id: EnvelopeId, connector_id: ConnectorFilter = None
) -> dict[str, Any]:
    """dead -> discarded (kept for the record, never delivered); 409 otherwise."""
    return jf.runtime.outbox.discard(who, envelope_id, connector_id=connector_id)
