"""Queue category: publish to a broker topic / queue / subject."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from ..errors import ConnectorConfigError
from ..provider import Category, ConnectorProvider


class QueueProvider(ConnectorProvider):
    category: ClassVar[str] = Category.QUEUE

    @abstractmethod
    def publish(self, topic: str, body: bytes, headers: dict[str, str] | None = None) -> Any: ...

    def operations(self) -> dict[str, Any]:
        return {"publish": self._publish_payload}

    def _publish_payload(self, payload: dict[str, Any]) -> Any:
        topic = payload.get("topic")
        if not isinstance(topic, str) or not topic:
            raise ConnectorConfigError("payload field 'topic' is required")
        body = payload.get("body", "")
        data = body.encode() if isinstance(body, str) else bytes(body)
        return self.publish(topic, data, payload.get("headers"))
