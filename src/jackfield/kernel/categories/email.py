"""Email category: send one message."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._async import call_async
from ..envelope import delivering_id
from ..errors import ConnectorConfigError
from ..provider import Category, ConnectorProvider
from .fields import json_kind, optional_text, payload_error, text_map


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
    envelope_id: str | None = None
    """The outbox envelope being delivered, the same on every attempt: a provider gives
    the message an identity from it (SMTP: the Message-ID), so that a receiver can tell
    a retried delivery from a new message."""

    @classmethod
    def from_payload(cls, payload: dict[str, Any], envelope_id: str | None = None) -> EmailMessage:
        """The message a payload describes; a field of the wrong type raises
        ``PermanentError`` naming it (see ``fields``)."""
        recipients = _addresses(payload, "to")
        if not recipients:
            raise ConnectorConfigError("an email needs at least one recipient in 'to'")
        return cls(
            to=recipients,
            subject=_text(payload, "subject"),
            text=_text(payload, "text"),
            html=optional_text(payload, "html"),
            sender=optional_text(payload, "from") or optional_text(payload, "sender"),
            cc=_addresses(payload, "cc"),
            bcc=_addresses(payload, "bcc"),
            reply_to=optional_text(payload, "reply_to"),
            headers=text_map(payload, "headers"),
            envelope_id=envelope_id,
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
        message = EmailMessage.from_payload(payload, delivering_id())
        result = await call_async(self.send, message)
        if not isinstance(result, SendResult):
            return {}
        return {
            "message_id": result.message_id,
            "refused": [r.to_dict() for r in result.refused],
        }


def _text(payload: dict[str, Any], key: str) -> str:
    """``payload[key]`` as text: a string, or a number as written; ``null`` is the field
    left out. Anything else is ``PermanentError`` (see ``fields``): ``str()`` sent Python's
    spelling of it -- "None", "True", "{'lines': ['hi']}" -- as a real email's subject or
    body."""
    value = payload.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return optional_text(payload, key) or ""


def _addresses(payload: dict[str, Any], field: str) -> tuple[str, ...]:
    """``payload[field]``: one address or a list of them (absent or ``null``: none)."""
    value = payload.get(field)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    what = "an array of other things" if isinstance(value, list) else json_kind(value)
    raise payload_error(field, f"must be an address or an array of addresses, not {what}")
