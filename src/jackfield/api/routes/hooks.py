"""Webhook ingress: ``POST /hooks/{connector_id}``. No user auth: the connector's
provider verifies the raw request. 2xx only after the events are committed.

Answers: 200 ``{"accepted": n, "duplicates": m}`` (a repeated event id is a success,
stored once); 401 when verification fails; 404 for an unknown, disabled or non-webhook
connector (indistinguishable); 413 for a body over 1 MiB; 400 for a malformed body;
503 with ``Retry-After`` when the connector changed while the request was verified, or
``database_unavailable`` while the database is (nothing stored: the sender retries); 500
``invalid_event`` when the connector's provider returned an event the inbox cannot store
(the provider's bug, not the sender's: the sender retries until it is fixed, and the
log says what is wrong).

The fast path: once the app has started, ``POST /hooks/*`` is dispatched in front of
the app's middleware stack (sessions, API body limits, exception wrappers, routing).
None of it applies to this unauthenticated machine-to-machine endpoint, which limits
its own body and renders its own errors; skipping it cuts about 30% of the CPU per
webhook (measured with ``benchmarks/webhook.py``). The fast path also speaks ASGI
directly: the body straight from ``receive``, the answer as two prebuilt messages (no
``Request``/``Response`` objects per webhook). The FastAPI route below documents the
endpoint in the OpenAPI schema and serves it identically (same handler, same bytes)
when the fast path is not installed (an app run without lifespan events).
"""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ...kernel.errors import AuthError, JackfieldError, TransientError
from ...kernel.inbound import WebhookRequest
from ...kernel.redaction import get_logger
from ...runtime import heap
from ...runtime.inbound.webhook import WebhookIngress, no_webhook_endpoint
from ...runtime.inbox import InvalidEventError
from ...secrets.redaction import NO_ORGANIZATION
from ..errors import answered, error_body, fault_response, status_for
from ..schemas import ErrorResponse
from .events import event_router, wrap_lifespan

log = get_logger(__name__)
router = APIRouter(tags=["webhooks"])
MAX_BODY = 1024 * 1024
PREFIX = "/hooks/"
JSON = "application/json"
_CONNECTOR_ID = re.compile(r"[0-9a-fA-F-]{1,36}")

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, bytes, Headers]
"""A response: status, body, headers (content-type and content-length included)."""


class _TooLarge(Exception):
    pass


_CONNECTOR_ID_PARAM = {
    "name": "connector_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the connector's id (UUID)",
}


@router.post(
    "/hooks/{connector_id}",
    responses={
        status: {"model": ErrorResponse, "description": description}
        for status, description in {
            400: "the body is not what the connector expects",
            401: "verification failed",
            404: "unknown, disabled or not a webhook connector",
            413: "body over 1 MiB",
            500: "the connector's provider returned an event that cannot be stored",
            503: "the connector changed meanwhile: send it again (Retry-After)",
        }.items()
    },
    # read from the path, not a parameter: FastAPI would document a 422 this never sends
    openapi_extra={"parameters": [_CONNECTOR_ID_PARAM]},
)
@router.post("/hooks/{connector_id}/", include_in_schema=False)  # not a 307: senders post once
async def receive_webhook(request: Request) -> Response:
    """Receive one webhook delivery for ``connector_id``."""
    connector_id = request.path_params["connector_id"]
    status, body, headers = await _receive(
        _ingress(request.app), request.scope, request.receive, connector_id
    )
    response = Response(body, status)
    response.raw_headers = headers
    return response


async def _receive(
    ingress: WebhookIngress, scope: Scope, receive: Receive, connector_id: str
) -> Answer:
    """The whole endpoint, errors included (the fast path has no exception handlers)."""
    try:
        if not _CONNECTOR_ID.fullmatch(connector_id):  # also keeps NUL bytes out of SQL
            raise no_webhook_endpoint()
        headers = _headers(scope)
        body = await _read_body(receive, headers.get("content-length", ""))
        query_string = scope.get("query_string")
        query = dict(QueryParams(query_string)) if query_string else {}
        webhook = WebhookRequest(scope["method"], headers, body, query)
        result = await ingress.receive(connector_id, webhook)
    except _TooLarge:
        body_ = error_body(
            "too_large",
            f"the webhook body exceeds {MAX_BODY} bytes",
            "Have the sender send smaller events (split a large batch).",
        )
        return _json_answer(413, body_, close=True)
    except JackfieldError as exc:
        status = _status_for(exc)
        if isinstance(exc, InvalidEventError):
            log.error("webhook for %s refused (500, nothing stored): %s", connector_id, exc)
        elif status >= 500:
            log.error("webhook for %s failed: %s", connector_id, exc)
        # the sender is of no organization: mask the connector's secrets, never others'
        # (masking every organization's would tell an anonymous caller which guess is one)
        org = ingress.organization_of(connector_id) or NO_ORGANIZATION
        answer = _json_answer(status, error_body(exc.code, exc.message, exc.remediation, org))
        if status == 503:
            answer[2].append((b"retry-after", b"1"))
        return answer
    # the event router was woken by the ingress, once per committed group
    return _success(result.accepted, result.duplicates)


def _status_for(exc: JackfieldError) -> int:
    """The API's status, but a sender's view: ``AuthError`` (a ``ConnectorError``, 400
    elsewhere) means "not verified", a ``TransientError`` asks it to retry, and an
    ``InvalidEventError`` is the receiving provider's fault: a 4xx would make the
    sender drop an event it sent correctly."""
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, InvalidEventError):
        return 500
    return 503 if isinstance(exc, TransientError) else status_for(exc)


@lru_cache(maxsize=64)
def _success(accepted: int, duplicates: int) -> Answer:
    """The success answer, rendered once per distinct outcome (almost always 1/0 or 0/1)."""
    body = json.dumps({"accepted": accepted, "duplicates": duplicates}).encode()
    return 200, body, _json_headers(body)


def _json_answer(status: int, content: Any, *, close: bool = False) -> Answer:
    """``content`` rendered the way Starlette's ``JSONResponse`` renders it."""
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
    headers = _json_headers(body)
    if close:
        headers = [*headers, (b"connection", b"close")]
    return status, body, headers


def _json_headers(body: bytes) -> Headers:
    return [
        (b"content-length", str(len(body)).encode("latin-1")),
        (b"content-type", b"application/json"),
    ]


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers as a plain dict (names are lowercase in ASGI; the first of
    repeated headers wins, as with Starlette's ``Headers``). Cheaper for providers to
    read than the ``Headers`` mapping."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in reversed(scope["headers"])
    }


async def _read_body(receive: Receive, declared: str) -> bytes:
    """The raw body, refused beyond ``MAX_BODY`` whether announced (``declared``, the
    Content-Length) or streamed."""
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:  # straight from ASGI receive: cheaper than Request.stream() per request
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _ingress(app: Any) -> WebhookIngress:
    ingress: WebhookIngress | None = getattr(app.state, "webhook_ingress", None)
    if ingress is None:
        wake_scope = Request({"type": "http", "app": app})  # what event_router reads

        def wake() -> None:  # after every committed group, before its callers answer
            event_router(wake_scope).wake()

        ingress = WebhookIngress(app.state.jackfield, on_commit=wake)
        app.state.webhook_ingress = ingress
    return ingress


class _FastPath:
    """ASGI: ``POST /hooks/{id}`` straight to ``_receive``; everything else to ``inner``."""

    def __init__(self, inner: ASGIApp, app: FastAPI) -> None:
        self.inner = inner
        self.app = app
        self._ingress: WebhookIngress | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                connector_id = path[len(PREFIX) :].removesuffix("/")  # a slash is sent too
                if connector_id and "/" not in connector_id:
                    await self._serve(scope, receive, send, connector_id)
                    return
        await self.inner(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, connector_id: str) -> None:
        began = time.monotonic()
        ingress = self._ingress
        if ingress is None:
            ingress = self._ingress = _ingress(self.app)
        try:
            status, body, headers = await _receive(ingress, scope, receive, connector_id)
        except ClientDisconnect:
            return  # nobody left to answer; nothing was stored
        except Exception as exc:  # noqa: BLE001 - this path has no ErrorGuard: answer as it does
            # (503 database_unavailable and one log line per outage, else 500 and a traceback)
            await fault_response(scope, exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        answered(scope, status, began)  # (this path has no ErrorGuard to note a success)


def setup_app(app: FastAPI) -> None:
    """Install the fast path and freeze the start-up heap (``runtime.heap``) once the
    app has started; stop the ingress's commit thread when it shuts down."""
    wrap_lifespan(app, on_start=_start, on_stop=_close)


async def _start(app: FastAPI) -> None:
    stack: Any = app.middleware_stack  # built by Starlette for the lifespan call
    if stack is not None and not isinstance(stack, _FastPath):
        app.middleware_stack = _FastPath(stack, app)
    heap.freeze()


async def _close(app: FastAPI) -> None:
    heap.thaw()
    ingress: WebhookIngress | None = getattr(app.state, "webhook_ingress", None)
    if ingress is not None:
        ingress.close()
