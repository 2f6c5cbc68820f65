"""Envelopes and delivery outcomes: the contract between the outbox and a provider.

Frozen, slotted dataclasses (like ``InboundEvent``): the outbox makes several of them per
message, and slots build faster and give the cycle collector one object to track per
record instead of two.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import ConnectorError, RetryClass
from .inbound import InboundEvent


@dataclass(frozen=True, slots=True)
class Envelope:
    """One outbound message. ``envelope_id`` (a ULID) makes delivery idempotent."""

    envelope_id: str
    connector_id: str
    operation: str
    payload: dict[str, Any]
    attempt: int = 1
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Success. ``events`` are inbound events the delivery produced (the echo loopback);
    the outbox commits them to the inbox in the same transaction as the delivered state."""

    result: dict[str, Any] = field(default_factory=dict)
    events: tuple[InboundEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Retry:
    retry_class: RetryClass
    error_class: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Permanent:
    error_class: str
    message: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    error_class: str
    message: str


DeliveryOutcome = Delivered | Retry | Permanent | AuthFailed

DELIVERING: ContextVar[Envelope | None] = ContextVar("jackfield_delivering", default=None)
"""The envelope whose operation is running (``ConnectorProvider.deliver`` sets it; sync
operations see it too, in their worker thread). A category's operation, which takes
only the payload, reads it to give what it sends the identity every attempt shares --
delivery is at-least-once, and the envelope id is how a receiver tells a retry from a
new message."""


def outcome_from_error(exc: ConnectorError) -> DeliveryOutcome:
    """Map a provider error onto the outcome its retry class calls for."""
    name = type(exc).__name__
    if exc.retry_class is RetryClass.AUTH:
        return AuthFailed(name, exc.message)
    if exc.retry_class is RetryClass.NEVER:
        return Permanent(name, exc.message)
    retry_after = getattr(exc, "retry_after", None)
    return Retry(exc.retry_class, name, exc.message, retry_after)


def delivering_id() -> str | None:
    """The id of the envelope being delivered (``DELIVERING``), or ``None`` outside a
    delivery (a provider's method called directly)."""
    envelope = DELIVERING.get()
    return envelope.envelope_id if envelope is not None else None
