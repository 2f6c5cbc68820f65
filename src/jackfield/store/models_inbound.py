"""Inbox, polling cursors and inbound-unit leases (owned by the runtime's inbound side)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .models import ROW_ID, Base, utcnow

CLAIMED_SQL = "dispatch_node IS NOT NULL"


class InboxEvent(Base):
    """One inbound event; ``(connector_id, event_id)`` deduplicates redeliveries.

    ``dispatch_token``/``dispatch_until`` are a node's claim on the row while its handlers
    run (so two nodes never dispatch the same row at once); ``dispatch_node`` names the
    process holding it (``hostname:pid``), so a process of the same host can take the
    claim over at once when that process is gone; ``dispatched_at`` is set once the
    handlers ran (the claim's columns are cleared then).
    """

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("connector_id", "event_id", name="uq_inbox_event"),
        Index("ix_inbox_org_id", "organization_id", "id"),
        Index("ix_inbox_connector_id", "connector_id", "id"),
        Index("ix_inbox_undispatched", "dispatched_at", "id"),
        Index(
            "ix_inbox_claimed_by",
            "dispatch_node",
            sqlite_where=text(CLAIMED_SQL),
            postgresql_where=text(CLAIMED_SQL),
        ),
        # ids are never reused: they are the live stream's cursors (``Last-Event-ID``)
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    connector_id: Mapped[str] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(String(36))
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # webhook | polling | subscription | loopback | simulator
    source: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    dispatch_token: Mapped[str | None] = mapped_column(String(36))
    dispatch_until: Mapped[datetime | None]
    dispatch_node: Mapped[str | None] = mapped_column(String(200))


class InboundCursor(Base):
    """A polling unit's position, committed in the same transaction as its events."""

    __tablename__ = "inbound_cursors"
    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), primary_key=True
    )
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UnitLease(Base):
    """Which node owns an inbound unit; ``generation`` fences a stale owner's writes."""

    __tablename__ = "unit_leases"
    unit: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    expires_at: Mapped[datetime]
