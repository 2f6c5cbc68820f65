"""One error body for every failure: ``{"error": {"code", "message", "remediation"}}``.

Status codes follow the error class; a 5xx only for real faults, never with a trace.

While the database is unavailable (down, unreachable, full), a request answers 503
``database_unavailable`` with ``Retry-After``, and the log has a line when the outage
begins, one a minute while it lasts and one when a request succeeds again (one that
may write, if a write failed: a full disk still answers reads), not a traceback per
request. Any other
unexpected error answers 500 ``internal_error`` and logs its traceback once, through
Jackfield's redacting logger: ``ErrorGuard`` handles it around every middleware, so
Starlette's outermost middleware never re-raises it for the server to log again
(unredacted, by a logger that is not Jackfield's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..kernel.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorConfigError,
    ConnectorError,
    ConnectorNotFoundError,
    JackfieldError,
    PermissionDeniedError,
)
from ..kernel.redaction import get_logger
from ..secrets import redactor
from ..store import OutageLog, database_unavailable
from .schemas import BodyValueError

log = get_logger(__name__)
outages = OutageLog(log, "requests answer 503 database_unavailable")
RETRY_AFTER_SECONDS = 5
"""What a 503 ``database_unavailable`` asks the client to wait before trying again."""

STATUS_BY_ERROR: list[tuple[type[JackfieldError], int]] = [
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (ConnectorNotFoundError, 404),
    (ConflictError, 409),
    (ConnectorConfigError, 422),
    (ConnectorError, 400),
]


def status_for(exc: JackfieldError) -> int:
    if getattr(exc, "code", None) == "not_found":
        return 404
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(
    code: str, message: str, remediation: str = "", org: str | None = None, **extra: object
) -> dict[str, Any]:
    """The error format, with ``org``'s secrets masked (every secret when the caller's
    organization is not known)."""
    body = {"code": code, "message": redactor.redact(message, org=org), "remediation": remediation}
    body.update({k: redactor.redact_obj(v, org=org) for k, v in extra.items() if v})
    return {"error": body}


def _org(request: Request) -> str | None:
    """The authenticated caller's organization (set by ``current_principal``)."""
    return getattr(request.state, "organization_id", None)


HTTP_REMEDIES = {
    400: "Send the body as JSON in UTF-8 (the OpenAPI document, /openapi.json, has its shape).",
    404: "Check the path against the OpenAPI document (/openapi.json).",
    405: "Check the method against the OpenAPI document (/openapi.json).",
    413: "Send a smaller body (large files belong in file params of a few MiB at most).",
}


_PARTS = {"body": "body", "query": "query parameters", "path": "path", "header": "headers"}


def _validation_remedy(errors: Sequence[Any]) -> str:
    """Point at the part of the request that is wrong: "the request body" for a bad
    ``?limit=`` sent callers looking in the wrong place."""
    parts = [_PARTS[p] for p in _PARTS if any(e["loc"][:1] == (p,) for e in errors)]
    return f"Check the request's {' and '.join(parts or ['body'])} against the OpenAPI document."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(JackfieldError)
    async def jackfield_error(request: Request, exc: JackfieldError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed: %s", exc)
        details = exc.details or None
        body = error_body(exc.code, exc.message, exc.remediation, _org(request), details=details)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if exc.errors() and all(e.get("type") == "json_invalid" for e in exc.errors()):
            body = error_body(  # not JSON at all: a malformed request, not an invalid one
                "invalid_request", "the body is not valid JSON", HTTP_REMEDIES[400]
            )
            return JSONResponse(body, 400)
        if _not_json(request) and any(err["loc"][:1] == ("body",) for err in exc.errors()):
            given = request.headers.get("content-type") or "none"
            body = error_body(
                "unsupported_media_type",
                f"the body must be JSON sent as Content-Type: application/json (got {given})",
                "Send the body as JSON with the header Content-Type: application/json.",
                _org(request),
            )
            return JSONResponse(body, 415)
        fields = dict(_field_error(err) for err in exc.errors())
        body = error_body(
            "invalid_request",
            "the request is not valid: " + "; ".join(f"{k}: {v}" for k, v in fields.items()),
            _validation_remedy(exc.errors()),
            _org(request),
            details={"fields": fields},
        )
        return JSONResponse(body, 422)

    @app.exception_handler(DBAPIError)  # raised by a route: handled without a re-raise
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(Exception)  # raised outside ``ErrorGuard`` (Starlette re-raises)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return fault_response(request.scope, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "invalid_request",  # a body that is not JSON at all
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
        }.get(exc.status_code, "http_error")
        remedy = HTTP_REMEDIES.get(exc.status_code, "")
        body = error_body(code, str(exc.detail), remedy, _org(request))
        headers = exc.headers
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return JSONResponse(body, exc.status_code, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at the request's path. (Starlette's 405
    names the methods of the first route matching the path only: ``GET`` for
    ``/api/connectors``, which takes ``POST`` too.) Asked of the routes as the router
    asks them, so routers included in routers are asked too. Asked from the app's root
    (a mounted app's 405 comes with the mount's ``root_path``), and of routes only: a
    mount (the static files) takes every method, and its own 405 says which.
    """
    scope = {**request.scope, "root_path": request.scope.get("app_root_path", "")}
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    return [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def _not_json(request: Request) -> bool:
    """Whether the request's Content-Type is not JSON (``application/json``, ``...+json``):
    FastAPI then leaves the body unread, and every body field looks missing."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return not (
        media == "application/json"
        or (media.startswith("application/") and media.endswith("+json"))
    )


def _field_error(err: Mapping[str, Any]) -> tuple[str, str]:
    """``(field, problem)`` of one validation error: the field's path in the body (or the
    query, the path), also for a problem a whole-body check found (``BodyValueError``)."""
    found = (err.get("ctx") or {}).get("error")
    if isinstance(found, BodyValueError):
        return found.field, found.problem
    field = ".".join(str(p) for p in err["loc"] if p != "body")
    return field or "body", str(err["msg"]).removeprefix("Value error, ")


def fault_response(scope: Scope, exc: Exception) -> JSONResponse:
    """The answer to an exception no other handler took: 503 while the database is
    unavailable (logged once per outage), else 500 (logged with its traceback). Neither
    quotes the exception: a driver's text may hold a host, a statement, its values."""
    if database_unavailable(exc):
        outages.failed(exc, writing=_writes(scope))
        body = error_body(
            "database_unavailable",
            "the database is unavailable, so the request could not be completed",
            f"Try again in {RETRY_AFTER_SECONDS} seconds or more. Sending again is safe: a"
            " message with the same envelope_id, or a webhook with the same webhook-id, is"
            " stored once.",
        )
        return JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    # a real fault: the error format holds for it too, without a trace to the client
    # (the log has it, through the redacting filter)
    log.error(
        "%s %s failed unexpectedly: %r",
        scope.get("method", ""),
        scope.get("path", ""),
        exc,
        exc_info=exc,
    )
    body = error_body(
        "internal_error",
        "an unexpected error occurred",
        "Try again; if it persists, the server log says what went wrong.",
    )
    return JSONResponse(body, 500)


_USES_DATABASE = ("/api/", "/hooks/", "/readyz", "/metrics")
"""Paths whose every successful answer read the database (a token, a connector, its
state): one answered below 400 while an outage is logged ends that outage."""


def _writes(scope: Scope) -> bool:
    """Whether the request may write: a GET's success says only that reads work."""
    return scope.get("method") not in ("GET", "HEAD")


def answered(scope: Scope, status: int, began: float) -> None:
    """Note that a request that ``began`` (monotonic) was answered ``status``: a success
    on a path that uses the database ends an outage the log shows (one a write began,
    only if it may write; one that began after it, never)."""
    if outages.ongoing and status < 400 and scope["path"].startswith(_USES_DATABASE):
        outages.recovered(writing=_writes(scope), began=began)


class ErrorGuard:
    """ASGI middleware around all of the app's others: an exception that escapes them
    (a route's, or a middleware's own, such as a token check while the database is away)
    gets ``fault_response`` and ends here, logged once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, started, status = time.monotonic(), False, 500

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
            answered(scope, status, began)
        except Exception as exc:  # noqa: BLE001 - every fault is answered and logged here
            response = fault_response(scope, exc)
            if not started:  # else the client has a status already: the server drops it
                await response(scope, receive, send)
