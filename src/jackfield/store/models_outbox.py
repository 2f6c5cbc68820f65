"""Outbox and supervised-unit tables (owned by the runtime's outbox and supervisor).

``outbox_messages.next_attempt_at`` is *when the row may next be claimed*: for
``pending``/``retrying`` the scheduled attempt, for ``in_flight`` the lease expiry (so a
message whose worker died becomes claimable again without a separate sweep). One partial
index over the claimable states, by connector, then serves every claim: each connector's
oldest first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .models import ROW_ID, Base, utcnow

#: States a worker may claim (``in_flight`` only once its lease has expired). The SQL
#: text is spelled out once so the claim query matches the partial index literally.
CLAIMABLE_STATES = ("pending", "retrying", "in_flight")
CLAIMABLE_SQL = "state IN ('pending', 'retrying', 'in_flight')"
#: Dead letters, listed by organization newest first (``ix_outbox_org_dead``): an operator
#: looks for them under every other row. Only they enter that index, so it costs a
#: delivered message nothing.
DEAD_SQL = "state = 'dead'"


class OutboxMessage(Base):
    """One outbound message; ``(connector_id, envelope_id)`` is the idempotency key."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("connector_id", "envelope_id", name="uq_outbox_envelope"),
        Index(
            "ix_outbox_due_by_connector",
            "connector_id",
            "next_attempt_at",
            sqlite_where=text(CLAIMABLE_SQL),
            postgresql_where=text(CLAIMABLE_SQL),
        ),
        Index("ix_outbox_org_id", "organization_id", "id"),
        Index(
            "ix_outbox_org_dead",
            "organization_id",
            "id",
            sqlite_where=text(DEAD_SQL),
            postgresql_where=text(DEAD_SQL),
        ),
        # ids are never reused: they are the page cursors of the outbox's lists
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    envelope_id: Mapped[str] = mapped_column(String(26), index=True)
    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[str] = mapped_column(String(36))
    operation: Mapped[str] = mapped_column(String(100), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RuntimeUnit(Base):
    """Persisted state of one supervised unit on one node, shown by the API, UI and CLI.

    Every node runs its own unit of a connector (once it has work for it), so a row is
    keyed by (connector, node): one node's state never overwrites another's. Rows are
    rewritten at least every heartbeat; a row not rewritten for three heartbeats belongs
    to a node that is gone and is swept by the others -- unless it is ``failed``, which
    holds until an operator's restart -- as is a ``stopped`` row of a node that stopped
    while another one runs the connector. ``restart_seen`` is the last generation of
    ``RuntimeRestart`` this node's unit has acted on.
    """

    __tablename__ = "runtime_units"
    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(String(200), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(36), index=True)
    liveness: Mapped[str] = mapped_column(String(20), default="stopped")
    readiness: Mapped[str] = mapped_column(String(30), default="ready")
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_restart_at: Mapped[datetime | None]
    restart_seen: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RuntimeRestart(Base):
    """An operator's restart requests of one connector, as a generation number.

    A request (API, CLI or UI, from any process) increments ``generation``; each node's
    supervisor polls it and restarts its unit when the generation is newer than the one
    that unit last acted on. Nothing is cleared, so every node that runs the connector
    sees the request, whichever acts first.
    """

    __tablename__ = "runtime_restarts"
    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), primary_key=True
    )
    organization_id: Mapped[str] = mapped_column(String(36))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
