"""Outbox delivery: take messages in batches, deliver them, acknowledge in batches.

Messages reach a connector's buffer two ways:

* **hand-over** (the fast path): while nothing waits in the queue, a send in this
  process reserves room here (``reserve``, from the enqueue's transaction); its row is
  inserted already ``in_flight`` under a lease of this worker and handed over in
  memory once committed (``hand_over``) -- no claim query;
* the **dispatcher** claims due messages in batches (one statement, a lease token per
  batch): messages of other processes and nodes, retries falling due, and whatever did
  not fit when it was sent. A batch holds ``batch_size`` messages, or -- after a claim
  whose connectors all deliver fast (``outbox_pace``) -- as many as the slowest of them
  may buffer, so a fast connector's backlog drains in a few claims instead of keeping
  pace with its producer forever (and its new messages go back to hand-over). It skips
  connectors whose unit cannot deliver or whose buffer is full, and *saturated* ones
  (all their workers busy with deliveries that have run a margin or more: their waiting
  messages are given back for nodes with free workers, ``_give_back_surplus``); when
  nothing is due it sleeps until the next message falls due, a local enqueue wakes it,
  or ``poll_seconds`` pass.

A connector that got messages queued because its buffer was full is *behind*: its new
messages are queued too (not handed over past the older ones) until a claim that saw
them finds nothing more due.

**Workers**, at most the connector's concurrency (param ``runtime.concurrency``,
default 16) per connector -- one until the connector's provider has opened and the
param is known -- take messages from the buffer and call the provider's ``deliver``.
A message is not started once its lease is down to a margin: it goes back untouched
(no attempt counted), as does a buffered message whose lease is down to half a lease
before a worker is free (early enough for the give-back to be written in time).

**Leases are kept** while deliveries run: every half margin one statement renews the
lease of each running delivery with less than half a lease left (``OutboxStore.renew``,
fenced by its token), so a delivery may take longer than the lease -- what bounds it is
the connector's own timeout and, for a call that never returns, ``delivery_timeout_seconds``
(then it is a transient failure, retried). Only a node that died, or whose event loop
hangs, stops renewing: its messages are claimed by another node once their leases
expire, and its late acks are rejected. A lease that ran out meanwhile (the database
was unreachable for that long) is not revived: that delivery's ack is rejected and
the message is delivered again (at-least-once).

The outcome becomes an ack (``outbox_outcomes``); an unexpected exception counts as a
crash of the unit and the message is retried -- until it has crashed the unit
``crash_limit`` times within the supervisor's crash window (on this node): then it goes
to ``dead``. The **acker** (``outbox_acker``) writes every ack that accumulated while it
was busy, fenced by lease token; the event router is woken when loopback events were added.

Claims, acks and enqueues run in the ``GroupCommitter``'s thread, in the same group
transactions: on SQLite that makes one writer (no lock contention, whose busy-wait
sleeps would dominate) and one fsync for everything that happened meanwhile.

``stop()`` stops taking messages, gives buffered (not yet started) messages back (no
attempt counted), lets running deliveries finish for up to ``grace_seconds``, then
cancels them -- each of those is an attempt made (its request may have gone out, and a
delivery longer than the grace must not be sent again and again, across restarts,
without ever using up its attempts): ``retrying`` at once, "cut off by the node's
shutdown", or ``dead`` if that was its last attempt -- and flushes the acks: after a
graceful shutdown no message is left leased.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..kernel import call_async
from ..kernel.errors import ConnectorError
from ..kernel.redaction import get_logger
from ..service.outbox_enqueue import Lease, Send
from ..store import OutageLog, database_unavailable, utcnow
from ..store.bulk import DriverValues
from ..store.group_commit import GroupCommitter
from .outbox_acker import COALESCE_SECONDS, Acker
from .outbox_handover import HandOvers
from .outbox_outcomes import ack_for, checked, crashed, cut_off, failed, overran
from .outbox_pace import Pace
from .outbox_store import Ack, AckReport, Claimed, ClaimResult, OutboxStore
from .supervisor import Supervisor, UnitUnavailable
from .units import Unit
from .waits import wait_until_set

log = get_logger(__name__)


@dataclass(frozen=True)
class DeliveryConfig:
    batch_size: int = 256
    max_in_flight: int = 2048
    lease_seconds: float = 60.0
    delivery_timeout_seconds: float = 3600.0  # a delivery still running then is given up
    poll_seconds: float = 1.0
    grace_seconds: float = 10.0
    crash_limit: int = 3  # a message that crashed its unit this often goes to dead


@dataclass
class DeliveryStats:
    claimed: int = 0  # taken into a buffer, by a claim or a hand-over
    handed_over: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    rejected: int = 0
    crashes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def outcomes(self) -> dict[str, int]:
        """What became of the claimed messages, by outcome (for ``/metrics``)."""
        return {
            "delivered": self.delivered,
            "retried": self.retried,
            "dead": self.dead,
            "released": self.released,
            "rejected": self.rejected,  # a late ack of a lease that had expired
        }


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
        self._margin = min(5.0, self.config.lease_seconds / 10)
        self._buffers: dict[str, collections.deque[Claimed]] = {}
        self._delivering: dict[int, Claimed] = {}  # id() -> a message being delivered
        self._running: dict[str, int] = {}  # connector -> deliveries under way
        self._last_start: dict[str, float] = {}  # connector -> when its last one started
        self._saturated: frozenset[str] = frozenset()  # see _give_back_surplus
        self._keeper: asyncio.Task[None] | None = None
        self._workers: dict[str, int] = {}
        self._worker_tasks: set[asyncio.Task[None]] = set()
        self._outstanding = 0  # taken and not yet acknowledged
        self._acker = Acker(store, committer, 4 * self.config.batch_size, self._written)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._want_room = False  # the dispatcher left due work for lack of room
        self._handovers = HandOvers()
        self._pace = Pace(
            self.config.batch_size, self.config.max_in_flight, self.config.lease_seconds
        )
        self._claim_limit = self.config.batch_size
        self._claim_outages = OutageLog(log, "no message is claimed")

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._saturated = frozenset()  # (a stop ended every delivery)
        self._handovers.open()
        self._acker.start()
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="jackfield-outbox")
        self._keeper = asyncio.create_task(self._keep_leases(), name="jackfield-outbox-leases")

    async def stop(self) -> None:
        """Graceful: nothing stays leased (see the module docstring)."""
        self._handovers.close()
        self._stopping = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.grace_seconds
        while self._handovers.reserved and loop.time() < deadline:  # hand-overs on their way
            await asyncio.sleep(0.005)  # (each is released as it arrives)
        for buffer in self._buffers.values():
            while buffer:
                self._push(Ack(buffer.popleft(), "release"))
        if self._worker_tasks:
            _, late = await asyncio.wait(self._worker_tasks, timeout=self.config.grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._keeper is not None:  # (kept the leases of the deliveries finishing)
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await self._acker.stop(self.config.grace_seconds)
        self._loop = self._wakeup = None

    def abandon(self) -> None:
        """The loop it ran in closed without ``stop()`` (blocking: run it in a thread):
        no more hand-overs; the acks not yet written are written, and the messages
        waiting in its buffers released. One being delivered when the loop closed stays
        leased until its lease expires: whether it went out is not known."""
        self._handovers.close()
        waiting = [
            Ack(claimed, "release") for buffer in self._buffers.values() for claimed in buffer
        ]
        self._buffers.clear()
        self.store.ack(self._acker.take() + waiting)
        self._loop = self._wakeup = None

    def wake(self) -> None:
        """Something may be due now (a local enqueue, a unit back up); thread-safe."""
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        try:
            loop.call_soon_threadsafe(wakeup.set)
        except RuntimeError:  # the loop has closed: the runtime is stopping
            pass

    # -- hand-over (``service.outbox_enqueue.DirectDelivery``) --------------------------
    def reserve(self, connector_id: str, count: int) -> Lease | None:
        """Room for new messages of a connector whose unit delivers (``outbox_handover``
        has the rules); what does not fit is queued."""
        if self._loop is None or self._loop.is_closed():  # it ended without stop(): queued,
            return None  # not leased to a worker that will never take it
        unit = self.supervisor.units.get(connector_id)
        if unit is None or not unit.deliverable or self.supervisor.changing(connector_id):
            return None  # the dispatcher creates the unit / waits for it (to reload)
        if connector_id in self._saturated:
            return None  # queued: a node with a free worker takes it
        granted = self._handovers.reserve(
            connector_id,
            count,
            node_room=self.config.max_in_flight - self._outstanding,
            buffer_room=self._pace.room(connector_id) - len(self._buffers.get(connector_id, ())),
        )
        if not granted:
            return None
        expires = utcnow() + timedelta(seconds=self.config.lease_seconds)
        return Lease(connector_id, str(uuid.uuid4()), expires, granted)

    def cancel(self, lease: Lease) -> None:
        """The enqueue failed: nothing was inserted under the lease."""
        self._handovers.settle(lease.connector_id, lease.count)

    def hand_over(
        self,
        connector_id: str,
        organization_id: str,
        lease: Lease,
        sends: Sequence[Send],
        created_at: datetime,
    ) -> None:
        loop = self._loop
        try:
            if loop is None:
                raise RuntimeError("not running")
            loop.call_soon_threadsafe(
                self._take_over, connector_id, organization_id, lease, sends, created_at
            )
        except RuntimeError:  # stopped meanwhile: the lease expires, then anyone claims
            self._handovers.settle(connector_id, lease.count)

    def _take_over(
        self,
        connector_id: str,
        organization_id: str,
        lease: Lease,
        sends: Sequence[Send],
        created_at: datetime,
    ) -> None:
        self._handovers.settle(connector_id, lease.count)
        token, expires = lease.token, lease.expires_at
        read_json = DriverValues.read_json
        for send in sends:
            message = Claimed(
                send.envelope_id,
                connector_id,
                organization_id,
                send.operation,
                read_json(send.payload_json),  # exactly what was stored, not the caller's dict
                1,
                created_at,
                token,
                expires,
            )
            if self._stopping:
                self._outstanding += 1
                self._push(Ack(message, "release"))
            else:
                self._accept(message)
        self.stats.handed_over += len(sends)

    # -- claiming -----------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        assert self._wakeup is not None
        while not self._stopping:
            self._wakeup.clear()
            room = self.config.max_in_flight - self._outstanding - self._handovers.reserved
            limit = min(room, self._claim_limit)
            if not self.supervisor.reconciled:  # (it may have left units failed)
                limit = 0  # its first reconcile wakes us
            room_of = self._pace.room
            full = {cid for cid, buf in self._buffers.items() if len(buf) >= room_of(cid)}
            exclude = self.supervisor.blocked() | full | self._saturated
            claimed: list[Claimed] = []
            more, due = False, None
            if limit > 0:
                try:
                    result = await self.committer.run(
                        functools.partial(self._claim, limit, frozenset(exclude))
                    )
                    claimed, more, due = result.claimed, result.more, result.next_due
                    self._claim_outages.recovered()
                except SQLAlchemyError as exc:  # e.g. the database restarting: try again
                    if database_unavailable(exc):  # (logged as it begins, a minute, ends)
                        self._claim_outages.failed(exc)
                    else:
                        log.warning("outbox claim failed: %s", exc)
                    await asyncio.sleep(self.config.poll_seconds)
                    continue
                except Exception:  # a bug must not end delivery for every connector
                    log.exception("outbox claim failed")
                    await asyncio.sleep(self.config.poll_seconds)
                    continue
            for message in claimed:
                self._accept(message)
            if claimed:  # the next claim may take what these connectors' buffers hold
                room_of = self._pace.room
                self._claim_limit = min(room_of(cid) for cid in {m.connector_id for m in claimed})
            self._want_room = limit < self.config.batch_size or bool(full)
            if more:
                await asyncio.sleep(0)  # more may be due: claim again, letting others run
                continue
            await self._idle(due)
            # let more work gather before the next claim: fewer, bigger transactions
            # (and gaps in which other writers get the SQLite write lock)
            await asyncio.sleep(COALESCE_SECONDS)

    def _claim(self, limit: int, exclude: frozenset[str], session: Session) -> ClaimResult:
        """Runs in the committer's thread, in order with the enqueues' writes."""
        started = self._handovers.claim_started()
        result = self.store.claim_due(limit, self.config.lease_seconds, exclude, session)
        if not result.more:
            self._handovers.claim_came_up_short(started, exclude)
        return result

    async def _idle(self, due: datetime | None) -> None:
        """Sleep until woken, until the next message falls due, or ``poll_seconds``."""
        assert self._wakeup is not None
        timeout = self.config.poll_seconds
        if due is not None:
            timeout = min(timeout, max(0.0, (due - utcnow()).total_seconds()))
        if timeout > 0:
            await wait_until_set(self._wakeup, timeout)

    def _accept(self, message: Claimed) -> None:
        self.stats.claimed += 1
        self._outstanding += 1
        cid = message.connector_id
        buffer = self._buffers.get(cid)
        if buffer is None:
            buffer = self._buffers[cid] = collections.deque()
        buffer.append(message)
        if self._workers.get(cid, 0) - self._running.get(cid, 0) < len(buffer):
            self._staff(cid, self.supervisor.unit_for_delivery(cid, message.organization_id))

    def _cap(self, cid: str, unit: Unit | None) -> int:
        """How many deliveries the connector may have under way on this node: its
        concurrency -- or, while its provider is not open (the cap is one of its params,
        read on open), one more than are running: deliveries through the settings before
        a reload may still run, and must not keep the worker that opens the new provider
        from starting."""
        if unit is not None and unit.outbound is not None:
            return unit.concurrency
        return self._running.get(cid, 0) + 1

    def _staff(self, cid: str, unit: Unit) -> None:
        """Start workers for the connector's buffered messages, up to its cap (``_cap``).
        A worker busy with a delivery is not free for them (a long one would hold them
        up)."""
        cap = self._cap(cid, unit)
        wanted = min(cap, self._running.get(cid, 0) + len(self._buffers.get(cid, ())))
        running = self._workers.get(cid, 0)
        if running >= wanted:
            return
        self._workers[cid] = wanted
        loop = asyncio.get_running_loop()
        for _ in range(wanted - running):
            task = loop.create_task(self._work(cid))
            self._worker_tasks.add(task)
            task.add_done_callback(self._worker_tasks.discard)

    # -- delivering ---------------------------------------------------------------------
    async def _work(self, cid: str) -> None:
        buffer = self._buffers[cid]
        try:
            while buffer:
                await self._run(buffer)
        finally:
            self._workers[cid] -= 1
            if self._workers[cid] == 0 and not buffer:
                del self._workers[cid]
                self._buffers.pop(cid, None)

    async def _run(self, buffer: collections.deque[Claimed]) -> None:
        """Deliver the messages at the head of ``buffer`` that share its first one's
        lease, starting none after the lease expiry less a margin (their deadline to
        start: they are not renewed until they are)."""
        head = buffer[0]
        unit = self.supervisor.unit_for_delivery(head.connector_id, head.organization_id)
        token = head.lease_token
        budget = (head.lease_expires_at - utcnow()).total_seconds() - self._margin
        changing = self.supervisor.changing
        if not unit.deliverable or budget <= 0 or changing(head.connector_id):
            # unit down, lease too short, or a change not yet loaded: claimed again later
            self._push(Ack(buffer.popleft(), "release"))
            return
        try:
            async with asyncio.timeout(budget):  # a provider's open may hang
                handle = await self.supervisor.outbound(unit)
        except (UnitUnavailable, TimeoutError):
            if buffer:  # (another worker of the connector may have emptied it meanwhile)
                self._push(Ack(buffer.popleft(), "release"))
            return
        self._staff(head.connector_id, unit)  # the concurrency is known now
        generation = unit.generation
        provider = handle.acquire()
        refill = self._pace.room(head.connector_id) - 1
        ceiling = self.config.delivery_timeout_seconds
        current: Claimed | None = None
        clock = asyncio.get_running_loop().time
        started, done = clock(), 0
        cid, running = head.connector_id, self._running
        deadline = started + budget
        try:
            # One timer for the whole batch, moved on before a delivery when it has less
            # than the ceiling less a second left (so about once a second at most): each
            # delivery gets between that and the full ceiling. A timer per delivery cost
            # about a tenth of a fast connector's throughput (a timer handle armed and
            # cancelled per message, and the loop's heap filling with cancelled ones).
            async with asyncio.timeout(None) as limit:
                while (
                    buffer
                    and buffer[0].lease_token == token
                    and unit.generation == generation
                    and not changing(head.connector_id)
                    and not limit.expired()  # (a provider that swallowed its cancellation)
                ):
                    now = clock()
                    if now >= deadline:
                        while buffer and buffer[0].lease_token == token:
                            self._push(Ack(buffer.popleft(), "release"))  # claimed again
                        break
                    current = buffer.popleft()
                    if self._want_room and len(buffer) == refill:
                        self.wake()  # no longer full: the dispatcher may claim for it again
                    if (limit.when() or 0.0) < now + ceiling - 1.0:
                        limit.reschedule(now + ceiling)
                    self._delivering[id(current)] = current  # its lease is kept meanwhile
                    running[cid] = running.get(cid, 0) + 1
                    self._last_start[cid] = now
                    try:  # a provider may override deliver() with a sync method
                        outcome = checked(await call_async(provider.deliver, current.envelope()))
                    except (TimeoutError, ConnectorError) as exc:
                        outcome = failed(exc)
                    except Exception as exc:  # noqa: BLE001 - the unit crashed, not the worker
                        self.stats.crashes += 1
                        envelope_id = current.envelope_id
                        self.supervisor.report_crash(unit, generation, exc, envelope_id)
                        times = unit.crashes_caused_by(envelope_id)
                        outcome = crashed(exc, times, self.config.crash_limit)
                    finally:
                        self._ended(cid, current)
                    self.supervisor.note_outcome(unit, generation, outcome)
                    self._push(ack_for(current, unit.policy, outcome))
                    current = None
                    done += 1
        except TimeoutError:  # the delivery under way ran past the ceiling
            if current is None:
                raise
            outcome = overran(ceiling)
            self.supervisor.note_outcome(unit, generation, outcome)
            self._push(ack_for(current, unit.policy, outcome))
            done += 1
        except asyncio.CancelledError:
            if current is not None:  # cancelled mid-delivery by stop(): an attempt made
                self._push(ack_for(current, unit.policy, cut_off(), at_once=True))
            raise
        finally:
            self._pace.note(head.connector_id, done, clock() - started, unit.concurrency)
            await handle.release()

    def _ended(self, cid: str, message: Claimed) -> None:
        """A delivery is over (however it ended): its lease is no longer kept, and its
        worker is free -- a connector saturated until now may be claimed for again."""
        self._delivering.pop(id(message), None)
        self._running[cid] -= 1
        if cid in self._saturated:
            self._saturated -= {cid}
            self.wake()

    # -- keeping leases -----------------------------------------------------------------
    async def _keep_leases(self) -> None:
        """Every half margin: renew the running deliveries' leases that are down to half a
        lease (one statement for all of them, a statement every half lease or so while
        any runs), and give back the buffered messages whose leases are down to half a
        lease too. A delivery starts with at least the margin left, so its lease is
        renewed before it expires. A give-back has as long as a renewal to be written: sent
        with only the margin left, a busy database (a group commit taking longer) wrote it
        after the lease had run out -- refused, and the next claim counted an attempt the
        message never had."""
        half_lease = timedelta(seconds=self.config.lease_seconds / 2)
        while True:
            await asyncio.sleep(self._margin / 2)
            by = utcnow() + half_lease
            self._give_back_surplus()
            self._give_back_expiring(by)
            due = [m for m in self._delivering.values() if m.lease_expires_at < by]
            if not due:
                continue
            try:
                renew = functools.partial(self.store.renew, due, self.config.lease_seconds)
                expires, renewed = await self.committer.run(renew)
            except SQLAlchemyError as exc:  # tried again next time, while the leases last
                if not database_unavailable(exc):  # (an outage is logged by the claims)
                    log.warning("renewing %d leases failed: %s", len(due), exc)
                continue
            except Exception:  # a bug must not end delivery
                log.exception("renewing %d leases failed", len(due))
                continue
            for message in due:
                if (message.connector_id, message.envelope_id, message.lease_token) in renewed:
                    message.lease_expires_at = expires
                elif self._delivering.pop(id(message), None) is not None:  # still running
                    log.warning(
                        "the lease of %s ran out while it was being delivered: its outcome"
                        " will not be recorded (it is delivered again)",
                        message.envelope_id,
                    )

    def _give_back_surplus(self) -> None:
        """Find the *saturated* connectors -- all their workers busy with deliveries that
        started a margin ago or more -- give back the messages waiting in their buffers
        (no attempt counted) and keep them out of this node's claims and hand-overs until
        one of those deliveries ends. A worker may not be free for as long as a delivery
        takes (minutes): meanwhile another node with free workers takes those messages,
        where this one would hold them (and, giving them back as their leases run low,
        claim them straight back) while the other nodes sit idle. Deliveries that are
        quick never all run that long, so fast connectors are not affected."""
        loop = asyncio.get_running_loop()
        long_ago = loop.time() - self._margin
        saturated: set[str] = set()
        for cid, running in list(self._running.items()):
            if running <= 0:
                del self._running[cid], self._last_start[cid]
                continue
            cap = self._cap(cid, self.supervisor.units.get(cid))
            if running >= cap and self._last_start[cid] <= long_ago:
                saturated.add(cid)
                buffer = self._buffers.get(cid)
                while buffer:
                    self._push(Ack(buffer.popleft(), "release"))
        self._saturated = frozenset(saturated)

    def _give_back_expiring(self, cutoff: datetime) -> None:
        """Release buffered messages whose leases expire by ``cutoff``: while all of a
        connector's workers are busy with long deliveries, released in time they cost no
        attempt; left to expire, they would be claimed again with one counted for a
        delivery they never had."""
        for buffer in self._buffers.values():
            if not any(m.lease_expires_at <= cutoff for m in buffer):
                continue
            kept = []
            for message in buffer:
                if message.lease_expires_at > cutoff:
                    kept.append(message)
                else:
                    self._push(Ack(message, "release"))
            buffer.clear()  # (in place: the connector's workers hold this deque)
            buffer.extend(kept)

    # -- acknowledging ------------------------------------------------------------------
    def _push(self, ack: Ack) -> None:
        self._acker.push(ack)

    def _written(self, acks: list[Ack], reports: list[AckReport]) -> None:
        """Acks were recorded (or rejected): count them, wake who has work now."""
        self._outstanding -= len(acks)
        events, claimable = 0, False
        by_kind = self.stats.by_kind
        for report in reports:
            for ack in report.applied:
                by_kind[ack.kind] = by_kind.get(ack.kind, 0) + 1
                claimable = claimable or ack.kind in ("retrying", "release")
            self.stats.rejected += len(report.rejected)
            events += report.events_added
        self.stats.delivered = by_kind.get("delivered", 0)
        self.stats.retried = by_kind.get("retrying", 0)
        self.stats.dead = by_kind.get("dead", 0)
        self.stats.released = by_kind.get("release", 0)
        if events:
            self.on_events()
        if self._want_room or claimable:
            self.wake()  # room for more claims, or messages to claim again (when due)


__all__ = ["DeliveryConfig", "DeliveryStats", "OutboxWorker"]
