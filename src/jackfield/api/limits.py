"""Request guards applied before any route runs: body size, NUL bytes in the URL, and
credentials before a body is read.

A body larger than its limit is refused with 413 and the usual error body, whether the
client announced it (``Content-Length``) or streams it (the count stops reading at the
limit). A ``%00`` in the path or query string is refused with 400 — PostgreSQL text
cannot hold NUL, so letting it reach a query would turn bad input into a 5xx.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..kernel.errors import AuthenticationError
from .deps import bearer_token, missing_credentials
from .errors import error_body

MiB = 1024 * 1024
DEFAULT_LIMITS: tuple[tuple[str, int], ...] = (
    # (path regex, limit in bytes); the first match wins, paths matching none are free
    (r"^/api/connectors(/[^/]+)?/?$", 1 * MiB),  # create, update
    (r"^/api/connectors/[^/]+/import-config/?$", 1 * MiB),
    (r"^/api/", 16 * MiB),  # a safety net for every other API body
)


class BodySizeLimit:
    """ASGI middleware enforcing per-path body limits (see ``DEFAULT_LIMITS``)."""

    def __init__(self, app: ASGIApp, limits: tuple[tuple[str, int], ...] = DEFAULT_LIMITS):
        self.app = app
        self.limits = [(re.compile(pattern), size) for pattern, size in limits]

    def limit_for(self, path: str) -> int | None:
        return next((size for pattern, size in self.limits if pattern.match(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if b"%00" in raw_path or b"%00" in scope.get("query_string", b""):
            body = error_body(
                "invalid_request",
                "the URL contains a NUL character",
                "Remove the %00 from the path or query string.",
            )
            await _respond(send, 400, body)
            return
        limit = self.limit_for(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _respond(send, 413, _too_large(limit))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body parsing; the app's handler
                    # turns it into the error body
                    raise HTTPException(413, _too_large(limit)["error"]["message"])
            return message

        await self.app(scope, counting_receive, send)


BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CredentialsFirst:
    """ASGI middleware: an API write is authenticated before its body is read.

    FastAPI reads and parses a route's JSON body before its dependencies run, so without
    this an anonymous caller could have the server read and parse 16 MiB per request
    (``BodySizeLimit``'s net) before hearing 401. A bearer token is checked here, and the
    principal kept for ``current_principal``; a UI session has been checked already by
    the session middleware, which runs outside this one (it is added after it).
    """

    def __init__(self, app: ASGIApp, jf: Any) -> None:
        self.app = app
        self.jf = jf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in BODY_METHODS
            and scope["path"].startswith("/api/")
        ):
            state = scope.setdefault("state", {})
            token = bearer_token(Headers(scope=scope).get("authorization", ""))
            try:  # as current_principal: a bearer token first, else the UI session
                if token:
                    state["principal"] = await run_in_threadpool(
                        self.jf.accounts.authenticate_token, token
                    )
                elif not state.get("session_user_id"):
                    raise missing_credentials(bool(state.get("session_needs_csrf")))
            except AuthenticationError as exc:
                body = error_body(exc.code, exc.message, exc.remediation)
                await _respond(send, 401, body, ((b"www-authenticate", b"Bearer"),))
                return
        await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> dict[str, Any]:
    return error_body(
        "too_large",
        f"the request body is larger than {limit} bytes",
        "Send a smaller body (large files belong in file params of a few MiB at most).",
    )


async def _respond(
    send: Send, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
