"""Supervised units: the in-memory state of one connector's runtime, and its row.

A unit is one connector as the runtime runs it: its open outbound provider (used by
the outbox), its inbound source task (polling or subscription), its liveness and
readiness. ``generation`` increases on every (re)start, so a crash reported by work of
an earlier generation -- say, a second delivery failing on a provider already being
replaced -- is not counted twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..kernel import call_async
from ..kernel.envelope import AuthFailed, Delivered, DeliveryOutcome, Retry, outcome_from_error
from ..kernel.errors import AuthError, ConnectionFailedError, ConnectorConfigError, ConnectorError
from ..kernel.provider import ConnectorProvider
from ..kernel.redaction import get_logger
from ..secrets import SecretKeyError
from ..service.nodes import ended_here
from ..store import Connector, Database, utcnow
from ..store.group_commit import GroupCommitter
from ..store.models_outbox import RuntimeRestart, RuntimeUnit
from .inbound.polling import PollSlot
from .retry import RetryPolicy

log = get_logger(__name__)

DELIVERABLE = frozenset({"starting", "running"})


class ProviderHandle:
    """An open provider shared by concurrent deliveries; closed once retired and idle."""

    def __init__(self, provider: ConnectorProvider) -> None:
        self.provider = provider
        self.users = 0
        self.retired = False
        self.closed = False

    def acquire(self) -> ConnectorProvider:
        self.users += 1
        return self.provider

    async def release(self) -> None:
        self.users -= 1
        if self.retired and self.users == 0:
            await self.close()

    async def retire(self) -> None:
        self.retired = True
        if self.users == 0:
            await self.close()

    async def close(self, *, loop_ended: bool = False) -> None:
        """Close the provider; a failure is logged, never raised. ``loop_ended``: it was
        opened in an event loop that has closed since, whose connections no other loop
        can close -- that failure is expected, so it is not a warning."""
        if self.closed:
            return
        self.closed = True
        try:
            await call_async(self.provider.close)
        except Exception:  # a failing close must not take the runtime down
            level = logging.DEBUG if loop_ended else logging.WARNING
            name = self.provider.provider_type
            log.log(level, "closing provider %s failed", name, exc_info=True)


@dataclass
class Unit:
    connector_id: str
    organization_id: str
    liveness: str = "starting"
    readiness: str = "ready"
    restart_count: int = 0
    last_error: str | None = None
    next_restart_at: datetime | None = None
    generation: int = 0
    # deliveries of generations before this one no longer say anything of its readiness:
    # a crash, a restart or a stop began it, or a delivery or poll of it was shown
    # (``Supervisor.note_outcome``)
    outcomes_since: int = 0
    started_at: float = 0.0  # loop time the current generation started
    consecutive_restarts: int = 0  # backoff exponent; reset after a healthy stretch
    # (loop time, what crashed it: a message's envelope id, or None) within the window
    crashes: collections.deque[tuple[float, str | None]] = field(default_factory=collections.deque)
    config_stamp: datetime | None = None
    opened_at: datetime | None = None  # when its outbound provider last read its config
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 16
    outbound: ProviderHandle | None = None
    opening: tuple[int, asyncio.Future[ProviderHandle]] | None = None  # (generation, open)
    inbound_task: asyncio.Task[None] | None = None
    restart_timer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inbound_capable: bool | None = None  # None: provider class not looked at yet
    secret_fields: frozenset[str] = frozenset()
    restart_seen: int = 0  # the last generation of restart requests acted on
    source_failures: int = 0  # outages of its source or open since the backoff reset
    working_since: float | None = None  # (loop time) its source worked again after one
    opening_failed: bool = False  # its last open failed for an outage (see the supervisor)
    poll_slot: PollSlot = field(default_factory=PollSlot)  # its poll here, across generations

    @property
    def deliverable(self) -> bool:
        return self.liveness in DELIVERABLE

    def crashes_caused_by(self, cause: str) -> int:
        """How many of the crashes in the window ``cause`` (an envelope id) caused."""
        return sum(1 for _, culprit in self.crashes if culprit == cause)

    def faults(self) -> int:
        """The distinct faults among the crashes in the window, which the crash limit
        counts: every crash without a cause, and each message once, however often it
        crashed the unit (the outbox sends it to dead after a few; two such messages
        must not take the connector down)."""
        causes = [culprit for _, culprit in self.crashes]
        return causes.count(None) + len({c for c in causes if c is not None})

    def snapshot(self) -> UnitState:
        return UnitState(
            connector_id=self.connector_id,
            organization_id=self.organization_id,
            liveness=self.liveness,
            readiness=self.readiness,
            restart_count=self.restart_count,
            last_error=self.last_error,
            next_restart_at=self.next_restart_at,
            restart_seen=max(self.restart_seen, 0),
        )


@dataclass(frozen=True)
class UnitState:
    """What is persisted of a unit (a copy, so it can be written from a thread)."""

    connector_id: str
    organization_id: str
    liveness: str
    readiness: str
    restart_count: int
    last_error: str | None
    next_restart_at: datetime | None
    restart_seen: int


class UnitStore:
    """Reads and writes ``runtime_units`` for the supervisor (in worker threads).

    A node writes only its own rows, so nodes never contend for one, and sweeps the rows
    other nodes left behind (see ``RuntimeUnit``).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, units: list[UnitState], node: str, s: Session) -> None:
        """Write this node's units in ``s`` (a unit whose connector is gone is skipped)."""
        if not units:
            return
        ids = [u.connector_id for u in units]
        now = utcnow()
        mine = RuntimeUnit.node == node
        rows = {
            r.connector_id: r
            for r in s.scalars(select(RuntimeUnit).where(mine, RuntimeUnit.connector_id.in_(ids)))
        }
        present = set(s.scalars(select(Connector.id).where(Connector.id.in_(ids))))
        for unit in units:
            row = rows.get(unit.connector_id)
            if row is None:
                if unit.connector_id not in present:
                    continue
                row = RuntimeUnit(
                    connector_id=unit.connector_id, node=node, organization_id=unit.organization_id
                )
                s.add(row)
            row.liveness = unit.liveness
            row.readiness = unit.readiness
            row.restart_count = unit.restart_count
            row.last_error = unit.last_error
            row.next_restart_at = unit.next_restart_at
            row.restart_seen = unit.restart_seen
            row.updated_at = now

    def sweep(self, node: str, before: datetime) -> None:
        """Delete the rows of other nodes not written since ``before`` (gone) or whose
        process, on this hostname, is gone (``ended_here``: no need to wait), and their
        ``stopped`` rows of connectors this node runs (history). A ``failed`` row of an
        enabled connector stays however long its node is silent or since it ended: the
        node's next process takes it over (``failed_before``), and an operator's restart
        request (which turns it ``restarting``) lets it go. A transaction of its own,
        never the outbox's group: if two nodes' sweeps collide, only a sweep fails (it
        runs again at the next heartbeat)."""
        running_here = select(RuntimeUnit.connector_id).where(
            RuntimeUnit.node == node, RuntimeUnit.liveness != "stopped"
        )
        enabled = select(Connector.id).where(Connector.is_enabled)
        still_failed = and_(
            RuntimeUnit.liveness == "failed",
            RuntimeUnit.connector_id.in_(enabled.scalar_subquery()),
        )
        with self.db.transaction() as s:
            others = s.scalars(select(RuntimeUnit.node).where(RuntimeUnit.node != node).distinct())
            ended = [other for other in others if ended_here(other)]
            s.execute(
                delete(RuntimeUnit).where(
                    RuntimeUnit.node != node,
                    or_(
                        and_(RuntimeUnit.updated_at < before, ~still_failed),
                        and_(RuntimeUnit.node.in_(ended), ~still_failed),
                        and_(
                            RuntimeUnit.liveness == "stopped",
                            RuntimeUnit.connector_id.in_(running_here.scalar_subquery()),
                        ),
                    ),
                )
            )

    def failed_before(self, node: str) -> dict[str, RuntimeUnit]:
        """Take over the ``failed`` rows of enabled connectors this node left before it
        started: its own (a node named in settings, or a runtime started again in one
        process) and those of ended processes of its hostname (``ended_here``:
        ``jackfield serve`` stopped or killed and started again), the newest per
        connector. An ended process's row becomes this node's, in one transaction, so no
        sweep by another node of this host loses it meanwhile: ``failed`` holds until an
        operator's restart, not until the node restarts."""
        with self.db.transaction() as s:
            rows = s.scalars(
                select(RuntimeUnit)
                .join(Connector, Connector.id == RuntimeUnit.connector_id)
                .where(RuntimeUnit.liveness == "failed", Connector.is_enabled)
                .order_by(RuntimeUnit.updated_at)
            ).all()
            left = {r.connector_id: r for r in rows if r.node == node or ended_here(r.node)}
            own = set(s.scalars(select(RuntimeUnit.connector_id).where(RuntimeUnit.node == node)))
            for row in rows:
                if row.node != node and ended_here(row.node):
                    s.delete(row)
            for connector_id, row in left.items():
                if connector_id not in own:
                    s.add(
                        RuntimeUnit(
                            connector_id=connector_id,
                            node=node,
                            organization_id=row.organization_id,
                            liveness="failed",
                            readiness=row.readiness,
                            restart_count=row.restart_count,
                            last_error=row.last_error,
                            restart_seen=row.restart_seen,
                        )
                    )
        return left

    def connectors(self) -> list[Any]:
        """Every connector's id, organization, enabled flag, type, config stamp and
        restart generation (0: never restarted by an operator)."""
        with self.db.transaction() as s:
            return list(
                s.execute(
                    select(
                        Connector.id,
                        Connector.organization_id,
                        Connector.is_enabled,
                        Connector.category,
                        Connector.provider_type,
                        Connector.updated_at,
                        func.coalesce(RuntimeRestart.generation, 0).label("restart_generation"),
                    ).outerjoin(RuntimeRestart, RuntimeRestart.connector_id == Connector.id)
                ).all()
            )

    def restart_counts(self) -> dict[str, int]:
        """Each connector's highest restart count on any node, so a unit started by a new
        process continues the count its connector had."""
        with self.db.transaction() as s:
            query = select(RuntimeUnit.connector_id, func.max(RuntimeUnit.restart_count))
            rows = s.execute(query.group_by(RuntimeUnit.connector_id))
            return {connector_id: count for connector_id, count in rows}


def readiness_for(unit: Unit, exc: BaseException) -> str | None:
    """The readiness an error on opening or running a unit stands for, if any."""
    if isinstance(exc, AuthError):
        return "auth_failed"
    if isinstance(exc, ConnectionFailedError):
        return "unreachable"
    if isinstance(exc, ConnectorConfigError):
        fields = set(exc.field_errors)
        if fields and fields <= unit.secret_fields:
            return "missing_credential"
        return "misconfigured"
    if isinstance(exc, SecretKeyError):  # its secrets cannot be read with these keys
        return "misconfigured"
    return None


def outcome_readiness(outcome: DeliveryOutcome) -> str | None:
    """The readiness a delivery's outcome stands for: ``ready`` once one works,
    ``auth_failed``, ``unreachable`` (connection failed) or ``degraded`` (other transient
    failures); ``None`` for a permanent one (the message's fault, not the connector's)."""
    if isinstance(outcome, Delivered):
        return "ready"
    if isinstance(outcome, AuthFailed):
        return "auth_failed"
    if isinstance(outcome, Retry):
        unreachable = outcome.error_class == ConnectionFailedError.__name__
        return "unreachable" if unreachable else "degraded"
    return None


def source_readiness(unit: Unit, exc: ConnectorError) -> str:
    """The readiness a ``ConnectorError`` from ``poll`` or a subscription stream stands
    for: as when opening (``readiness_for``), else as for a delivery failing with it;
    an error that will not go away by itself (``PermanentError``, ...) is the connector's
    here, since each poll asks the same: ``misconfigured``."""
    return readiness_for(unit, exc) or outcome_readiness(outcome_from_error(exc)) or "misconfigured"


class UnitRecorder:
    """Persists changed units soon, off the event loop, many changes in one write.

    Writes go through the runtime's ``GroupCommitter`` (they share the outbox's
    transactions); its one thread commits them in the order they were submitted, so an
    older state of a unit never lands after a newer one.
    """

    def __init__(self, store: UnitStore, node: str, committer: GroupCommitter) -> None:
        self.store = store
        self.node = node
        self.committer = committer
        self._pending: dict[str, Unit] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, unit: Unit) -> None:
        self._pending[unit.connector_id] = unit
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_soon())

    def forget(self, connector_id: str) -> None:
        self._pending.pop(connector_id, None)

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0.05)
        await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        units, self._pending = list(self._pending.values()), {}
        states = [unit.snapshot() for unit in units]
        node = self.node
        try:
            written = self.committer.submit_async(lambda s: self.store.save(states, node, s))
            await asyncio.wrap_future(written)
        except SQLAlchemyError as exc:  # keep them pending; the next change retries
            log.warning("could not persist unit state: %s", exc)
            for unit in units:
                self._pending.setdefault(unit.connector_id, unit)
