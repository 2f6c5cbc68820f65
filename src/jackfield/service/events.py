"""Inbound events as users see them: the inbox of a connector, and the simulator.

Framework-free: the REST API, the CLI (``jackfield sim inject``) and the UI call these,
so the organization scoping (another organization's connector is "not found") and the
event shape are the same everywhere.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from ulid import ULID

from ..kernel.errors import ConnectorConfigError
from ..kernel.inbound import MAX_EVENT_ID, MAX_EVENT_TYPE, text_problem
from ..kernel.payloads import PayloadError, payload_json
from ..store import Database
from ..store.models_inbound import InboxEvent
from .context import Principal
from .lookup import load_connector, stored_id_of
from .views import invalid_cursor, iso, parse_row_id

DEFAULT_EVENT_TYPE = "message.received"
"""What ``jackfield sim inject`` records when neither ``--type`` nor the payload says."""

MAX_LIMIT = 200


@dataclass(frozen=True)
class EventRecord:
    """One committed inbox event, as handlers and streams receive it."""

    id: int
    connector_id: str
    organization_id: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    source: str
    received_at: datetime
    occurred_at: datetime | None

    @classmethod
    def from_row(cls, row: InboxEvent) -> EventRecord:
        return cls(
            id=row.id,
            connector_id=row.connector_id,
            organization_id=row.organization_id,
            event_id=row.event_id,
            event_type=row.event_type,
            payload=row.payload,
            source=row.source,
            received_at=row.received_at,
            occurred_at=row.occurred_at,
        )

    def view(self) -> dict[str, Any]:
        """The public JSON shape (REST list items, SSE data, CLI output)."""
        return {
            "id": self.id,
            "connector_id": self.connector_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "payload": self.payload,
            "source": self.source,
            "received_at": iso(self.received_at),
            "occurred_at": iso(self.occurred_at),
        }


class EventService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(
        self,
        who: Principal,
        connector_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A connector's inbox, newest first; ``next_cursor`` pages to older events."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        before = _parse_cursor(cursor)
        with self.db.snapshot() as s:
            connector = load_connector(s, connector_id, organization_id=who.organization_id)
            query = select(InboxEvent).where(InboxEvent.connector_id == connector.id)
            if before is not None:
                query = query.where(InboxEvent.id < before)
            rows = list(s.scalars(query.order_by(InboxEvent.id.desc()).limit(limit + 1)))
        more = len(rows) > limit
        items = [EventRecord.from_row(r).view() for r in rows[:limit]]
        return {"items": items, "next_cursor": str(rows[limit - 1].id) if more else None}

    def inject(
        self,
        who: Principal,
        connector_id: str,
        payload: Any,
        *,
        event_type: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Commit an event to the inbox as if the connector had received it (simulator).

        The event type is ``event_type``, else the payload's string ``type`` field, else
        ``message.received``. Returns the event's view with ``duplicate``: true when
        ``event_id`` was already stored, in which case the stored event is returned
        unchanged and nothing is written.
        """
        who.require_admin()
        if not isinstance(payload, dict):
            raise ConnectorConfigError(
                "the event payload must be a JSON object",
                remediation='Pass an object, e.g. {"text": "hello"}.',
            )
        try:
            payload_json(payload)  # what the inbox could not serve back is refused
        except PayloadError as exc:
            raise _invalid("payload", str(exc)) from None
        named = payload.get("type")
        if not isinstance(named, str) or not named.strip():
            named = DEFAULT_EVENT_TYPE
        kind = event_type or named
        event_id = event_id or f"sim:{ULID()}"
        for name, value, limit in (
            ("event_type", kind, MAX_EVENT_TYPE),
            ("event_id", event_id, MAX_EVENT_ID),
        ):
            problem = text_problem(name, value, limit)
            if problem is not None:
                raise _invalid(name, problem)
        try:
            with self.db.transaction() as s:
                connector = load_connector(s, connector_id, organization_id=who.organization_id)
                existing = _find(s, connector.id, event_id)
                duplicate = existing is not None
                if existing is None:
                    existing = InboxEvent(
                        connector_id=connector.id,
                        organization_id=connector.organization_id,
                        event_id=event_id,
                        event_type=kind,
                        payload=payload,
                        source="simulator",
                    )
                    s.add(existing)
                    s.flush()
                return {**EventRecord.from_row(existing).view(), "duplicate": duplicate}
        except IntegrityError:  # stored by another writer since we looked (PostgreSQL)
            with self.db.snapshot() as s:
                existing = _find(s, stored_id_of(connector_id), event_id)
                if existing is None:
                    raise
                return {**EventRecord.from_row(existing).view(), "duplicate": True}

    def recent(
        self, who: Principal, *, limit: int = 50, before: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The organization's newest events across its connectors (those with an id
        below ``before``, for the pages after the first), newest first."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        with self.db.snapshot() as s:
            query = select(InboxEvent).where(InboxEvent.organization_id == who.organization_id)
            if before is not None:
                query = query.where(InboxEvent.id < before)
            rows = s.scalars(query.order_by(InboxEvent.id.desc()).limit(limit))
            return [EventRecord.from_row(r).view() for r in rows]

    def since(
        self, organization_id: str, after_id: int, up_to: int | None = None, limit: int = 500
    ) -> builtins.list[EventRecord]:
        """An organization's events with ``after_id < id <= up_to``, oldest first (SSE
        catch-up after ``Last-Event-ID``, the Events page's live poll)."""
        with self.db.snapshot() as s:
            query = select(InboxEvent).where(
                InboxEvent.organization_id == organization_id, InboxEvent.id > after_id
            )
            if up_to is not None:
                query = query.where(InboxEvent.id <= up_to)
            rows = s.scalars(query.order_by(InboxEvent.id).limit(limit))
            return [EventRecord.from_row(r) for r in rows]

    def among(self, organization_id: str, ids: Sequence[int]) -> builtins.list[EventRecord]:
        """Those of ``ids`` that are an organization's events, oldest first (a resumed
        stream's late rows)."""
        with self.db.snapshot() as s:
            query = select(InboxEvent).where(
                InboxEvent.organization_id == organization_id, InboxEvent.id.in_(ids)
            )
            return [EventRecord.from_row(r) for r in s.scalars(query.order_by(InboxEvent.id))]


def _find(s: Session, connector_id: str, event_id: str) -> InboxEvent | None:
    return s.scalars(
        select(InboxEvent).where(
            InboxEvent.connector_id == connector_id, InboxEvent.event_id == event_id
        )
    ).first()


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor in (None, ""):
        return None
    value = parse_row_id(str(cursor))
    if value is None:
        raise invalid_cursor(cursor)
    return value


def _invalid(name: str, problem: str) -> ConnectorConfigError:
    return ConnectorConfigError(
        problem,
        field_errors={name: "invalid"},
        remediation="Correct the event and inject it again.",
    )
