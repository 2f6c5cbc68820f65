"""The runtime: supervisor, outbox delivery, inbound units and the event router.

``Runtime(jf)`` is created by the ``Jackfield`` facade and costs nothing until
``await runtime.start()`` (``jackfield serve`` starts it with the API; embedded users
call ``await jf.start()``). Its services -- ``outbox`` (send, list, replay, ...) and
``units`` (state, restart requests) -- work without starting it, so the CLI can use
them while another process runs the runtime.

This package never imports the facade, the API, UI or CLI: ``jf`` is any object with
``settings``, ``db``, ``registry``, ``connectors`` and ``open_provider``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from ..kernel.errors import ConnectorError
from ..kernel.inbound import ways_in
from ..kernel.redaction import get_logger
from ..service.nodes import node_id
from ..service.outbox import OutboxService, Sending, SendResult
from ..service.units import RuntimeUnitService
from ..store.group_commit import GroupCommitter
from . import heap
from .events import EventRouter
from .outbox import DeliveryConfig, OutboxWorker
from .outbox_store import OutboxStore
from .retention import Retention, RetentionConfig
from .retry import Backoff, RetryPolicy
from .supervisor import STALE_HEARTBEATS, Supervisor, SupervisorConfig

log = get_logger(__name__)


class Runtime:
    def __init__(self, jf: Any, *, node: str | None = None) -> None:
        s = jf.settings
        self.jf = jf
        self.node_id = node or node_id()
        self.enabled = bool(getattr(s, "runtime_enabled", True))
        # one writer for enqueues, claims, acks and unit state: group-committed together
        self.committer = GroupCommitter(jf.db, name="jackfield-writes")
        self.outbox = OutboxService(jf.db, self.committer, sending=self._sending)
        self._heartbeat = 10 * s.supervisor_poll_seconds  # each node rewrites its unit rows
        silent = timedelta(seconds=STALE_HEARTBEATS * self._heartbeat)  # ... else it is gone
        self.units = RuntimeUnitService(jf.db, silent_after=silent)
        self.events = EventRouter(jf, grace_seconds=s.runtime_shutdown_grace_seconds)
        self._build()
        self.outbox.add_listener(lambda _connectors: self.delivery.wake())
        jf.connectors.add_listener(self._connector_changed)
        self.running = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it runs in

    def _build(self) -> None:
        """The parts that run in ``start()``'s event loop: the supervisor, delivery and
        retention (built anew by ``_abandon``)."""
        s, jf = self.jf.settings, self.jf
        self.supervisor = Supervisor(
            jf,
            self.node_id,
            SupervisorConfig(
                backoff=Backoff(
                    s.supervisor_backoff_base_seconds, s.supervisor_backoff_max_seconds
                ),
                crash_limit=s.supervisor_crash_limit,
                crash_window=s.supervisor_crash_window_seconds,
                healthy_reset=s.supervisor_healthy_reset_seconds,
                poll_seconds=s.supervisor_poll_seconds,
                heartbeat_seconds=self._heartbeat,
                policy=RetryPolicy(
                    s.outbox_retry_base_seconds, s.outbox_retry_max_seconds, s.outbox_max_attempts
                ),
                concurrency=s.outbox_concurrency,
            ),
            committer=self.committer,
            on_change=self._wake_delivery,
        )
        self.delivery = OutboxWorker(
            OutboxStore(jf.db),
            self.supervisor,
            self.committer,
            DeliveryConfig(
                batch_size=s.outbox_batch_size,
                max_in_flight=s.outbox_max_in_flight,
                lease_seconds=s.outbox_lease_seconds,
                delivery_timeout_seconds=s.outbox_delivery_timeout_seconds,
                poll_seconds=s.outbox_poll_seconds,
                grace_seconds=s.runtime_shutdown_grace_seconds,
                crash_limit=s.outbox_crash_limit,
            ),
            on_events=self.events.wake,
        )
        self.retention = Retention(
            jf.db,
            self.committer,
            RetentionConfig(
                outbox_hours=s.outbox_retention_hours,
                inbox_hours=s.inbox_retention_hours,
                interval=s.retention_interval_seconds,
            ),
        )
        self.outbox.set_direct_delivery(self.delivery)

    async def start(self) -> None:
        """Start the event router and, unless ``runtime_enabled`` is off, the supervisor
        and outbox delivery (idempotent). Started in an event loop that has closed since
        without ``stop()``, it starts afresh in this one (``_abandon``)."""
        loop = asyncio.get_running_loop()
        if self.running:
            if self._loop is loop:
                return
            await self._abandon()
        self.running, self._loop = True, loop
        heap.freeze()  # what start-up built stays out of the collector's way (``heap``)
        await self.events.start()
        if self.enabled:
            await self.supervisor.start()
            await self.delivery.start()
            self.retention.start()
        if self.enabled:
            log.info("runtime started on %s", self.node_id)
        else:  # JACKFIELD_RUNTIME_ENABLED=false: an API node
            log.info("runtime off on %s: it delivers nothing (handlers still run)", self.node_id)

    async def stop(self) -> None:
        """Graceful stop: deliveries finish or are given back, units stop, state saved."""
        if not self.running:
            return
        if self._loop is not asyncio.get_running_loop():
            await self._abandon()
            return
        self.running, self._loop = False, None
        if self.enabled:
            await self.retention.stop()
            await self.delivery.stop()
            await self.supervisor.stop()
        await self.events.stop()
        self.committer.close()
        heap.thaw()
        log.info("runtime stopped on %s", self.node_id)

    async def _abandon(self) -> None:
        """Let go of a runtime whose event loop closed without ``stop()`` (``asyncio.run``
        returning, a test's loop): its tasks went with that loop, and it would neither
        start again nor stop (the closed loop refuses every call). As a new process
        would, this one begins afresh: providers closed, acks not yet written and the
        messages only waiting written back; a message being delivered then, or an event
        being handled, waits for its lease to expire (whether it went out is unknown)."""
        old = self._loop
        if old is not None and not old.is_closed():
            raise RuntimeError(
                "the runtime runs in another event loop: await jf.stop() in that loop first"
            )
        log.warning(
            "the event loop the runtime on %s ran in closed without jf.stop(); starting"
            " afresh (await jf.stop() before the loop ends)",
            self.node_id,
        )
        await asyncio.to_thread(self.delivery.abandon)
        await self.supervisor.abandon()
        self.events.abandon()
        self.committer.close()
        heap.thaw()
        self.running, self._loop = False, None
        self._build()

    def send(
        self,
        connector_id: str,
        payload: Any,
        *,
        operation: str | None = None,
        envelope_id: str | None = None,
    ) -> SendResult:
        """Queue a message (any organization: the embedded caller is trusted)."""
        return self.outbox.send(
            None, connector_id, payload, operation=operation, envelope_id=envelope_id
        )

    def send_many(
        self, connector_id: str, payloads: Iterable[Any], *, operation: str | None = None
    ) -> list[SendResult]:
        """Queue several messages to one connector in one write (any organization)."""
        return self.outbox.send_many_async(
            None, connector_id, payloads, operation=operation
        ).result()

    def restart(self, who: Any, connector_id: str) -> dict[str, Any]:
        """Record an operator's restart and have this process's supervisor act now."""
        view = self.units.request_restart(who, connector_id)
        self.supervisor.poke()
        return view

    def _sending(self, category: str, provider_type: str) -> Sending:
        """What the type accepts: its operations, or how it takes events in if it only
        receives (for the outbox's refusals)."""
        try:
            cls = self.jf.registry.get(category, provider_type)
        except ConnectorError:  # a type no longer installed: its delivery says so
            return Sending()
        if not cls.sends:
            return Sending(receives_only=", ".join(ways_in(cls)) or "no inbound source")
        return Sending(operations=cls.operation_names())

    def _wake_delivery(self) -> None:
        self.delivery.wake()

    def _connector_changed(self, connector_id: str) -> None:
        self.supervisor.connector_changed(connector_id)


__all__ = ["Runtime", "SendResult", "node_id"]
