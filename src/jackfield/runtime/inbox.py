"""The inbox: inbound events committed once, whatever path they arrived by.

Every source (webhook, polling, subscription, the echo loopback) goes through
``add_events`` inside the caller's transaction, so the events commit together with
whatever else that transaction records (a cursor, a delivered state). Duplicates by
``(connector_id, event_id)`` are skipped, not errors.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..kernel.inbound import InboundEvent
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
