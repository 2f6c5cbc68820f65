"""Subscription units against a real Redis Stream (XREADGROUP, XACK after the inbox
commit), on SQLite and PostgreSQL: acks come after commits, and a crash between the two
makes Redis redeliver while the inbox keeps one copy."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from jackfield import ConfigField, connector_registry
from jackfield.kernel import (
    ConnectionFailedError,
    InboundEvent,
    QueueProvider,
    ReceivedEvent,
    SubscriptionSource,
)
from jackfield.runtime.inbound import inbound_runner
from jackfield.runtime.inbox import InvalidEventError
from jackfield.store.models_inbound import InboxEvent

REDIS_URL = "redis://127.0.0.1:6379/0"


def require_redis() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        message = "Redis is not reachable at 127.0.0.1:6379"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the real server is required)")
        pytest.skip(message)


class RedisStreamSource(QueueProvider, SubscriptionSource):
    """Consumes a Redis Stream through a consumer group: its own pending entries first
    (what it read but never acked, e.g. before a crash), then new ones.

    ``CRASH_BEFORE_ACK`` holds message ids whose first ack raises, imitating a process
    that dies after the inbox commit and before the broker ack."""

    provider_type = "redis_stream_test"
    display_name = "Redis Stream (tests)"
    CRASH_BEFORE_ACK: ClassVar[set[str]] = set()
    ACK_LOG: ClassVar[list[tuple[str, bool]]] = []  # (message id, in the inbox at ack time)
    inbox_has: ClassVar[Callable[[str], bool]]

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [ConfigField("stream", "Stream", required=True)]

    async def subscribe(self) -> AsyncIterator[ReceivedEvent]:
        import redis.asyncio as redis

        stream, group, consumer = self.config["stream"], "jackfield", "consumer-1"
        client = redis.Redis.from_url(REDIS_URL)
        try:
            try:
                await client.xgroup_create(stream, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            backlog: str | None = "0"  # our pending entries first
            while True:
                start = backlog if backlog is not None else ">"
                reply = await client.xreadgroup(
                    group, consumer, {stream: start}, count=10, block=None if backlog else 100
                )
                entries = reply[0][1] if reply else []
                if backlog is not None:
                    if not entries:
                        backlog = None
                        continue
                    backlog = entries[-1][0].decode()
                for raw_id, fields in entries:
                    msg_id = raw_id.decode()
                    payload = {k.decode(): v.decode() for k, v in fields.items()}
                    kind = payload.get("type", "stream.message")
                    event = InboundEvent(msg_id, kind, payload)
                    yield ReceivedEvent(event, self._acker(client, stream, group, msg_id))
        finally:
            await client.aclose()

    def _acker(self, client: Any, stream: str, group: str, msg_id: str) -> Any:
        async def ack() -> None:
            self.ACK_LOG.append((msg_id, self.inbox_has(msg_id)))
            if msg_id in self.CRASH_BEFORE_ACK:
                self.CRASH_BEFORE_ACK.discard(msg_id)
                raise RuntimeError(f"simulated crash before acking {msg_id}")
            await client.xack(stream, group, msg_id)

        return ack

    def publish(self, topic: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedError


if not connector_registry.is_registered("queue", "redis_stream_test"):
    connector_registry.register(RedisStreamSource)


@pytest.fixture
async def redis_stream(jf, admin) -> AsyncIterator[tuple[str, str, Any]]:
    """(connector id, stream key, redis client); the stream is deleted afterwards."""
    require_redis()
    import redis.asyncio as redis

    stream = f"jf-test-{uuid.uuid4().hex}"
    created = jf.connectors.create(
        admin,
        name="stream",
        category="queue",
        provider_type="redis_stream_test",
        config={"stream": stream},
    )

    def inbox_has(msg_id: str) -> bool:
        with jf.db.transaction() as s:
            found = s.scalar(
                select(InboxEvent.id).where(
                    InboxEvent.connector_id == created["id"], InboxEvent.event_id == msg_id
                )
            )
        return found is not None

    RedisStreamSource.inbox_has = staticmethod(inbox_has)
    RedisStreamSource.ACK_LOG.clear()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield created["id"], stream, client
    finally:
        await client.delete(stream)
        await client.aclose()


def inbox(jf, connector_id: str) -> list[tuple[str, dict]]:
    with jf.db.transaction() as s:
        rows = s.scalars(
            select(InboxEvent)
            .where(InboxEvent.connector_id == connector_id)
            .order_by(InboxEvent.id)
        )
        return [(r.event_id, r.payload) for r in rows]


async def pending(client: Any, stream: str) -> int:
    return int((await client.xpending(stream, "jackfield"))["pending"])


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_messages_are_committed_then_acked(jf, redis_stream):
    connector_id, stream, client = redis_stream
    ids = [(await client.xadd(stream, {"text": f"m{i}"})).decode() for i in range(5)]
    source = RedisStreamSource.from_config({"stream": stream})
    task = asyncio.create_task(inbound_runner(jf, connector_id, source, "node-a")())

    async def all_acked() -> bool:
        return len(RedisStreamSource.ACK_LOG) == 5 and await pending(client, stream) == 0

    await eventually(all_acked)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert inbox(jf, connector_id) == [(i, {"text": f"m{n}"}) for n, i in enumerate(ids)]
    assert RedisStreamSource.ACK_LOG == [(i, True) for i in ids]  # in the inbox before acked


async def test_events_that_arrive_together_commit_together(jf, redis_stream):
    """One transaction per event held a unit to the database's commits per second."""
    connector_id, stream, client = redis_stream
    ids = [(await client.xadd(stream, {"text": f"m{i}"})).decode() for i in range(300)]

    async def all_acked() -> bool:
        return len(RedisStreamSource.ACK_LOG) == 300

    source = RedisStreamSource.from_config({"stream": stream})
    task = asyncio.create_task(inbound_runner(jf, connector_id, source, "node-a")())
    try:
        await eventually(all_acked, timeout=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [e for e, _ in inbox(jf, connector_id)] == ids
    assert RedisStreamSource.ACK_LOG == [(i, True) for i in ids]  # each acked after commit
    with jf.db.transaction() as s:  # a commit stamps its events with one received_at
        query = select(InboxEvent.received_at).where(InboxEvent.connector_id == connector_id)
        commits = set(s.scalars(query))
    assert len(commits) < 100, len(commits)


async def test_a_crash_between_commit_and_ack_redelivers_and_the_inbox_keeps_one(jf, redis_stream):
    connector_id, stream, client = redis_stream
    ids = [(await client.xadd(stream, {"n": str(i)})).decode() for i in range(4)]
    RedisStreamSource.CRASH_BEFORE_ACK.add(ids[1])
    source = RedisStreamSource.from_config({"stream": stream})

    with pytest.raises(RuntimeError, match="before acking"):
        await asyncio.wait_for(inbound_runner(jf, connector_id, source, "node-a")(), 10)
    # ids[1] was committed but never acked, like what was committed with it or read
    # ahead: Redis holds all three after ids[0] as pending for this consumer
    committed = [e for e, _ in inbox(jf, connector_id)]
    assert len(committed) >= 2 and committed == ids[: len(committed)]
    assert await pending(client, stream) == 3

    # the supervisor restarts the unit: Redis redelivers the pending entry first
    restarted = RedisStreamSource.from_config({"stream": stream})
    task = asyncio.create_task(inbound_runner(jf, connector_id, restarted, "node-a")())

    async def drained() -> bool:
        acked = [m for m, _ in RedisStreamSource.ACK_LOG]
        return acked.count(ids[1]) == 2 and ids[3] in acked and await pending(client, stream) == 0

    await eventually(drained)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [e for e, _ in inbox(jf, connector_id)] == ids  # each exactly once


async def test_an_event_the_inbox_cannot_store_is_never_acked(jf, redis_stream):
    """The unit crashes with what is wrong (the supervisor shows it and restarts it);
    the broker keeps the message, so nothing is lost while the provider gets fixed."""
    connector_id, stream, client = redis_stream
    first = (await client.xadd(stream, {"text": "fine"})).decode()
    bad = (await client.xadd(stream, {"type": "t" * 101, "text": "private words"})).decode()
    source = RedisStreamSource.from_config({"stream": stream})
    with pytest.raises(InvalidEventError) as refused:
        await asyncio.wait_for(inbound_runner(jf, connector_id, source, "node-a")(), 10)
    message = str(refused.value)
    assert re.match(rf"subscription event (1 of 1|2 of 2) \({bad!r}\) cannot be stored", message)
    assert "event_type must be 1 to 100 characters" in message
    assert "private words" not in message
    # "fine" commits alone, or fails with the batch it shares with the bad one; nothing
    # is acked that is not in the inbox, and the bad one stays with the broker
    stored = inbox(jf, connector_id)
    assert stored in ([(first, {"text": "fine"})], [])
    assert RedisStreamSource.ACK_LOG == [(first, True)] * len(stored)
    detail = await client.xpending_range(stream, "jackfield", min="-", max="+", count=10)
    assert [entry["message_id"].decode() for entry in detail] == [first, bad][len(stored) :]


def unit_of(jf, admin, source: type[SubscriptionSource]) -> tuple[str, Any]:
    """(connector id, the unit's runner) for a connector of the test source ``source``."""
    if not connector_registry.is_registered("queue", source.provider_type):
        connector_registry.register(source)
    created = jf.connectors.create(
        admin,
        name=source.provider_type,
        category="queue",
        provider_type=source.provider_type,
        config={},
    )
    return created["id"], inbound_runner(jf, created["id"], source.from_config({}), "node-a")


class StubbornSource(QueueProvider, SubscriptionSource):
    """Swallows the first cancellation while waiting, as redis-py can on Python 3.11."""

    provider_type = "stubborn_stream_test"
    display_name = "Stubborn stream (tests)"

    async def subscribe(self) -> AsyncIterator[ReceivedEvent]:
        swallowed = False
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True
        yield  # pragma: no cover - makes this an async generator

    def publish(self, topic: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedError


async def test_a_unit_stops_even_if_its_source_swallows_a_cancellation(jf, admin):
    _, unit = unit_of(jf, admin, StubbornSource)
    task = asyncio.create_task(unit())
    await asyncio.sleep(0.3)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()


class GarbageSource(QueueProvider, SubscriptionSource):
    """Yields a plain dict where a ``ReceivedEvent`` belongs (a provider's bug)."""

    provider_type = "garbage_stream_test"
    display_name = "Garbage stream (tests)"

    async def subscribe(self) -> AsyncIterator[ReceivedEvent]:
        yield {"event_id": "e-1", "text": "private words"}  # type: ignore[misc]

    def publish(self, topic: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedError


async def test_a_source_yielding_something_else_is_told_what_it_must_yield(jf, admin):
    connector_id, unit = unit_of(jf, admin, GarbageSource)
    with pytest.raises(InvalidEventError) as refused:
        await asyncio.wait_for(unit(), 10)
    assert "subscribe() must yield ReceivedEvent(event, ack), not dict" in str(refused.value)
    assert inbox(jf, connector_id) == []


class ShortSource(QueueProvider, SubscriptionSource):
    """Yields two events, then its stream ends (a broker that closed the channel)."""

    provider_type = "short_stream_test"
    display_name = "Short stream (tests)"
    ACKED: ClassVar[list[str]] = []

    async def subscribe(self) -> AsyncIterator[ReceivedEvent]:
        for event_id in ("s-1", "s-2"):

            async def ack(event_id: str = event_id) -> None:
                self.ACKED.append(event_id)

            yield ReceivedEvent(InboundEvent(event_id, "t", {}), ack)

    def publish(self, topic: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedError


async def test_a_stream_that_ends_commits_and_acks_what_it_gave_then_fails_the_unit(jf, admin):
    ShortSource.ACKED.clear()
    connector_id, unit = unit_of(jf, admin, ShortSource)
    with pytest.raises(ConnectionFailedError, match="the subscription stream ended"):
        await asyncio.wait_for(unit(), 10)
    assert [e for e, _ in inbox(jf, connector_id)] == ShortSource.ACKED == ["s-1", "s-2"]
