"""Outbound messages: ``POST /api/connectors/{id}/messages`` queues one durably.

202 with the queued message; a known ``envelope_id`` answers 200 with the stored message
and sends nothing again (so a client may retry a request it never got an answer to).
Any member of the organization may send; the connector must exist in the caller's
organization (404), be enabled and be of a type that sends -- not a webhook endpoint
(409). All of it is decided in ``OutboxService``.

``POST /api/connectors/{id}/outbox/replay-dead`` sends every dead letter of a connector
again at once (admin), for when the cause of an outage has been fixed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from ..deps import JF, Caller
from ..schemas import DATE_TIME, ConnectorId, RequestModel, error_responses

router = APIRouter(tags=["outbox"])


class MessageIn(RequestModel):
    envelope_id: str | None = Field(
        default=None,
        max_length=100,
        description="a ULID chosen by the client for idempotency; generated when absent",
    )
    operation: str | None = Field(
        default=None, max_length=100, description="the provider operation; its default if absent"
    )
    payload: dict[str, Any] = Field(description="the operation's input, e.g. {'text': ...}")


class MessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    envelope_id: str
    connector_id: str
    state: str = Field(
        json_schema_extra={
            "enum": ["pending", "in_flight", "retrying", "delivered", "dead", "discarded"]
        }
    )
    operation: str | None
    attempts: int
    next_attempt_at: str | None = Field(json_schema_extra=DATE_TIME)
    last_error: str | None
    error_class: str | None
    result: Any = Field(
        description="what the provider returned for a delivered message (e.g. its message_id)",
        json_schema_extra={"type": ["object", "null"]},
    )
    created_at: str | None = Field(json_schema_extra=DATE_TIME)
    updated_at: str | None = Field(json_schema_extra=DATE_TIME)


@router.post(
    "/api/connectors/{connector_id}/messages",
    status_code=202,
    response_model=MessageOut,
    responses={
        200: {"model": MessageOut, "description": "the envelope id was known"},
        **error_responses(401, 404, 409, 413, 422),
    },
)
def send_message(
    jf: JF, who: Caller, connector_id: ConnectorId, body: MessageIn, response: Response
) -> dict[str, Any]:
    """Queue a message; it is committed before the answer (202, or 200 when known)."""
    result = jf.runtime.outbox.send(
        who,
        connector_id,
        body.payload,
        operation=body.operation,
        envelope_id=body.envelope_id,
    )
    if not result.created:
        response.status_code = 200
    return result.message


class ReplayedOut(BaseModel):
    connector_id: str
    replayed: int = Field(description="how many dead letters went back to pending")


@router.post(
    "/api/connectors/{connector_id}/outbox/replay-dead",
    response_model=ReplayedOut,
    responses=error_responses(401, 403, 404, 422),
)
def replay_dead_letters(jf: JF, who: Caller, connector_id: ConnectorId) -> dict[str, Any]:
    """Every dead letter of the connector back to pending (admin): each keeps its
    envelope id and gets a fresh retry budget, as a single replay does."""
    return jf.runtime.outbox.replay_dead(who, connector_id)
