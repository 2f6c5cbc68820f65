"""Messaging category: chat-like systems (send, and edit/react when declared)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._async import call_async
from ..errors import ConnectorConfigError, ConnectorNotSupportedError
from ..provider import Capability, Category, ConnectorProvider


@dataclass(frozen=True)
class OutboundMessage:
    text: str
    channel: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> OutboundMessage:
        known = {"text", "channel", "thread_id"}
        return cls(
            text=message_text(payload),
            channel=payload.get("channel"),
            thread_id=payload.get("thread_id"),
            metadata={k: v for k, v in payload.items() if k not in known},
        )


def message_text(payload: dict[str, Any]) -> str:
    """The ``text`` every message payload must carry."""
    text = payload.get("text")
    if not isinstance(text, str):
        raise ConnectorConfigError("a message needs a 'text' string")
    return text


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    channel: str | None = None


class MessagingProvider(ConnectorProvider):
    category: ClassVar[str] = Category.MESSAGING

    @abstractmethod
    def send_message(self, message: OutboundMessage) -> Any: ...

    def edit_message(self, message_id: str, text: str) -> Any:
        raise ConnectorNotSupportedError(f"{self.provider_type} cannot edit messages")

    def react(self, message_id: str, emoji: str) -> Any:
        raise ConnectorNotSupportedError(f"{self.provider_type} cannot add reactions")

    def operations(self) -> dict[str, Any]:
        ops: dict[str, Any] = {"send_message": self._send_payload}
        if Capability.EDIT in self.capabilities:
            ops["edit_message"] = lambda p: self.edit_message(
                _field(p, "message_id"), _field(p, "text")
            )
        if Capability.REACTIONS in self.capabilities:
            ops["react"] = lambda p: self.react(_field(p, "message_id"), _field(p, "emoji"))
        return ops

    @property
    def default_operation(self) -> str | None:
        return "send_message"

    async def _send_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        sent = await call_async(self.send_message, OutboundMessage.from_payload(payload))
        if isinstance(sent, SentMessage):
            return {"message_id": sent.message_id, "channel": sent.channel}
        return {}


def _field(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ConnectorConfigError(f"payload field {key!r} is required")
    return value
