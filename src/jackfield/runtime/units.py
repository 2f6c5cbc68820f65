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

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..kernel import call_async
from ..kernel.errors import AuthError, ConnectionFailedError, ConnectorConfigError
from ..kernel.provider import ConnectorProvider
from ..store import Connector, Database, utcnow
from ..store.group_commit import GroupCommitter
from ..store.models_outbox import RuntimeUnit
from .retry import RetryPolicy

log = logging.getLogger(__name__)

DELIVERABLE = frozenset({"starting", "running"})
DOWN = frozenset({"crashed", "failed", "stopped"})  # no generation runs: nothing to crash


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

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await call_async(self.provider.close)
        except Exception:  # a failing close must not take the runtime down
            log.warning("closing provider %s failed", self.provider.provider_type, exc_info=True)


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
    started_at: float = 0.0  # loop time the current generation started
    consecutive_restarts: int = 0  # backoff exponent; reset after a healthy stretch
    crash_times: collections.deque[float] = field(default_factory=collections.deque)
    config_stamp: datetime | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 16
    outbound: ProviderHandle | None = None
    inbound_task: asyncio.Task[None] | None = None
    restart_timer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inbound_capable: bool | None = None  # None: provider class not looked at yet
    secret_fields: frozenset[str] = frozenset()
    seen_request: datetime | None = None  # the last restart request acted on
    handled_request: datetime | None = None  # ... and not yet cleared in the database

    @property
    def deliverable(self) -> bool:
        return self.liveness in DELIVERABLE

    def snapshot(self) -> UnitState:
        return UnitState(
            connector_id=self.connector_id,
            organization_id=self.organization_id,
            liveness=self.liveness,
            readiness=self.readiness,
            restart_count=self.restart_count,
            last_error=self.last_error,
            next_restart_at=self.next_restart_at,
            handled_request=self.handled_request,
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
    handled_request: datetime | None


class UnitStore:
    """Reads and writes ``runtime_units`` for the supervisor (in worker threads)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, units: list[UnitState], node: str, session: Session | None = None) -> None:
        """Write the units' state; a unit whose connector is gone is skipped. A restart
        request is cleared once handled (unless a newer one arrived meanwhile)."""
        if not units:
            return
        if session is None:
            with self.db.transaction() as own:
                return self.save(units, node, own)
        ids = [u.connector_id for u in units]
        now = utcnow()
        s = session
        rows = {
            r.connector_id: r
            for r in s.scalars(select(RuntimeUnit).where(RuntimeUnit.connector_id.in_(ids)))
        }
        present = set(s.scalars(select(Connector.id).where(Connector.id.in_(ids))))
        for unit in units:
            row = rows.get(unit.connector_id)
            if row is None:
                if unit.connector_id not in present:
                    continue
                row = RuntimeUnit(
                    connector_id=unit.connector_id, organization_id=unit.organization_id
                )
                s.add(row)
            row.liveness = unit.liveness
            row.readiness = unit.readiness
            row.restart_count = unit.restart_count
            row.last_error = unit.last_error
            row.next_restart_at = unit.next_restart_at
            row.node = node
            row.updated_at = now
            handled = unit.handled_request
            if handled is not None and (
                row.restart_requested_at is None or row.restart_requested_at <= handled
            ):
                row.restart_requested_at = None

    def connectors(self) -> list[Any]:
        """Every connector's id, organization, enabled flag, type and config stamp."""
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
                    )
                ).all()
            )

    def rows(self) -> dict[str, Any]:
        """Persisted units by connector id (restart requests, state left by a past run)."""
        with self.db.transaction() as s:
            return {
                r.connector_id: r
                for r in s.execute(
                    select(
                        RuntimeUnit.connector_id,
                        RuntimeUnit.liveness,
                        RuntimeUnit.restart_count,
                        RuntimeUnit.restart_requested_at,
                    )
                ).all()
            }


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
    return None


class UnitRecorder:
    """Persists changed units soon, off the event loop, many changes in one write.

    Writes go through the runtime's ``GroupCommitter`` when there is one (they then
    share the outbox's transactions), else a transaction of their own in a thread.
    """

    def __init__(self, store: UnitStore, node: str, committer: GroupCommitter | None) -> None:
        self.store = store
        self.node = node
        self.committer = committer
        self._pending: dict[str, Unit] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, unit: Unit) -> None:
        self._pending[unit.connector_id] = unit
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_soon())

    def pending(self, connector_id: str) -> bool:
        return connector_id in self._pending

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
        try:
            if self.committer is not None:
                node = self.node
                written = self.committer.submit_async(lambda s: self.store.save(states, node, s))
                await asyncio.wrap_future(written)
            else:
                await asyncio.to_thread(self.store.save, states, self.node)
        except SQLAlchemyError as exc:  # keep them pending; the next change retries
            log.warning("could not persist unit state: %s", exc)
            for unit in units:
                self._pending.setdefault(unit.connector_id, unit)
            return
        for unit, state in zip(units, states, strict=True):
            if unit.handled_request == state.handled_request:
                unit.handled_request = None
