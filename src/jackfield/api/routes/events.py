"""Inbound events: a connector's inbox (newest first) and the live SSE stream.

The stream sends every new event of the caller's organization as ``id: <cursor>`` +
``data: <event JSON>``; a client that reconnects with the last ``id`` it received as
``Last-Event-ID`` (browsers do it by themselves) first receives what it missed. The
cursor is opaque text (usually the inbox id; see ``runtime.inbound.stream_cursor``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from ...kernel.errors import AuthenticationError
from ...kernel.payloads import json_text
from ...runtime.events import EventRouter
from ...runtime.inbound.stream_cursor import StreamCursor
from ...service.events import EventService
from ..deps import JF, Caller, authenticate
from ..schemas import DATE_TIME, ConnectorId, error_responses

router = APIRouter(tags=["events"])
KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 15.0
"""How often an open stream checks that its caller may still read it: a stream outlived
logging out and the removal of its token, and went on sending the organization's events."""


def event_router(request: Request) -> EventRouter:
    """The application's event router: the runtime's, or (for an app without a runtime)
    one kept on the app that only feeds streams."""
    jf = request.app.state.jackfield
    events = getattr(getattr(jf, "runtime", None), "events", None)
    if events is not None:
        return events  # type: ignore[no-any-return]
    fallback: EventRouter | None = getattr(request.app.state, "event_router", None)
    if fallback is None:
        fallback = request.app.state.event_router = EventRouter(jf)
    return fallback


class EventsResponse(JSONResponse):
    """JSON even of a row stored before payloads were checked (its NaN becomes null)."""

    def render(self, content: Any) -> bytes:
        return json_text(content).encode()


class EventOut(BaseModel):
    id: int = Field(description="the inbox id: the events list's cursors refer to it")
    connector_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    source: str = Field(description="webhook, subscription, polling, loopback or simulator")
    received_at: str = Field(json_schema_extra=DATE_TIME)
    occurred_at: str | None = Field(json_schema_extra=DATE_TIME)


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


@router.get(
    "/api/connectors/{connector_id}/events",
    response_class=EventsResponse,
    responses={200: {"model": EventList}, **error_responses(401, 404, 422)},
)
def list_events(
    connector_id: ConnectorId,
    jf: JF,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The connector's inbox, newest first; pass ``next_cursor`` as ``cursor`` for more."""
    return EventService(jf.db).list(caller, connector_id, limit=limit, cursor=cursor)


@router.get(
    "/api/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(401, 422)},
)
async def stream_events(
    request: Request,
    caller: Caller,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-sent events: new inbound events of the caller's organization."""
    feed = event_router(request).feed
    resume = StreamCursor.parse(last_event_id)

    stream = feed.stream(caller.organization_id, resume, keepalive=KEEPALIVE_SECONDS)
    await anext(stream)  # subscribed before the first byte: the client misses nothing

    jf = request.app.state.jackfield

    async def body() -> AsyncIterator[str]:
        yield "retry: 3000\n: connected\n\n"
        checked = time.monotonic()
        try:
            async for item in stream:
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    try:
                        await asyncio.to_thread(authenticate, jf, request)
                    except AuthenticationError:  # logged out, token removed, user gone
                        yield ": credentials no longer valid\n\n"
                        return
                    except SQLAlchemyError:  # the database is away: ask again later
                        pass
                    checked = time.monotonic()
                if item is None:
                    yield ": keep-alive\n\n"
                else:
                    record, cursor = item
                    data = json_text(record.view())  # JSON, even of a row stored before checks
                    yield f"id: {cursor}\ndata: {data}\n\n"
        finally:
            await stream.aclose()  # unsubscribed now, not when collected

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def end_streams(app: FastAPI) -> None:
    """End every open event stream of ``app``: a server about to stop calls this first,
    because a stream never ends by itself and servers wait for open responses."""
    await event_router(Request({"type": "http", "app": app})).feed.close()


def setup_app(app: FastAPI) -> None:
    """Close the fallback router's feed when the app shuts down."""
    wrap_lifespan(app, on_stop=_close_fallback)


async def _close_fallback(app: FastAPI) -> None:
    fallback: EventRouter | None = getattr(app.state, "event_router", None)
    if fallback is not None:
        await fallback.stop()


def wrap_lifespan(
    app: FastAPI,
    *,
    on_start: Callable[[FastAPI], Awaitable[None]] | None = None,
    on_stop: Callable[[FastAPI], Awaitable[None]] | None = None,
) -> None:
    """Run ``on_start`` once the app's own startup is done, ``on_stop`` after its own
    shutdown (for resources a route module owns)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(instance: FastAPI) -> AsyncIterator[Any]:
        try:
            async with inner(instance) as state:
                if on_start is not None:
                    await on_start(instance)
                yield state
        finally:
            if on_stop is not None:
                await on_stop(instance)

    app.router.lifespan_context = lifespan
