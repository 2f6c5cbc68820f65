"""The outbox's database side: claim due messages under a lease, and acknowledge them.

Both operate on batches in one statement or two, so a worker pays one durable commit
per batch, not per message. A message is addressed by its idempotency key
``(connector_id, envelope_id)``: messages handed straight to a worker by the enqueue
(``service.outbox_enqueue``) never had their row id read back.

* ``claim`` shares a batch fairly between the enabled connectors with messages due and
  takes each one's oldest with one ``UPDATE ... RETURNING`` (PostgreSQL: the rows are
  picked ``FOR UPDATE SKIP LOCKED``, so nodes never wait for each other; SQLite: the
  transaction holds the single write lock from ``BEGIN IMMEDIATE``), marks them
  ``in_flight`` with a fresh lease token and counts the attempt. An expired lease makes
  the row claimable again (its ``next_attempt_at`` is the lease expiry).
* ``renew`` extends the leases of messages whose deliveries are still running, all in
  one statement, fenced like an ack: a lease that has expired is not revived (another
  node may have claimed the message; if none has yet, the next claim may).
* ``ack`` applies outcomes only where the row is still ``in_flight`` under the worker's
  lease token and the lease has not expired: an ack from a worker whose lease expired
  (and was perhaps taken over by another) is rejected -- fencing. The message is then
  delivered again by whoever holds it next (at-least-once). The fence is part of each
  UPDATE's WHERE clause; when the row counts say every ack applied (the usual case),
  that is all. Otherwise ``LeasesChanged`` is raised (the caller's savepoint undoes the
  batch) and ``ack(..., careful=True)`` reads the leases first and applies only the
  held ones. Loopback events of delivered messages are committed to the inbox in the
  same transaction that marks them delivered.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    null,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from ..kernel.envelope import Envelope
from ..kernel.inbound import InboundEvent
from ..kernel.payloads import json_text
from ..store import Connector, Database, utcnow
from ..store.bulk import ROW_CHUNKS, DriverStatement, DriverValues, driver_values
from ..store.models_outbox import CLAIMABLE_SQL, OutboxMessage
from .inbox import insert_event_batches

M = OutboxMessage
T: Table = OutboxMessage.__table__  # type: ignore[assignment]
LOOPBACK = "loopback"
MAX_ERROR_CHARS = 2000


@dataclass(slots=True)
class Claimed:
    """A message this worker holds under ``lease_token`` until ``lease_expires_at``
    (moved on as the worker renews the lease of a delivery still running)."""

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
            self.envelope_id,
            self.connector_id,
            self.operation,
            self.payload,
            self.attempts,
            self.created_at,
        )


@dataclass(slots=True)
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
    rejected: list[Ack] = field(default_factory=list)  # its lease was lost, or ``gone``
    gone: list[Ack] = field(default_factory=list)  # the message was deleted (its connector)
    events_added: int = 0


@dataclass(slots=True)
class ClaimResult:
    """What a claim leased, and what it saw of the rest."""

    claimed: list[Claimed]
    more: bool  # some connector filled its share: more may be due now
    next_due: datetime | None  # when the next message falls due (``None``: none claimable)


class LeasesChanged(Exception):
    """Some acks of a batch no longer hold their lease: nothing of it was kept; write
    it again with ``careful=True``."""


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.skip_locked = db.engine.dialect.name == "postgresql"
        self._heads, self._claim_one = self._statements()
        self._renew = (
            update(T)
            .where(
                T.c.envelope_id.in_(bindparam("r_envelopes", expanding=True)),  # (indexed)
                tuple_(T.c.connector_id, T.c.envelope_id, T.c.lease_token).in_(
                    bindparam("r_leases", expanding=True)
                ),
                T.c.state == _text("in_flight"),
                T.c.lease_expires_at > bindparam("r_now"),
            )
            .values(lease_expires_at=bindparam("r_expires"), next_attempt_at=bindparam("r_expires"))
            .returning(T.c.connector_id, T.c.envelope_id, T.c.lease_token)
        )

    def claim(
        self,
        limit: int,
        lease_seconds: float,
        exclude: Iterable[str] = (),
        session: Session | None = None,
    ) -> list[Claimed]:
        """Lease up to ``limit`` due messages (``claim_due``'s, without the rest)."""
        if session is None:
            with self.db.transaction() as own:
                return self.claim(limit, lease_seconds, exclude, own)
        return self.claim_due(limit, lease_seconds, exclude, session).claimed

    def claim_due(
        self, limit: int, lease_seconds: float, exclude: Iterable[str], session: Session
    ) -> ClaimResult:
        """Lease up to ``limit`` due messages of enabled connectors, skipping ``exclude``d
        ones (paused, failed or at their local capacity), shared fairly between the
        connectors that have messages due; also say whether more may be due now, and
        else when the next message falls due (so an idle worker knows how long it may
        sleep).

        First each connector's oldest claimable message is read (one index probe per
        enabled connector, whatever the backlog: a backlog parked on a disabled
        connector costs nothing). Then the connectors with messages due, longest
        waiting first, each get an equal share of what is left of ``limit``, their
        oldest messages first: one connector's backlog cannot hold up the others'
        messages until it has drained."""
        connection = session.connection()
        now = utcnow()
        heads = {"c_excluded": list(exclude)}
        due_now: list[tuple[datetime, str]] = []
        later: datetime | None = None
        for connector_id, head in connection.execute(self._heads, heads):
            if head is None:
                continue
            if head <= now:
                due_now.append((head, connector_id))
            elif later is None or head < later:
                later = head
        due_now.sort()
        expires = now + timedelta(seconds=lease_seconds)
        token = str(uuid.uuid4())
        params = {"c_now": now, "c_token": token, "c_expires": expires}
        read_json, read_timestamp = DriverValues.read_json, DriverValues.read_timestamp
        claimed: list[Claimed] = []
        more = False
        for i, (_, connector_id) in enumerate(due_now):
            share = -(-(limit - len(claimed)) // (len(due_now) - i))  # rounded up
            if share <= 0:
                more = True  # the rest wait for the next claim (longest waiting first)
                break
            params["c_connector"], params["c_limit"] = connector_id, share
            rows = connection.execute(self._claim_one, params).all()  # none left open
            more = more or len(rows) == share
            claimed.extend(
                Claimed(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    read_json(row[4]),
                    row[5],
                    read_timestamp(row[6]),
                    token,
                    expires,
                )
                for row in rows
            )
        if more:
            return ClaimResult(claimed, True, now)
        if due_now:  # what the claimed connectors hold next (a retry, the new leases)
            later = min(
                (head for _, head in connection.execute(self._heads, heads) if head is not None),
                default=None,
            )
        return ClaimResult(claimed, False, later)

    def _statements(self) -> tuple[Any, Any]:
        """Each connector's oldest claimable message, and one connector's claim: built
        once (their shape never changes). The literal state condition lets SQLite and
        PostgreSQL use the partial index ``(connector_id, next_attempt_at)``."""
        head = (
            select(func.min(M.next_attempt_at))
            .where(text(CLAIMABLE_SQL), M.connector_id == Connector.id)
            .correlate(Connector)
            .scalar_subquery()
        )
        heads = select(Connector.id, head).where(
            Connector.is_enabled.is_(True),
            Connector.id.not_in(bindparam("c_excluded", expanding=True)),
        )
        due = (
            select(M.id)
            .where(
                text(CLAIMABLE_SQL),
                M.connector_id == bindparam("c_connector"),
                M.next_attempt_at <= bindparam("c_now"),
            )
            .order_by(M.next_attempt_at)
            .limit(bindparam("c_limit"))
        )
        if self.skip_locked:  # nodes never wait for each other's claims
            due = due.with_for_update(skip_locked=True, of=M)
        claim = (
            update(T)
            .where(T.c.id.in_(due))
            .values(
                state="in_flight",
                attempts=T.c.attempts + 1,
                lease_token=bindparam("c_token"),
                lease_expires_at=bindparam("c_expires"),
                next_attempt_at=bindparam("c_expires"),
                updated_at=bindparam("c_now"),
            )
            # raw columns: decoded by ``claim``, cheaper than SQLAlchemy's processing
            .returning(
                T.c.envelope_id,
                T.c.connector_id,
                T.c.organization_id,
                T.c.operation,
                type_coerce(T.c.payload, String),
                T.c.attempts,
                type_coerce(T.c.created_at, String),
            )
        )
        return heads, claim

    def renew(
        self, held: Iterable[Claimed], lease_seconds: float, session: Session
    ) -> tuple[datetime, set[tuple[str, str, str]]]:
        """Extend the leases of ``held`` messages to ``lease_seconds`` from now in one
        statement: the new expiry, and the ``(connector, envelope, token)`` of those
        renewed. Only a lease still held is (in flight under that token, not expired):
        one that ran out stays lost, so the ack of its delivery is rejected."""
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        leases = [(c.connector_id, c.envelope_id, c.lease_token) for c in held]
        if not leases:
            return expires, set()
        params = {
            "r_envelopes": list({lease[1] for lease in leases}),
            "r_leases": leases,
            "r_now": now,
            "r_expires": expires,
        }
        renewed = session.execute(self._renew, params)
        return expires, {(row[0], row[1], row[2]) for row in renewed}

    def ack(
        self, acks: list[Ack], session: Session | None = None, *, careful: bool = False
    ) -> AckReport:
        """Record outcomes in one transaction (``session``'s when given); only acks
        whose lease still holds apply. Without ``careful``, raises ``LeasesChanged``
        (having written nothing that the transaction keeps) if some lease was lost; on
        its own transaction it then retries carefully itself."""
        report = AckReport()
        if not acks:
            return report
        if session is None:
            try:
                with self.db.transaction() as own:
                    return self.ack(acks, own, careful=careful)
            except LeasesChanged:
                with self.db.transaction() as own:
                    return self.ack(acks, own, careful=True)
        values = driver_values(session)
        now = utcnow()
        if careful:
            leases = self._leases(session, acks, now)
            for a in acks:
                c = a.claimed
                key = (c.connector_id, c.envelope_id)
                if key in leases and leases[key] == c.lease_token:
                    report.applied.append(a)
                else:
                    report.rejected.append(a)
                    if key not in leases:
                        report.gone.append(a)
        else:
            report.applied = acks
        by_kind: dict[str, list[Ack]] = defaultdict(list)
        for a in report.applied:
            by_kind[a.kind].append(a)
        stamp = values.timestamp(now)
        changed = 0
        for kind, group in by_kind.items():
            if kind == "delivered":
                changed += _mark_delivered(session, group, stamp)
                continue
            rows = [_ack_row(a, stamp, values) for a in group]
            changed += _ACK_STATEMENTS[kind].execute(session, rows)
        if changed != len(report.applied):
            raise LeasesChanged(f"{len(report.applied) - changed} leases no longer held")
        report.events_added = self._add_loopback_events(session, by_kind.get("delivered", []))
        return report

    def _leases(self, s: Session, acks: list[Ack], now: datetime) -> dict[tuple[str, str], Any]:
        """The acked messages still stored, each with its lease token while it is still
        leased (in flight, lease not expired) and ``None`` otherwise; a message missing
        here was deleted with its connector."""
        live = and_(M.state == "in_flight", M.lease_expires_at > now)
        query = select(M.connector_id, M.envelope_id, M.lease_token, live).where(
            M.envelope_id.in_({a.claimed.envelope_id for a in acks})
        )
        if self.skip_locked:  # in one order: two writers locking leased rows cannot deadlock
            query = query.order_by(M.connector_id, M.envelope_id).with_for_update()
        return {(row[0], row[1]): row[2] if row[3] else None for row in s.execute(query)}

    @staticmethod
    def _add_loopback_events(s: Session, delivered: list[Ack]) -> int:
        grouped: dict[tuple[str, str], list[InboundEvent]] = defaultdict(list)
        for a in delivered:
            if a.events:
                grouped[(a.claimed.connector_id, a.claimed.organization_id)].extend(a.events)
        if not grouped:
            return 0
        batches = [(cid, org, events) for (cid, org), events in grouped.items()]
        return insert_event_batches(s, batches, LOOPBACK)


_FENCE = ("a_connector", "a_envelope", "a_token", "a_now")


def _ack_statement(state: str, extra: tuple[str, ...], **values: Any) -> DriverStatement:
    """One kind of ack, fenced: only a row still in flight under the token, unexpired.
    Rows carry the fence's values, then ``extra``'s; constants are SQL literals."""
    return DriverStatement(
        update(T)
        .where(
            T.c.connector_id == bindparam("a_connector"),
            T.c.envelope_id == bindparam("a_envelope"),
            T.c.lease_token == bindparam("a_token"),
            T.c.state == _text("in_flight"),
            T.c.lease_expires_at > bindparam("a_now"),
        )
        .values(
            state=_text(state),
            lease_token=null(),
            lease_expires_at=null(),
            updated_at=bindparam("a_now"),
            **values,
        ),
        _FENCE + extra,
    )


def _text(value: str) -> Any:
    return literal_column(f"'{value}'", String)


_ACK_STATEMENTS = {
    "retrying": _ack_statement(
        "retrying",
        ("a_error", "a_class", "a_next"),
        next_attempt_at=bindparam("a_next"),
        last_error=bindparam("a_error"),
        error_class=bindparam("a_class"),
    ),
    "dead": _ack_statement(
        "dead",
        ("a_error", "a_class"),
        last_error=bindparam("a_error"),
        error_class=bindparam("a_class"),
    ),
    "release": _ack_statement(
        "pending",
        (),
        attempts=T.c.attempts - literal_column("1"),
        next_attempt_at=bindparam("a_now"),
    ),
}


def _ack_row(a: Ack, now: Any, values: DriverValues) -> tuple[Any, ...]:
    """``a``'s values in the order its kind's statement takes them."""
    c = a.claimed
    kind = a.kind
    if kind == "release":
        return (c.connector_id, c.envelope_id, c.lease_token, now)
    error = (a.last_error or "")[:MAX_ERROR_CHARS]
    error_class = (a.error_class or "")[:100]
    if kind == "dead":
        return (c.connector_id, c.envelope_id, c.lease_token, now, error, error_class)
    next_at = values.timestamp(a.next_attempt_at) or now
    return (c.connector_id, c.envelope_id, c.lease_token, now, error, error_class, next_at)


def _mark_delivered(session: Session, acks: list[Ack], now: Any) -> int:
    """The ``delivered`` acks, fenced like the others, as ``UPDATE ... FROM (VALUES
    (envelope id, result), ...)`` per connector and lease (SQLite 3.33+, PostgreSQL):
    one database step for many rows, where an ``executemany`` releases and re-takes the
    GIL per row (and queues behind the busy event loop each time). Returns the rows
    changed."""
    connection = session.connection()
    dialect = connection.dialect.name
    by_lease: dict[tuple[str, str], list[Ack]] = defaultdict(list)
    for a in acks:
        by_lease[(a.claimed.connector_id, a.claimed.lease_token)].append(a)
    changed = 0
    for (connector_id, token), group in by_lease.items():
        start = 0
        for size in ROW_CHUNKS:  # a fixed few statement texts, so they stay prepared
            while len(group) - start >= size:
                values: list[Any] = [now]
                for a in group[start : start + size]:
                    values += (a.claimed.envelope_id, json_text(a.result or {}))
                values += (connector_id, token, now)
                sql = _delivered_sql(dialect, size)
                changed += connection.exec_driver_sql(sql, tuple(values)).rowcount
                start += size
    return changed


@functools.cache
def _delivered_sql(dialect: str, rows: int) -> str:
    mark = "?" if dialect == "sqlite" else "%s"
    result = "v.column2" if dialect == "sqlite" else "CAST(v.column2 AS JSON)"
    pairs = ", ".join([f"({mark}, {mark})"] * rows)
    return (
        f"UPDATE outbox_messages SET state = 'delivered', lease_token = NULL,"
        f" lease_expires_at = NULL, updated_at = {mark}, result = {result},"
        f" last_error = NULL, error_class = NULL FROM (VALUES {pairs}) AS v"
        f" WHERE outbox_messages.connector_id = {mark}"
        f" AND outbox_messages.envelope_id = v.column1"
        f" AND outbox_messages.lease_token = {mark}"
        f" AND outbox_messages.state = 'in_flight'"
        f" AND outbox_messages.lease_expires_at > {mark}"
    )
