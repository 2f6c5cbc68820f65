"""A poll that never returns is an outage of its source, not a silent stop.

A poll has a deadline (``poll_timeout_seconds``, 0.3 s here). Past it the unit says so
(readiness ``unreachable``, ``last_error``), stops waiting (an async poll is cancelled;
a sync poll's thread cannot be, and no second poll of the unit joins it), and hands its
lease over, so another node polls the connector meanwhile. Before, the node renewed the
lease for as long as the call hung: the connector took no more events on any node, and
its status said running and ready.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import ClassVar

import pytest

from jackfield import ConfigField, connector_registry
from jackfield.kernel import (
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    PollingSource,
    SentMessage,
)
from jackfield.runtime import Runtime
from jackfield.service.events import EventService

from .conftest import eventually, inbox_event_ids, runtime_unit


class Upstream:
    """Per connector key: whether its polls hang, and what they did."""

    HANG: ClassVar[set[str]] = set()
    GATE: ClassVar[dict[str, threading.Event]] = {}  # set: hung sync polls return
    CALLS: ClassVar[dict[str, int]] = {}
    RUNNING: ClassVar[dict[str, int]] = {}
    MOST: ClassVar[dict[str, int]] = {}  # the most polls running at once
    CANCELLED: ClassVar[dict[str, int]] = {}
    lock = threading.Lock()

    @classmethod
    def enter(cls, key: str) -> bool:
        """Count a poll starting; whether it hangs."""
        with cls.lock:
            cls.CALLS[key] = cls.CALLS.get(key, 0) + 1
            cls.RUNNING[key] = cls.RUNNING.get(key, 0) + 1
            cls.MOST[key] = max(cls.MOST.get(key, 0), cls.RUNNING[key])
            hangs = key in cls.HANG
            if hangs and key in cls.HANG_ONCE:
                cls.HANG.discard(key)
            return hangs

    HANG_ONCE: ClassVar[set[str]] = set()

    @classmethod
    def leave(cls, key: str) -> None:
        with cls.lock:
            cls.RUNNING[key] -= 1


def _answer(cursor: str | None) -> tuple[list[InboundEvent], str | None]:
    n = int(cursor or 0)
    if n >= 3:
        return [], cursor
    return [InboundEvent(f"feed-{n}", "tick", {"n": n})], str(n + 1)


class HangingFeed(MessagingProvider, PollingSource):
    """A sync poll that blocks its thread while its upstream hangs."""

    provider_type: ClassVar[str] = "hanging_feed_test"
    display_name: ClassVar[str] = "Hanging feed (tests)"
    poll_interval_seconds = 0.05
    poll_timeout_seconds = 0.3

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [ConfigField("key", "Key")]

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        key = self.config["key"]
        try:
            if Upstream.enter(key):
                Upstream.GATE[key].wait(60)
            return _answer(cursor)
        finally:
            Upstream.leave(key)

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="h")


class HangingAsyncFeed(HangingFeed):
    """An async poll that awaits for ever while its upstream hangs."""

    provider_type: ClassVar[str] = "hanging_async_feed_test"
    display_name: ClassVar[str] = "Hanging async feed (tests)"

    async def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:  # type: ignore[override]
        key = self.config["key"]
        try:
            if Upstream.enter(key):
                await asyncio.sleep(3600)
            return _answer(cursor)
        except asyncio.CancelledError:
            with Upstream.lock:
                Upstream.CANCELLED[key] = Upstream.CANCELLED.get(key, 0) + 1
            raise
        finally:
            Upstream.leave(key)


for _cls in (HangingFeed, HangingAsyncFeed):
    if not connector_registry.is_registered("messaging", _cls.provider_type):
        connector_registry.register(_cls)


@pytest.fixture
def jf(database_url, make_jf):
    return make_jf(database_url, supervisor_backoff_max_seconds=1.0)


@pytest.fixture
def hanging():
    """``hanging(once=False)``: a new upstream key whose polls hang (``once``: only the
    first); every hung poll is let go at the end."""
    keys: list[str] = []

    def make(once: bool = False) -> str:
        key = uuid.uuid4().hex
        Upstream.GATE[key] = threading.Event()
        Upstream.HANG.add(key)
        if once:
            Upstream.HANG_ONCE.add(key)
        keys.append(key)
        return key

    yield make
    for key in keys:
        Upstream.HANG.discard(key)
        Upstream.GATE[key].set()


def test_a_sync_poll_that_hangs_is_an_outage_and_is_not_joined_by_another(
    api, tenant, make_connector, client, wait_until, hanging
):
    key = hanging()
    cid = make_connector(tenant.admin, "hanging_feed_test", key=key)
    with client(api.url, tenant.user_token) as http:
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] != "ready" and u
        )
        assert (unit["liveness"], unit["readiness"]) == ("running", "unreachable"), unit
        assert unit["last_error"] == "PollTimeoutError: poll did not return within 0.3 s"
        assert unit["restart_count"] == 0
        time.sleep(2)  # several deadlines and retries later: still the one hung thread
        assert Upstream.CALLS[key] == 1 and Upstream.MOST[key] == 1
        assert runtime_unit(http, cid)["readiness"] == "unreachable"

        Upstream.HANG.discard(key)
        Upstream.GATE[key].set()  # the hung call returns (its answer is dropped)
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "ready" and u
        )
        assert unit["last_error"] is None and unit["liveness"] == "running"
        assert wait_until(
            lambda: (got := inbox_event_ids(http, cid)) == [f"feed-{n}" for n in range(3)] and got
        )
    assert Upstream.MOST[key] == 1


def test_an_async_poll_that_hangs_is_cancelled_and_tried_again(
    api, tenant, make_connector, client, wait_until, hanging
):
    key = hanging()
    cid = make_connector(tenant.admin, "hanging_async_feed_test", key=key)
    with client(api.url, tenant.user_token) as http:
        wait_until(lambda: Upstream.CANCELLED.get(key, 0) >= 3, timeout=20)
        unit = runtime_unit(http, cid)
        assert (unit["liveness"], unit["readiness"]) == ("running", "unreachable"), unit
        assert unit["last_error"] == "PollTimeoutError: poll did not return within 0.3 s"
        assert Upstream.MOST[key] == 1  # each cancelled before the next began

        Upstream.HANG.discard(key)
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "ready" and u
        )
        assert unit["last_error"] is None and unit["restart_count"] == 0
        assert wait_until(lambda: inbox_event_ids(http, cid) == [f"feed-{n}" for n in range(3)])


async def test_another_node_takes_over_from_a_node_whose_poll_hangs(
    jf, make_jf, database_url, tenant, make_connector, hanging
):
    """Node A's first poll hangs for good; node B, standing by, polls the connector."""
    key = hanging(once=True)
    node_a = jf
    node_b = make_jf(
        database_url,
        secret_key=jf.settings.secret_key.get_secret_value(),
        supervisor_backoff_max_seconds=1.0,
    )
    node_a.runtime = Runtime(node_a, node="node-a")
    node_b.runtime = Runtime(node_b, node="node-b")
    cid = make_connector(tenant.admin, "hanging_feed_test", key=key)

    def rows():
        units = node_a.runtime.units.list(tenant.admin)
        return {u["node"]: u for u in units if u["connector_id"] == cid}

    def events():
        items = EventService(node_a.db).list(tenant.admin, cid)["items"]
        return sorted(e["event_id"] for e in items)

    try:
        await node_a.start()
        await eventually(lambda: Upstream.CALLS.get(key, 0), lambda n: n == 1)  # A hangs
        await node_b.start()
        assert await eventually(events, lambda got: got == ["feed-0", "feed-1", "feed-2"])
        seen = await eventually(
            rows, lambda r: r.get("node-b", {}).get("readiness") == "ready" and "node-a" in r
        )
        assert (seen["node-a"]["liveness"], seen["node-a"]["readiness"]) == (
            "running",
            "unreachable",
        )
        assert "poll did not return within 0.3 s" in seen["node-a"]["last_error"]
        assert not Upstream.GATE[key].is_set()  # A's poll still hangs all along
    finally:
        await node_b.stop()
        await node_a.stop()


def test_a_poll_still_running_from_before_a_restart_is_no_outage(jf):
    """A restart (or a reload after an edit) during an ordinary 1.5 s sync poll: the new
    generation reported "poll did not return within 150 s" at once, readiness
    ``unreachable``, and a failure counted, though no poll had missed its deadline. It
    waits for that poll quietly now."""
    from jackfield.kernel import PollingSource
    from jackfield.runtime.inbound.leases import Lease
    from jackfield.runtime.inbound.polling import PollSlot, run_polling

    class Slow(PollingSource):
        poll_interval_seconds = 30.0

        def poll(self, cursor):
            time.sleep(1.5)
            return [], cursor

    outages: list[str] = []

    def failing(exc):
        outages.append(f"{type(exc).__name__}: {exc}")
        return 1.0

    async def scenario() -> None:
        slot = PollSlot()
        lease = Lease(jf.db, f"inbound:{uuid.uuid4()}", "node-a")

        def generation() -> asyncio.Task[None]:
            return asyncio.create_task(
                run_polling(jf.db, "c1", "o1", Slow(), lease, lambda n: None, failing, slot=slot)
            )

        first = generation()
        await asyncio.sleep(0.5)
        first.cancel()  # the supervisor retires it: its sync poll runs on in its thread
        await asyncio.gather(first, return_exceptions=True)
        second = generation()
        await asyncio.sleep(0.5)
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        await slot.wait(5)

    asyncio.run(scenario())
    assert outages == []
