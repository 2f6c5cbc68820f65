"""Webhook ingress: ``POST /hooks/{connector_id}``. No user auth: the connector's
provider verifies the raw request. 2xx only after the events are committed.

Answers: 200 ``{"accepted": n, "duplicates": m}`` (a repeated event id is a success,
stored once); 401 when verification fails; 404 for an unknown, disabled or non-webhook
connector (indistinguishable); 413 for a body over 1 MiB; 400 for a malformed body.

The fast path: once the app has started, ``POST /hooks/*`` is dispatched in front of
the app's middleware stack (sessions, API body limits, exception wrappers, routing).
None of it applies to this unauthenticated machine-to-machine endpoint, which limits
its own body and renders its own errors; skipping it cuts about 30% of the CPU per
webhook (measured with ``benchmarks/webhook.py``). The FastAPI route below documents
the endpoint in the OpenAPI schema and serves it identically when the fast path is not
installed (an app run without lifespan events).
"""

from __future__ import annotations

import gc
import json
import logging
import re
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ...kernel.errors import AuthError, ConnectorNotFoundError, JackfieldError
from ...kernel.inbound import WebhookRequest
from ...runtime.inbound.webhook import WebhookIngress
from ..errors import error_body, status_for
from .events import event_router, wrap_lifespan

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
MAX_BODY = 1024 * 1024
PREFIX = "/hooks/"
JSON = "application/json"
_CONNECTOR_ID = re.compile(r"[0-9a-fA-F-]{1,36}")


class _TooLarge(Exception):
    pass


@router.post(
    "/hooks/{connector_id}",
    responses={
        400: {"description": "the body is not what the connector expects"},
        401: {"description": "verification failed"},
        404: {"description": "unknown, disabled or not a webhook connector"},
        413: {"description": "body over 1 MiB"},
    },
)
async def receive_webhook(connector_id: str, request: Request) -> Response:
    """Receive one webhook delivery for ``connector_id``."""
    return await _receive(request, connector_id)


async def _receive(request: Request, connector_id: str) -> Response:
    """The whole endpoint, errors included (the fast path has no exception handlers)."""
    try:
        if not _CONNECTOR_ID.fullmatch(connector_id):  # also keeps NUL bytes out of SQL
            raise ConnectorNotFoundError("no webhook endpoint for this connector id")
        headers = _headers(request.scope)
        body = await _read_body(request, headers.get("content-length", ""))
        query = dict(request.query_params) if request.scope.get("query_string") else {}
        webhook = WebhookRequest(request.scope["method"], headers, body, query)
        result = await _ingress(request).receive(connector_id, webhook)
    except _TooLarge:
        body_ = error_body("too_large", f"the webhook body exceeds {MAX_BODY} bytes")
        return JSONResponse(body_, 413, headers={"Connection": "close"})
    except AuthError as exc:  # a ConnectorError, but here it means "not verified"
        return JSONResponse(error_body(exc.code, exc.message, exc.remediation), 401)
    except JackfieldError as exc:
        status = status_for(exc)
        if status >= 500:
            log.error("webhook for %s failed: %s", connector_id, exc)
        return JSONResponse(error_body(exc.code, exc.message, exc.remediation), status)
    event_router(request).wake()
    return Response(_result_body(result.accepted, result.duplicates), media_type=JSON)


@lru_cache(maxsize=64)
def _result_body(accepted: int, duplicates: int) -> bytes:
    """The success body, rendered once per distinct outcome (almost always 1/0 or 0/1)."""
    return json.dumps({"accepted": accepted, "duplicates": duplicates}).encode()


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers as a plain dict (names are lowercase in ASGI; the first of
    repeated headers wins, as with Starlette's ``Headers``). Cheaper for providers to
    read than the ``Headers`` mapping."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in reversed(scope["headers"])
    }


async def _read_body(request: Request, declared: str) -> bytes:
    """The raw body, refused beyond ``MAX_BODY`` whether announced (``declared``, the
    Content-Length) or streamed."""
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:  # straight from ASGI receive: cheaper than Request.stream() per request
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _ingress(request: Request) -> WebhookIngress:
    ingress: WebhookIngress | None = getattr(request.app.state, "webhook_ingress", None)
    if ingress is None:
        ingress = request.app.state.webhook_ingress = WebhookIngress(request.app.state.jackfield)
    return ingress


class _FastPath:
    """ASGI: ``POST /hooks/{id}`` straight to ``_receive``; everything else to ``inner``."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith(PREFIX):
            connector_id = path[len(PREFIX) :]
            if connector_id and "/" not in connector_id:
                await self._serve(scope, receive, send, connector_id)
                return
        await self.inner(scope, receive, send)

    @staticmethod
    async def _serve(scope: Scope, receive: Receive, send: Send, connector_id: str) -> None:
        try:
            response = await _receive(Request(scope, receive), connector_id)
        except ClientDisconnect:
            return  # nobody left to answer; nothing was stored
        except Exception:  # this path has no ServerErrorMiddleware: answer like it does
            log.exception("webhook for %s failed", connector_id)
            response = JSONResponse(error_body("internal_error", "internal error"), 500)
        await response(scope, receive, send)


def setup_app(app: FastAPI) -> None:
    """Install the fast path and freeze the startup heap once the app has started; stop
    the ingress's commit thread when it shuts down."""
    wrap_lifespan(app, on_start=_start, on_stop=_close)


async def _start(app: FastAPI) -> None:
    stack: Any = app.middleware_stack  # built by Starlette for the lifespan call
    if stack is not None and not isinstance(stack, _FastPath):
        app.middleware_stack = _FastPath(stack)
    _freeze_heap()


def _freeze_heap() -> None:
    """Move every object alive after startup (modules, the app, the registry: some 10^5
    objects) to the collector's permanent generation.

    Under load many request objects are alive at any moment and get promoted, so full
    collections come often; each walked the whole startup heap and paused the event
    loop for ~100 ms, which was the p99 of the webhook benchmark (150 ms -> 40 ms with
    the freeze). Reference counting still frees everything; only cycle detection skips
    the frozen objects until ``_close`` unfreezes them.
    """
    gc.collect()
    gc.freeze()


async def _close(app: FastAPI) -> None:
    gc.unfreeze()
    ingress: WebhookIngress | None = getattr(app.state, "webhook_ingress", None)
    if ingress is not None:
        ingress.close()
