"""Retention: finished outbox messages and inbox events are deleted once old.

Without it both tables grow with every message and event for ever (and every
``/metrics`` scrape counts them all). Each node prunes, every ``interval`` seconds:

* outbox messages ``delivered`` or ``discarded`` whose last change is older than
  ``outbox_hours``. ``dead`` letters wait for an operator (replay or discard) and
  ``pending``/``retrying``/``in_flight`` ones for delivery: they are never pruned. The
  envelope id of a pruned message is free again, so idempotency holds for that window;
* inbox events received longer than ``inbox_hours`` ago (never sooner than
  ``INBOX_FLOOR``), as a log's retention: a
  process with handlers dispatches every event within seconds, so one still not
  dispatched then had no handler process running all that time -- a deployment
  without handlers (events read through the API and the stream), or an application
  down for longer than the retention, which gets the events of the window when it
  returns. Were such events kept, the inbox of every ``jackfield serve`` without
  handlers would grow for ever. The inbox's deduplication of event ids (webhook ids,
  polled item ids) holds for that window. ``INBOX_FLOOR`` is how long a webhook may
  still verify after it arrived (a day's tolerance plus a sender's clock running 5
  minutes ahead): pruned sooner, a captured request could be replayed and stored again.
  ``JACKFIELD_INBOX_RETENTION_HOURS=24`` stays valid: such events go after 24 h 5 min;
* the unit leases of deleted connectors (a row per inbound connector ever run), once
  expired for ``LEASE_GRACE``: nobody can hold them any more.

``0`` hours keeps a table's rows for ever. Rows go in chunks of ``chunk`` (oldest
first), each in the runtime's group commit, so pruning a large backlog never holds the
database's write lock for long. No index serves "finished and old", and none is added
(it would cost every write): ids grow with time, so each pass first finds the first row
too young to go (a scan from the start that stops there) and then deletes only below
that id.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, literal, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session

from ..kernel.inbound import MAX_CLOCK_SKEW_SECONDS, MAX_REPLAY_WINDOW_SECONDS
from ..kernel.redaction import get_logger
from ..store import Database, utcnow
from ..store.group_commit import GroupCommitter
from ..store.models import Connector
from ..store.models_inbound import InboxEvent, UnitLease
from ..store.models_outbox import OutboxMessage
from .inbound import LEASE_PREFIX

log = get_logger(__name__)
FINISHED = ("delivered", "discarded")
LEASE_GRACE = timedelta(hours=1)
INBOX_FLOOR = timedelta(seconds=MAX_REPLAY_WINDOW_SECONDS + MAX_CLOCK_SKEW_SECONDS)


@dataclass(frozen=True)
class RetentionConfig:
    outbox_hours: float = 168.0
    inbox_hours: float = 168.0
    interval: float = 600.0
    chunk: int = 2000


@dataclass(frozen=True)
class Pruned:
    messages: int = 0
    events: int = 0
    leases: int = 0


class Retention:
    def __init__(self, db: Database, committer: GroupCommitter, config: RetentionConfig) -> None:
        self.db = db
        self.committer = committer
        self.config = config
        self._skip_locked = db.engine.dialect.name == "postgresql"
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.config.outbox_hours > 0 or self.config.inbox_hours > 0

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def prune(self) -> Pruned:
        """One pass over both tables; returns how many rows went."""
        now = utcnow()
        messages = events = 0
        if self.config.outbox_hours > 0:
            cutoff = now - timedelta(hours=self.config.outbox_hours)
            messages = await self._prune(
                OutboxMessage,
                OutboxMessage.created_at,
                cutoff,
                OutboxMessage.state.in_(FINISHED),
                OutboxMessage.updated_at < cutoff,
            )
        if self.config.inbox_hours > 0:
            cutoff = now - max(timedelta(hours=self.config.inbox_hours), INBOX_FLOOR)
            events = await self._prune(
                InboxEvent,
                InboxEvent.received_at,
                cutoff,
                InboxEvent.received_at < cutoff,
            )
        leases = await self.committer.run(self._delete_orphan_leases)
        if messages or events:
            log.info(
                "retention: deleted %d finished outbox messages and %d inbox events",
                messages,
                events,
            )
        return Pruned(messages, events, leases)

    @staticmethod
    def _delete_orphan_leases(session: Session) -> int:
        """Leases of connectors that no longer exist, expired long enough for any
        holder to be gone."""
        units = select(literal(LEASE_PREFIX) + Connector.id)
        statement = delete(UnitLease).where(
            UnitLease.expires_at < utcnow() - LEASE_GRACE,
            UnitLease.unit.startswith(LEASE_PREFIX, autoescape=True),
            UnitLease.unit.not_in(units),
        )
        return session.connection().execute(statement).rowcount

    async def _run(self) -> None:
        while True:
            try:
                await self.prune()
            except SQLAlchemyError as exc:  # the database is away: try again next time
                log.warning("retention pass failed: %s", exc)
            except Exception:  # a fault of one pass must not end pruning for good
                log.exception("retention pass failed unexpectedly; trying again next time")
            await asyncio.sleep(self.config.interval)

    async def _prune(
        self,
        model: Any,
        stamp: InstrumentedAttribute[datetime],
        cutoff: datetime,
        *conditions: Any,
    ) -> int:
        """Delete ``model`` rows meeting ``conditions`` whose id is below the first row
        stamped at or after ``cutoff``, a chunk per group transaction."""
        first_young = select(model.id).where(stamp >= cutoff).order_by(model.id).limit(1)
        boundary = await asyncio.to_thread(self._read, first_young)
        if boundary is not None:
            conditions = (*conditions, model.id < boundary)
        chunk = select(model.id).where(*conditions).order_by(model.id).limit(self.config.chunk)
        if self._skip_locked:  # another node pruning the same rows: leave them to it
            chunk = chunk.with_for_update(skip_locked=True)
        statement = delete(model.__table__).where(model.__table__.c.id.in_(chunk))

        def delete_chunk(session: Session) -> int:
            return session.connection().execute(statement).rowcount

        deleted = 0
        while True:
            count = await self.committer.run(delete_chunk)
            deleted += count
            if count < self.config.chunk:
                return deleted

    def _read(self, query: Any) -> Any:
        with self.db.snapshot() as s:
            return s.scalar(query)
