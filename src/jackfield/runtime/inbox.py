"""The inbox: inbound events committed once, whatever path they arrived by.

Every source (webhook, polling, subscription, the echo loopback) goes through
``add_events`` inside the caller's transaction, so the events commit together with
whatever else that transaction records (a cursor, a delivered state). Duplicates by
``(connector_id, event_id)`` are skipped, not errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from ..kernel.inbound import InboundEvent
from ..store import utcnow
from ..store.bulk import DriverStatement, driver_values, json_text, placeholders
from ..store.models_inbound import InboxEvent


def add_events(
    session: Session,
    connector_id: str,
    organization_id: str,
    events: Iterable[InboundEvent],
    source: str,
) -> list[InboxEvent]:
    """Stage new events in ``session``; returns the rows added (duplicates left out)."""
    batch = {e.event_id: e for e in events}
    if not batch:
        return []
    known = set(
        session.scalars(
            select(InboxEvent.event_id).where(
                InboxEvent.connector_id == connector_id, InboxEvent.event_id.in_(batch)
            )
        )
    )
    rows = [
        InboxEvent(
            connector_id=connector_id,
            organization_id=organization_id,
            event_id=event.event_id,
            event_type=event.event_type,
            payload=event.payload,
            source=source,
            occurred_at=event.occurred_at,
        )
        for event_id, event in batch.items()
        if event_id not in known
    ]
    session.add_all(rows)
    return rows


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
_INSERT = DriverStatement(
    insert(cast(Table, InboxEvent.__table__)).values({name: bindparam(name) for name in COLUMNS}),
    COLUMNS,
)
_IN_VALUES = 500  # event ids per known-ids query (within SQLite's oldest limit of 999)
_KNOWN_IDS = (
    "SELECT connector_id, event_id FROM inbox_events "
    "WHERE connector_id IN ({}) AND event_id IN ({})"
)

Batches = Sequence[tuple[str, str, Sequence[InboundEvent]]]
"""``(connector_id, organization_id, events)`` per caller."""


def add_event_batches(session: Session, batches: Batches, source: str) -> list[int]:
    """Stage the events of many batches with a few set-based statements; returns how
    many events of each batch were new.

    The fast path of busy ingress (webhooks): events already stored, or repeated within
    the call, count as duplicates. A concurrent writer on another node can still make
    the INSERT fail on the unique key (``IntegrityError``): the caller then falls back
    to ``add_events`` one batch at a time.
    """
    connection = session.connection()
    connector_ids = list({connector_id for connector_id, _, _ in batches})
    event_ids = list({event.event_id for _, _, events in batches for event in events})
    known: set[tuple[str, str]] = set()
    for start in range(0, len(event_ids), _IN_VALUES):
        chunk = event_ids[start : start + _IN_VALUES]
        sql = _KNOWN_IDS.format(
            placeholders(connection, len(connector_ids)), placeholders(connection, len(chunk))
        )
        found = connection.exec_driver_sql(sql, (*connector_ids, *chunk))
        known.update((row[0], row[1]) for row in found)
    new: list[tuple[str, str, list[InboundEvent]]] = []
    for connector_id, organization_id, events in batches:
        fresh = []
        for event in events:
            key = (connector_id, event.event_id)
            if key not in known:
                known.add(key)
                fresh.append(event)
        new.append((connector_id, organization_id, fresh))
    rows = event_rows(session, new, source)
    if rows:
        _INSERT.execute(session, rows)
    return [len(events) for _, _, events in new]


def event_rows(session: Session, batches: Batches, source: str) -> list[tuple[Any, ...]]:
    """The events of ``batches`` as rows of ``COLUMNS`` in driver values (one
    ``received_at`` for all; the few distinct ``occurred_at`` formatted once each)."""
    values = driver_values(session)
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
