"""The outbox's database side: claim due messages under a lease, and acknowledge them.

Both operate on batches in one transaction each, so a worker pays one durable commit
per batch, not per message.

* ``claim`` takes the oldest due messages of enabled connectors (PostgreSQL: ``FOR
  UPDATE SKIP LOCKED``, so nodes never wait for each other; SQLite: the transaction
  holds the single write lock from ``BEGIN IMMEDIATE``), marks them ``in_flight`` with a
  fresh lease token and counts the attempt. An expired lease makes the row claimable
  again (its ``next_attempt_at`` is the lease expiry).
* ``ack`` applies outcomes only where the row is still ``in_flight`` under the worker's
  lease token and the lease has not expired: an ack from a worker whose lease expired
  (and was perhaps taken over by another) is rejected -- fencing. The message is then
  delivered again by whoever holds it next (at-least-once). Loopback events of
  delivered messages are committed to the inbox in the same transaction that marks
  them delivered.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, Table, bindparam, literal_column, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..kernel.envelope import Envelope
from ..kernel.inbound import InboundEvent
from ..store import Connector, Database, utcnow
from ..store.models_outbox import CLAIMABLE_SQL, OutboxMessage
from .inbox import add_event_batches, add_events

M = OutboxMessage
T: Table = OutboxMessage.__table__  # type: ignore[assignment]
LOOPBACK = "loopback"
MAX_ERROR_CHARS = 2000


@dataclass
class Claimed:
    """A message this worker holds under ``lease_token`` until ``lease_expires_at``."""

    id: int
    envelope_id: str
    connector_id: str
    organization_id: str
    operation: str
    payload: dict[str, Any]
    attempts: int  # including the attempt this claim is for
    created_at: datetime | None
    lease_token: str
    lease_expires_at: datetime

    def envelope(self) -> Envelope:
        return Envelope(
            envelope_id=self.envelope_id,
            connector_id=self.connector_id,
            operation=self.operation,
            payload=self.payload,
            attempt=self.attempts,
            created_at=self.created_at,
        )


@dataclass
class Ack:
    """What to record for one claimed message.

    ``kind``: ``delivered``, ``retrying`` (at ``next_attempt_at``), ``dead``, or
    ``release`` (not attempted after all: back to ``pending``, the attempt uncounted).
    """

    claimed: Claimed
    kind: str
    result: dict[str, Any] | None = None
    events: tuple[InboundEvent, ...] = ()
    error_class: str | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass
class AckReport:
    applied: list[Ack] = field(default_factory=list)
    rejected: list[Ack] = field(default_factory=list)
    events_added: int = 0


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.skip_locked = db.engine.dialect.name == "postgresql"
        # SQLite's planner prefers the connector_id index and then sorts every due row;
        # a unary plus on the column keeps it on the partial due index (in order).
        self._connector = (
            literal_column("+outbox_messages.connector_id", String)
            if db.engine.dialect.name == "sqlite"
            else M.connector_id
        )

    def claim(
        self,
        limit: int,
        lease_seconds: float,
        exclude: Iterable[str] = (),
        session: Session | None = None,
    ) -> list[Claimed]:
        """Lease up to ``limit`` due messages, oldest first, skipping ``exclude``d
        connectors (paused, failed or at their local capacity). In ``session`` (a
        group transaction) when given, else in a transaction of its own."""
        if session is None:
            with self.db.transaction() as own:
                return self.claim(limit, lease_seconds, exclude, own)
        s = session
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        token = str(uuid.uuid4())
        query = self._due(now, exclude).order_by(M.next_attempt_at).limit(limit)
        if self.skip_locked:
            query = query.with_for_update(skip_locked=True, of=M)
        rows = s.execute(
            query.with_only_columns(
                M.id,
                M.envelope_id,
                M.connector_id,
                M.organization_id,
                M.operation,
                M.payload,
                M.attempts,
                M.created_at,
            )
        ).all()
        if not rows:
            return []
        s.execute(
            update(T)
            .where(T.c.id.in_([r.id for r in rows]))
            .values(
                state="in_flight",
                attempts=T.c.attempts + 1,
                lease_token=token,
                lease_expires_at=expires,
                next_attempt_at=expires,
                updated_at=now,
            )
        )
        return [
            Claimed(
                id=r.id,
                envelope_id=r.envelope_id,
                connector_id=r.connector_id,
                organization_id=r.organization_id,
                operation=r.operation,
                payload=r.payload,
                attempts=r.attempts + 1,
                created_at=r.created_at,
                lease_token=token,
                lease_expires_at=expires,
            )
            for r in rows
        ]

    def claim_due(
        self, limit: int, lease_seconds: float, exclude: Iterable[str], session: Session
    ) -> tuple[list[Claimed], datetime | None]:
        """``claim``, plus -- when fewer than ``limit`` were due -- when the next one
        falls due (so an idle worker knows how long it may sleep), in one go."""
        claimed = self.claim(limit, lease_seconds, exclude, session)
        due = self.next_due(exclude, session) if len(claimed) < limit else None
        return claimed, due

    def next_due(
        self, exclude: Iterable[str] = (), session: Session | None = None
    ) -> datetime | None:
        """When the earliest claimable message (due or not) of these connectors is due."""
        if session is None:
            with self.db.transaction() as own:
                return self.next_due(exclude, own)
        query = self._due(None, exclude).with_only_columns(M.next_attempt_at)
        value: datetime | None = session.scalar(query.order_by(M.next_attempt_at).limit(1))
        return value

    def _due(self, now: datetime | None, exclude: Iterable[str]) -> Any:
        enabled = select(Connector.id).where(Connector.is_enabled.is_(True))
        # the literal state condition lets SQLite/PostgreSQL use the partial index
        query = select(M.id).where(text(CLAIMABLE_SQL), self._connector.in_(enabled))
        if now is not None:
            query = query.where(M.next_attempt_at <= now)
        excluded = list(exclude)
        if excluded:
            query = query.where(self._connector.not_in(excluded))
        return query

    def ack(self, acks: list[Ack], session: Session | None = None) -> AckReport:
        """Record outcomes in one transaction (``session``'s when given); only acks
        whose lease still holds apply."""
        report = AckReport()
        if not acks:
            return report
        if session is None:
            with self.db.transaction() as own:
                return self.ack(acks, own)
        s = session
        now = utcnow()
        held = self._held(s, [a.claimed.id for a in acks], now)
        by_kind: dict[str, list[Ack]] = defaultdict(list)
        for a in acks:
            if held.get(a.claimed.id) == a.claimed.lease_token:
                report.applied.append(a)
                by_kind[a.kind].append(a)
            else:
                report.rejected.append(a)
        for kind, group in by_kind.items():
            s.execute(_ACK_STATEMENTS[kind], [_ack_params(a, now) for a in group])
        report.events_added = self._add_loopback_events(s, by_kind.get("delivered", []))
        return report

    def _held(self, s: Session, ids: list[int], now: datetime) -> dict[int, str | None]:
        """Lease tokens of those rows still leased (in flight, lease not expired)."""
        query = select(M.id, M.lease_token).where(
            M.id.in_(ids), M.state == "in_flight", M.lease_expires_at > now
        )
        if self.skip_locked:
            query = query.with_for_update()
        return {row.id: row.lease_token for row in s.execute(query)}

    @staticmethod
    def _add_loopback_events(s: Session, delivered: list[Ack]) -> int:
        grouped: dict[tuple[str, str], list[InboundEvent]] = defaultdict(list)
        for a in delivered:
            if a.events:
                grouped[(a.claimed.connector_id, a.claimed.organization_id)].extend(a.events)
        if not grouped:
            return 0
        batches = [(cid, org, events) for (cid, org), events in grouped.items()]
        try:
            with s.begin_nested():  # set-based: one SELECT, one multi-row INSERT
                return sum(add_event_batches(s, batches, LOOPBACK))
        except IntegrityError:  # another node stored one meanwhile: the careful way
            return sum(
                len(add_events(s, cid, org, events, LOOPBACK)) for cid, org, events in batches
            )


def _ack_statement(**values: Any) -> Any:
    return (
        update(T)
        .where(
            T.c.id == bindparam("a_id"),
            T.c.lease_token == bindparam("a_token"),
            T.c.state == "in_flight",
        )
        .values(lease_token=None, lease_expires_at=None, updated_at=bindparam("a_now"), **values)
    )


_ACK_STATEMENTS = {
    "delivered": _ack_statement(
        state="delivered", result=bindparam("a_result"), last_error=None, error_class=None
    ),
    "retrying": _ack_statement(
        state="retrying",
        next_attempt_at=bindparam("a_next"),
        last_error=bindparam("a_error"),
        error_class=bindparam("a_class"),
    ),
    "dead": _ack_statement(
        state="dead", last_error=bindparam("a_error"), error_class=bindparam("a_class")
    ),
    "release": _ack_statement(
        state="pending", attempts=T.c.attempts - 1, next_attempt_at=bindparam("a_now")
    ),
}


def _ack_params(a: Ack, now: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {"a_id": a.claimed.id, "a_token": a.claimed.lease_token, "a_now": now}
    if a.kind == "delivered":
        params["a_result"] = a.result or {}
    elif a.kind in ("retrying", "dead"):
        params["a_error"] = (a.last_error or "")[:MAX_ERROR_CHARS]
        params["a_class"] = (a.error_class or "")[:100]
        if a.kind == "retrying":
            params["a_next"] = a.next_attempt_at or now
    return params
