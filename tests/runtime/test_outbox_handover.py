"""The outbox's fast paths keep the outbox's promises: messages handed straight to the
running worker are committed first and delivered once; a handed-over message whose
worker died is claimed by anyone after its lease; an ack batch with one lost lease
applies the others and rejects that one; a graceful stop gives handed-over messages
back. Real databases, both."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from jackfield.kernel.inbound import InboundEvent
from jackfield.runtime.outbox_store import Ack, Claimed, LeasesChanged, OutboxStore
from jackfield.service.outbox import Lease, OutboxService
from jackfield.store import utcnow
from jackfield.store.models_inbound import InboxEvent
from jackfield.store.models_outbox import OutboxMessage


def _rows(jf):
    with jf.db.transaction() as s:
        return {r.envelope_id: r for r in s.scalars(select(OutboxMessage))}


def _events(jf, connector_id):
    with jf.db.transaction() as s:
        query = select(InboxEvent.event_id).where(InboxEvent.connector_id == connector_id)
        return sorted(s.scalars(query))


async def _until(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_messages_sent_to_a_running_worker_are_handed_over_and_delivered_once(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin)
    delivery = jf.runtime.delivery
    await jf.start()
    try:
        # the first message is claimed (its unit starts with it); the next ones skip
        # the queue: inserted in flight under the worker's lease, handed over in memory
        first = await asyncio.to_thread(jf.send, cid, {"text": "first"})
        await _until(lambda: delivery.stats.delivered == 1)
        sent = await asyncio.gather(
            *(asyncio.to_thread(jf.send, cid, {"text": f"m{i}"}) for i in range(20))
        )
        await _until(lambda: delivery.stats.delivered == 21)
    finally:
        await jf.stop()
    assert delivery.stats.handed_over == 20
    rows = _rows(jf)
    for envelope in [first, *sent]:
        row = rows[envelope]
        assert (row.state, row.attempts, row.lease_token) == ("delivered", 1, None)
        assert row.payload["text"] and row.result["message_id"].startswith("echo-")
        assert row.created_at <= row.updated_at <= utcnow()  # timestamps as the ORM reads them
    assert _events(jf, cid) == sorted(f"echo:{e}" for e in [first, *sent])


class _DeadWorker:
    """Takes new messages under a short lease, then dies before delivering them."""

    def __init__(self, lease_seconds):
        self.lease_seconds = lease_seconds
        self.leases = []

    def reserve(self, connector_id, count):
        expires = utcnow() + timedelta(seconds=self.lease_seconds)
        self.leases.append(Lease(connector_id, f"dead-{len(self.leases)}", expires, count))
        return self.leases[-1]

    def hand_over(self, connector_id, organization_id, lease, sends, created_at):
        self.handed = [(s.envelope_id, created_at) for s in sends]

    def cancel(self, lease):
        raise AssertionError("nothing failed")


def test_a_handed_over_message_whose_worker_died_is_claimed_after_its_lease(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin)
    outbox = OutboxService(jf.db)
    worker = _DeadWorker(lease_seconds=2)  # long enough for a loaded CI machine
    outbox.set_direct_delivery(worker)
    result = outbox.send(None, cid, {"text": "orphan"})
    assert result.created and result.state == "in_flight"
    [lease] = worker.leases
    row = _rows(jf)[result.envelope_id]  # committed before send returned
    assert (row.state, row.attempts, row.lease_token) == ("in_flight", 1, lease.token)
    assert row.next_attempt_at == row.lease_expires_at == lease.expires_at

    store = OutboxStore(jf.db)
    assert store.claim(10, lease_seconds=30) == []  # leased: nobody else takes it
    time.sleep((lease.expires_at - utcnow()).total_seconds() + 0.1)
    [taken] = store.claim(10, lease_seconds=30)
    assert (taken.envelope_id, taken.attempts, taken.payload) == (
        result.envelope_id,
        2,
        {"text": "orphan"},
    )
    [(envelope, created_at)] = worker.handed
    late = Claimed(
        envelope, cid, tenant.org_id, "", {}, 1, created_at, lease.token, lease.expires_at
    )
    report = store.ack([Ack(late, "delivered", result={})])
    assert report.rejected and not report.applied  # the dead worker's ack is fenced off
    assert store.ack([Ack(taken, "delivered", result={"ok": True})]).applied
    assert _rows(jf)[result.envelope_id].state == "delivered"
    outbox.committer.close()


def _delivered(claimed):
    event = InboundEvent(f"echo:{claimed.envelope_id}", "message.received", {"n": 1})
    return Ack(claimed, "delivered", result={"message_id": "m"}, events=(event,))


def test_an_ack_batch_with_one_lost_lease_applies_the_others(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    futures = [jf.runtime.outbox.send_async(None, cid, {"text": str(i)}) for i in range(3)]
    for future in futures:
        future.result(30)
    store = OutboxStore(jf.db)
    [short] = store.claim(1, lease_seconds=1)  # still held at the next claim, even on CI
    held = store.claim(2, lease_seconds=30)
    time.sleep((short.lease_expires_at - utcnow()).total_seconds() + 0.05)
    [stolen] = store.claim(1, lease_seconds=30)
    assert stolen.envelope_id == short.envelope_id
    batch = [_delivered(short), *(_delivered(c) for c in held)]

    # in a caller's transaction the fast path refuses the whole batch ...
    with pytest.raises(LeasesChanged), jf.db.transaction() as s:
        store.ack(batch, s)
    assert {r.state for r in _rows(jf).values()} == {"in_flight"}  # ... leaving nothing
    assert _events(jf, cid) == []

    # ... and on its own it retries carefully: the held leases apply, the lost one not
    report = store.ack(batch)
    assert [a.claimed.envelope_id for a in report.rejected] == [short.envelope_id]
    assert {a.claimed.envelope_id for a in report.applied} == {c.envelope_id for c in held}
    assert report.events_added == 2
    rows = _rows(jf)
    assert rows[short.envelope_id].lease_token == stolen.lease_token
    assert {rows[c.envelope_id].state for c in held} == {"delivered"}
    assert _events(jf, cid) == sorted(f"echo:{c.envelope_id}" for c in held)


def test_loopback_events_already_stored_are_not_stored_twice(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    jf.runtime.outbox.send(None, cid, {"text": "x"})
    store = OutboxStore(jf.db)
    [first] = store.claim(1, lease_seconds=0.2)
    time.sleep(0.3)
    [again] = store.claim(1, lease_seconds=30)  # a redelivery after a lost ack ...
    with jf.db.transaction() as s:  # ... whose event got stored meanwhile
        s.add(
            InboxEvent(
                connector_id=cid,
                organization_id=tenant.org_id,
                event_id=f"echo:{first.envelope_id}",
                event_type="message.received",
                payload={},
                source="loopback",
            )
        )
    report = store.ack([_delivered(again)])
    assert len(report.applied) == 1 and report.events_added == 0
    with jf.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(InboxEvent)) == 1


async def test_stop_gives_back_handed_over_messages_not_yet_delivered(jf, tenant, make_connector):
    cid = make_connector(tenant.admin, runtime={"concurrency": "2"})
    await jf.start()
    try:
        warm = await asyncio.to_thread(jf.send, cid, {"text": "warm"})  # starts the unit
        await _until(lambda: _rows(jf)[warm].state == "delivered")
        slow = [
            await asyncio.to_thread(jf.send, cid, {"text": "slow", "simulate": "slow:5000"})
            for _ in range(5)
        ]
        assert jf.runtime.delivery.stats.handed_over == 5
        await asyncio.sleep(0.2)  # two deliveries running, three waiting for a slot
    finally:
        await jf.stop()  # the running two outlast the grace period: cut off (an attempt)
    rows = _rows(jf)
    outcomes = sorted((rows[e].state, rows[e].attempts, rows[e].lease_token) for e in slow)
    assert outcomes == [("pending", 0, None)] * 3 + [("retrying", 1, None)] * 2
