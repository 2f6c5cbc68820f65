"""Storage category: objects addressed by a slash-separated path."""

from __future__ import annotations

import base64
from abc import abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from .._async import call_async
from ..errors import ConnectorConfigError, ConnectorNotFoundError
from ..provider import Category, ConnectorProvider
from .fields import json_kind, payload_error


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size: int
    modified_at: datetime | None = None
    content_type: str | None = None


class StorageProvider(ConnectorProvider):
    """put/get/delete/list/stat. ``get``/``stat``/``delete`` of a missing path raise
    ``ConnectorNotFoundError`` (the ``delete_object`` operation takes that as done);
    paths that escape the store raise ``ConnectorConfigError``."""

    category: ClassVar[str] = Category.STORAGE

    @abstractmethod
    def put(self, path: str, data: bytes, content_type: str | None = None) -> Any: ...

    @abstractmethod
    def get(self, path: str) -> Any: ...

    @abstractmethod
    def delete(self, path: str) -> Any: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Any: ...

    @abstractmethod
    def stat(self, path: str) -> Any: ...

    def operations(self) -> dict[str, Any]:
        return {"put_object": self._put_payload, "delete_object": self._delete_payload}

    async def _put_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        path = _require(payload, "path")
        if "content_base64" in payload:
            data = _decode_base64(payload["content_base64"])
        else:
            data = str(payload.get("content", "")).encode()
        info = await call_async(self.put, path, data, payload.get("content_type"))
        if isinstance(info, ObjectInfo):
            return {"path": info.path, "size": info.size}
        return {"path": path, "size": len(data)}

    async def _delete_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Delete the object; one already missing counts as deleted. Delivery is
        at-least-once: an attempt that deleted it but did not report back (the process
        was killed, the delete outlasted its timeout) is tried again, and must not end
        in a dead letter because its own first attempt did the work."""
        path = _require(payload, "path")
        try:
            await call_async(self.delete, path)
        except ConnectorNotFoundError:
            return {"path": path, "existed": False}
        return {"path": path, "existed": True}


def _decode_base64(value: Any) -> bytes:
    """Decode ``content_base64`` or raise ``PermanentError`` (see ``fields``)."""
    if not isinstance(value, str):
        raise payload_error("content_base64", f"must be a base64 string, not {json_kind(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII text
        raise payload_error(
            "content_base64",
            f"is not valid base64: {exc}",
            remediation="Send the content base64-encoded (RFC 4648, standard alphabet), "
            "or as text in 'content'.",
        ) from exc


def _require(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ConnectorConfigError(f"payload field {key!r} is required")
    return value
