"""The audit log: who changed what, and how it ended. Details are redacted first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..secrets import redactor
from ..store import AuditEvent
from .context import Principal
from .views import iso


def record(
    session: Session,
    principal: Principal,
    action: str,
    target_type: str,
    target_id: str | None,
    *,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to the caller's transaction (it commits with the change)."""
    session.add(
        AuditEvent(
            organization_id=principal.organization_id,
            actor=principal.actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            outcome=outcome,
            details=(
                redactor.redact_obj(details, org=principal.organization_id) if details else None
            ),
        )
    )


def list_events(session: Session, organization_id: str, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.organization_id == organization_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    return [
        {
            "at": iso(row.at),
            "actor": row.actor,
            "action": row.action,
            "target_type": row.target_type,
            "target_id": row.target_id,
            "outcome": row.outcome,
            "details": row.details or {},
        }
        for row in rows
    ]
