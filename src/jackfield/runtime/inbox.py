"""The inbox: inbound events committed once, whatever path they arrived by.

Every source (webhook, polling, subscription, the echo loopback) stages its events
inside the caller's transaction, so they commit together with whatever else that
transaction records (a cursor, a delivered state). Duplicates by
``(connector_id, event_id)`` are skipped, not errors. All write set-based at the driver
level: ``add_events`` (polling and subscription units, which check each event first
with ``checked_events``, as the webhook ingress does),
``insert_event_batches`` (the outbox's loopback, in its ack) and ``add_event_batches``
(webhook groups).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..kernel.errors import ConnectorError
from ..kernel.inbound import MAX_EVENT_ID, MAX_EVENT_TYPE, InboundEvent, event_problem
from ..kernel.payloads import json_text
from ..store import utcnow
from ..store.bulk import DriverCursor, DriverStatement, DriverValues, driver_values
from ..store.models_inbound import InboxEvent


class InvalidEventError(ConnectorError):
    """A source produced an event the inbox cannot store (a provider's bug)."""

    code = "invalid_event"

    default_remediation = (
        f"Fix the provider: every event needs a text event_id (1-{MAX_EVENT_ID} "
        f"characters) and event_type (1-{MAX_EVENT_TYPE}), and a dict payload."
    )


def add_events(
    session: Session,
    connector_id: str,
    organization_id: str,
    events: Iterable[InboundEvent],
    source: str,
) -> int:
    """Stage the events a polling or subscription unit produced in ``session``; returns
    how many were new (an id repeated in the batch keeps its first event).

    An event the inbox cannot store raises ``InvalidEventError`` naming it, before
    anything is staged: its batch then commits nothing (no cursor moves, no broker ack),
    so nothing is lost, and the unit's crash shows the operator what is wrong.
    """
    batch = checked_events(list(events), source)
    if not batch:
        return 0
    return insert_event_batches(session, [(connector_id, organization_id, batch)], source)


def checked_events(events: object, source: str) -> list[InboundEvent]:
    """``events`` (a list, tuple or generator a source returned) as a list, once each
    event passed ``event_problem``; else ``InvalidEventError`` naming the first that did
    not. The same check for every source, so what one path refuses no other path stores."""
    if isinstance(events, str | bytes | Mapping) or not isinstance(events, Iterable):
        raise InvalidEventError(f"{source} events must be a list, not {type(events).__name__}")
    events = list(events)
    for number, event in enumerate(events, 1):
        problem = event_problem(event)
        if problem is not None:
            label = getattr(event, "event_id", None)
            named = f" ({label[:60]!r})" if isinstance(label, str) else ""
            raise InvalidEventError(
                f"{source} event {number} of {len(events)}{named} cannot be stored: {problem}"
            )
    return events


# -- set-based: many events in a few statements, at the driver level (``store.bulk``) ----
COLUMNS = (
    "connector_id",
    "organization_id",
    "event_id",
    "event_type",
    "payload",
    "source",
    "occurred_at",
    "received_at",
)


def _insert_new(dialect: str) -> Any:
    """``INSERT`` of ``COLUMNS`` that skips the ``(connector_id, event_id)`` already
    stored -- also ones a concurrent writer just stored -- instead of failing."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, InboxEvent.__table__)
    statement = insert(table).values({name: bindparam(name) for name in COLUMNS})
    return statement.on_conflict_do_nothing()


_INSERT_NEW = DriverStatement(_insert_new, COLUMNS)
_INSERT_RETURNING = DriverStatement(
    lambda dialect: _insert_new(dialect).returning(InboxEvent.connector_id, InboxEvent.event_id),
    COLUMNS,
)

Batches = Sequence[tuple[str, str, Sequence[InboundEvent]]]
"""``(connector_id, organization_id, events)`` per caller."""


def insert_event_batches(session: Session, batches: Batches, source: str) -> int:
    """Stage the events of many batches in ``session``; returns how many were new.

    The outbox's loopback events (``echo``), which its ack commits in the transaction
    that marks their messages delivered: one statement per chunk, duplicates skipped by
    the database, without a SELECT for known ids and without a fallback."""
    rows = event_rows(driver_values(session), batches, source)
    return _INSERT_NEW.execute(session, rows) if rows else 0


def add_event_batches(cursor: DriverCursor, batches: Batches, source: str) -> list[int]:
    """Stage the events of many batches; returns how many events of each were new.

    The fast path of busy ingress (webhooks): one ``INSERT ... ON CONFLICT DO NOTHING
    RETURNING`` per chunk, so the database skips the events it holds (even ones another
    node stored a moment ago) and says which it took. An event repeated within the call
    counts for its first batch only.
    """
    seen: set[tuple[str, str]] = set()
    firsts: list[tuple[str, str, list[InboundEvent]]] = []
    for connector_id, organization_id, events in batches:
        fresh = []
        for event in events:
            key = (connector_id, event.event_id)
            if key not in seen:
                seen.add(key)
                fresh.append(event)
        firsts.append((connector_id, organization_id, fresh))
    rows = event_rows(cursor.values, firsts, source)
    taken = {(row[0], row[1]) for row in _INSERT_RETURNING.fetch(cursor, rows)} if rows else set()
    return [sum((cid, e.event_id) in taken for e in events) for cid, _, events in firsts]


def event_rows(values: DriverValues, batches: Batches, source: str) -> list[tuple[Any, ...]]:
    """The events of ``batches`` as rows of ``COLUMNS`` in driver values (one
    ``received_at`` for all; the few distinct ``occurred_at`` formatted once each)."""
    now = values.timestamp(utcnow())
    stamps: dict[datetime, Any] = {}
    rows = []
    for connector_id, organization_id, events in batches:
        for event in events:
            occurred: Any = event.occurred_at
            if occurred is not None:
                stamp = stamps.get(occurred)
                if stamp is None:
                    stamp = stamps[occurred] = values.timestamp(occurred)
                occurred = stamp
            rows.append(
                (
                    connector_id,
                    organization_id,
                    event.event_id,
                    event.event_type,
                    json_text(event.payload),
                    source,
                    occurred,
                    now,
                )
            )
    return rows
