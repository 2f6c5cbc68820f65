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
from typing import Any, ClassVar

from .payloads import PayloadError, check_nesting, json_text

MAX_EVENT_ID = 200
MAX_EVENT_TYPE = 100
MAX_EVENT_PAYLOAD_BYTES = 1024 * 1024  # as large as a webhook body may be
MAX_REPLAY_WINDOW_SECONDS = 24 * 3600
"""How long after it was signed a webhook may be accepted, at most (its timestamp
tolerance)."""
MAX_CLOCK_SKEW_SECONDS = 300
"""How far ahead of ours a sender's clock may be: a webhook signed at most this far in
the future is accepted, whatever the tolerance. So a webhook's signature can be accepted
for at most ``MAX_REPLAY_WINDOW_SECONDS + MAX_CLOCK_SKEW_SECONDS`` after it first
arrives, and the inbox remembers every event id at least that long (retention never
prunes younger events, whatever its setting): a request replayed while it still verifies
is always a duplicate. (A timestamp as far ahead as the tolerance allows behind, a day,
would have kept a captured request valid for a day after its id was pruned.)"""


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One event from the external system. ``event_id`` deduplicates redeliveries."""

    event_id: str
    event_type: str
    payload: dict[str, Any]
    occurred_at: datetime | None = None


def text_problem(name: str, value: object, limit: int) -> str | None:
    """Why ``value`` cannot be an event's ``name`` (id or type), or ``None``: it must
    be text of 1 to ``limit`` characters without NUL (PostgreSQL text cannot hold it)
    and valid Unicode."""
    if not isinstance(value, str):
        return f"{name} must be text, not {type(value).__name__}"
    if not value.strip() or len(value) > limit:
        return f"{name} must be 1 to {limit} characters"
    if "\x00" in value:
        return f"{name} may not contain NUL characters"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return f"{name} is not valid Unicode (an unpaired surrogate)"
    return None


def shape_problem(event: object) -> str | None:
    """``event_problem`` without the payload's size and nesting, which cost a few
    microseconds per event: for the events of a delivery (the echo loopback's are built
    from a payload the outbox checked when it was sent)."""
    if not isinstance(event, InboundEvent):
        return f"expected an InboundEvent, got {type(event).__name__}"
    problem = text_problem("event_id", event.event_id, MAX_EVENT_ID) or text_problem(
        "event_type", event.event_type, MAX_EVENT_TYPE
    )
    if problem is not None:
        return problem
    if not isinstance(event.payload, dict):
        return f"the payload must be a dict, not {type(event.payload).__name__}"
    if event.occurred_at is not None and not isinstance(event.occurred_at, datetime):
        return f"occurred_at must be a datetime or None, not {type(event.occurred_at).__name__}"
    return None


def event_problem(event: object) -> str | None:
    """Why the inbox cannot store ``event`` from a source, or ``None`` if it can.

    Payload values JSON has no exact form for are stored as the webhook path stores
    them (NaN as null, an unpaired surrogate as U+FFFD, other types as their text), so
    only what would make the event unreadable or ambiguous is a problem.
    """
    problem = shape_problem(event)
    if problem is not None:
        return problem
    assert isinstance(event, InboundEvent)
    try:
        check_nesting(event.payload)
    except PayloadError as exc:
        return str(exc)
    size = len(json_text(event.payload).encode())
    if size > MAX_EVENT_PAYLOAD_BYTES:
        return f"the payload is {size} bytes as JSON; the limit is {MAX_EVENT_PAYLOAD_BYTES}"
    return None


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

    events_checked: ClassVar[bool] = False
    """Whether ``parse_webhook`` itself only returns events the inbox can store (a list of
    ``InboundEvent`` for which ``event_problem`` finds nothing). Left ``False``, the
    ingress checks every event in a worker thread (a thread hop, and a walk of each
    payload: a megabyte of small values takes tens of milliseconds); a provider that
    already bounds them (the built-in ``webhook``: its ids, types and body size) spares
    its hot path."""

    @abstractmethod
    def parse_webhook(self, request: WebhookRequest) -> list[InboundEvent]: ...


class PollingSource(ABC):
    """Fetch events since ``cursor``; the runtime stores the new cursor with the events."""

    poll_interval_seconds: float = 30.0
    poll_timeout_seconds: float | None = None
    """How long a poll may take before the runtime gives up on it (an outage); ``None``:
    the longer of 60 s and five ``poll_interval_seconds``."""

    @abstractmethod
    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]: ...


class SubscriptionSource(ABC):
    """An endless stream of events from a broker; each is acked only after the commit."""

    @abstractmethod
    def subscribe(self) -> AsyncIterator[ReceivedEvent]: ...


def ways_in(cls: type) -> list[str]:
    """How a provider class takes events in: ``subscription``, ``polling``, ``webhooks``
    (those of its sources, in that order)."""
    kinds = (
        ("subscription", SubscriptionSource),
        ("polling", PollingSource),
        ("webhooks", WebhookSource),
    )
    return [name for name, source in kinds if issubclass(cls, source)]
