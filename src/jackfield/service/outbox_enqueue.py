"""Enqueueing: concurrent sends become one INSERT in the next group transaction.

``Enqueuer.submit`` queues a validated ``Send`` and returns a future that resolves once
the message is committed. The first send after the last write schedules a write in the
``GroupCommitter``; when the committer runs it, it drains every send queued by then and
inserts them with one driver-level ``executemany`` (see ``store.bulk``), so the cost of
a durable commit -- and of the statement -- is shared by everything that arrived
meanwhile. ``(connector_id, envelope_id)`` is the idempotency key: only client-chosen
envelope ids can be known already, so only those are looked up (one SELECT per write).

Direct hand-over: when a delivery worker runs in this process (``direct``), it may take
new messages without a claim. ``reserve`` grants some of a connector's new messages a
lease; those rows are inserted already ``in_flight`` under it (attempt 1, exactly as a
claim would leave them) and, once the transaction has committed, handed to the worker
in memory. Nothing changes for crash safety: the rows are committed before the senders
hear back, and if this process dies their lease expires and any node claims them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..kernel.errors import ConflictError, ConnectorNotFoundError, JackfieldError
from ..store import Connector, utcnow
from ..store.bulk import DriverStatement, driver_values
from ..store.group_commit import GroupCommitter
from ..store.models_outbox import OutboxMessage
from .messages import InvalidMessageError, message_view


class Send(NamedTuple):
    """One validated send, waiting for its write.

    This module's records are tuples of plain values where they can be: the garbage
    collector stops tracking those, and a sender that keeps thousands of results (or a
    burst waiting for its write) otherwise makes every full collection slower."""

    connector_id: str
    organization_id: str | None  # the caller's organization; None: embedded, any
    envelope_id: str
    operation: str
    payload_json: str  # the payload as stored (and as a worker decodes it)
    client_id: bool  # the caller chose the envelope id (it may be known already)


class Sending(NamedTuple):
    """What connectors of one provider type accept (the registry knows; the runtime
    tells ``OutboxService``): a send they cannot deliver is refused before it is stored."""

    receives_only: str | None = None  # how it takes events in, when it sends nothing
    operations: frozenset[str] | None = None  # None: not known before delivery


ACCEPT_ALL = Sending()


def refusal(connector_id: str, operation: str, sending: Sending) -> JackfieldError | None:
    """Why ``operation`` (``""``: the type's default) cannot be sent to the connector,
    or ``None``."""
    if sending.receives_only is not None:
        return ConflictError(
            f"connector {connector_id} only receives: it sends nothing",
            remediation="Send to a connector that delivers messages; this "
            f"one takes events in ({sending.receives_only}).",
        )
    names = sending.operations
    if names is None or (operation in names if operation else len(names) == 1):
        return None
    known = ", ".join(sorted(names))
    if not names:
        problem = "has no operations"
    elif operation:
        problem = f"has no operation {operation!r} (known: {known})"
    else:
        problem = f"has several operations ({known}): the message must name one"
    return InvalidMessageError(
        f"connector {connector_id} {problem}",
        field_errors={"operation": f"one of: {known}" if names else "none offered"},
        remediation="Send an operation the connector's provider offers"
        + (f": {known}." if names else "; this one offers none."),
    )


@dataclass(frozen=True)
class Lease:
    """A delivery worker's hold on new messages: inserted ``in_flight`` under it."""

    connector_id: str
    token: str
    expires_at: datetime
    count: int


class DirectDelivery(Protocol):
    """A delivery worker in this process that takes new messages without a claim."""

    def reserve(self, connector_id: str, count: int) -> Lease | None:
        """Room for up to ``count`` new messages of the connector (called in the write's
        transaction); ``None`` or a smaller ``count`` leaves the rest ``pending``."""

    def hand_over(
        self,
        connector_id: str,
        organization_id: str,
        lease: Lease,
        sends: Sequence[Send],
        created_at: datetime,
    ) -> None:
        """The rows leased to it have committed: deliver them (thread-safe)."""

    def cancel(self, lease: Lease) -> None:
        """The write failed: nothing was inserted under ``lease`` (thread-safe)."""


class SendResult(NamedTuple):
    """What a send did: ``created`` is False when the envelope id was already known."""

    envelope_id: str
    created: bool
    row: Any  # the stored row, or a ``NewRow``: what ``message_view`` reads

    @property
    def message(self) -> dict[str, Any]:
        """The message as the API shows it."""
        return message_view(self.row)

    @property
    def state(self) -> str:
        return str(self.row.state)


class NewRow(NamedTuple):
    """A row just inserted, as ``message_view`` reads it. A tuple of plain values: the
    garbage collector stops tracking it, which matters when senders keep many results."""

    envelope_id: str
    connector_id: str
    operation: str
    state: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    last_error: None = None
    error_class: None = None
    result: None = None


_Granted = tuple[str, str, Lease, list[Send]]  # connector, organization, lease, sends


#: Sends per write at most: a large backlog is written as several group transactions,
#: so the first of them is handed to the workers while the next is being written
#: (one huge transaction would leave the workers idle until it committed).
MAX_SENDS_PER_WRITE = 512


class _Waiter(NamedTuple):
    """Who waits for ``size`` consecutive sends of a write: a ``send`` (its outcome)
    or a ``send_many`` (the list of its outcomes)."""

    future: Future[Any]
    size: int
    many: bool


@dataclass
class _Write:
    """One scheduled write: the sends it drained, who waits for them (in the same
    order) and the leases it was granted."""

    sends: list[Send]
    waiters: list[_Waiter]
    alone: bool
    granted: list[_Granted] = field(default_factory=list)
    pending_connectors: set[str] = field(default_factory=set)  # with new pending rows
    created_at: datetime | None = None


class Enqueuer:
    def __init__(
        self,
        committer: GroupCommitter,
        on_pending: Callable[[set[str]], None],
        sending: Callable[[str, str], Sending] | None = None,
    ):
        self.committer = committer
        self.on_pending = on_pending  # new pending rows committed (wake the workers)
        # (category, provider type) -> what that type accepts (default: everything)
        self.sending = sending or (lambda _category, _provider_type: ACCEPT_ALL)
        self.direct: DirectDelivery | None = None
        self._lock = threading.Lock()
        self._sends: list[Send] = []
        self._waiters: list[_Waiter] = []
        self._scheduled = False
        self.max_sends = MAX_SENDS_PER_WRITE

    def submit(self, item: Send) -> Future[SendResult]:
        """``item`` is written with the next group; the future resolves to its outcome."""
        return self._submit([item], many=False)

    def submit_many(self, items: list[Send]) -> Future[list[SendResult]]:
        """Like ``submit`` for several sends, with one future for all of them (a
        producer of many messages pays for one wait, not one per message)."""
        return self._submit(items, many=True)

    def _submit(self, items: list[Send], many: bool) -> Future[Any]:
        future: Future[Any] = Future()
        if not items:
            future.set_result([])
            return future
        with self._lock:
            self._sends += items
            self._waiters.append(_Waiter(future, len(items), many))
            if self._scheduled:
                return future  # the write already scheduled will drain these too
            self._scheduled = True
        self._schedule(_Write([], [], alone=False))
        return future

    def _schedule(self, write: _Write) -> None:
        written = self.committer.submit_async(lambda s: self._write(s, write))
        written.add_done_callback(lambda f: self._settle(f, write))

    def _drain(self, write: _Write) -> None:
        """Take the oldest sends queued, up to ``max_sends`` (at least one caller's);
        what is left goes to the next write, scheduled at once."""
        with self._lock:
            taken = callers = 0
            for waiter in self._waiters:
                if callers and taken + waiter.size > self.max_sends:
                    break
                taken += waiter.size
                callers += 1
            write.waiters, self._waiters = self._waiters[:callers], self._waiters[callers:]
            write.sends, self._sends = self._sends[:taken], self._sends[taken:]
            self._scheduled = more = bool(self._waiters)
        if more:
            self._schedule(_Write([], [], alone=False))

    def _write(self, session: Session, write: _Write) -> list[Any]:
        """Runs in the group transaction: validate and insert the drained sends."""
        if not write.alone:
            self._drain(write)
        sends = write.sends
        connection = session.connection()
        ids = list({item.connector_id for item in sends})
        # id -> (organization, enabled, what it accepts) as plain values: cheaper to read
        # than a Row's attributes, once per send below
        connectors = {
            row[0]: (row[1], row[2], self.sending(row[3], row[4]))
            for row in connection.execute(_CONNECTORS, {"ids": ids})
        }
        given = [item.envelope_id for item in sends if item.client_id]
        known: dict[tuple[str, str], Any] = {}
        if given:
            known = {
                (row.connector_id, row.envelope_id): row
                for row in connection.execute(_KNOWN, {"ids": given})
            }
        outcomes: list[Any] = []
        first: dict[tuple[str, str], int] = {}  # new in this batch -> its position
        repeats: list[tuple[int, int]] = []
        new: dict[str, list[int]] = {}  # connector -> positions of its new messages
        for i, item in enumerate(sends):
            connector = connectors.get(item.connector_id)
            key = (item.connector_id, item.envelope_id)
            if connector is None or item.organization_id not in (None, connector[0]):
                outcomes.append(ConnectorNotFoundError(f"no connector {item.connector_id}"))
            elif key in known:
                outcomes.append(SendResult(item.envelope_id, False, known[key]))
            elif key in first:  # sent twice in this batch: the second is the first
                repeats.append((i, first[key]))
                outcomes.append(None)
            elif not connector[1]:
                outcomes.append(
                    ConflictError(
                        f"connector {item.connector_id} is not enabled",
                        remediation="Activate the connector, then send again.",
                    )
                )
            elif (refused := refusal(item.connector_id, item.operation, connector[2])) is not None:
                outcomes.append(refused)
            else:
                first[key] = i
                new.setdefault(item.connector_id, []).append(i)
                outcomes.append(None)
        if new:
            self._insert(session, write, sends, outcomes, new, connectors)
        for i, j in repeats:
            outcomes[i] = SendResult(sends[i].envelope_id, False, outcomes[j].row)
        return outcomes

    def _insert(
        self,
        session: Session,
        write: _Write,
        sends: list[Send],
        outcomes: list[Any],
        new: dict[str, list[int]],
        connectors: dict[str, tuple[str, bool, Sending]],
    ) -> None:
        """One ``executemany`` for all new messages; leased ones go in ``in_flight``."""
        now = utcnow()
        values = driver_values(session)
        stamp = values.timestamp(now)
        write.created_at = now
        rows: list[tuple[Any, ...]] = []
        for connector_id, positions in new.items():
            org = connectors[connector_id][0]
            lease = self.direct.reserve(connector_id, len(positions)) if self.direct else None
            granted, token, expires_at = 0, None, now
            if lease is not None:
                granted, token, expires_at = (
                    min(lease.count, len(positions)),
                    lease.token,
                    lease.expires_at,
                )
                write.granted.append(
                    (connector_id, org, lease, [sends[i] for i in positions[:granted]])
                )
            if granted < len(positions):
                write.pending_connectors.add(connector_id)
            expires = values.timestamp(expires_at)
            for n, i in enumerate(positions):
                item = sends[i]
                leased = n < granted
                rows.append(
                    (
                        item.envelope_id,
                        connector_id,
                        org,
                        item.operation,
                        item.payload_json,
                        "in_flight" if leased else "pending",
                        1 if leased else 0,
                        expires if leased else stamp,
                        token if leased else None,
                        expires if leased else None,
                        stamp,
                        stamp,
                    )
                )
                row = NewRow(
                    item.envelope_id,
                    connector_id,
                    item.operation,
                    "in_flight" if leased else "pending",
                    1 if leased else 0,
                    expires_at if leased else now,
                    now,
                    now,
                )
                outcomes[i] = SendResult(item.envelope_id, True, row)
        _INSERT.execute(session, rows)

    def _settle(self, written: Future[list[Any]], write: _Write) -> None:
        error = written.exception()
        if error is not None:
            self._cancel(write)
            if isinstance(error, IntegrityError) and not write.alone:
                # e.g. another node inserted one of these envelope ids concurrently, or
                # a connector was deleted meanwhile: write each caller's sends on their
                # own, so each sees the rows now there (200) or gets its own error.
                start = 0
                for waiter in write.waiters:
                    sends = write.sends[start : start + waiter.size]
                    start += waiter.size
                    self._schedule(_Write(sends, [waiter], alone=True))
                return
            for waiter in write.waiters:
                waiter.future.set_exception(error)
            return
        if self.direct is not None and write.created_at is not None:
            for connector_id, org, lease, sends in write.granted:
                self.direct.hand_over(connector_id, org, lease, sends, write.created_at)
        outcomes = written.result()
        start = 0
        for future, size, many in write.waiters:
            if many:
                mine = outcomes[start : start + size]
                error = next((o for o in mine if isinstance(o, BaseException)), None)
            else:
                mine = outcomes[start]
                error = mine if isinstance(mine, BaseException) else None
            start += size
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine)
        if write.pending_connectors:
            self.on_pending(write.pending_connectors)

    def _cancel(self, write: _Write) -> None:
        if self.direct is not None:
            for _, _, lease, _ in write.granted:
                self.direct.cancel(lease)
        write.granted = []


_TABLE: Table = OutboxMessage.__table__  # type: ignore[assignment]
_INSERT_COLUMNS = (
    "envelope_id",
    "connector_id",
    "organization_id",
    "operation",
    "payload",
    "state",
    "attempts",
    "next_attempt_at",
    "lease_token",
    "lease_expires_at",
    "created_at",
    "updated_at",
)
_INSERT = DriverStatement(
    insert(_TABLE).values({name: bindparam(name) for name in _INSERT_COLUMNS}), _INSERT_COLUMNS
)
# built once: constructing a statement costs more than running it for a few sends
_CONNECTORS = select(
    Connector.id,
    Connector.organization_id,
    Connector.is_enabled,
    Connector.category,
    Connector.provider_type,
).where(Connector.id.in_(bindparam("ids", expanding=True)))
VIEW_COLUMNS = (
    OutboxMessage.envelope_id,
    OutboxMessage.connector_id,
    OutboxMessage.organization_id,
    OutboxMessage.operation,
    OutboxMessage.state,
    OutboxMessage.attempts,
    OutboxMessage.next_attempt_at,
    OutboxMessage.last_error,
    OutboxMessage.error_class,
    OutboxMessage.result,
    OutboxMessage.created_at,
    OutboxMessage.updated_at,
)
_KNOWN = select(*VIEW_COLUMNS).where(
    OutboxMessage.envelope_id.in_(bindparam("ids", expanding=True))
)
