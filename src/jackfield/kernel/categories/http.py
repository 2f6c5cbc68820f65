"""HTTP category: requests against a configured REST API."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._async import call_async
from ..errors import ConnectorConfigError
from ..provider import Category, ConnectorProvider

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
    status: int
    headers: dict[str, str]
    body: bytes

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
        if isinstance(response, HttpResponse):
            return {
                "status": response.status,
                "headers": dict(response.headers),
                "body": response.body[:RESULT_BODY_LIMIT].decode("utf-8", "replace"),
            }
        return {}
