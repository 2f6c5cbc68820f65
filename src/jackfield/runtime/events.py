"""The event router: runs the handlers registered with ``@jf.on(event_type)`` for every
inbox event, and feeds the live stream (SSE).

Dispatch semantics:

* Events are dispatched in id order, one at a time per process. For each event every
  handler of its type runs, then every ``"*"`` handler, in registration order. Sync
  handlers run in a worker thread; async ones on the loop.
* A handler that raises (even ``SystemExit``, or a ``CancelledError`` of its own) is
  logged (redacted) and the other handlers and events go on.
  It is **not** retried: a handler that needs retries should hand its work to the
  outbox (``jf.send``) or its own queue. ``dispatched_at`` is set once the handlers ran:
  the events of a batch whose handlers finished are marked together every
  ``mark_seconds`` (0.5 s) while the batch runs, and at its end -- a fast batch costs
  one write, a slow one at most two a second.
* Across nodes a batch of rows is claimed first (``dispatch_token``, ``dispatch_until``;
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two nodes never run handlers for the same
  row at the same time. The claim is extended while the batch's handlers run, however
  long they take. If a node dies mid-batch its claim expires after ``claim_seconds`` and
  another node runs those events: delivery to handlers is at-least-once, never
  concurrent. A crash (the process killed, ``os._exit``) re-runs the event whose
  handlers were running and those that finished in the last ``mark_seconds`` before it
  (plus the time a mark takes to commit); the rest of the batch was marked. A claim
  names its process (``hostname:pid``): a process of the same host takes over at once
  the claim of one that no longer exists (the application crashed and was started
  again), as with inbound leases (``jackfield.service.nodes``), instead of stalling
  those events for ``claim_seconds``. A live process's claim is never taken early, even
  once its router has stopped: a handler may still run in it.
* A process with no handlers claims nothing, so a ``jackfield serve`` without handlers
  leaves the events for the application that registered them. An event is dispatched
  once for the whole deployment, not once per process: every process that registers
  handlers must register the same ones (as the workers of one application do), and
  register them before ``start``. An event claimed by a process without a handler for
  its type is marked dispatched all the same.
* ``stop()`` lets the event whose handlers are running finish, for up to
  ``grace_seconds``; it is then marked. If they are still running (a sync handler's
  thread cannot be interrupted), its claim is left to expire rather than given back, so
  a router started again does not run the event while the first run goes on.
* New rows are noticed at once after ``wake()`` (called after local commits) and
  within ``poll_interval`` when another process or node committed them.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..kernel import call_async
from ..kernel.redaction import get_logger
from ..secrets import redactor
from ..service.events import EventRecord
from ..service.nodes import ended_here, node_id
from ..store import Database, is_sqlite, utcnow
from ..store.models_inbound import InboxEvent
from .inbound.feed import EventFeed, set_soon
from .waits import wait_until_set

log = get_logger(__name__)

ANY = "*"
UNCLAIMED: dict[str, Any] = {"dispatch_token": None, "dispatch_until": None, "dispatch_node": None}
Handler = Callable[[EventRecord], Any]
H = TypeVar("H", bound=Handler)


class EventRouter:
    def __init__(
        self,
        jf: Any,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        claim_seconds: float = 120.0,
        grace_seconds: float = 10.0,
        mark_seconds: float = 0.5,
    ) -> None:
        self.db: Database = jf.db
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.claim_seconds = claim_seconds
        self.grace_seconds = grace_seconds
        self.mark_seconds = mark_seconds
        self.feed = EventFeed(self.db)
        self._handlers: dict[str, list[Handler]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._finishing: asyncio.Future[None] | None = None  # the last batch's marks

    # -- registration -------------------------------------------------------------------
    def on(self, event_type: str) -> Callable[[H], H]:
        """Decorator: run the function for every event of ``event_type`` (``"*"``: all)."""
        if not isinstance(event_type, str) or not event_type:
            raise ValueError("event_type must be a non-empty string (or '*')")

        def register(handler: H) -> H:
            self._handlers.setdefault(event_type, []).append(handler)
            self.wake()
            return handler

        return register

    def handlers_for(self, event_type: str) -> list[Handler]:
        if event_type == ANY:  # an event whose type is literally "*": its handlers once
            return list(self._handlers.get(ANY, ()))
        return [*self._handlers.get(event_type, ()), *self._handlers.get(ANY, ())]

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()  # bound to this loop (a router may be restarted in another)
        self._task = asyncio.create_task(self._run(), name="jackfield-event-router")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finishing, self._finishing = self._finishing, None
        if finishing is not None:  # stopped means the handled events are marked
            await asyncio.gather(finishing, return_exceptions=True)
        self._loop = self._wakeup = None
        await self.feed.close()

    def abandon(self) -> None:
        """The loop it ran in closed without ``stop()``: forget that loop's tasks (their
        claim on events expires) and streams, so that ``start()`` begins afresh; the
        handlers stay."""
        self._task = self._finishing = None
        self._loop = self._wakeup = None
        self.feed = EventFeed(self.db, poll_interval=self.feed.poll_interval)

    def wake(self) -> None:
        """New rows were committed: dispatch and stream them now (thread-safe)."""
        self.feed.wake()
        if self._handlers:  # without handlers there is nothing to dispatch
            set_soon(self._loop, self._wakeup)

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            try:
                dispatched = await self.dispatch_pending()
            except Exception:  # a database hiccup must not end dispatching
                log.warning("event dispatch failed; retrying", exc_info=True)
                dispatched = 0
            if dispatched >= self.batch_size:
                continue
            await wait_until_set(wakeup, self.poll_interval)
            wakeup.clear()

    # -- dispatch -----------------------------------------------------------------------
    async def dispatch_pending(self) -> int:
        """Claim one batch of undispatched events and run their handlers; returns how
        many events were dispatched (0 when there are no handlers)."""
        if not self._handlers:
            return 0
        async with self._lock:
            token = str(uuid.uuid4())
            records = await asyncio.to_thread(self._claim, token)
            if not records:
                return 0
            claimed = [record.id for record in records]
            done: list[int] = []
            marked: set[int] = set()  # of done: marked while the batch ran
            running: list[int] = []  # still running after the grace: left claimed
            keeper = asyncio.create_task(self._tend(token, claimed, done, marked))
            try:
                for record in records:
                    handlers = asyncio.ensure_future(self._run_handlers(record))
                    try:
                        await asyncio.shield(handlers)
                    except asyncio.CancelledError:  # stopping
                        finished = await self._within_grace(handlers)
                        (done if finished else running).append(record.id)
                        raise
                    done.append(record.id)
            finally:
                # the marks are started before anything here awaits: a stop() arriving
                # at an await must not skip them (the events would run again later)
                given_back = sorted(set(claimed) - set(done) - set(running))
                unmarked = [event for event in done if event not in marked]
                finishing = asyncio.ensure_future(
                    asyncio.to_thread(self._finish, token, unmarked, given_back)
                )
                self._finishing = finishing
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                await asyncio.shield(finishing)  # (cancelled: stop() waits for it)
                self._finishing = None
            return len(done)

    async def _within_grace(self, handlers: asyncio.Future[None]) -> bool:
        """Whether an event's handlers, running when the router stopped, finished
        within the grace; if not, they are cancelled (a sync one's thread runs on)."""
        finished, _ = await asyncio.wait({handlers}, timeout=self.grace_seconds)
        if not finished:
            handlers.cancel()
        return bool(finished)

    async def _run_handlers(self, record: EventRecord) -> None:
        for handler in self.handlers_for(record.event_type):
            try:
                await call_async(handler, record)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the router is stopping
                self._failed(handler, record, exc)  # the handler's own cancellation
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - one handler's bug
                self._failed(handler, record, exc)  # must not stop the rest (or the process)

    @staticmethod
    def _failed(handler: Handler, record: EventRecord, exc: BaseException) -> None:
        trace = "".join(traceback.format_exception(exc))
        log.error(
            "handler %s failed for %s event %s (inbox id %s): %s",
            getattr(handler, "__qualname__", repr(handler)),
            record.event_type,
            record.event_id,
            record.id,
            redactor.redact(trace),
        )

    async def _tend(
        self, token: str, claimed: Sequence[int], done: list[int], marked: set[int]
    ) -> None:
        """While the batch runs: mark the events whose handlers finished, every
        ``mark_seconds`` (so a crash re-runs few of them, without a write per event), and
        extend the claim every third of ``claim_seconds``, however long the handlers take
        (a node that dies stops extending: its claim expires)."""
        loop = asyncio.get_running_loop()
        extended = loop.time()
        while True:
            await asyncio.sleep(min(self.mark_seconds, self.claim_seconds / 3))
            finished = [event for event in done if event not in marked]
            if finished:
                try:  # (cancelled meanwhile: the batch's last mark covers them again)
                    await asyncio.to_thread(self._finish, token, finished, ())
                    marked.update(finished)
                except SQLAlchemyError as exc:  # the next round or the batch's end does
                    log.warning("could not mark dispatched inbox events: %s", exc)
            if loop.time() - extended >= self.claim_seconds / 3:
                try:
                    await asyncio.to_thread(self._extend, token, claimed)
                    extended = loop.time()
                except SQLAlchemyError as exc:  # the next round tries again
                    log.warning("could not extend the claim on inbox events: %s", exc)

    def _claim(self, token: str) -> list[EventRecord]:
        now = utcnow()
        with self.db.transaction() as s:
            free = or_(InboxEvent.dispatch_until.is_(None), InboxEvent.dispatch_until < now)
            ended = _ended_claimants(s, now)
            if ended:
                free = or_(free, InboxEvent.dispatch_node.in_(ended))
            query = (
                select(InboxEvent.id)
                .where(InboxEvent.dispatched_at.is_(None), free)
                .order_by(InboxEvent.id)
                .limit(self.batch_size)
            )
            if not is_sqlite(self.db.engine):
                query = query.with_for_update(skip_locked=True)
            ids = list(s.scalars(query))
            if not ids:
                return []
            until = now + timedelta(seconds=self.claim_seconds)
            s.execute(
                update(InboxEvent)
                .where(InboxEvent.id.in_(ids))
                .values(dispatch_token=token, dispatch_until=until, dispatch_node=node_id())
            )
            rows = s.scalars(
                select(InboxEvent).where(InboxEvent.id.in_(ids)).order_by(InboxEvent.id)
            )
            return [EventRecord.from_row(row) for row in rows]

    def _extend(self, token: str, claimed: Sequence[int]) -> None:
        until = utcnow() + timedelta(seconds=self.claim_seconds)
        with self.db.transaction() as s:
            s.execute(
                update(InboxEvent)
                .where(InboxEvent.id.in_(list(claimed)), InboxEvent.dispatch_token == token)
                .values(dispatch_until=until)
            )

    def _finish(self, token: str, done: Sequence[int], given_back: Sequence[int]) -> None:
        """Mark the events whose handlers ran; give back the claim on ``given_back``
        (the batch was interrupted before them) so they are dispatched again at once."""
        with self.db.transaction() as s:
            if done:
                s.execute(  # only while the claim is ours: an expired one may be another's
                    update(InboxEvent)
                    .where(InboxEvent.id.in_(list(done)), InboxEvent.dispatch_token == token)
                    .values(dispatched_at=utcnow(), **UNCLAIMED)
                )
            if given_back:
                s.execute(
                    update(InboxEvent)
                    .where(InboxEvent.id.in_(list(given_back)), InboxEvent.dispatch_token == token)
                    .values(**UNCLAIMED)
                )


def _ended_claimants(s: Session, now: datetime) -> list[str]:
    """The processes of this host holding unexpired claims that no longer exist: their
    events may be claimed at once. Claimed rows are few (a partial index holds them)."""
    nodes = s.scalars(
        select(InboxEvent.dispatch_node)
        .where(InboxEvent.dispatch_node.is_not(None), InboxEvent.dispatch_until >= now)
        .distinct()
    )
    return [node for node in nodes if node is not None and ended_here(node)]
