"""Translate HTTP statuses and httpx2 exceptions into the kernel's error tree.

Providers should never leak vendor exceptions: the runtime decides retry, dead-letter
or reauth from the error *class* (``retry_class``), so the translation happens once,
here, at the boundary (``raise ... from exc``).

Error messages end up in the outbox, the API, the UI and logs, so they are built from
the operation, the method, host, path and status only: never the query string, never
request headers. The short body excerpt is scrubbed of any credential the request
carried, in case the server echoes it back.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2

from jackfield.kernel.errors import (
    AuthError,
    ConnectionFailedError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from jackfield.kernel.secret_text import cut, mask_secrets

EXCERPT_LIMIT = 200
_SENSITIVE_NAME = re.compile(
    r"auth|key|token|secret|pass|cookie|session|signature|^sig$|credential", re.IGNORECASE
)
# Named like a credential, but not one: the envelope id a delivery sends (masking it
# hid the id in every result and error that quoted it). An auth class that puts a
# credential under such a name still marks it (below), and it is masked then.
_NOT_CREDENTIALS = frozenset({"idempotency-key"})
# Request extensions where auth classes name the headers / query params they filled in,
# so that credentials under innocuous names ("k", "X-Id") are scrubbed too.
CREDENTIAL_HEADERS = "jackfield.credential_headers"
CREDENTIAL_PARAMS = "jackfield.credential_params"


redact = mask_secrets  # a request's own credentials, in every form, out of a text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def request_secrets(request: httpx2.Request) -> set[str]:
    """Credential values a request carries (auth headers, key-like query params)."""
    found: set[str] = set()
    marked_headers = {n.lower() for n in request.extensions.get(CREDENTIAL_HEADERS, ())}
    marked_params = set(request.extensions.get(CREDENTIAL_PARAMS, ()))
    for name, value in request.headers.items():
        by_name = _SENSITIVE_NAME.search(name) and name.lower() not in _NOT_CREDENTIALS
        if not (by_name or name.lower() in marked_headers):
            continue
        found.add(value)
        scheme, _, credential = value.partition(" ")
        if credential:
            found.add(credential)
        if scheme.lower() == "basic" and credential:
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                continue
            found.update({decoded, decoded.partition(":")[2]})
    for name, value in request.url.params.multi_items():
        if _SENSITIVE_NAME.search(name) or name in marked_params:
            found.add(value)
    return {value for value in found if len(value) >= 4}


def _request_of(exc_or_response: httpx2.Response | httpx2.HTTPError) -> httpx2.Request | None:
    try:
        return exc_or_response.request
    except RuntimeError:  # httpx2 raises when no request is attached
        return None


def _where(request: httpx2.Request | None) -> str:
    """``GET api.example.com/v1/items``: no scheme, no userinfo, no query string."""
    if request is None:
        return "the remote system"
    return f"{request.method} {request.url.host}{request.url.path}"


def body_excerpt(
    response: httpx2.Response, limit: int = EXCERPT_LIMIT, *, secrets: Iterable[str] = ()
) -> str:
    """A short, single-line excerpt of the response body, scrubbed of the credentials
    the request carried and of ``secrets`` (values it sent elsewhere, e.g. a client
    secret in a form body) before it is cut: a server quoting a secret across the cut
    must not leave its first part in the excerpt."""
    try:
        text = response.text
    except (httpx2.ResponseNotRead, httpx2.DecodingError):
        return ""
    request = _request_of(response)
    sent = {*secrets, *(request_secrets(request) if request is not None else ())}
    # masked before the whitespace is folded too: a secret may hold a line break
    return cut(" ".join(redact(text, sent).split()), limit)


def raise_for_response(
    response: httpx2.Response, operation: str | None = None, *, secrets: Iterable[str] = ()
) -> None:
    """Raise the kernel error a ``>= 400`` status calls for; return on success.

    401/403 → ``AuthError``, 429 → ``RateLimitedError`` (with ``Retry-After``),
    408 and 5xx → ``TransientError`` (408 Request Timeout: the server gave up waiting
    for the request and RFC 9110 §15.5.9 says the client may repeat it; 503 with
    ``Retry-After``: RFC 9110 §10.2.3 names it as the time the service is expected to be
    back), other 4xx → ``PermanentError``.
    ``secrets`` are extra values to scrub from the excerpt (e.g. a client secret sent in
    a form body).
    """
    status = response.status_code
    if status < 400:
        return
    label = operation or "request"
    excerpt = body_excerpt(response, secrets=secrets)
    message = (
        f"{label} failed with HTTP {status} {response.reason_phrase} "
        f"({_where(_request_of(response))})"
    )
    if excerpt:
        message = f"{message}: {excerpt}"
    if status in (401, 403):
        remediation = (
            "Check the credentials, or reconnect the connector."
            if status == 401
            else "The credentials were accepted but may not do this; check scopes or roles."
        )
        raise AuthError(message, operation=operation, remediation=remediation)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimitedError(message, retry_after=retry_after, operation=operation)
    if status >= 500 or status == 408:
        retry_after = None
        if status == 503:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise TransientError(
            message,
            retry_after=retry_after,
            operation=operation,
            remediation="The remote system failed; the request is retried later.",
        )
    raise PermanentError(
        message,
        operation=operation,
        remediation="Check the base URL, path and request payload.",
    )


def json_object(
    response: httpx2.Response,
    operation: str | None = None,
    *,
    secrets: Iterable[str] = (),
    quote: bool = True,
) -> dict[str, Any]:
    """The body of a successful answer as a JSON object, or ``TransientError``.

    A 2xx whose body is not a JSON object is seldom the API's own answer: a captive
    portal or proxy page, or a body cut short. Parsing it unguarded let the decoder's
    ``JSONDecodeError`` out of the provider, which the runtime counts as a crash (the
    unit restarts, the message goes dead) and Test shows as "unexpected error". It is
    reported like a 5xx instead -- retried later -- naming the status and with the
    same masked, cut excerpt as ``raise_for_response``.

    ``quote=False`` names only the body's type and size: for a token endpoint, whose
    success holds the tokens it just issued -- cut short or form-encoded, they are in
    the body, and masking knows only the values that were sent.
    """
    try:
        body = response.json()
    except ValueError:  # JSONDecodeError, or bytes that are not text
        body = None
    if isinstance(body, dict):
        return body
    label = operation or "request"
    if quote:
        excerpt = body_excerpt(response, secrets=secrets) or "an empty body"
    else:
        kind = cut(response.headers.get("Content-Type") or "no Content-Type", 80)
        excerpt = f"{len(response.content)} bytes of {kind}, not quoted (it may hold tokens)"
    raise TransientError(
        f"{label} failed: HTTP {response.status_code} {response.reason_phrase} "
        f"({_where(_request_of(response))}) answered with a body that is not a JSON object: "
        f"{excerpt}",
        operation=operation,
        remediation="The remote system, or a proxy or captive portal in between, did not "
        "answer as its API does; the request is retried later.",
    )


def _translate(exc: httpx2.HTTPError, operation: str | None) -> ConnectorError:
    request = _request_of(exc)
    host = request.url.host if request is not None else "the remote system"
    detail = redact(str(exc), request_secrets(request)) if request is not None else str(exc)
    if isinstance(exc, httpx2.ConnectTimeout):
        return ConnectionFailedError(f"timed out connecting to {host}", operation=operation)
    if isinstance(exc, httpx2.ConnectError):
        return ConnectionFailedError(f"cannot connect to {host}: {detail}", operation=operation)
    if isinstance(exc, httpx2.TimeoutException):
        return TransientError(
            f"timed out waiting for {host} ({type(exc).__name__})", operation=operation
        )
    if isinstance(exc, httpx2.TooManyRedirects):
        return PermanentError(f"too many redirects from {host}", operation=operation)
    if isinstance(exc, httpx2.UnsupportedProtocol):
        return PermanentError(f"unsupported URL scheme: {detail}", operation=operation)
    if isinstance(exc, httpx2.LocalProtocolError):  # e.g. a line break in a header value
        # h11 quotes the offending header ("Illegal header value b'...'"): left out, as
        # a header may be a credential
        reason = str(exc).partition(" b'")[0].partition(' b"')[0]
        return PermanentError(
            f"the request to {host} cannot be sent as given: {reason}",
            operation=operation,
            remediation="Correct the request (method, path, headers): the same request "
            "fails the same way on every attempt.",
        )
    return TransientError(
        f"{_what_broke(exc, host)} ({type(exc).__name__}: {detail or _os_reason(exc)})",
        operation=operation,
    )


def _what_broke(exc: httpx2.HTTPError, host: str) -> str:
    """The failure in words: a reset connection says nothing itself (``ReadError('')``)."""
    if isinstance(exc, httpx2.ReadError):
        return f"connection to {host} closed by the server mid-response"
    if isinstance(exc, httpx2.WriteError):
        return f"connection to {host} closed by the server while the request was sent"
    if isinstance(exc, httpx2.RemoteProtocolError):
        return f"{host} closed the connection early or answered malformed HTTP"
    return f"request to {host} failed"


def _os_reason(exc: BaseException) -> str:
    """The operating system's reason (``Connection reset by peer``) somewhere under
    ``exc``: httpx2 wraps httpcore2's error, which wraps anyio's, which wraps it."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return "no detail given"


@contextmanager
def translate_transport_errors(operation: str | None = None) -> Iterator[None]:
    """Turn httpx2 exceptions raised inside the block into kernel errors.

    Connect failures become ``ConnectionFailedError``; read/write timeouts and broken
    connections ``TransientError``; ``HTTPStatusError`` goes through
    ``raise_for_response``. Kernel errors (e.g. the egress guard's) pass through.
    """
    try:
        yield
    except httpx2.HTTPStatusError as exc:
        try:
            raise_for_response(exc.response, operation)
        except ConnectorError as translated:
            raise translated from exc
        raise
    except httpx2.HTTPError as exc:
        raise _translate(exc, operation) from exc
    except httpx2.InvalidURL as exc:
        raise PermanentError(f"invalid URL: {exc}", operation=operation) from exc
