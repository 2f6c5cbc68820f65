"""Envelopes and delivery outcomes: the contract between the outbox and a provider.

Frozen, slotted dataclasses (like ``InboundEvent``): the outbox makes several of them per
message, and slots build faster and give the cycle collector one object to track per
record instead of two.
"""

from __future__ import annotations

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


def outcome_from_error(exc: ConnectorError) -> DeliveryOutcome:
    """Map a provider error onto the outcome its retry class calls for."""
    name = type(exc).__name__
    if exc.retry_class is RetryClass.AUTH:
        return AuthFailed(name, exc.message)
    if exc.retry_class is RetryClass.NEVER:
        return Permanent(name, exc.message)
    retry_after = getattr(exc, "retry_after", None)
    return Retry(exc.retry_class, name, exc.message, retry_after)
