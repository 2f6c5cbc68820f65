"""A provider whose ``open`` hangs holds up its own deliveries only. Before, the open ran
under the unit's lock: a restart or reload of that unit waited for it, and with it the
supervisor's loop -- no other connector started, no restart was acted on, no heartbeat
was written -- until the open returned."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from jackfield import connector_registry
from jackfield.kernel import MessagingProvider, OutboundMessage, SentMessage


class HangingProvider(MessagingProvider):
    """Opens only once ``HangingProvider.gate`` is set (like a server that never answers)."""

    provider_type: ClassVar[str] = "hanging_test"
    display_name: ClassVar[str] = "Hanging (tests)"
    gate: ClassVar[asyncio.Event | None] = None

    async def open(self) -> None:
        assert HangingProvider.gate is not None
        await HangingProvider.gate.wait()

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="h")


if not connector_registry.is_registered("messaging", "hanging_test"):
    connector_registry.register(HangingProvider)


async def test_a_hanging_open_holds_up_neither_a_restart_nor_other_connectors(
    jf, tenant, make_connector
):
    HangingProvider.gate = asyncio.Event()
    hanging = make_connector(tenant.admin, "hanging_test")
    await jf.start()
    try:
        await asyncio.to_thread(jf.send, hanging, {"text": "waits for the open"})
        await _until(lambda: hanging in jf.runtime.supervisor.units)
        await asyncio.sleep(0.3)  # its first delivery is waiting in open()
        await asyncio.to_thread(jf.runtime.restart, tenant.admin, hanging)
        unit = jf.runtime.supervisor.units[hanging]
        await _until(lambda: unit.restart_count == 1)  # acted on, the open still hanging
        echo = make_connector(tenant.admin)  # a connector the supervisor has not seen
        delivered = await asyncio.to_thread(jf.send, echo, {"text": "goes out"})
        await _until(lambda: _state(jf, tenant, delivered) == "delivered")
        HangingProvider.gate.set()  # it answers at last: its message goes out too
        await _until(lambda: jf.runtime.delivery.stats.delivered == 2, timeout=20)
    finally:
        HangingProvider.gate.set()
        await jf.stop()


def _state(jf, tenant, envelope_id: str) -> str:
    return jf.runtime.outbox.get(tenant.admin, envelope_id)["state"]


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
