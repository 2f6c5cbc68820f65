"""The outbox's loopback events into the inbox: one statement per ack batch.

Delivered messages of loopback providers (``echo``) come back as inbound events, which
the ack commits in the same transaction that marks them delivered. ``inbox.add_events``
is the general path (every source goes through it); this is its set-based twin for the
ack's hot path: one driver-level ``INSERT ... ON CONFLICT DO NOTHING`` for all events
of the batch, so the database itself skips duplicates -- also ones a concurrent writer
just stored -- without a SELECT for known ids and without a fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..kernel.inbound import InboundEvent
from ..store import utcnow
from ..store.bulk import DriverStatement, driver_values
from ..store.models_inbound import InboxEvent

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


def insert_event_batches(
    session: Session,
    batches: Sequence[tuple[str, str, Sequence[InboundEvent]]],
    source: str,
) -> int:
    """Stage the events of ``(connector_id, organization_id, events)`` batches; returns
    how many were new (duplicates by ``(connector_id, event_id)`` are skipped)."""
    values = driver_values(session)
    now = values.timestamp(utcnow())
    timestamp, json_text = values.timestamp, values.json
    rows = [
        (
            connector_id,
            organization_id,
            event.event_id,
            event.event_type,
            json_text(event.payload),
            source,
            None if event.occurred_at is None else timestamp(event.occurred_at),
            now,
        )
        for connector_id, organization_id, events in batches
        for event in events
    ]
    if not rows:
        return 0
    return _INSERT_NEW.execute(session, rows)


def _insert_new(dialect: str) -> Any:
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, InboxEvent.__table__)
    statement = insert(table).values({name: bindparam(name) for name in COLUMNS})
    return statement.on_conflict_do_nothing()


_INSERT_NEW = DriverStatement(_insert_new, COLUMNS)
