"""Deliveries longer than the outbox lease: a node keeps the lease of a delivery that is
still running, so the message is sent once, however long the external system takes.

Before, every delivery was cut off when its lease ran out (60 s by default, whatever the
connector's own timeout): an endpoint answering after 80 s got the same POST again and
again until the message went to ``dead``. Only a node that dies (or hangs) stops renewing:
its messages go to another node after the lease, and its late ack is rejected. A
delivery that never returns ends at ``outbox_delivery_timeout_seconds``.

The tests use a 1 s lease (its margin 0.1 s), so a 3 s delivery spans three leases.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import pytest
from sqlalchemy import select
from ulid import ULID

from jackfield import connector_registry
from jackfield.app import Jackfield
from jackfield.kernel import MessagingProvider, OutboundMessage, SentMessage
from jackfield.kernel.envelope import Delivered, Envelope
from jackfield.runtime.outbox_store import Ack, Claimed, OutboxStore
from jackfield.store import Database, utcnow
from jackfield.store.models_outbox import OutboxMessage

LEASE = 1.0


class LongCallProvider(MessagingProvider):
    """Answers after ``payload["seconds"]`` (``None``: never), counting its calls."""

    provider_type: ClassVar[str] = "long_call_test"
    display_name: ClassVar[str] = "Long call (tests)"
    calls: ClassVar[list[str]] = []

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="sent")  # (deliver is what is used)

    async def deliver(self, envelope: Envelope) -> Any:
        LongCallProvider.calls.append(envelope.envelope_id)
        seconds = envelope.payload["seconds"]
        await asyncio.sleep(3600 if seconds is None else seconds)
        return Delivered({"after": seconds})


if not connector_registry.is_registered("messaging", LongCallProvider.provider_type):
    connector_registry.register(LongCallProvider)


@pytest.fixture
def jf(database_url: str, make_jf: Callable[..., Jackfield]) -> Jackfield:
    LongCallProvider.calls.clear()
    return make_jf(database_url, outbox_lease_seconds=LEASE, outbox_delivery_timeout_seconds=4.0)


def _row(db: Database, envelope_id: str) -> OutboxMessage:
    with db.transaction() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.envelope_id == envelope_id))
        assert row is not None
        return row


async def _settled(jf: Jackfield, envelope_id: str, timeout: float = 20.0) -> OutboxMessage:
    deadline = time.monotonic() + timeout
    while (row := await asyncio.to_thread(_row, jf.db, envelope_id)).state not in (
        "delivered",
        "dead",
    ):
        assert time.monotonic() < deadline, (row.state, row.attempts, row.last_error)
        await asyncio.sleep(0.05)
    return row


async def test_a_delivery_longer_than_the_lease_is_sent_once(jf, tenant, make_connector):
    """3 s under a 1 s lease: one call, one attempt, delivered; meanwhile another node's
    claims (played here by the store itself) never get the message."""
    cid = make_connector(tenant.admin, "long_call_test", retry={"max_attempts": "3"})
    other_node = OutboxStore(jf.db)
    await jf.start()
    try:
        envelope = await asyncio.to_thread(jf.send, cid, {"seconds": 3.0})
        deadline = time.monotonic() + 10
        while LongCallProvider.calls != [envelope]:  # the node has taken it
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        taken: list[Claimed] = []
        while (row := await asyncio.to_thread(_row, jf.db, envelope)).state == "in_flight":
            taken += await asyncio.to_thread(other_node.claim, 10, 30.0)
            await asyncio.sleep(0.1)
    finally:
        await jf.stop()
    assert taken == []
    assert (row.state, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.result == {"after": 3.0}
    assert LongCallProvider.calls == [envelope]


async def test_messages_waiting_behind_a_long_delivery_lose_no_attempt(jf, tenant, make_connector):
    """One worker busy for 3 s: the messages waiting in its buffer are given back before
    their leases run out (no attempt counted) and taken again, not left to expire and
    claimed again with an attempt counted for a delivery they never had."""
    cid = make_connector(tenant.admin, "long_call_test", runtime={"concurrency": "1"})
    await jf.start()
    try:
        long = await asyncio.to_thread(jf.send, cid, {"seconds": 3.0})
        deadline = time.monotonic() + 10
        while LongCallProvider.calls != [long]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        behind = await asyncio.to_thread(jf.send_many, cid, [{"seconds": 0}] * 3)
        rows = [await _settled(jf, envelope) for envelope in (long, *behind)]
    finally:
        await jf.stop()
    assert [(r.state, r.attempts) for r in rows] == [("delivered", 1)] * 4
    assert sorted(LongCallProvider.calls) == sorted([long, *behind])


async def test_a_message_sent_during_a_long_delivery_uses_a_free_worker(jf, tenant, make_connector):
    """Concurrency 2, one worker busy with a 3 s delivery: a message sent meanwhile goes to
    the second worker at once. Before, a busy worker counted as free for the messages
    waiting in the buffer, so the new one waited for the long delivery to end."""
    cid = make_connector(tenant.admin, "long_call_test", runtime={"concurrency": "2"})
    await jf.start()
    try:
        long = await asyncio.to_thread(jf.send, cid, {"seconds": 3.0})
        deadline = time.monotonic() + 10
        while LongCallProvider.calls != [long]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        quick = await asyncio.to_thread(jf.send, cid, {"seconds": 0})
        row = await _settled(jf, quick)
        long_row = await asyncio.to_thread(_row, jf.db, long)
    finally:
        await jf.stop()
    assert (row.state, row.attempts) == ("delivered", 1)
    assert long_row.state == "in_flight"  # delivered while the long one still ran


async def test_a_busy_database_does_not_make_waiting_messages_lose_an_attempt(
    jf, tenant, make_connector
):
    """As above, while every write waits a quarter of the lease for the one before it (a
    busy database: here a writer holding the group commit 0.25 s at a time). Before, a
    waiting message was given back with a tenth of its lease left or less, so the give-back
    was written after the lease had run out: refused, and the next claim counted an
    attempt the message never had. Now it is given back with half its lease left, as a
    running delivery's lease is renewed."""
    cid = make_connector(tenant.admin, "long_call_test", runtime={"concurrency": "1"})
    committer = jf.runtime.committer
    busy = threading.Event()

    def hold_the_writes() -> None:
        while not busy.is_set():
            committer.submit(lambda session: time.sleep(LEASE / 4))

    await jf.start()
    writer = threading.Thread(target=hold_the_writes, daemon=True)
    try:
        long = await asyncio.to_thread(jf.send, cid, {"seconds": 3.0})
        deadline = time.monotonic() + 10
        while LongCallProvider.calls != [long]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        behind = await asyncio.to_thread(jf.send_many, cid, [{"seconds": 0}] * 3)
        writer.start()
        await asyncio.sleep(3.0)  # the long delivery runs; the others wait
        busy.set()
        rows = [await _settled(jf, envelope) for envelope in (long, *behind)]
    finally:
        busy.set()
        await jf.stop()
    assert [(r.state, r.attempts) for r in rows] == [("delivered", 1)] * 4
    assert jf.runtime.delivery.stats.rejected == 0


async def test_a_delivery_that_never_returns_ends_at_the_delivery_timeout(
    jf, tenant, make_connector
):
    """The node keeps the lease of a call that hangs only until the delivery timeout (4 s
    here, not the 1 s lease): then the attempt counts as a transient failure."""
    cid = make_connector(tenant.admin, "long_call_test", retry={"max_attempts": "1"})
    await jf.start()
    try:
        started = time.monotonic()
        envelope = await asyncio.to_thread(jf.send, cid, {"seconds": None})
        row = await _settled(jf, envelope)
        took = time.monotonic() - started
    finally:
        await jf.stop()
    assert (row.state, row.attempts, row.error_class) == ("dead", 1, "DeliveryTimeout")
    assert "delivery did not finish within 4 s" in (row.last_error or "")
    assert 4 <= took < 12
    assert LongCallProvider.calls == [envelope]


def test_a_renewal_is_fenced_by_the_lease_token(jf, tenant, make_connector):
    """A lease renewed in time holds (nobody claims it, the holder's ack applies); one
    that ran out is not revived by a renewal, whether or not another node took it
    meanwhile, and the late ack is rejected."""
    cid = make_connector(tenant.admin, "long_call_test")
    store = OutboxStore(jf.db)
    kept, lost, stolen = (jf.send(cid, {"seconds": 0}) for _ in range(3))
    claimed = {c.envelope_id: c for c in store.claim(10, lease_seconds=0.5)}
    with jf.db.transaction() as s:
        expires, renewed = store.renew([claimed[kept]], 30.0, s)
    assert renewed == {(cid, kept, claimed[kept].lease_token)}
    assert expires - utcnow() > timedelta(seconds=25)
    time.sleep(0.6)  # the other two leases run out
    [theirs] = [c for c in store.claim(10, lease_seconds=30) if c.envelope_id == stolen]
    with jf.db.transaction() as s:
        _, renewed = store.renew([claimed[lost], claimed[stolen]], 30.0, s)
    assert renewed == set()
    assert _row(jf.db, lost).state == "in_flight"  # claimable: its lease has expired
    assert _row(jf.db, stolen).lease_token == theirs.lease_token
    acks = [Ack(claimed[e], "delivered", {"n": 1}) for e in (kept, lost, stolen)]
    report = store.ack(acks)
    assert [a.claimed.envelope_id for a in report.applied] == [kept]
    assert sorted(a.claimed.envelope_id for a in report.rejected) == sorted([lost, stolen])


def test_a_killed_node_loses_its_long_delivery_to_another_node_after_the_lease(
    database_url: str,
    tmp_path: Path,
    serve_process: Callable[..., Any],
    serve_setup: Callable[..., Any],
) -> None:
    """``jackfield serve`` renews the lease of a 30 s delivery (an echo ``slow``) for as
    long as it runs; killed (SIGKILL) it renews nothing more, and within about a lease
    another node claims the message. The killed node's lease token acks nothing. A 2 s
    lease here: a separate process on a loaded machine may lag a renewal by more than the
    in-process tests' 1 s lease allows."""
    lease = 2 * LEASE
    token, cid, env = serve_setup(database_url, tmp_path / "data", OUTBOX_LEASE_SECONDS=str(lease))
    server = serve_process(env, tmp_path / "serve.log")
    server.start()
    db = Database(database_url)
    try:
        other_node = OutboxStore(db)
        envelope = str(ULID())
        with httpx2.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            body = {"envelope_id": envelope, "payload": {"text": "x", "simulate": "slow:30000"}}
            sent = http.post(f"{server.url}/api/connectors/{cid}/messages", json=body)
        assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 10
        while (row := _row(db, envelope)).state != "in_flight":
            assert time.monotonic() < deadline, row.state
            time.sleep(0.05)
        first = row.lease_expires_at
        held_until = time.monotonic() + 3 * lease
        while time.monotonic() < held_until:  # three leases: renewed, never taken
            assert other_node.claim(10, lease_seconds=30) == []
            time.sleep(0.1)
        row = _row(db, envelope)
        assert (row.state, row.attempts) == ("in_flight", 1)
        assert row.lease_expires_at is not None and first is not None
        assert row.lease_expires_at > first + timedelta(seconds=lease)
        old_lease = Claimed(
            envelope, cid, row.organization_id, "", {}, 1, None, str(row.lease_token), utcnow()
        )
        server.kill()
        killed = time.monotonic()
        while not (taken := other_node.claim(10, lease_seconds=30)):
            assert time.monotonic() - killed < lease + 3, "the message was not released"
            time.sleep(0.05)
        assert [(c.envelope_id, c.attempts) for c in taken] == [(envelope, 2)]
        late = other_node.ack([Ack(old_lease, "delivered", {"late": True})])
        assert late.applied == [] and len(late.rejected) == 1
        assert other_node.ack([Ack(taken[0], "delivered", {"n": 2})]).applied
        assert _row(db, envelope).result == {"n": 2}
    finally:
        db.engine.dispose()
