"""HTTP category: requests against a configured REST API."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._async import call_async
from ..errors import ConnectorConfigError
from ..provider import Category, ConnectorProvider
from ..secret_text import mask_secrets

RESULT_BODY_LIMIT = 64 * 1024
"""How much of a response body a delivery result keeps (the outbox stores results)."""


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    body: bytes | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> HttpRequest:
        path = payload.get("path", "")
        if not isinstance(path, str):
            raise ConnectorConfigError("payload field 'path' must be a string")
        body = payload.get("body")
        return cls(
            method=str(payload.get("method", "GET")).upper(),
            path=path,
            headers=dict(payload.get("headers") or {}),
            params=dict(payload.get("params") or {}),
            json=payload.get("json"),
            body=body.encode() if isinstance(body, str) else None,
        )


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
        response = await call_async(self.request, HttpRequest.from_payload(payload))
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
