"""The outbox's loopback events into the inbox: one statement per ack batch.

Delivered messages of loopback providers (``echo``) come back as inbound events, which
the ack commits in the same transaction that marks them delivered. ``inbox.add_events``
is the general path (every source goes through it); this is its set-based twin for the
ack's hot path: one driver-level ``INSERT ... ON CONFLICT DO NOTHING`` for all events
of the batch, so the database itself skips duplicates -- also ones a concurrent writer
just stored -- without a SELECT for known ids and without a fallback.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..store.bulk import DriverStatement
from ..store.models_inbound import InboxEvent
from .inbox import COLUMNS, Batches, event_rows


def insert_event_batches(session: Session, batches: Batches, source: str) -> int:
    """Stage the events of ``(connector_id, organization_id, events)`` batches; returns
    how many were new (duplicates by ``(connector_id, event_id)`` are skipped)."""
    rows = event_rows(session, batches, source)
    return _INSERT_NEW.execute(session, rows) if rows else 0


def _insert_new(dialect: str) -> Any:
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, InboxEvent.__table__)
    statement = insert(table).values({name: bindparam(name) for name in COLUMNS})
    return statement.on_conflict_do_nothing()


_INSERT_NEW = DriverStatement(_insert_new, COLUMNS)
