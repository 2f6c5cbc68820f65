"""A provider that raises SystemExit or KeyboardInterrupt (a vendor SDK calling
``sys.exit``, a stray ``raise KeyboardInterrupt``) has a bug like any other: its unit
crashes and restarts, and the runtime -- of ``jackfield serve`` or of an embedded
application -- goes on delivering for the other connectors."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar

import pytest

from jackfield import Jackfield, connector_registry
from jackfield.kernel import (
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    PollingSource,
    SentMessage,
    SubscriptionSource,
    call_async,
)


class ExitingProvider(MessagingProvider):
    """Sync ``send_message`` calls ``sys.exit`` (text ``exit``) or raises
    ``KeyboardInterrupt`` (text ``interrupt``); the async twin below does it in a coroutine."""

    provider_type: ClassVar[str] = "exiting_test"
    display_name: ClassVar[str] = "Exiting (tests)"

    def send_message(self, message: OutboundMessage) -> SentMessage:
        if message.text == "interrupt":
            raise KeyboardInterrupt
        sys.exit(3)


class AsyncExitingProvider(ExitingProvider):
    provider_type: ClassVar[str] = "async_exiting_test"
    display_name: ClassVar[str] = "Async exiting (tests)"

    async def send_message(self, message: OutboundMessage) -> SentMessage:  # type: ignore[override]
        if message.text == "interrupt":
            raise KeyboardInterrupt
        sys.exit(3)


class ExitingFeed(ExitingProvider, PollingSource):
    """A sync poll that calls ``sys.exit``."""

    provider_type: ClassVar[str] = "exiting_feed_test"
    display_name: ClassVar[str] = "Exiting feed (tests)"
    poll_interval_seconds = 0.05

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        sys.exit(3)


class AsyncExitingFeed(ExitingFeed):
    """An async poll that raises ``KeyboardInterrupt``."""

    provider_type: ClassVar[str] = "async_exiting_feed_test"
    display_name: ClassVar[str] = "Async exiting feed (tests)"

    async def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:  # type: ignore[override]
        raise KeyboardInterrupt


class ExitingSubscription(ExitingProvider, SubscriptionSource):
    """A subscription whose stream calls ``sys.exit`` as it connects."""

    provider_type: ClassVar[str] = "exiting_subscription_test"
    display_name: ClassVar[str] = "Exiting subscription (tests)"

    async def subscribe(self):  # type: ignore[override]
        sys.exit(3)
        yield


for _cls in (
    ExitingProvider,
    AsyncExitingProvider,
    ExitingFeed,
    AsyncExitingFeed,
    ExitingSubscription,
):
    if not connector_registry.is_registered("messaging", _cls.provider_type):
        connector_registry.register(_cls)


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("sync", [True, False])
async def test_call_async_turns_a_providers_exit_into_an_error(kind, sync):
    def stop():
        raise kind(3)

    async def stop_async():
        raise kind(3)

    with pytest.raises(RuntimeError, match=kind.__name__) as caught:
        await call_async(stop if sync else stop_async)
    assert isinstance(caught.value.__cause__, kind)


async def test_cancellation_still_goes_through_call_async():
    async def forever():
        await asyncio.sleep(60)

    task = asyncio.ensure_future(call_async(forever))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@dataclass
class BesideASteadyOne:
    """A started runtime with a connector whose provider exits and a steady one."""

    jf: Jackfield
    exiting: str
    steady: str
    seen: list[str]

    async def still_delivers(self) -> None:
        """The runtime is still up: the steady connector's message is delivered."""
        later = await asyncio.to_thread(self.jf.send, self.steady, {"text": "still here"})
        for _ in range(100):
            if later in self.seen:
                break
            await asyncio.sleep(0.05)
        assert later in self.seen


@asynccontextmanager
async def running(jf, tenant, make_connector, provider_type) -> AsyncIterator[BesideASteadyOne]:
    """``jf`` started with a ``provider_type`` connector beside a steady echo one,
    stopped afterwards."""
    beside = BesideASteadyOne(
        jf, make_connector(tenant.admin, provider_type), make_connector(tenant.admin), []
    )

    @jf.on("message.received")
    async def on_message(event):
        beside.seen.append(event.payload["envelope_id"])

    await jf.start()
    try:
        yield beside
    finally:
        await jf.stop()


@pytest.mark.parametrize("provider_type", ["exiting_test", "async_exiting_test"])
async def test_a_provider_exiting_in_a_delivery_crashes_its_unit_not_the_runtime(
    jf, tenant, make_connector, provider_type
):
    async with running(jf, tenant, make_connector, provider_type) as beside:
        exiting = beside.exiting
        await asyncio.to_thread(jf.send, exiting, {"text": "exit"})
        await asyncio.to_thread(jf.send, exiting, {"text": "interrupt"})
        errors: set[str] = set()
        for _ in range(200):
            unit = jf.runtime.supervisor.units.get(exiting)
            if unit is not None and unit.last_error:
                errors.add(unit.last_error.split(":")[0])
            if len(errors) == 2:
                break
            await asyncio.sleep(0.02)
        assert errors == {"RuntimeError"}, errors
        await beside.still_delivers()


@pytest.mark.parametrize(
    "provider_type",
    ["exiting_feed_test", "async_exiting_feed_test", "exiting_subscription_test"],
)
async def test_an_inbound_source_exiting_crashes_its_unit_not_the_runtime(
    jf, tenant, make_connector, provider_type
):
    async with running(jf, tenant, make_connector, provider_type) as beside:
        for _ in range(200):
            unit = jf.runtime.supervisor.units.get(beside.exiting)
            if unit is not None and unit.restart_count >= 1:
                break
            await asyncio.sleep(0.02)
        assert unit is not None and unit.restart_count >= 1  # crashed and restarted
        assert (unit.last_error or "").startswith("RuntimeError: the provider raised")
        await beside.still_delivers()
