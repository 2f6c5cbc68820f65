"""The supervisor: one unit per running connector, restarted with backoff when it crashes.

Units exist for every enabled connector whose provider has an inbound source (polling
or subscription) and for every connector with outbound traffic. A crash -- an inbound
source raising something other than a ``ConnectorError`` (a provider's bug), a provider
failing to open for any other reason than an outage (below), or an unexpected exception
in a delivery -- retires the unit's
current generation (its inbound task is cancelled, its outbound provider closed once
idle) and schedules a restart after a capped, jittered exponential
backoff (``Backoff``: 1 s doubling to 60 s by default). A unit that stayed up for
``healthy_reset`` seconds starts its backoff from the beginning again. A crashed unit's
readiness says why it does no work: what its error stands for (``readiness_for``), else
``degraded``; a restart that works makes it ``ready`` again. More than ``crash_limit``
faults within ``crash_window`` seconds mark it ``failed`` -- a fault is a crash without a
cause, or a message whose delivery crashed the unit, counted once however often it did
(``Unit.faults``; the outbox sends such a message to dead after a few crashes, so one
or two bad messages never fail their connector). A failed unit stays down until an
operator restarts it (``POST /api/connectors/{id}/restart`` or ``jackfield runtime
restart``), which writes a request the supervisor polls for -- also across a restart
of its node: the node's next process takes over its ``failed`` rows
(``UnitStore.failed_before``) and keeps those units failed, delivering and polling
nothing (its outbox claims nothing before the first reconcile that read them went
through, ``reconciled``, however long the database fails it), until such a request (an
edit of the connector's params leaves a failed unit failed, as it does while the node
runs; disabling it ends the unit, failed or not, also while its node is down:
``service.units.end_failed_units``).

An outage of the external system an inbound source reads from is no crash: a
``ConnectorError`` from ``poll`` or ``subscribe`` (``ConnectionFailedError``,
``TransientError``, ``RateLimitedError``, ``AuthError``, ...) leaves the unit
``running``, sets its readiness and ``last_error`` (``unit_health``), and the source
tries again on its own after the same capped, jittered backoff (a ``Retry-After`` is a
floor), for as long as it takes; an error that cannot pass by itself
(``PermanentError``, ``ConnectorConfigError``, ...) makes it ``misconfigured`` and is
retried at the backoff's cap (60 s), so that a fix outside Jackfield is noticed. A poll
that does not return within its deadline is such an outage too (``unreachable``; see
``inbound.polling``: the unit hands its lease over, and a sync poll stuck in its thread
is never joined by another). Once a poll or a batch succeeds, readiness is ``ready``
again and ``last_error`` cleared.

A provider whose ``open`` fails because its system is down (``ConnectionFailedError``,
``TransientError``, ``RateLimitedError``: retry class transient or rate limited) is in
such an outage too, not crashed (``_cannot_open``): the unit is ``restarting`` (with its
``next_restart_at``), its readiness ``unreachable`` or ``degraded``, and it opens again
after the same backoff, for as long as it takes -- never ``failed`` for it, so no
operator has to restart it once the system is back; its messages wait meanwhile.
Errors of its config or credentials at ``open`` (``ConnectorConfigError``,
``AuthError``, an unreadable secret) do not pass by themselves: they count as crashes
and end ``failed`` as above.

Each unit has its own lock and its own tasks, so one unit's crash never touches another.
State is persisted to ``runtime_units`` (coalesced, off the event loop), one row per
connector and node that runs a unit of it: each node's supervisor runs its own units
and writes only its own rows, rewrites them every heartbeat, and sweeps the rows of
nodes that are gone (but for ``failed`` ones, see ``UnitStore.sweep``).

Readiness says why a unit is not useful even though it runs: ``auth_failed`` (refused
credentials), ``missing_credential`` (a required secret param is empty),
``misconfigured`` (other invalid params), ``unreachable`` (connection failed),
``degraded`` (deliveries failing transiently), else ``ready``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..kernel import call_async
from ..kernel.config import secret_keys
from ..kernel.envelope import DeliveryOutcome
from ..kernel.errors import ConnectorError
from ..kernel.inbound import PollingSource, SubscriptionSource
from ..kernel.redaction import get_logger
from ..service.units import DOWN
from ..store import OutageLog, database_unavailable, utcnow
from ..store.group_commit import GroupCommitter
from .inbound import inbound_runner
from .retry import Backoff, RetryPolicy, positive_int
from .unit_health import UnitHealth, clip, is_outage
from .units import (
    ProviderHandle,
    Unit,
    UnitRecorder,
    UnitStore,
    readiness_for,
)
from .waits import wait_until_set

log = get_logger(__name__)


class UnitUnavailable(Exception):
    """The unit cannot deliver right now (crashed, failed, stopped or failed to open)."""


@dataclass(frozen=True)
class SupervisorConfig:
    backoff: Backoff = field(default_factory=Backoff)
    crash_limit: int = 5
    crash_window: float = 300.0
    healthy_reset: float = 600.0
    poll_seconds: float = 2.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 16
    heartbeat_seconds: float = 20.0


STALE_HEARTBEATS = 3
"""A unit row not rewritten for this many heartbeats belongs to a node that is gone."""


class Supervisor:
    def __init__(
        self,
        jf: Any,
        node_id: str,
        config: SupervisorConfig | None = None,
        *,
        committer: GroupCommitter,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.jf = jf
        self.node_id = node_id
        self.config = config or SupervisorConfig()
        self.on_change = on_change  # a unit became deliverable again: wake the outbox
        self.store = UnitStore(jf.db)
        self.units: dict[str, Unit] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.recorder = UnitRecorder(self.store, node_id, committer)
        self.health = UnitHealth(self.config.backoff, self.recorder.mark)
        self._outages = OutageLog(log, "the supervisor waits to read the connectors")
        self._classes: dict[str, Any] = {}  # connector id -> provider class (last reconcile)
        self._restarts: dict[str, int] | None = None  # ... -> restart generation (same)
        # the ``failed`` rows this node left before it started (None: not read yet), until
        # a reconcile has gone through every connector
        self._left_failed: dict[str, Any] | None = None
        self._reconciled = False
        self._next_heartbeat = 0.0
        self._changed: set[str] = set()  # changed in this process, not yet reconciled

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Reconcile once (units of inbound connectors start), then keep watching."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        await self._reconcile_or_wait()  # (the loop below tries again)
        self._task = asyncio.create_task(self._run(), name="jackfield-supervisor")

    async def stop(self) -> None:
        """Stop every unit (inbound tasks cancelled, providers closed) and persist it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for unit in self.units.values():  # failed stays failed (the next start keeps it)
            await self._shut(unit, "failed" if unit.liveness == "failed" else "stopped")
        await self.recorder.close()
        # a start() in this process begins afresh, as a new process would (a stopped
        # unit kept here would block its connector's delivery for good)
        self.units.clear()
        self._restarts = self._left_failed = None
        self._reconciled = False
        self._next_heartbeat = 0.0
        self._loop = self._wakeup = None

    async def abandon(self) -> None:
        """The loop it ran in closed without ``stop()``: close the providers its units
        opened, as far as another loop can (their tasks went with that loop, and so do
        async connections, which cannot be closed now); a new supervisor takes over."""
        for unit in self.units.values():
            handle, unit.outbound = unit.outbound, None
            if handle is not None:
                await handle.close(loop_ended=True)
        self.units.clear()

    def poke(self) -> None:
        """Reconcile now, e.g. after a restart request (thread-safe)."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # the loop closed: the runtime is stopping
                pass

    def connector_changed(self, connector_id: str) -> None:
        """A change to the connector committed in this process (thread-safe). Until the
        next reconcile has reloaded its unit, its messages wait (``changing``): one sent
        right after the change must not go out with the config before it."""
        self._changed.add(connector_id)
        self.poke()

    def changing(self, connector_id: str) -> bool:
        """Whether the connector changed and its unit has not caught up yet."""
        return connector_id in self._changed

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await wait_until_set(self._wakeup, self.config.poll_seconds)
            self._wakeup.clear()
            await self._reconcile_or_wait()

    async def _reconcile_or_wait(self) -> None:
        """Reconcile; a database error is tried again next round. An outage of the
        database is logged when it begins, a minute, and ends: not at every round."""
        try:
            await self.reconcile()
        except SQLAlchemyError as exc:
            if database_unavailable(exc):
                self._outages.failed(exc)
            else:
                log.warning("supervisor could not read the connectors: %s", exc)
        else:
            self._outages.recovered()

    async def reconcile(self) -> None:
        """Match units to connectors: start, reload, stop, and honour restart requests."""
        changed = set(self._changed)  # (what changes after the read below waits its turn)
        connectors = await asyncio.to_thread(self.store.connectors)
        if self._left_failed is None:  # first reconcile: what this node left failed
            self._left_failed = await asyncio.to_thread(self.store.failed_before, self.node_id)
        left_failed = self._left_failed or {}
        present = {c.id: c for c in connectors}
        self._classes = {c.id: self._provider_class(c) for c in connectors}
        known, self._restarts = self._restarts, {c.id: c.restart_generation for c in connectors}
        for connector_id, unit in list(self.units.items()):
            c = present.get(connector_id)
            if c is None or not c.is_enabled:
                await self._shut(unit, "stopped")
                del self.units[connector_id]
                if c is None:
                    self.recorder.forget(connector_id)
        counts: dict[str, int] | None = None
        for c in connectors:
            if not c.is_enabled:
                continue
            found = self.units.get(c.id)
            left = left_failed.get(c.id)
            if found is None and left is not None and left.restart_seen >= c.restart_generation:
                self._keep_failed(c, left)
                continue
            if found is None:
                # an outbound-only unit starts with its first message, or when an
                # operator asks for a restart after this node started
                requested = known is not None and c.restart_generation > known.get(c.id, 0)
                if not requested and not self._classify(Unit(c.id, c.organization_id)):
                    continue
                if counts is None:
                    counts = await asyncio.to_thread(self.store.restart_counts)
                new = self._create(c.id, c.organization_id, c.updated_at)
                new.restart_count = counts.get(c.id, 0)
                continue
            unit = found
            if unit.restart_seen < 0:  # created before any reconcile: nothing to act on
                unit.restart_seen = c.restart_generation
            if c.restart_generation > unit.restart_seen:
                await self.restart(unit, c.restart_generation)
            elif unit.config_stamp is None:
                # started for outbound work before this connector was looked at: adopt
                # it without a restart (a restart would disown deliveries in flight),
                # unless the connector changed after its provider read the config
                unit.config_stamp = c.updated_at
                if unit.opened_at is not None and c.updated_at >= unit.opened_at:
                    await self._reload(unit)
                elif self._classify(unit) and unit.deliverable and unit.inbound_task is None:
                    self._start_inbound(unit, restarting=False)
            elif unit.config_stamp != c.updated_at:
                unit.config_stamp = c.updated_at
                await self._reload(unit)
        first, self._reconciled, self._left_failed = not self._reconciled, True, {}
        if changed or first:
            self._changed -= changed
            self.on_change()  # their messages may be claimed (again)
        now = asyncio.get_running_loop().time()
        beat = now >= self._next_heartbeat
        if beat:  # rewrite every row of this node
            self._next_heartbeat = now + self.config.heartbeat_seconds
            for unit in self.units.values():
                self.recorder.mark(unit)
        await self.recorder.flush()
        if beat:  # ... and sweep the rows other nodes left behind
            stale = timedelta(seconds=STALE_HEARTBEATS * self.config.heartbeat_seconds)
            try:
                await asyncio.to_thread(self.store.sweep, self.node_id, utcnow() - stale)
            except SQLAlchemyError as exc:
                log.info("sweeping unit rows failed (next heartbeat tries again): %s", exc)

    # -- units --------------------------------------------------------------------------
    def unit_for_delivery(self, connector_id: str, organization_id: str) -> Unit:
        """The unit of a connector the outbox has work for (created and started if new)."""
        unit = self.units.get(connector_id)
        if unit is None:
            unit = self._create(connector_id, organization_id, None)
            if unit.inbound_capable is None:
                self.poke()  # a connector newer than the last reconcile: look at it now
        return unit

    @property
    def reconciled(self) -> bool:
        """Whether a reconcile went through every connector since ``start``: until then
        which units this node left ``failed`` is not known, and nothing is claimed."""
        return self._reconciled

    def blocked(self) -> set[str]:
        """Connectors whose messages must not be claimed now (crashed, failed, ...)."""
        down = {cid for cid, unit in self.units.items() if not unit.deliverable}
        return down | self._changed

    async def outbound(self, unit: Unit) -> ProviderHandle:
        """The unit's open outbound provider, opened on first use (single-flight).

        The open runs as a task of the unit's generation and is awaited, not locked
        around: a provider whose ``open`` hangs holds up only its own deliveries, never
        a restart or reload of the unit (which starts a new generation, whose first
        delivery opens afresh) nor the supervisor's other units."""
        handle = unit.outbound
        if handle is not None and not handle.retired:
            return handle
        opening = unit.opening
        if opening is None or opening[0] != unit.generation:
            if not unit.deliverable:
                raise UnitUnavailable(unit.connector_id)
            task = asyncio.ensure_future(self._open_outbound(unit, unit.generation))
            task.add_done_callback(_retrieve)  # its waiters may all have gone
            opening = unit.opening = (unit.generation, task)
        return await asyncio.shield(opening[1])

    async def _open_outbound(self, unit: Unit, generation: int) -> ProviderHandle:
        opened_at = utcnow()
        try:
            provider = await self._open(unit.connector_id)
        except Exception as exc:  # any other open failure than an outage: a crash
            if is_outage(exc):
                self._cannot_open(unit, generation, exc)
            else:
                self.report_crash(unit, generation, exc)
            raise UnitUnavailable(unit.connector_id) from exc
        finally:
            if unit.opening is not None and unit.opening[0] == generation:
                unit.opening = None
        if generation != unit.generation:  # restarted meanwhile: not ours to use
            await ProviderHandle(provider).close()
            raise UnitUnavailable(unit.connector_id)
        self._opened(unit, generation)
        config = provider.config
        unit.policy = self.config.policy.with_overrides(config)
        runtime = config.get("runtime")
        raw = runtime.get("concurrency") if isinstance(runtime, dict) else None
        unit.concurrency = positive_int(raw, self.config.concurrency)
        unit.opened_at = opened_at
        unit.outbound = ProviderHandle(provider)
        return unit.outbound

    def note_outcome(self, unit: Unit, generation: int, outcome: DeliveryOutcome) -> None:
        """A delivery's outcome, for the unit's readiness (``UnitHealth.note_outcome``):
        also one of a generation a reload retired while it was under way -- a reload
        keeps what deliveries showed (``_reload``), and that outcome is the latest news
        (a token refresh that failed for good during the delivery reloads the unit before
        the delivery ends). Not one from before a crash, an outage at open, an operator's
        restart or a stop (``_retire``), nor one older than what the unit showed last: a
        delivery of the old config ending after one of the new config (or a poll) is
        older news."""
        if self._newest(unit, generation):
            self.health.note_outcome(unit, outcome)

    @staticmethod
    def _newest(unit: Unit, generation: int) -> bool:
        """Whether news of ``generation`` is not older than what the unit shows: if so,
        news of older generations no longer is (``Unit.outcomes_since``)."""
        if generation < unit.outcomes_since:
            return False
        unit.outcomes_since = generation
        return True

    def report_crash(
        self, unit: Unit, generation: int, exc: BaseException, cause: str | None = None
    ) -> None:
        """Count a crash of ``generation`` (``cause``: the envelope id of the message whose
        delivery raised, if any); schedule the restart, or mark ``failed`` once the
        distinct faults in the window exceed the limit (``Unit.faults``)."""
        if generation != unit.generation or unit.liveness in DOWN:
            return  # already handled: that generation was retired, or the unit is down
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - unit.started_at >= self.config.healthy_reset:
            unit.consecutive_restarts = 0
        unit.crashes.append((now, cause))
        while unit.crashes and now - unit.crashes[0][0] > self.config.crash_window:
            unit.crashes.popleft()
        unit.last_error = clip(unit, f"{type(exc).__name__}: {exc}")
        unit.readiness = readiness_for(unit, exc) or "degraded"  # never ``ready``: it is down
        self._retire(unit, anew=True)
        # a provider's bug: where it raised (redacted like every log record); a connector
        # error (unreachable, bad credentials) explains itself
        where = None if isinstance(exc, ConnectorError) else exc
        if unit.faults() > self.config.crash_limit:
            unit.liveness, unit.next_restart_at = "failed", None
            log.error("unit %s failed: %s", unit.connector_id, unit.last_error, exc_info=where)
        else:
            delay = self.config.backoff.delay(unit.consecutive_restarts)
            unit.consecutive_restarts += 1
            unit.liveness = "crashed"
            unit.next_restart_at = utcnow() + timedelta(seconds=delay)
            unit.restart_timer = loop.create_task(self._restart_later(unit, delay, unit.generation))
            log.warning(
                "unit %s crashed (%s); restarting in %.1fs",
                unit.connector_id,
                unit.last_error,
                delay,
                exc_info=where,
            )
        self.recorder.mark(unit)

    async def restart(self, unit: Unit, request: int) -> None:
        """An operator's restart: now, with a clean crash history (clears ``failed``),
        and its readiness starts over -- ``ready`` and no error, until what the restarted
        unit meets says otherwise."""
        async with unit.lock:
            if unit.restart_timer is not None:
                unit.restart_timer.cancel()
            self._retire(unit, anew=True)
            unit.crashes.clear()
            unit.consecutive_restarts = 0
            unit.source_failures = 0  # an operator's restart starts every backoff over
            unit.working_since = None
            unit.readiness, unit.last_error = "ready", None
            unit.restart_count += 1
            unit.restart_seen = request
            self._begin(unit, restarting=True)
        self.on_change()

    # -- internals ----------------------------------------------------------------------
    def _create(self, connector_id: str, organization_id: str, stamp: Any) -> Unit:
        unit = Unit(connector_id, organization_id)
        unit.config_stamp = stamp
        # -1: the requests are not known yet (no reconcile succeeded); the next adopts them
        unit.restart_seen = -1 if self._restarts is None else self._restarts.get(connector_id, 0)
        unit.concurrency = self.config.concurrency
        unit.policy = self.config.policy
        self._classify(unit)
        self.units[connector_id] = unit
        self._begin(unit)
        return unit

    def _keep_failed(self, c: Any, row: Any) -> None:
        """Take over the unit this node left ``failed`` (``row``) before it started:
        failed still, with its readiness, error and count, and nothing started, until an
        operator's restart request newer than ``row`` (the next reconcile acts on it)."""
        unit = Unit(c.id, c.organization_id, liveness="failed", readiness=row.readiness)
        unit.restart_count, unit.last_error = row.restart_count, row.last_error
        unit.config_stamp, unit.restart_seen = c.updated_at, c.restart_generation
        unit.concurrency, unit.policy = self.config.concurrency, self.config.policy
        self._classify(unit)
        self.units[c.id] = unit
        self.recorder.mark(unit)

    def _classify(self, unit: Unit) -> bool:
        """Note whether the unit's provider has an inbound source (and its secrets)."""
        cls = self._classes.get(unit.connector_id)
        if cls is None:
            return False  # unknown until the next reconcile (or an unregistered type)
        unit.inbound_capable = issubclass(cls, PollingSource | SubscriptionSource)
        unit.secret_fields = frozenset(secret_keys(cls.config_schema()))
        return unit.inbound_capable

    def _begin(self, unit: Unit, *, restarting: bool = False) -> None:
        """Start a new generation: outbound opens lazily; an inbound source starts now."""
        loop = asyncio.get_running_loop()
        unit.generation += 1
        unit.started_at = loop.time()
        unit.next_restart_at = None
        unit.restart_timer = None
        if unit.inbound_capable:
            self._start_inbound(unit, restarting=restarting)
        else:
            unit.liveness = "running"
        self.recorder.mark(unit)

    def _start_inbound(self, unit: Unit, *, restarting: bool) -> None:
        """Run the unit's inbound source as a task of its current generation."""
        unit.liveness = "restarting" if restarting else "starting"
        unit.inbound_task = asyncio.get_running_loop().create_task(
            self._run_inbound(unit, unit.generation), name=f"inbound:{unit.connector_id}"
        )
        self.recorder.mark(unit)

    async def _run_inbound(self, unit: Unit, generation: int) -> None:
        provider = None
        try:
            try:
                provider = await self._open(unit.connector_id)
            except ConnectorError as exc:  # an outage, or else a crash (below)
                if not is_outage(exc):
                    raise
                self._cannot_open(unit, generation, exc)
                return
            self._opened(unit, generation)
            runner = inbound_runner(
                self.jf,
                unit.connector_id,
                provider,
                self.node_id,
                healthy=functools.partial(self._source_works, unit, generation),
                failing=functools.partial(self._source_failed, unit, generation),
                slot=unit.poll_slot,
            )
            if runner is None:  # the provider has no polling or subscription source
                if generation == unit.generation:
                    unit.liveness = "running"
                    self.recorder.mark(unit)
                return
            if generation == unit.generation:
                unit.liveness = "running"
                self.recorder.mark(unit)
            await runner()
            raise RuntimeError("the inbound source ended")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the source raised is a crash
            self.report_crash(unit, generation, exc)
        finally:
            if provider is not None:
                await ProviderHandle(provider).close()

    def _cannot_open(self, unit: Unit, generation: int, exc: ConnectorError) -> None:
        """The provider of ``generation`` could not open: its system is down
        (``is_outage``). Not a crash: the generation is retired and the unit opens again
        after the outage backoff, ``restarting`` meanwhile (so its messages wait),
        however many times."""
        if generation != unit.generation or unit.liveness in DOWN:
            return
        delay = self.health.outage_delay(unit, exc)
        unit.opening_failed = True
        self.health.show_outage(unit, exc, " could not open", delay)
        self._retire(unit, anew=True)
        unit.liveness = "restarting"
        unit.next_restart_at = utcnow() + timedelta(seconds=delay)
        unit.restart_timer = asyncio.get_running_loop().create_task(
            self._restart_later(unit, delay, unit.generation, counted=False)
        )
        self.recorder.mark(unit)

    def _opened(self, unit: Unit, generation: int) -> None:
        if generation == unit.generation:
            self.health.opened(unit)

    def _source_works(self, unit: Unit, generation: int) -> None:
        if generation == unit.generation and self._newest(unit, generation):
            self.health.source_works(unit)

    def _source_failed(self, unit: Unit, generation: int, exc: ConnectorError) -> float:
        """The unit's source raised ``exc`` (its system is down, refuses the credentials,
        ...): not a crash. Shown; returns the seconds to wait before it tries again."""
        delay = self.health.outage_delay(unit, exc)
        # (a retired generation's task is being cancelled)
        if generation == unit.generation and self._newest(unit, generation):
            self.health.show_outage(unit, exc, ": its source failed", delay)
        return delay

    async def _restart_later(
        self, unit: Unit, delay: float, generation: int, *, counted: bool = True
    ) -> None:
        """Start a new generation after ``delay`` (``counted``: as a restart after a
        crash; an open tried again after an outage is not counted)."""
        await asyncio.sleep(delay)
        async with unit.lock:
            if unit.generation != generation or self.units.get(unit.connector_id) is not unit:
                return  # restarted by an operator meanwhile, or stopped
            if counted:
                unit.restart_count += 1
            self._begin(unit, restarting=True)
        self.on_change()

    async def _reload(self, unit: Unit) -> None:
        """The connector changed (or its type is now known): start a new generation with
        the new config.

        Readiness and ``last_error`` stay as they were: they are the last evidence of what
        the connector's system does -- a delivery, poll or batch, which the new
        generation's first one replaces. A change is none: a connection test (which only
        rewrites the connector's status, and may have failed itself), a token refresh
        that failed for good (which must leave ``auth_failed``), a new name, and an edit
        of the params too, which may or may not fix what was wrong (a unit with a source
        polls at once; an outbound one says so with its next delivery)."""
        self._classify(unit)
        if not unit.deliverable:
            return  # it opens with the new config when it restarts
        async with unit.lock:
            self._retire(unit)
            self._begin(unit)
        self.on_change()

    def _retire(self, unit: Unit, *, anew: bool = False) -> ProviderHandle | None:
        """End the current generation: cancel its inbound task; its outbound provider is
        closed once the deliveries using it are done (returned, to await, or scheduled).
        ``anew``: the unit's readiness was just set for a crash, an outage or a restart,
        or the unit stops: the outcomes of deliveries still under way must not change it
        (those of a reload's old generation still do: ``note_outcome``)."""
        unit.generation += 1
        if anew:
            unit.outcomes_since = unit.generation
        task, unit.inbound_task = unit.inbound_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        handle, unit.outbound = unit.outbound, None
        if handle is not None:
            asyncio.get_running_loop().create_task(handle.retire())
        return handle

    async def _shut(self, unit: Unit, liveness: str) -> None:
        if unit.restart_timer is not None:
            unit.restart_timer.cancel()
        task = unit.inbound_task
        handle = self._retire(unit, anew=True)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if handle is not None:
            await handle.retire()
        unit.liveness, unit.next_restart_at = liveness, None
        self.recorder.mark(unit)

    async def _open(self, connector_id: str) -> Any:
        provider = await asyncio.to_thread(self.jf.open_provider, connector_id)
        await call_async(provider.open)
        return provider

    def _provider_class(self, c: Any) -> Any:
        try:
            return self.jf.registry.get(c.category, c.provider_type)
        except ConnectorError:  # a provider type no longer installed: no inbound unit
            return None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an open's failure seen (its crash is reported; waiters get their own)."""
    if not task.cancelled():
        task.exception()
