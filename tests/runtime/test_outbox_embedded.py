"""Embedded use: ``jf.send`` is a durable write; ``await jf.start()`` delivers, and
``@jf.on`` handlers see the loopback events."""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import threading
import time
from typing import ClassVar

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from ulid import ULID

from jackfield import ConnectionTestResult, connector_registry
from jackfield.kernel import (
    ConflictError,
    ConnectorNotFoundError,
    Delivered,
    DeliveryOutcome,
    Envelope,
    MessagingProvider,
    OutboundMessage,
    SentMessage,
)
from jackfield.service import Principal, Role
from jackfield.service.outbox import InvalidMessageError
from jackfield.store.models_outbox import OutboxMessage
from jackfield.testing import LiveServer

from .conftest import new_tenant


def _rows(jf):
    with jf.db.transaction() as s:
        return {r.envelope_id: r for r in s.scalars(select(OutboxMessage))}


async def test_send_commits_before_returning_and_the_runtime_delivers(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    seen: list[str] = []

    @jf.on("message.received")
    async def on_message(event):
        seen.append(event.payload["envelope_id"])

    envelope = await asyncio.to_thread(jf.send, cid, {"text": "hi"})
    assert str(ULID.from_str(envelope)) == envelope
    assert _rows(jf)[envelope].state == "pending"  # durable before any runtime ran
    chosen = str(ULID())
    assert await asyncio.to_thread(jf.send, cid, {"text": "x"}, envelope_id=chosen) == chosen
    assert await asyncio.to_thread(jf.send, cid, {"text": "x"}, envelope_id=chosen) == chosen

    await jf.start()
    try:
        for _ in range(200):
            if sorted(seen) == sorted([envelope, chosen]):
                break
            await asyncio.sleep(0.05)
    finally:
        await jf.stop()
    assert sorted(seen) == sorted([envelope, chosen])  # each once, the repeat not at all
    assert {r.state for r in _rows(jf).values()} == {"delivered"}


def test_send_refuses_what_cannot_be_delivered(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    off = make_connector(tenant.admin, enable=False)
    with pytest.raises(InvalidMessageError):
        jf.send(cid, {"text": "x"}, envelope_id="01ARZ3NDEKTSV4RRFFQ69G5FA")  # 25 chars
    with pytest.raises(InvalidMessageError):
        jf.send(cid, "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="NUL"):  # PostgreSQL text cannot hold it
        jf.send(cid, {"text": "x"}, operation="send\x00message")
    with pytest.raises(ConnectorNotFoundError):
        jf.send("00000000-0000-0000-0000-000000000000", {"text": "x"})
    with pytest.raises(ConflictError):
        jf.send(off, {"text": "x"})
    assert _rows(jf) == {}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"text": "\ud800"}, "not valid Unicode"),
        ({"n": float("nan")}, "NaN"),
        ({"n": [float("inf")]}, "NaN or an infinity"),
        ({"n": 2**64}, "beyond 64 bits"),
        ({"tags": {"a", "b"}}, "not JSON"),
        (functools.reduce(lambda inner, _: {"a": [inner]}, range(40), {}), "deeper than 64"),
    ],
)
def test_send_refuses_payloads_that_could_not_be_read_back(
    jf, tenant, make_connector, payload, reason
):
    """What the delivery path (orjson) or the API could not read back is refused when
    sent, with the reason, and nothing is queued."""
    cid = make_connector(tenant.admin)
    with pytest.raises(InvalidMessageError, match=reason):
        jf.send(cid, payload)
    assert _rows(jf) == {}


def test_send_takes_payloads_at_the_limits(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    deepest = functools.reduce(lambda inner, _: {"a": [inner]}, range(31), {"n": None})
    fine = {"big": 2**64 - 1, "small": -(2**63), "emoji": "\U0001f600", "deep": deepest}
    envelope = jf.send(cid, fine)
    assert _rows(jf)[envelope].payload == fine


def test_send_refuses_keys_that_are_not_strings_and_says_where(jf, tenant, make_connector):
    """Before: keys were written as text, so ``{1: "a", "1": "b"}`` was queued as
    ``{"1": "b"}`` -- a value silently lost -- and ``None`` became the key "null"."""
    cid = make_connector(tenant.admin)
    with pytest.raises(InvalidMessageError, match=r"not a string: 1 \(int\) in payload$"):
        jf.send(cid, {"text": "d", 1: "a", "1": "b"})
    nested = {"text": "d", "rows": [{"id": "x"}, {"id": "y", None: "z"}]}
    with pytest.raises(InvalidMessageError, match=r"None \(NoneType\) in payload\['rows'\]\[1\]"):
        jf.send(cid, nested)
    assert _rows(jf) == {}

    class Field(enum.StrEnum):
        TEXT = "text"

    envelope = jf.send(cid, {Field.TEXT: "a str subclass is a string"})
    assert _rows(jf)[envelope].payload == {"text": "a str subclass is a string"}


async def test_send_many_commits_a_batch_in_order_and_the_runtime_delivers_each_once(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin)
    payloads = [{"text": f"m{i}", "n": i} for i in range(40)]
    envelopes = await asyncio.to_thread(jf.send_many, cid, payloads)
    assert len(set(envelopes)) == 40
    rows = _rows(jf)
    assert [rows[e].payload for e in envelopes] == payloads  # in order, committed
    assert {r.state for r in rows.values()} == {"pending"}
    assert await asyncio.to_thread(jf.send_many, cid, []) == []

    await jf.start()
    try:
        for _ in range(200):
            if jf.runtime.delivery.stats.delivered == 40:
                break
            await asyncio.sleep(0.05)
    finally:
        await jf.stop()
    assert jf.runtime.delivery.stats.delivered == 40
    assert {r.state for r in _rows(jf).values()} == {"delivered"}


def test_send_many_queues_nothing_when_one_message_cannot_be_sent(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    off = make_connector(tenant.admin, enable=False)
    with pytest.raises(InvalidMessageError, match="payload must be a JSON object"):
        jf.send_many(cid, [{"text": "fine"}, "not an object"])  # type: ignore[list-item]
    with pytest.raises(InvalidMessageError, match="operation"):
        jf.send_many(cid, [{"text": "x"}], operation="o" * 101)
    with pytest.raises(ConflictError):
        jf.send_many(off, [{"text": "x"}, {"text": "y"}])
    with pytest.raises(ConnectorNotFoundError):
        jf.send_many("00000000-0000-0000-0000-000000000000", [{"text": "x"}])
    assert _rows(jf) == {}


def test_send_many_names_the_payload_it_refuses(jf, tenant, make_connector):
    """Before: one NaN among 511 payloads was refused as ``{'payload': 'JSON'}``, with no
    way to tell which of them to fix."""
    cid = make_connector(tenant.admin)
    payloads: list = [{"text": f"r{i}"} for i in range(511)]
    payloads[500] = {"text": "bad", "v": float("nan")}
    with pytest.raises(InvalidMessageError, match=r"^payloads\[500\]: .*NaN") as info:
        jf.send_many(cid, payloads)
    assert info.value.field_errors == {"payloads.500": "JSON"}
    payloads[500] = "not an object"
    with pytest.raises(InvalidMessageError, match=r"^payloads\[500\]: .*JSON object") as info:
        jf.send_many(cid, payloads)
    assert info.value.field_errors == {"payloads.500": "an object"}
    assert _rows(jf) == {}


def test_a_backlog_larger_than_one_write_is_split_and_every_sender_hears_back(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin)
    outbox = jf.runtime.outbox
    enqueuer = outbox._enqueuer
    enqueuer.max_sends = 10
    transactions: list[int] = []
    original = enqueuer._write

    def counting_write(session, write):
        outcomes = original(session, write)
        transactions.append(len(write.sends))
        return outcomes

    enqueuer._write = counting_write
    futures = [outbox.send_async(None, cid, {"text": f"one {i}"}) for i in range(25)]
    futures.append(outbox.send_many_async(None, cid, [{"text": f"many {i}"} for i in range(15)]))
    results = [f.result(30) for f in futures]
    assert [r.created for r in results[:25]] == [True] * 25
    assert len(results[25]) == 15
    assert len(_rows(jf)) == 40
    assert max(transactions) <= 15  # never more than max_sends, unless one caller's batch is
    assert sum(transactions) == 40


@pytest.mark.parametrize(
    ("config", "capped"), [({"runtime": {"concurrency": "2"}}, True), ({}, False)]
)
async def test_the_concurrency_param_caps_deliveries_running_side_by_side(
    jf, tenant, make_connector, config, capped
):
    """Six deliveries of 0.4 s, twice: with ``runtime.concurrency`` 2 they run two at a
    time (three rounds, at least 1.2 s); with the default (16) side by side. The first
    six arrive before the unit has opened its provider, where the param is read."""
    cid = make_connector(tenant.admin, **config)
    slow = {"text": "slow", "simulate": "slow:400"}
    await jf.start()
    try:
        for _ in ("cold", "warm"):
            started = time.monotonic()
            envelopes = await asyncio.to_thread(jf.send_many, cid, [slow] * 6)
            await _delivered(jf, envelopes)
            elapsed = time.monotonic() - started
            if capped:
                assert elapsed >= 1.2
            else:
                assert elapsed < 1.2
    finally:
        await jf.stop()


async def test_a_change_right_after_the_first_message_is_not_lost(database_url, make_jf):
    """A unit started by a message opens its provider before the supervisor has looked
    at the connector; a change made before that look used to be adopted as if the
    provider had read it, and the old params stayed in use until the next change."""
    jf = make_jf(database_url, supervisor_poll_seconds=1.0)
    org = jf.accounts.create_org(f"org-{ULID()}")["id"]
    admin = Principal(org, "admin@example.com", Role.ADMIN)
    retry = {"max_attempts": "2", "base_seconds": "0.01"}
    created = jf.connectors.create(
        admin, name="echo", category="messaging", provider_type="echo", config={"retry": retry}
    )
    cid = created["id"]
    jf.connectors.test(admin, cid)
    jf.connectors.set_enabled(admin, cid, True)
    await jf.start()
    try:
        await _delivered(jf, [await asyncio.to_thread(jf.send, cid, {"text": "first"})])
        more = {"retry": {**retry, "max_attempts": "8"}}
        await asyncio.to_thread(jf.connectors.update, admin, cid, config=more)
        await asyncio.sleep(1.5)  # the supervisor looks at the connector (once or twice)
        flaky = await asyncio.to_thread(jf.send, cid, {"text": "x", "simulate": "transient:4"})
        await _delivered(jf, [flaky])
    finally:
        await jf.stop()
    assert _rows(jf)[flaky].attempts == 5  # the new policy: two attempts would be dead


class Versioned(MessagingProvider):
    """Says which ``version`` of its config delivered each message."""

    provider_type: ClassVar[str] = "versioned_test"
    display_name: ClassVar[str] = "Versioned (tests)"

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(True, "ok")

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id=f"v{self.config.get('version')}")


if not connector_registry.is_registered("messaging", Versioned.provider_type):
    connector_registry.register(Versioned)


async def test_a_message_sent_after_a_change_is_delivered_with_the_new_config(
    database_url, make_jf
):
    """The runtime of the process that made the change reloads the unit at once, and the
    connector's messages wait for that (none is handed to the old one meanwhile); before,
    it noticed only at its next look (here 30 s), and a revoked token or a moved base URL
    stayed in use meanwhile."""
    jf = make_jf(database_url, supervisor_poll_seconds=30.0)
    org = jf.accounts.create_org(f"org-{ULID()}")["id"]
    admin = Principal(org, "admin@example.com", Role.ADMIN)
    created = jf.connectors.create(
        admin,
        name="v",
        category="messaging",
        provider_type=Versioned.provider_type,
        config={"version": "1"},
    )
    cid = created["id"]
    jf.connectors.test(admin, cid)
    jf.connectors.set_enabled(admin, cid, True)
    await jf.start()
    try:
        results = []
        for version in ("2", "3", "4"):
            first = await asyncio.to_thread(jf.send, cid, {"text": "before"})
            await _delivered(jf, [first])  # the unit is open, with the config of then
            await asyncio.to_thread(jf.connectors.update, admin, cid, config={"version": version})
            after = await asyncio.to_thread(jf.send, cid, {"text": "after"})  # at once
            await _delivered(jf, [after])
            results.append((version, _rows(jf)[after].result["message_id"]))
    finally:
        await jf.stop()
    assert results == [("2", "v2"), ("3", "v3"), ("4", "v4")]


async def _delivered(jf, envelopes: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _rows(jf)
        if all(rows[e].state == "delivered" for e in envelopes):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not delivered within {timeout} s")


async def test_start_after_stop_in_the_same_process_delivers_again(jf, tenant, make_connector):
    """Before, the units of the first run were kept, stopped: a connector that had
    delivered before ``stop()`` delivered nothing after ``start()`` again."""
    cid = make_connector(tenant.admin)

    async def delivered(envelope: str) -> bool:
        for _ in range(200):
            if _rows(jf)[envelope].state == "delivered":
                return True
            await asyncio.sleep(0.05)
        return False

    await jf.start()
    try:
        assert await delivered(await asyncio.to_thread(jf.send, cid, {"text": "first run"}))
    finally:
        await jf.stop()
    waiting = await asyncio.to_thread(jf.send, cid, {"text": "sent while stopped"})
    await jf.start()
    try:
        after = await asyncio.to_thread(jf.send, cid, {"text": "second run"})
        assert await delivered(waiting) and await delivered(after)
        assert jf.runtime.supervisor.units[cid].liveness == "running"
    finally:
        await jf.stop()


def test_start_in_a_new_event_loop_after_one_ended_without_stop_delivers(
    jf, tenant, make_connector
):
    """Before: an event loop that ended without ``stop()`` (``asyncio.run`` returning, a
    test's loop) left the runtime "running": ``start()`` in the next loop did nothing,
    nothing more was delivered, and ``stop()`` raised "Event loop is closed"."""
    cid = make_connector(tenant.admin)
    seen: list[str] = []
    jf.on("message.received")(lambda event: seen.append(event.payload["text"]))

    async def run(text: str, *, stop: bool) -> None:
        await jf.start()
        await asyncio.to_thread(jf.send, cid, {"text": text})
        for _ in range(200):
            if text in seen:
                break
            await asyncio.sleep(0.05)
        if stop:
            await jf.stop()

    asyncio.run(run("first", stop=False))
    jf.send(cid, {"text": "sent between the loops"})
    asyncio.run(run("second", stop=False))
    asyncio.run(jf.stop())  # in a loop of its own: lets go of the one that ended
    assert not jf.runtime.running
    asyncio.run(run("third", stop=True))
    assert seen == ["first", "sent between the loops", "second", "third"]
    assert {r.state for r in _rows(jf).values()} == {"delivered"}


def test_start_in_a_second_loop_while_the_first_still_runs_is_refused(jf):
    """The runtime cannot run in two loops at once: the second says to stop the first."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(jf.start(), loop).result(30)
        with pytest.raises(RuntimeError, match=r"another event loop: await jf\.stop\(\)"):
            asyncio.run(jf.start())
        asyncio.run_coroutine_threadsafe(jf.stop(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert not jf.runtime.running


def test_a_new_event_loop_lets_go_of_an_http_connector_without_logging_a_failure(
    database_url, make_jf, caplog
):
    """Before: starting again in a new loop logged "closing provider http failed" with an
    "Event loop is closed" traceback for each open HTTP connector (its connections
    belonged to the loop that had ended, and no other loop can close them): a warning
    about a failure nobody could act on, after the runtime had already said why."""
    posted: list[str] = []

    async def endpoint(request: Request) -> JSONResponse:
        if request.method == "POST":
            posted.append(request.url.path)
        return JSONResponse({})

    app = Starlette(routes=[Route("/{rest:path}", endpoint, methods=["GET", "POST"])])
    jf = make_jf(database_url, egress_allowlist="127.0.0.1")
    who = new_tenant(jf).admin
    with LiveServer(app, lifespan="off") as live:
        cid = jf.connectors.create(
            who,
            name="rest",
            category="http",
            provider_type="http",
            config={"base_url": live.url, "health_path": "/health"},
        )["id"]
        assert jf.connectors.test(who, cid)["success"]
        jf.connectors.set_enabled(who, cid, True)

        async def run(path: str, *, stop: bool) -> None:
            await jf.start()
            await asyncio.to_thread(
                jf.send, cid, {"method": "POST", "path": path}, operation="request"
            )
            for _ in range(200):
                if path in posted:
                    break
                await asyncio.sleep(0.05)
            if stop:
                await jf.stop()

        asyncio.run(run("/first", stop=False))  # its connection stays in the pool
        with caplog.at_level(logging.WARNING):
            asyncio.run(run("/second", stop=True))
    assert posted == ["/first", "/second"]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [m for m in warned if "closing provider" in m] == []
    assert any("closed without jf.stop()" in m for m in warned)  # what the user must know


class AsyncTested(MessagingProvider):
    """A provider whose connection test is a coroutine, as most network providers'."""

    provider_type: ClassVar[str] = "async_tested_test"
    display_name: ClassVar[str] = "Async tested (tests)"

    async def test_connection(self) -> ConnectionTestResult:
        await asyncio.sleep(0)
        return ConnectionTestResult(True, "answered from a coroutine")

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="sent")


if not connector_registry.is_registered("messaging", AsyncTested.provider_type):
    connector_registry.register(AsyncTested)


async def test_an_async_connection_test_runs_from_inside_an_event_loop(jf, tenant):
    """Embedded apps call the service from their own ``async def`` (where ``jf.start()``
    runs). Before, the test failed there: "asyncio.run() cannot be called from a running
    event loop", and the connector was saved with status error."""
    created = jf.connectors.create(
        tenant.admin, name="a", category="messaging", provider_type=AsyncTested.provider_type
    )
    tested = jf.connectors.test(tenant.admin, created["id"])  # on the loop's own thread
    assert (tested["success"], tested["message"]) == (True, "answered from a coroutine")
    assert jf.connectors.get(tenant.admin, created["id"])["status"] == "connected"


class OwnDispatch(MessagingProvider):
    """Overrides ``deliver`` with its own dispatch (README: ``deliver`` may be
    overridden), taking an operation ``operations()`` does not list."""

    provider_type: ClassVar[str] = "own_dispatch_test"
    display_name: ClassVar[str] = "Own dispatch (tests)"

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(True, "ok")

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="sent")

    async def deliver(self, envelope: Envelope) -> DeliveryOutcome:
        if envelope.operation == "archive_thread":
            return Delivered({"archived": envelope.payload["thread"]})
        return await super().deliver(envelope)


if not connector_registry.is_registered("messaging", OwnDispatch.provider_type):
    connector_registry.register(OwnDispatch)


async def test_a_provider_with_its_own_deliver_gets_the_operations_it_handles(
    jf, tenant, make_connector
):
    """Before, the send-time check of operation names read only ``operations()`` and
    refused every message naming an operation that such a ``deliver`` handles."""
    cid = make_connector(tenant.admin, OwnDispatch.provider_type)
    envelope = await asyncio.to_thread(jf.send, cid, {"thread": "t1"}, operation="archive_thread")
    await jf.start()
    try:
        await _delivered(jf, [envelope])
    finally:
        await jf.stop()
    # echo's deliver dispatches through operations(): its unknown names are still refused
    with pytest.raises(InvalidMessageError, match="no_such_op"):
        jf.send(make_connector(tenant.admin), {"text": "x"}, operation="no_such_op")
