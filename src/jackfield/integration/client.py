"""A configured ``httpx2.AsyncClient`` and a request helper with error translation.

Every HTTP-family connector should build its client here so that all of them share the
same guard rails: the egress guard on every request and redirect hop, bounded
redirects (for OAuth2 token requests, only a 307/308 within the origin), timeouts, an
identifying User-Agent, no environment proxies or ``.netrc`` (both would bypass or
override what the connector config says), and kernel errors instead of httpx2
exceptions.
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Any

import httpx2

from jackfield.kernel.errors import (
    ConnectionFailedError,
    PermanentError,
    RateLimitedError,
    TransientError,
)

from .auth import drop_foreign_credentials, refuse_token_redirect
from .egress import EgressGuardTransport, EgressPolicy
from .errors import raise_for_response, translate_transport_errors

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BODY = 16 * 1024 * 1024
"""How much of a response body ``request`` reads by default (decoded bytes). The body
is streamed and reading stops there: a 400 MB answer once took ~1 GB of memory."""
BODY_TRUNCATED = "jackfield.body_truncated"
"""Response extension set to ``True`` when ``truncate=True`` cut the body at the cap."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def user_agent() -> str:
    try:
        version = metadata.version("jackfield")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"jackfield/{version}"


def create_client(
    base_url: str = "",
    *,
    auth: httpx2.Auth | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    policy: EgressPolicy | None = None,
    headers: dict[str, str] | None = None,
    verify: Any = True,
) -> httpx2.AsyncClient:
    """An ``AsyncClient`` behind the egress guard (``policy`` defaults to the env's).

    Use it as ``async with create_client(...) as client:``; it follows at most
    ``MAX_REDIRECTS`` redirects, each checked by the guard.
    """
    transport = EgressGuardTransport(policy, verify=verify)
    return httpx2.AsyncClient(
        base_url=base_url,
        auth=auth,
        headers={"User-Agent": user_agent(), **(headers or {})},
        timeout=httpx2.Timeout(timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        transport=transport,
        trust_env=False,
        event_hooks={"request": [drop_foreign_credentials], "response": [refuse_token_redirect]},
    )


def _deadline(client: httpx2.AsyncClient, timeout: Any = httpx2.USE_CLIENT_DEFAULT) -> float | None:
    """Seconds one exchange may take in all: the longest of the timeout's parts (the
    request's ``timeout``, else the client's; ``None`` is no timeout, as in httpx2).

    httpx2's timeouts bound each connect, write and *read*, not the request: a server
    sending a byte a second never trips a 3 s read timeout, and the request would run
    until the outbox's delivery timeout (an hour by default) gave it up.
    """
    use_client = timeout is httpx2.USE_CLIENT_DEFAULT
    limits = client.timeout if use_client else httpx2.Timeout(timeout)
    parts = [p for p in (limits.connect, limits.read, limits.write, limits.pool) if p]
    return max(parts) if parts else None


async def exchange(
    client: httpx2.AsyncClient,
    method: str,
    url: str | httpx2.URL,
    *,
    operation: str = "request",
    max_body: int | None = None,
    truncate: bool = False,
    bounded: bool = True,
    **kwargs: Any,
) -> httpx2.Response:
    """One request and its whole response within the client's timeout (``_deadline``),
    transport errors translated; the status is the caller's to judge (``request`` does
    it with ``raise_for_response``, a provider may first map e.g. 404 its own way).

    ``bounded=False`` is for a transfer whose size sets how long it takes (a file's
    download or upload): only httpx2's timeouts apply then, each connect, read and write,
    since no fixed deadline fits a file of any size.

    With ``max_body`` the body is streamed and read up to that many bytes: more raises
    ``PermanentError`` (the same request would get the same answer), or with
    ``truncate`` keeps the first ``max_body`` bytes and sets ``BODY_TRUNCATED``. An
    error status is always truncated: its body only feeds a short excerpt.
    """
    timeout = kwargs.get("timeout", httpx2.USE_CLIENT_DEFAULT)
    deadline = _deadline(client, timeout) if bounded else None
    try:
        async with asyncio.timeout(deadline):
            with translate_transport_errors(operation):
                if max_body is None:
                    return await client.request(method, url, **kwargs)
                async with client.stream(method, url, **kwargs) as response:
                    await _read_capped(response, max_body, truncate, operation)
                return response
    except TimeoutError as exc:
        if deadline is None:
            raise
        host = client.base_url.join(url).host or "the remote system"
        raise TransientError(
            f"timed out waiting for {host}: no complete answer within {deadline:g} s",
            operation=operation,
            remediation="The remote system is slow; the request is retried later, or raise "
            "the connector's timeout.",
        ) from exc


async def _read_capped(
    response: httpx2.Response, limit: int, truncate: bool, operation: str
) -> None:
    """Read at most ``limit`` bytes of the (decoded) body into ``response.content``."""
    truncate = truncate or response.status_code >= 400
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        if size + len(chunk) > limit:
            if not truncate:
                raise PermanentError(
                    f"the response from {response.request.url.host} is larger "
                    f"than {limit} bytes; it was not read further",
                    operation=operation,
                    remediation="Ask the API for less (paging, filters, a range).",
                )
            chunks.append(chunk[: limit - size])
            response.extensions[BODY_TRUNCATED] = True
            break
        chunks.append(chunk)
        size += len(chunk)
    # what ``Response.aread`` sets; the rest of the stream is left unread and closed
    response._content = b"".join(chunks)


def _retry_delay(exc: Exception, attempt: int) -> float:
    if isinstance(exc, RateLimitedError | TransientError) and exc.retry_after is not None:
        return exc.retry_after
    return min(0.5 * 2.0**attempt, 8.0)


async def request(
    client: httpx2.AsyncClient,
    method: str,
    url: str | httpx2.URL,
    *,
    operation: str = "request",
    retries: int = 0,
    max_retry_wait: float = 30.0,
    max_body: int | None = DEFAULT_MAX_BODY,
    truncate: bool = False,
    **kwargs: Any,
) -> httpx2.Response:
    """Send a request and return the response, or raise the matching kernel error.

    The client's timeout bounds each attempt as a whole (connect, send, every read),
    not only each read (see ``_deadline``); running out of it raises ``TransientError``.
    At most ``max_body`` bytes of the body are read (see ``exchange``); ``None``: all.

    ``retries`` extra attempts are made only for idempotent methods and retryable errors
    (transient, connection failed, rate limited), waiting ``Retry-After`` when given; a
    wait longer than ``max_retry_wait`` is left to the caller (the outbox retries too).
    """
    method = method.upper()
    attempt = 0
    while True:
        try:
            response = await exchange(
                client,
                method,
                url,
                operation=operation,
                max_body=max_body,
                truncate=truncate,
                **kwargs,
            )
            raise_for_response(response, operation)
            return response
        except (TransientError, ConnectionFailedError, RateLimitedError) as exc:
            delay = _retry_delay(exc, attempt)
            if attempt >= retries or method not in IDEMPOTENT_METHODS or delay > max_retry_wait:
                raise
            attempt += 1
            await asyncio.sleep(delay)
