"""The event router on SQLite and PostgreSQL: handlers by type and ``"*"``, sync and
async, failures isolated, every event dispatched once even with two routers (nodes)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from jackfield.kernel import InboundEvent
from jackfield.runtime.events import EventRouter
from jackfield.runtime.inbox import add_events
from jackfield.store.models_inbound import InboxEvent


def commit(jf, connector_id: str, org: str, *events: tuple[str, str]) -> None:
    """Commit events ``(event_id, event_type)`` to the inbox, as any source does."""
    with jf.db.transaction() as s:
        add_events(
            s,
            connector_id,
            org,
            [InboundEvent(eid, etype, {"n": eid}) for eid, etype in events],
            "webhook",
        )


def undispatched(jf) -> int:
    with jf.db.transaction() as s:
        query = select(func.count()).where(InboxEvent.dispatched_at.is_(None))
        return int(s.scalar(query) or 0)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Tally:
    """A handler counting the events it saw by id (sync handlers run in threads)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        with self._lock:
            self.counts[event.event_id] = self.counts.get(event.event_id, 0) + 1


def echo_connector(jf, admin) -> str:
    return jf.connectors.create(
        admin, name="echo", category="messaging", provider_type="echo", config={}
    )["id"]


async def test_handlers_by_type_and_star_sync_and_async(jf, admin, org):
    connector = echo_connector(jf, admin)
    router = EventRouter(jf, poll_interval=0.05)
    seen: list[tuple[str, str]] = []

    @router.on("message.received")
    def on_message(event):  # sync: runs in a worker thread
        seen.append(("message", event.event_id))

    @router.on("*")
    async def on_anything(event):
        seen.append(("any", event.event_id))

    # a signed webhook may well say its type is "*": its handlers run once, like any type's
    events = [("e1", "message.received"), ("e2", "order.created"), ("e3", "*"), ("e4", "x")]
    commit(jf, connector, org, *events)
    await router.start()
    try:
        await eventually(lambda: ("any", "e4") in seen)
    finally:
        await router.stop()
    assert seen == [("message", "e1"), ("any", "e1"), ("any", "e2"), ("any", "e3"), ("any", "e4")]
    assert undispatched(jf) == 0


async def test_stop_returns_once_the_handled_events_are_marked(jf, admin, org):
    """``stop()`` used to return while the batch's marks were still being written in a
    thread: a caller checking or exiting right after saw them undispatched."""
    connector = echo_connector(jf, admin)
    router = EventRouter(jf, poll_interval=0.05)
    seen: list[str] = []
    router.on("*")(lambda event: seen.append(event.event_id))
    mark = router._finish

    def slow_mark(*args):  # a slow commit, so stop() comes while it is under way
        time.sleep(0.5)
        mark(*args)

    router._finish = slow_mark
    commit(jf, connector, org, ("e1", "x"), ("e2", "y"))
    await router.start()
    try:
        await eventually(lambda: len(seen) == 2)
    finally:
        await router.stop()
    assert undispatched(jf) == 0


async def test_stop_lets_a_running_handler_finish_and_marks_its_event(jf, admin, org):
    """Before, stop() gave the event back while a sync handler still ran in its thread:
    a router started again (``jf.stop()`` then ``jf.start()``) ran it a second time."""
    connector = echo_connector(jf, admin)
    router = EventRouter(jf, poll_interval=0.05, grace_seconds=10)
    started, finished = threading.Event(), []

    @router.on("*")
    def slow(event):
        started.set()
        time.sleep(0.5)
        finished.append(event.event_id)

    commit(jf, connector, org, ("e1", "x"))
    await router.start()
    await asyncio.to_thread(started.wait, 5)
    await router.stop()
    assert finished == ["e1"] and undispatched(jf) == 0
    await router.start()  # nothing left to run again
    await asyncio.sleep(0.3)
    await router.stop()
    assert finished == ["e1"]


async def test_a_handler_outlasting_the_grace_is_not_run_again_while_it_runs(jf, admin, org):
    connector = echo_connector(jf, admin)
    release, running, runs = threading.Event(), threading.Semaphore(0), []

    def stuck(event):
        runs.append(event.event_id)
        running.release()
        release.wait(10)

    first = EventRouter(jf, poll_interval=0.02, claim_seconds=1.0, grace_seconds=0.1)
    first.on("*")(stuck)
    commit(jf, connector, org, ("e1", "x"), ("e2", "y"))
    await first.start()
    await asyncio.to_thread(running.acquire, True, 5)
    await first.stop()  # after the grace; e1's handler thread runs on
    again = EventRouter(jf, poll_interval=0.02, claim_seconds=1.0)
    again.on("*")(stuck)
    await again.start()
    try:
        await asyncio.sleep(0.5)
        assert runs == ["e1", "e2"]  # e2 was given back; e1 is still claimed: not again
        release.set()
        # the claim on e1 expires: delivery stays at-least-once
        await eventually(lambda: undispatched(jf) == 0)
    finally:
        release.set()
        await again.stop()
    assert sorted(runs) == ["e1", "e1", "e2"]


async def test_handlers_receive_the_stored_event(jf, admin, org):
    connector = echo_connector(jf, admin)
    router = EventRouter(jf, poll_interval=0.05)
    received = []
    router.on("message.received")(received.append)
    commit(jf, connector, org, ("e1", "message.received"))
    await router.start()
    try:
        await eventually(lambda: len(received) == 1)
    finally:
        await router.stop()
    (event,) = received
    assert (event.connector_id, event.organization_id) == (connector, org)
    assert (event.event_id, event.event_type, event.payload) == (
        "e1",
        "message.received",
        {"n": "e1"},
    )
    assert event.source == "webhook" and event.id > 0
    assert event.view()["received_at"]


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        (lambda event_id: ValueError(f"handler bug on {event_id}"), "handler bug on e1"),
        (lambda event_id: asyncio.CancelledError(), "CancelledError"),  # its own, not ours
        (lambda event_id: SystemExit(3), "SystemExit: 3"),
    ],
    ids=["error", "cancelled", "exit"],
)
async def test_a_failing_handler_does_not_stop_the_others(
    jf, admin, org, caplog, flavour, failure, logged
):
    """Whatever a handler raises -- even ``sys.exit`` or a ``CancelledError`` of its own
    -- is logged; the other handlers, the later events and the process go on."""
    connector = echo_connector(jf, admin)
    router = EventRouter(jf, poll_interval=0.05)
    ran: list[str] = []

    def fail(event):
        ran.append(f"broken:{event.event_id}")
        raise failure(event.event_id)

    async def fail_async(event):
        fail(event)

    failing = fail if flavour == "sync" else fail_async
    router.on("message.received")(failing)

    @router.on("message.received")
    async def fine(event):
        ran.append(f"fine:{event.event_id}")

    commit(jf, connector, org, ("e1", "message.received"), ("e2", "message.received"))
    await router.start()
    try:
        await eventually(lambda: len(ran) == 4)
        commit(jf, connector, org, ("e3", "message.received"))
        router.wake()
        await eventually(lambda: "fine:e3" in ran)
    finally:
        await router.stop()
    assert ran[:4] == ["broken:e1", "fine:e1", "broken:e2", "fine:e2"]
    assert undispatched(jf) == 0  # not retried: logged instead
    assert logged in caplog.text
    assert f"handler {failing.__qualname__} failed for message.received event e1" in caplog.text


async def test_a_batch_outlasting_its_claim_is_not_run_again_by_another_node(jf, admin, org):
    """The claim is extended while slow handlers run: a second node does not take the
    batch over and run its events a second time."""
    connector = echo_connector(jf, admin)
    tally = Tally()
    counts = tally.counts

    def slow(event):
        tally(event)
        time.sleep(0.4)

    commit(jf, connector, org, *((f"s{i}", "tick") for i in range(4)))
    first = EventRouter(jf, poll_interval=0.02, claim_seconds=0.6)
    first.on("tick")(slow)
    await first.start()
    await eventually(lambda: bool(counts))  # the first node holds the whole batch
    second = EventRouter(jf, poll_interval=0.02, claim_seconds=0.6)
    second.on("tick")(slow)
    await second.start()
    try:
        await eventually(lambda: len(counts) == 4 and undispatched(jf) == 0)
    finally:
        await first.stop()
        await second.stop()
    assert counts == {f"s{i}": 1 for i in range(4)}  # 1.6 s of handlers, a 0.6 s claim


async def test_two_routers_dispatch_every_event_once(jf, admin, org):
    """Two nodes on one database: claims keep them from running the same event."""
    connector = echo_connector(jf, admin)
    count = Tally()
    counts = count.counts

    routers = [EventRouter(jf, poll_interval=0.02, batch_size=7) for _ in range(2)]
    for router in routers:
        router.on("*")(count)
        await router.start()
    try:
        for batch in range(6):
            commit(jf, connector, org, *((f"e{batch}-{i}", "tick") for i in range(10)))
            for router in routers:
                router.wake()
        await eventually(lambda: len(counts) == 60 and undispatched(jf) == 0)
    finally:
        for router in routers:
            await router.stop()
    assert set(counts.values()) == {1}


async def test_a_process_without_handlers_leaves_events_for_one_with_them(jf, admin, org):
    connector = echo_connector(jf, admin)
    idle = EventRouter(jf, poll_interval=0.02)
    await idle.start()
    commit(jf, connector, org, ("e1", "tick"))
    idle.wake()
    await asyncio.sleep(0.2)
    await idle.stop()
    assert undispatched(jf) == 1  # the serve process without handlers did not take it

    busy = EventRouter(jf, poll_interval=0.02)
    got = []
    busy.on("tick")(got.append)
    await busy.start()  # events committed while nobody listened are dispatched on start
    try:
        await eventually(lambda: len(got) == 1)
    finally:
        await busy.stop()


async def test_wake_from_another_thread_dispatches_at_once(jf, admin, org):
    connector = echo_connector(jf, admin)
    router = EventRouter(jf, poll_interval=60)  # only wake() can make it look
    got = []
    router.on("tick")(got.append)
    await router.start()
    try:
        await asyncio.sleep(0.1)
        await asyncio.to_thread(commit, jf, connector, org, ("e1", "tick"))
        started = time.monotonic()
        threading.Thread(target=router.wake).start()
        await eventually(lambda: len(got) == 1, timeout=5)
        assert time.monotonic() - started < 2
    finally:
        await router.stop()


async def test_jf_on_receives_an_echo_loopback_end_to_end(jf, admin):
    """``@jf.on`` through the facade: send to echo, the runtime delivers, the loopback
    event reaches the handler."""
    connector = echo_connector(jf, admin)
    jf.connectors.test(admin, connector)
    jf.connectors.set_enabled(admin, connector, True)
    got = []

    @jf.on("message.received")
    async def handler(event):
        got.append(event.payload)

    await jf.start()
    try:
        jf.send(connector, {"text": "hello"})
        await eventually(lambda: len(got) == 1, timeout=15)
    finally:
        await jf.stop()
    assert got[0]["text"] == "hello"
