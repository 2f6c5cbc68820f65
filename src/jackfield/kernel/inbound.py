"""Inbound kinds: how external events reach Jackfield.

A provider offers any of three sources. The runtime commits what they produce to the
inbox before acknowledging anything, so an event is never lost between the external
system and Jackfield.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One event from the external system. ``event_id`` deduplicates redeliveries."""

    event_id: str
    event_type: str
    payload: dict[str, Any]
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class WebhookRequest:
    """A raw inbound HTTP request, as received: verification needs the exact bytes."""

    method: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ReceivedEvent:
    """An event from a subscription, with the broker ack to call after the inbox commit."""

    event: InboundEvent
    ack: Callable[[], Awaitable[None]]


class WebhookSource(ABC):
    """Verify and parse a raw webhook request (``AuthError`` when verification fails)."""

    @abstractmethod
    def parse_webhook(self, request: WebhookRequest) -> list[InboundEvent]: ...


class PollingSource(ABC):
    """Fetch events since ``cursor``; the runtime stores the new cursor with the events."""

    poll_interval_seconds: float = 30.0

    @abstractmethod
    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]: ...


class SubscriptionSource(ABC):
    """An endless stream of events from a broker; each is acked only after the commit."""

    @abstractmethod
    def subscribe(self) -> AsyncIterator[ReceivedEvent]: ...
