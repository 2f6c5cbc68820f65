"""Webhook ingress: ``POST /hooks/{connector_id}``. No user auth: the connector's
provider verifies the raw request. 2xx only after the events are committed.

Answers: 200 ``{"accepted": n, "duplicates": m}`` (a repeated event id is a success,
stored once); 401 when verification fails; 404 for an unknown, disabled or non-webhook
connector (indistinguishable); 413 for a body over 1 MiB; 400 for a malformed body.

This is the busiest endpoint, so it is served by a plain Starlette route placed first in
the routing table (no route scan, no FastAPI dependency machinery, about a third less
work per request); the FastAPI route below only documents it in the OpenAPI schema and
would answer identically if reached.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from ...kernel.errors import AuthError
from ...kernel.inbound import WebhookRequest
from ...runtime.inbound.webhook import WebhookIngress
from ..errors import error_body
from .events import after_lifespan, event_router

router = APIRouter(tags=["webhooks"])
MAX_BODY = 1024 * 1024


class _TooLarge(Exception):
    pass


@router.post(
    "/hooks/{connector_id}",
    responses={401: {"description": "verification failed"}, 413: {"description": "too large"}},
)
async def receive_webhook(connector_id: str, request: Request) -> Response:
    """Receive one webhook delivery for ``connector_id``."""
    return await _receive(request, connector_id)


async def _fast_endpoint(request: Request) -> Response:
    return await _receive(request, request.path_params["connector_id"])


async def _receive(request: Request, connector_id: str) -> Response:
    try:
        body = await _read_body(request)
    except _TooLarge:
        message = f"the webhook body exceeds {MAX_BODY} bytes"
        return JSONResponse(error_body("too_large", message), 413, headers={"Connection": "close"})
    webhook = WebhookRequest(request.method, request.headers, body, dict(request.query_params))
    try:
        result = await _ingress(request).receive(connector_id, webhook)
    except AuthError as exc:
        return JSONResponse(error_body(exc.code, exc.message, exc.remediation), 401)
    event_router(request).wake()
    return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates})


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _ingress(request: Request) -> WebhookIngress:
    ingress: WebhookIngress | None = getattr(request.app.state, "webhook_ingress", None)
    if ingress is None:
        ingress = request.app.state.webhook_ingress = WebhookIngress(request.app.state.jackfield)
    return ingress


def setup_app(app: FastAPI) -> None:
    """Serve webhooks from the front of the routing table; stop the ingress's commit
    thread when the app shuts down."""
    app.router.routes.insert(0, Route("/hooks/{connector_id}", _fast_endpoint, methods=["POST"]))

    async def close(instance: FastAPI) -> None:
        ingress: WebhookIngress | None = getattr(instance.state, "webhook_ingress", None)
        if ingress is not None:
            ingress.close()

    after_lifespan(app, close)
