"""HTTP category: requests against a configured REST API."""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._async import call_async
from ..envelope import delivering_id
from ..provider import Category, ConnectorProvider
from ..secret_text import mask_secrets
from .fields import json_kind, optional_text, payload_error, text_map

RESULT_BODY_LIMIT = 64 * 1024
"""How much of a response body a delivery result keeps (the outbox stores results)."""

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 9110 token: what a method and a header name are made of."""

FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
"""A header value an HTTP client can send as given: printable ASCII, spaces and tabs
(no line break, which would end the header; non-ASCII text needs an encoding)."""

CONTROL = re.compile(r"[\x00-\x1f\x7f]")

IDEMPOTENCY_KEY = "Idempotency-Key"
"""The header a delivered request carries the envelope id in (the same on every
attempt: a receiver that honours it does the work of a retried request once)."""

UNSAFE_TO_REPEAT = frozenset({"POST", "PATCH"})
"""Methods whose request gets ``IDEMPOTENCY_KEY``: the IETF Idempotency-Key draft names
these; GET, PUT and DELETE are idempotent by HTTP's own definition, and a receiver that
caches answers per key (Stripe does, errors included) must not replay a cached failure
to a request that was safe to repeat anyway."""

_PARAM_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    body: bytes | None = None

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], idempotency_key: str | None = None
    ) -> HttpRequest:
        """The request a payload describes. A field no HTTP request can carry raises
        ``PermanentError`` naming it (see ``fields``): a method or header name that is
        not a token, a header value with a line break, a path with a control character.
        ``idempotency_key`` is sent as ``IDEMPOTENCY_KEY`` with a POST or PATCH unless
        the payload sets it."""
        method = optional_text(payload, "method") or "GET"
        if not TOKEN.fullmatch(method):
            raise payload_error("method", f"{method!r} is not an HTTP method name")
        path = optional_text(payload, "path") or ""
        if CONTROL.search(path):
            raise payload_error("path", "holds a control character (such as a line break)")
        body = payload.get("body")
        method = method.upper()
        if method not in UNSAFE_TO_REPEAT:
            idempotency_key = None
        return cls(
            method=method,
            path=path,
            headers=_headers(payload, idempotency_key),
            params=_params(payload),
            json=payload.get("json"),
            body=body.encode() if isinstance(body, str) else None,
        )


def _headers(payload: dict[str, Any], idempotency_key: str | None) -> dict[str, str]:
    headers = text_map(payload, "headers")
    for name, value in headers.items():
        if not TOKEN.fullmatch(name):
            raise payload_error("headers", f"{name!r} is not a header name")
        if not FIELD_VALUE.fullmatch(value):
            raise payload_error(
                "headers",
                f"{name!r} holds a line break, a control character or non-ASCII text, "
                "which a header value cannot carry",
            )
    if idempotency_key and not any(n.lower() == IDEMPOTENCY_KEY.lower() for n in headers):
        headers[IDEMPOTENCY_KEY] = idempotency_key
    return headers


def _params(payload: dict[str, Any]) -> dict[str, Any]:
    """Query parameters: a value is a string, number or boolean, or an array of them."""
    params = payload.get("params")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise payload_error("params", f"must be an object, not {json_kind(params)}")
    for name, value in params.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, _PARAM_TYPES) for v in values):
            raise payload_error(
                "params", f"{name!r} must be a string, number, boolean or null, or an array of them"
            )
    return dict(params)


@dataclass(frozen=True)
class HttpResponse:
    """A response; ``credentials`` are the values the request authenticated with, which
    a delivery result must not keep when the server quotes them back (a Basic-auth
    header is base64 of ``user:password``: masking the password alone misses it)."""

    status: int
    headers: dict[str, str]
    body: bytes
    credentials: frozenset[str] = field(default=frozenset(), repr=False)
    truncated: bool = False
    """The server sent more than ``body`` holds (the provider stopped reading)."""

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class HttpProvider(ConnectorProvider):
    category: ClassVar[str] = Category.HTTP

    @abstractmethod
    def request(self, request: HttpRequest) -> Any: ...

    def operations(self) -> dict[str, Any]:
        return {"request": self._request_payload}

    async def _request_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        request = HttpRequest.from_payload(payload, delivering_id())
        response = await call_async(self.request, request)
        if not isinstance(response, HttpResponse):
            return {}
        # the whole body is masked, then cut (to RESULT_BODY_LIMIT bytes of UTF-8): a
        # credential the server quotes across the cut would otherwise leave its first
        # part in the result (the body is in memory already; the built-in provider reads
        # 1 MiB at most)
        secrets = response.credentials
        masked = mask_secrets(response.body.decode("utf-8", "replace"), secrets).encode()
        return {
            "status": response.status,
            "headers": {k: mask_secrets(v, secrets) for k, v in response.headers.items()},
            # no ellipsis: "truncated" says it; a character cut in two is left out
            "body": masked[:RESULT_BODY_LIMIT].decode("utf-8", "ignore"),
            # the body above is not the whole answer (it used to be cut without a word)
            "truncated": response.truncated or len(masked) > RESULT_BODY_LIMIT,
        }
