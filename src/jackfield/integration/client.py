"""A configured ``httpx2.AsyncClient`` and a request helper with error translation.

Every HTTP-family connector should build its client here so that all of them share the
same guard rails: the egress guard on every request and redirect hop, bounded
redirects (none for OAuth2 token requests), timeouts, an identifying User-Agent, no
environment proxies or ``.netrc`` (both would bypass or override what the connector
config says), and kernel errors instead of httpx2 exceptions.
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Any

import httpx2

from jackfield.kernel.errors import ConnectionFailedError, RateLimitedError, TransientError

from .auth import drop_foreign_credentials, refuse_token_redirect
from .egress import EgressGuardTransport, EgressPolicy
from .errors import raise_for_response, translate_transport_errors

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 30.0
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
    **kwargs: Any,
) -> httpx2.Response:
    """Send a request and return the response, or raise the matching kernel error.

    ``retries`` extra attempts are made only for idempotent methods and retryable errors
    (transient, connection failed, rate limited), waiting ``Retry-After`` when given; a
    wait longer than ``max_retry_wait`` is left to the caller (the outbox retries too).
    """
    method = method.upper()
    attempt = 0
    while True:
        try:
            with translate_transport_errors(operation):
                response = await client.request(method, url, **kwargs)
            raise_for_response(response, operation)
            return response
        except (TransientError, ConnectionFailedError, RateLimitedError) as exc:
            delay = _retry_delay(exc, attempt)
            if attempt >= retries or method not in IDEMPOTENT_METHODS or delay > max_retry_wait:
                raise
            attempt += 1
            await asyncio.sleep(delay)
