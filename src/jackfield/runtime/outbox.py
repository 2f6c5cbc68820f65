"""Outbox delivery: claim due messages in batches, deliver them, acknowledge in batches.

Three kinds of tasks share the work on the event loop:

* the **dispatcher** claims up to ``batch_size`` due messages at a time (one
  transaction, a lease token per batch) into a buffer per connector, skipping
  connectors whose unit cannot deliver or whose buffer is full; when nothing is due it
  sleeps until the next message falls due, a local enqueue wakes it, or
  ``poll_seconds`` pass (work enqueued by another node);
* **workers**, at most the connector's concurrency (param ``runtime.concurrency``,
  default 16) per connector, take messages from that buffer and call the provider's
  ``deliver``. The outcome is turned into an ack here: retry times come from the
  connector's ``RetryPolicy``; an unexpected exception counts as a crash of the unit
  and the message is retried;
* the **acker** writes every ack that accumulated while it was busy in one transaction
  (fenced by lease token), then wakes the event router when loopback events were added.

Claims and acks run in the ``GroupCommitter``'s thread, in the same group transactions
as the enqueues: on SQLite that makes one writer (no lock contention, whose busy-wait
sleeps would dominate) and one fsync for everything that happened meanwhile.

``stop()`` stops claiming, gives buffered (not yet started) messages back, lets running
deliveries finish for up to ``grace_seconds`` (then cancels them and gives them back
too) and flushes the acks: after a graceful shutdown no message is left leased.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..kernel.envelope import (
    AuthFailed,
    Delivered,
    DeliveryOutcome,
    Permanent,
    Retry,
    outcome_from_error,
)
from ..kernel.errors import ConnectorError, RetryClass
from ..secrets import redactor
from ..store import utcnow
from ..store.group_commit import GroupCommitter
from .outbox_store import Ack, AckReport, Claimed, OutboxStore
from .retry import RetryPolicy
from .supervisor import Supervisor, UnitUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
COALESCE_SECONDS = 0.005
_PRIMITIVES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class DeliveryConfig:
    batch_size: int = 256
    max_in_flight: int = 2048
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    grace_seconds: float = 10.0


@dataclass
class DeliveryStats:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    rejected: int = 0
    crashes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class OutboxWorker:
    def __init__(
        self,
        store: OutboxStore,
        supervisor: Supervisor,
        committer: GroupCommitter,
        config: DeliveryConfig | None = None,
        *,
        on_events: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.committer = committer
        self.supervisor = supervisor
        self.config = config or DeliveryConfig()
        self.on_events = on_events  # loopback events were committed: wake the router
        self.stats = DeliveryStats()
        self._buffers: dict[str, collections.deque[Claimed]] = {}
        self._workers: dict[str, int] = {}
        self._worker_tasks: set[asyncio.Task[None]] = set()
        self._outstanding = 0  # claimed and not yet acknowledged
        self._acks: list[Ack] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._ack_ready: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._acker: asyncio.Task[None] | None = None
        self._stopping = False
        self._writing = False

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup, self._ack_ready = asyncio.Event(), asyncio.Event()
        self._stopping = False
        self._acker = asyncio.create_task(self._ack_loop(), name="jackfield-outbox-acks")
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="jackfield-outbox")

    async def stop(self) -> None:
        """Graceful: nothing stays leased (see the module docstring)."""
        self._stopping = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        for buffer in self._buffers.values():
            while buffer:
                self._push(Ack(buffer.popleft(), "release"))
        if self._worker_tasks:
            _, late = await asyncio.wait(self._worker_tasks, timeout=self.config.grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        deadline = asyncio.get_running_loop().time() + self.config.grace_seconds
        while (self._acks or self._writing) and asyncio.get_running_loop().time() < deadline:
            if self._ack_ready is not None:
                self._ack_ready.set()
            await asyncio.sleep(0.005)
        if self._acker is not None:
            self._acker.cancel()
            await asyncio.gather(self._acker, return_exceptions=True)
        self._loop = self._wakeup = self._ack_ready = None

    def wake(self) -> None:
        """Something may be due now (a local enqueue, a unit back up); thread-safe."""
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        try:
            loop.call_soon_threadsafe(wakeup.set)
        except RuntimeError:  # the loop has closed: the runtime is stopping
            pass

    # -- claiming -----------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        assert self._wakeup is not None
        while not self._stopping:
            self._wakeup.clear()
            room = self.config.max_in_flight - self._outstanding
            limit = min(room, self.config.batch_size)
            exclude = self.supervisor.blocked() | {
                cid for cid, buf in self._buffers.items() if len(buf) >= self.config.batch_size
            }
            claimed: list[Claimed] = []
            due = None
            if limit > 0:
                try:
                    claimed, due = await self._in_group(
                        functools.partial(
                            self.store.claim_due, limit, self.config.lease_seconds, exclude
                        )
                    )
                except SQLAlchemyError as exc:  # e.g. the database restarting: try again
                    log.warning("outbox claim failed: %s", exc)
                    await asyncio.sleep(self.config.poll_seconds)
                    continue
            for message in claimed:
                self._accept(message)
            if limit > 0 and len(claimed) == limit:
                await asyncio.sleep(0)  # more may be due: claim again, letting others run
                continue
            await self._idle(due)
            # let more work gather before the next claim: fewer, bigger transactions
            # (and gaps in which other writers get the SQLite write lock)
            await asyncio.sleep(COALESCE_SECONDS)

    async def _idle(self, due: datetime | None) -> None:
        """Sleep until woken, until the next message falls due, or ``poll_seconds``."""
        assert self._wakeup is not None
        timeout = self.config.poll_seconds
        if due is not None:
            timeout = min(timeout, max(0.0, (due - utcnow()).total_seconds()))
        if timeout <= 0:
            return
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass

    def _accept(self, message: Claimed) -> None:
        self.stats.claimed += 1
        self._outstanding += 1
        cid = message.connector_id
        unit = self.supervisor.unit_for_delivery(cid, message.organization_id)
        buffer = self._buffers.setdefault(cid, collections.deque())
        buffer.append(message)
        running = self._workers.get(cid, 0)
        if running < min(unit.concurrency, len(buffer)):
            self._workers[cid] = running + 1
            task = asyncio.get_running_loop().create_task(self._work(cid))
            self._worker_tasks.add(task)
            task.add_done_callback(self._worker_tasks.discard)

    # -- delivering ---------------------------------------------------------------------
    async def _work(self, cid: str) -> None:
        buffer = self._buffers[cid]
        current: Claimed | None = None
        try:
            while buffer:
                current = buffer.popleft()
                if len(buffer) == self.config.batch_size - 1:
                    self.wake()  # no longer full: the dispatcher may claim for it again
                ack = await self._deliver(current)
                current = None
                self._push(ack)
        except asyncio.CancelledError:
            if current is not None:  # cancelled mid-delivery by stop(): give it back
                self._push(Ack(current, "release"))
            raise
        finally:
            self._workers[cid] -= 1
            if self._workers[cid] == 0 and not buffer:
                del self._workers[cid]
                self._buffers.pop(cid, None)

    async def _deliver(self, message: Claimed) -> Ack:
        unit = self.supervisor.unit_for_delivery(message.connector_id, message.organization_id)
        remaining = (message.lease_expires_at - utcnow()).total_seconds()
        margin = min(5.0, self.config.lease_seconds / 10)
        if not unit.deliverable or remaining <= margin:
            return Ack(message, "release")  # the unit went down, or the lease is too short
        try:
            handle = await self.supervisor.outbound(unit)
        except UnitUnavailable:
            return Ack(message, "release")
        generation = unit.generation
        provider = handle.acquire()
        outcome: DeliveryOutcome
        try:
            async with asyncio.timeout(remaining - margin):  # no extra task per delivery
                outcome = await provider.deliver(message.envelope())
        except TimeoutError:
            outcome = Retry(
                RetryClass.TRANSIENT,
                "DeliveryTimeout",
                f"delivery took longer than {remaining - margin:.0f}s",
            )
        except ConnectorError as exc:
            outcome = outcome_from_error(exc)
        except Exception as exc:  # noqa: BLE001 - the unit crashed, not the worker
            self.stats.crashes += 1
            self.supervisor.report_crash(unit, generation, exc)
            outcome = Retry(RetryClass.TRANSIENT, type(exc).__name__, f"unexpected error: {exc}")
        finally:
            await handle.release()
        self.supervisor.note_outcome(unit, generation, outcome)
        return self._ack_for(message, unit.policy, outcome)

    def _ack_for(self, message: Claimed, policy: RetryPolicy, outcome: DeliveryOutcome) -> Ack:
        if isinstance(outcome, Delivered):
            return Ack(
                message, "delivered", result=_json_safe(outcome.result), events=outcome.events
            )
        error = redactor.redact(outcome.message)
        if isinstance(outcome, Permanent):
            return Ack(message, "dead", error_class=outcome.error_class, last_error=error)
        retry_after = outcome.retry_after if isinstance(outcome, Retry) else None
        if isinstance(outcome, AuthFailed | Retry) and not policy.exhausted(message.attempts):
            delay = policy.delay(message.attempts, retry_after)
            return Ack(
                message,
                "retrying",
                error_class=outcome.error_class,
                last_error=error,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
            )
        return Ack(
            message,
            "dead",
            error_class=outcome.error_class,
            last_error=f"gave up after {message.attempts} attempts: {error}",
        )

    # -- acknowledging ------------------------------------------------------------------
    def _push(self, ack: Ack) -> None:
        self._acks.append(ack)
        if self._ack_ready is not None:
            self._ack_ready.set()

    async def _ack_loop(self) -> None:
        assert self._ack_ready is not None
        while True:
            await self._ack_ready.wait()
            await asyncio.sleep(COALESCE_SECONDS)  # gather the acks of this burst
            self._ack_ready.clear()
            while self._acks:
                await self._write_batch()

    async def _write_batch(self) -> None:
        limit = 4 * self.config.batch_size
        batch, self._acks = self._acks[:limit], self._acks[limit:]
        self._writing = True
        try:
            report = await self._write(batch)
        finally:
            self._writing = False
        self._outstanding -= len(batch)
        for ack in report.applied:
            self.stats.by_kind[ack.kind] = self.stats.by_kind.get(ack.kind, 0) + 1
        self.stats.delivered = self.stats.by_kind.get("delivered", 0)
        self.stats.retried = self.stats.by_kind.get("retrying", 0)
        self.stats.dead = self.stats.by_kind.get("dead", 0)
        self.stats.released = self.stats.by_kind.get("release", 0)
        self.stats.rejected += len(report.rejected)
        if report.events_added:
            self.on_events()
        self.wake()  # room for more claims

    async def _write(self, batch: list[Ack]) -> AckReport:
        """One transaction for the batch; if it fails, each ack on its own, so one bad
        ack (say, a result the database cannot store) does not hold up the others. An
        ack that cannot be written leaves its message leased: it is delivered again
        when the lease expires (at-least-once)."""
        try:
            report = await self._in_group(functools.partial(self.store.ack, batch))
        except SQLAlchemyError as exc:
            log.warning("acknowledging %d messages failed (%s); one by one", len(batch), exc)
            report = AckReport()
            for ack in batch:
                try:
                    single = await self._in_group(functools.partial(self.store.ack, [ack]))
                except SQLAlchemyError as error:
                    log.error("could not record %s: %s", ack.claimed.envelope_id, error)
                    continue
                report.applied += single.applied
                report.rejected += single.rejected
                report.events_added += single.events_added
        for ack in report.rejected:
            log.info(
                "ack of %s rejected: its lease expired and was taken over",
                ack.claimed.envelope_id,
            )
        return report

    async def _in_group(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in the next group transaction; resume once it committed."""
        return await asyncio.wrap_future(self.committer.submit_async(fn))


def _json_safe(result: dict[str, Any]) -> dict[str, Any]:
    """A provider's result as JSON can store it (rarely anything but plain values)."""
    if all(isinstance(v, _PRIMITIVES) for v in result.values()):
        return result
    safe: dict[str, Any] = json.loads(json.dumps(result, default=str))
    return safe
