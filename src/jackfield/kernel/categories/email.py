"""Email category: send one message."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._async import call_async
from ..errors import ConnectorConfigError
from ..provider import Category, ConnectorProvider


@dataclass(frozen=True)
class EmailMessage:
    to: tuple[str, ...]
    subject: str
    text: str = ""
    html: str | None = None
    sender: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EmailMessage:
        recipients = _addresses(payload.get("to"))
        if not recipients:
            raise ConnectorConfigError("an email needs at least one recipient in 'to'")
        return cls(
            to=recipients,
            subject=_text(payload, "subject"),
            text=_text(payload, "text"),
            html=payload.get("html"),
            sender=payload.get("from") or payload.get("sender"),
            cc=_addresses(payload.get("cc")),
            bcc=_addresses(payload.get("bcc")),
            reply_to=payload.get("reply_to"),
            headers=dict(payload.get("headers") or {}),
        )


@dataclass(frozen=True)
class RefusedRecipient:
    """A recipient the server would not take although it took the message for others.

    ``temporary`` is a 4xx answer (greylisting, a full mailbox): trying later may work,
    but only for this address, so it is reported, not retried by the outbox."""

    recipient: str
    code: int
    message: str = ""

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "code": self.code,
            "message": self.message,
            "temporary": self.temporary,
        }


@dataclass(frozen=True)
class SendResult:
    """``refused`` names who did not get a message that was sent to the others; a
    sender must be able to see that, not find it in a server log."""

    message_id: str
    refused: tuple[RefusedRecipient, ...] = ()


class EmailProvider(ConnectorProvider):
    category: ClassVar[str] = Category.EMAIL

    @abstractmethod
    def send(self, message: EmailMessage) -> Any: ...

    def operations(self) -> dict[str, Any]:
        return {"send_email": self._send_payload}

    async def _send_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        result = await call_async(self.send, EmailMessage.from_payload(payload))
        if not isinstance(result, SendResult):
            return {}
        return {
            "message_id": result.message_id,
            "refused": [r.to_dict() for r in result.refused],
        }


def _text(payload: dict[str, Any], key: str) -> str:
    """``payload[key]`` as text; ``null`` is the field left out. (``str(None)`` sent the
    literal word "None" as the subject or body of a real email.)"""
    value = payload.get(key)
    return "" if value is None else str(value)


def _addresses(value: Any) -> tuple[str, ...]:
    """One address or a list of them."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value or ())
