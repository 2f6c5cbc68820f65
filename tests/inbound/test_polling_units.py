"""Polling units on SQLite and PostgreSQL: the cursor commits with its events, crashes
lose and duplicate nothing, and the unit lease fences a stale owner."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import httpx2
import pytest
from sqlalchemy import event, select, update

from jackfield import connector_registry
from jackfield.kernel import InboundEvent, PollingSource, QueueProvider
from jackfield.runtime.inbound import Lease, LeaseLost, commit_polled, inbound_runner
from jackfield.runtime.inbox import InvalidEventError
from jackfield.service.events import EventService
from jackfield.store import utcnow
from jackfield.store.models_inbound import InboundCursor, InboxEvent, UnitLease


class FeedPoller(QueueProvider, PollingSource):
    """Polls an in-memory feed (``FEEDS[config["feed"]]``), three items per round.

    ``FAULTS[feed]`` holds the poll numbers (1-based) that raise, to imitate a crash;
    ``SLOW[feed]`` is how long each poll takes, in seconds."""

    provider_type = "feed_poll_test"
    display_name = "Feed poller (tests)"
    poll_interval_seconds = 0.02
    FEEDS: ClassVar[dict[str, list[str]]] = {}
    FAULTS: ClassVar[dict[str, set[int]]] = {}
    POLLS: ClassVar[dict[str, int]] = {}
    SLOW: ClassVar[dict[str, float]] = {}
    HANG: ClassVar[dict[str, threading.Event]] = {}  # a poll that waits for this event
    CURSORS: ClassVar[dict[str, list[str | None]]] = {}  # what each poll was asked for

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        feed = self.config["feed"]
        self.POLLS[feed] = self.POLLS.get(feed, 0) + 1
        self.CURSORS.setdefault(feed, []).append(cursor)
        self.calls = getattr(self, "calls", 0) + 1
        if self.POLLS[feed] in self.FAULTS.get(feed, set()):
            raise RuntimeError(f"simulated crash in poll #{self.POLLS[feed]}")
        time.sleep(self.SLOW.get(feed, 0.0))
        if feed in self.HANG:
            self.HANG[feed].wait()  # like an HTTP call without a timeout
        start = int(cursor or 0)
        items = self.FEEDS[feed][start : start + 3]
        events = [
            InboundEvent(f"item-{start + i}", "feed.item", {"text": text})
            for i, text in enumerate(items)
        ]
        return events, str(start + len(items))

    def publish(self, topic: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedError


if not connector_registry.is_registered("queue", "feed_poll_test"):
    connector_registry.register(FeedPoller)


@pytest.fixture
def feed(jf, admin) -> tuple[str, str]:
    """(connector id, feed name) with seven items in the feed."""
    name = uuid.uuid4().hex
    FeedPoller.FEEDS[name] = [f"entry {i}" for i in range(7)]
    created = jf.connectors.create(
        admin,
        name="poller",
        category="queue",
        provider_type="feed_poll_test",
        config={"feed": name},
    )
    return created["id"], name


def inbox(jf, connector_id: str) -> list[str]:
    with jf.db.transaction() as s:
        query = select(InboxEvent.event_id).where(InboxEvent.connector_id == connector_id)
        return list(s.scalars(query.order_by(InboxEvent.id)))


def cursor_of(jf, connector_id: str) -> str | None:
    with jf.db.transaction() as s:
        row = s.get(InboundCursor, connector_id)
        return row.cursor if row else None


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def provider_for(feed_name: str) -> FeedPoller:
    return FeedPoller.from_config({"feed": feed_name})


ALL = [f"item-{i}" for i in range(7)]


async def test_polled_events_commit_with_their_cursor(jf, feed):
    connector_id, name = feed
    run = inbound_runner(jf, connector_id, provider_for(name), "node-a")
    assert run is not None
    task = asyncio.create_task(run())
    await eventually(lambda: cursor_of(jf, connector_id) == "7")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert inbox(jf, connector_id) == ALL
    with jf.db.transaction() as s:
        row = s.scalars(select(InboxEvent).where(InboxEvent.event_id == "item-0")).one()
        assert (row.source, row.event_type, row.payload) == (
            "polling",
            "feed.item",
            {"text": "entry 0"},
        )


def polled(jf, connector_id: str, organization_id: str, events: list[Any]) -> int:
    """``commit_polled`` of ``events`` under a fresh lease, with the cursor ``"next"``."""
    lease = Lease(jf.db, f"inbound:{connector_id}", "node-a", ttl=30)
    assert lease.acquire()
    return commit_polled(jf.db, lease, connector_id, organization_id, events, "next")


def test_an_occurred_at_with_an_offset_is_stored_as_that_instant(jf, admin, feed):
    """SQLite keeps no offset: 12:00+05:00 was stored, and read back, as 12:00 UTC."""
    connector_id, _ = feed
    noon_in_karachi = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5)))
    event_ = InboundEvent("tz-1", "feed.item", {}, occurred_at=noon_in_karachi)
    assert polled(jf, connector_id, admin.organization_id, [event_]) == 1
    listed = EventService(jf.db).list(admin, connector_id)["items"]
    assert listed[0]["occurred_at"] == "2026-01-01T07:00:00+00:00"


def test_polled_values_json_cannot_hold_are_stored_as_webhooks_store_them(
    jf, api, admin, feed, org_token
):
    """A provider's payload may hold NaN, an unpaired surrogate (``json.loads`` makes
    them), a big integer or a datetime: the inbox keeps what it can serve back, and the
    event list still answers. An id repeated in one batch keeps its first event."""
    connector_id, _ = feed
    moment = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    odd = {
        "nan": math.nan,
        "inf": -math.inf,
        "text": "a\ud800b",
        "big": 2**70,
        "when": moment,
        "raw": b"bytes",
    }
    batch = [
        InboundEvent("odd", "feed.item", odd),
        InboundEvent("twice", "feed.item", {"n": 1}),
        InboundEvent("twice", "feed.item", {"n": 2}),
    ]
    assert polled(jf, connector_id, admin.organization_id, batch) == 2
    assert cursor_of(jf, connector_id) == "next"

    listed = httpx2.get(
        f"{api.url}/api/connectors/{connector_id}/events",
        headers={"Authorization": f"Bearer {org_token}"},
    )
    assert listed.status_code == 200, listed.text
    payloads = {item["event_id"]: item["payload"] for item in listed.json()["items"]}
    assert payloads["twice"] == {"n": 1}
    assert payloads["odd"] == {
        "nan": None,
        "inf": None,
        "text": "a\ufffdb",
        "big": 2**70,
        "when": str(moment),
        "raw": "b'bytes'",
    }


DEEP = functools.reduce(lambda inner, _: {"in": inner}, range(70), {})


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (InboundEvent(None, "feed.item", {}), "event_id must be text, not NoneType"),  # type: ignore[arg-type]
        (InboundEvent("x" * 201, "feed.item", {}), "event_id must be 1 to 200 characters"),
        (InboundEvent("  ", "feed.item", {}), "event_id must be 1 to 200 characters"),
        (InboundEvent("a\x00b", "feed.item", {}), "event_id may not contain NUL"),
        (InboundEvent("a\udc00", "feed.item", {}), "event_id is not valid Unicode"),
        (InboundEvent("e", "t" * 101, {}), "event_type must be 1 to 100 characters"),
        (InboundEvent("e", 5, {}), "event_type must be text, not int"),  # type: ignore[arg-type]
        (InboundEvent("e", "feed.item", [1, 2]), "the payload must be a dict, not list"),  # type: ignore[arg-type]
        (InboundEvent("e", "feed.item", DEEP), "deeper than 64 levels"),
        (InboundEvent("e", "t", {}, occurred_at="today"), "occurred_at must be a datetime"),  # type: ignore[arg-type]
        ({"event_id": "e"}, "expected an InboundEvent, got dict"),
        (InboundEvent("e", "t", {"blob": "x" * 2**20}), "the limit is 1048576"),  # > 1 MiB
    ],
)
def test_an_event_the_inbox_cannot_store_fails_its_batch_clearly_and_loses_nothing(
    jf, admin, feed, bad, problem
):
    connector_id, _ = feed
    good = InboundEvent("good", "feed.item", {"text": "private words"})
    with pytest.raises(InvalidEventError) as refused:
        polled(jf, connector_id, admin.organization_id, [good, bad])
    message = str(refused.value)
    assert message.startswith("polling event 2 of 2") and problem in message, message
    assert "private words" not in message  # an error names the event, never its data
    # nothing committed: the cursor did not move, so the next poll fetches the batch again
    assert inbox(jf, connector_id) == [] and cursor_of(jf, connector_id) is None
    # once the provider is fixed, the same batch goes through
    assert polled(jf, connector_id, admin.organization_id, [good]) == 1
    assert inbox(jf, connector_id) == ["good"]


async def test_a_crash_in_poll_loses_nothing_and_duplicates_nothing(jf, feed):
    connector_id, name = feed
    FeedPoller.FAULTS[name] = {2}  # the second round (items 3..5) crashes
    with pytest.raises(RuntimeError, match="simulated crash"):
        await asyncio.wait_for(inbound_runner(jf, connector_id, provider_for(name), "n")(), 10)
    assert inbox(jf, connector_id) == ALL[:3] and cursor_of(jf, connector_id) == "3"
    # the supervisor restarts the unit: it goes on from the committed cursor
    task = asyncio.create_task(inbound_runner(jf, connector_id, provider_for(name), "n")())
    await eventually(lambda: cursor_of(jf, connector_id) == "7")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert inbox(jf, connector_id) == ALL


async def test_a_crash_in_the_middle_of_the_commit_writes_neither_events_nor_cursor(jf, feed):
    connector_id, name = feed
    inserted: list[int] = []
    crashes = []

    def crash_once(conn, cursor, statement, parameters, context, executemany):
        # the batch's events are INSERTed in this transaction; its cursor is being written
        if statement.startswith("INSERT INTO inbox_events"):
            inserted.append(cursor.rowcount)
        elif not crashes and statement.startswith("INSERT INTO inbound_cursors"):
            crashes.append(sum(inserted))
            raise RuntimeError("simulated crash in the middle of the commit")

    event.listen(jf.db.engine, "after_cursor_execute", crash_once)
    try:
        with pytest.raises(RuntimeError, match="middle of the commit"):
            await asyncio.wait_for(inbound_runner(jf, connector_id, provider_for(name), "n")(), 10)
    finally:
        event.remove(jf.db.engine, "after_cursor_execute", crash_once)
    assert crashes == [3]
    assert inbox(jf, connector_id) == [] and cursor_of(jf, connector_id) is None
    task = asyncio.create_task(inbound_runner(jf, connector_id, provider_for(name), "n")())
    await eventually(lambda: cursor_of(jf, connector_id) == "7")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert inbox(jf, connector_id) == ALL


async def test_a_poll_longer_than_the_lease_still_commits(jf, feed):
    """The lease is renewed while ``poll`` runs: a slow API does not cost the unit its
    lease (and the batch) on every round."""
    connector_id, name = feed
    FeedPoller.SLOW[name] = 0.5  # each poll outlasts the 0.3 s lease
    run = inbound_runner(jf, connector_id, provider_for(name), "node-a", lease_ttl=0.3)
    assert run is not None
    task = asyncio.create_task(run())
    try:
        await eventually(lambda: cursor_of(jf, connector_id) == "7", timeout=15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert inbox(jf, connector_id) == ALL
    assert FeedPoller.CURSORS[name][:3] == [None, "3", "6"]  # no batch was fetched twice


def test_a_stale_owner_commit_is_refused_and_writes_nothing(jf, feed):
    connector_id, _ = feed
    unit = f"inbound:{connector_id}"
    stale = Lease(jf.db, unit, "node-a", ttl=30)
    assert stale.acquire() and stale.generation == 1
    with jf.db.transaction() as s:  # node-a stops heartbeating: its lease runs out
        s.execute(
            update(UnitLease)
            .where(UnitLease.unit == unit)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    fresh = Lease(jf.db, unit, "node-b", ttl=30)
    assert fresh.acquire() and fresh.generation == 2

    batch = [InboundEvent("late-1", "feed.item", {}), InboundEvent("late-2", "feed.item", {})]
    org = jf.connectors.organization_of(connector_id)
    with pytest.raises(LeaseLost):
        commit_polled(jf.db, stale, connector_id, org, batch, "99")
    assert inbox(jf, connector_id) == [] and cursor_of(jf, connector_id) is None
    assert not stale.acquire()  # node-b holds a live lease: node-a stays a standby
    assert commit_polled(jf.db, fresh, connector_id, org, batch, "2") == 2
    assert inbox(jf, connector_id) == ["late-1", "late-2"] and cursor_of(jf, connector_id) == "2"


async def test_one_node_polls_and_the_standby_takes_over(jf, feed):
    connector_id, name = feed
    first, second = provider_for(name), provider_for(name)
    run_a = inbound_runner(jf, connector_id, first, "node-a", lease_ttl=0.6)
    run_b = inbound_runner(jf, connector_id, second, "node-b", lease_ttl=0.6)
    task_a = asyncio.create_task(run_a())
    await eventually(lambda: cursor_of(jf, connector_id) == "7")
    task_b = asyncio.create_task(run_b())
    await asyncio.sleep(0.5)  # node-b finds the lease taken and waits
    assert getattr(second, "calls", 0) == 0

    task_a.cancel()  # node-a stops (and releases its lease)
    await asyncio.gather(task_a, return_exceptions=True)
    FeedPoller.FEEDS[name].extend(["entry 7", "entry 8"])
    await eventually(lambda: cursor_of(jf, connector_id) == "9")
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)
    assert second.calls > 0
    assert inbox(jf, connector_id) == [*ALL, "item-7", "item-8"]
    with jf.db.transaction() as s:
        lease = s.get(UnitLease, f"inbound:{connector_id}")
        assert lease.owner == "node-b" and lease.generation == 2


def test_a_provider_without_polling_or_subscription_needs_no_unit(jf, feed):
    from jackfield.connectors.echo import EchoProvider

    assert inbound_runner(jf, feed[0], EchoProvider.from_config({}), "n") is None


def activate(jf, admin, connector_id: str) -> None:
    assert jf.connectors.test(admin, connector_id)["success"]
    jf.connectors.set_enabled(admin, connector_id, True)


async def handled_by_the_runtime(
    jf, admin, connector_id: str, before_stop: Callable[[], object] = lambda: None
) -> list[str]:
    """The event ids ``@jf.on`` handlers got from the activated poller, in order, once
    the feed's seven arrived."""
    activate(jf, admin, connector_id)
    got: list[str] = []
    jf.on("feed.item")(lambda event: got.append(event.event_id))
    await jf.start()
    try:
        await eventually(lambda: len(got) == 7, timeout=15)
    finally:
        before_stop()
        await jf.stop()
    return got


async def test_the_runtime_runs_an_enabled_poller_and_handlers_get_its_events(jf, admin, feed):
    """End to end through the facade: the supervisor starts the unit, the events reach
    ``@jf.on`` handlers."""
    connector_id, _ = feed
    assert await handled_by_the_runtime(jf, admin, connector_id) == ALL
    with jf.db.transaction() as s:
        lease = s.get(UnitLease, f"inbound:{connector_id}")
        assert lease.owner == jf.runtime.node_id
        assert lease.expires_at <= utcnow()  # released at stop: another node may take over


async def test_polls_that_never_return_do_not_stop_the_other_units(jf, admin, feed):
    """More hung sync polls than the loop's default executor has threads: that pool does
    the runtime's own database work, so the healthy poller would stop with them."""
    connector_id, _ = feed
    release = threading.Event()
    for n in range(12):
        name = f"hung-{uuid.uuid4().hex}"
        FeedPoller.FEEDS[name], FeedPoller.HANG[name] = [], release
        hung = jf.connectors.create(
            admin,
            name=f"hung {n}",
            category="queue",
            provider_type="feed_poll_test",
            config={"feed": name},
        )
        activate(jf, admin, hung["id"])
    # first: stopping waits on that pool too, when they starve it
    assert await handled_by_the_runtime(jf, admin, connector_id, before_stop=release.set) == ALL


def test_a_released_lease_is_not_taken_back_by_a_late_acquire(jf, feed):
    """At shutdown the runner is cancelled while its ``acquire`` may still be running in
    a worker thread; once released, that late call must not take the unit again."""
    unit = f"inbound:{feed[0]}"
    lease = Lease(jf.db, unit, "node-a", ttl=30)
    assert lease.acquire()
    lease.release()
    assert not lease.acquire() and not lease.renew()
    with jf.db.transaction() as s:
        assert s.get(UnitLease, unit).expires_at <= utcnow()
    assert Lease(jf.db, unit, "node-b", ttl=30).acquire()  # anyone else may take over
