"""Leases: a late ack from an expired or stolen lease is rejected; claims skip what
another worker holds; released messages return untouched. Real databases, both."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy import func, select

from jackfield.kernel.inbound import InboundEvent
from jackfield.runtime.outbox_store import Ack, OutboxStore
from jackfield.store import utcnow
from jackfield.store.models_inbound import InboxEvent
from jackfield.store.models_outbox import OutboxMessage


def _queue(jf, connector_id, count):
    futures = [
        jf.runtime.outbox.send_async(None, connector_id, {"text": str(i)}) for i in range(count)
    ]
    return [f.result(30).envelope_id for f in futures]


def _row(jf, envelope_id):
    with jf.db.transaction() as s:
        return s.scalar(select(OutboxMessage).where(OutboxMessage.envelope_id == envelope_id))


def _inbox_count(jf, connector_id):
    with jf.db.transaction() as s:
        query = select(func.count()).where(InboxEvent.connector_id == connector_id)
        return s.scalar(query)


def _delivered(claimed):
    event = InboundEvent(f"echo:{claimed.envelope_id}", "message.received", {"n": 1})
    return Ack(claimed, "delivered", result={"message_id": "m1"}, events=(event,))


def test_an_ack_from_a_stolen_lease_is_rejected(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    [envelope] = _queue(jf, cid, 1)
    store = OutboxStore(jf.db)

    [mine] = store.claim(10, lease_seconds=1)  # long enough for a loaded CI machine
    assert mine.envelope_id == envelope and mine.attempts == 1
    assert store.claim(10, lease_seconds=1) == []  # leased: nobody else gets it
    time.sleep((mine.lease_expires_at - utcnow()).total_seconds() + 0.05)
    [theirs] = store.claim(10, lease_seconds=30)  # the lease expired: taken over
    assert theirs.envelope_id == envelope and theirs.attempts == 2
    assert theirs.lease_token != mine.lease_token

    late = store.ack([_delivered(mine)])
    assert late.applied == [] and len(late.rejected) == 1 and late.events_added == 0
    assert late.gone == []  # the message is there, under another lease
    row = _row(jf, envelope)
    assert row.state == "in_flight" and row.lease_token == theirs.lease_token
    assert _inbox_count(jf, cid) == 0  # the rejected ack wrote no event either

    ok = store.ack([_delivered(theirs)])
    assert len(ok.applied) == 1 and ok.events_added == 1
    row = _row(jf, envelope)
    assert row.state == "delivered" and row.lease_token is None and row.attempts == 2
    assert _inbox_count(jf, cid) == 1
    assert store.ack([_delivered(theirs)]).rejected  # and only once


def test_an_ack_after_the_lease_expired_is_rejected_even_if_nobody_took_over(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin)
    [envelope] = _queue(jf, cid, 1)
    store = OutboxStore(jf.db)
    [claimed] = store.claim(10, lease_seconds=0.1)
    time.sleep(0.2)
    report = store.ack([Ack(claimed, "dead", error_class="X", last_error="late")])
    assert report.rejected and not report.applied
    assert _row(jf, envelope).state == "in_flight"  # claimable again, as it should be
    assert [c.envelope_id for c in store.claim(10, lease_seconds=5)] == [envelope]


def test_an_ack_for_a_message_deleted_with_its_connector_says_so(jf, tenant, make_connector):
    """Deleting a connector deletes its queued messages, in flight ones too: their late
    acks are rejected as gone (not as a lost lease), and write nothing."""
    cid = make_connector(tenant.admin)
    kept = make_connector(tenant.admin)
    _queue(jf, cid, 2)
    [other] = _queue(jf, kept, 1)
    store = OutboxStore(jf.db)
    claimed = store.claim(10, lease_seconds=30)
    assert len(claimed) == 3
    jf.connectors.delete(tenant.admin, cid)

    report = store.ack([_delivered(c) for c in claimed])
    gone = {c.envelope_id for c in claimed if c.connector_id == cid}
    assert {a.claimed.envelope_id for a in report.gone} == gone
    assert {a.claimed.envelope_id for a in report.rejected} == gone
    assert [a.claimed.envelope_id for a in report.applied] == [other]
    assert _inbox_count(jf, cid) == 0 and _inbox_count(jf, kept) == 1


async def test_the_runtime_logs_a_delivery_whose_connector_was_deleted_meanwhile(
    jf, tenant, make_connector, caplog
):
    caplog.set_level(logging.INFO, logger="jackfield.runtime.outbox_acker")
    cid = make_connector(tenant.admin)
    envelope = jf.send(cid, {"text": "slow", "simulate": "slow:600"})
    await jf.start()
    try:
        for _ in range(200):
            if _row(jf, envelope).state == "in_flight":
                break
            await asyncio.sleep(0.02)
        await asyncio.to_thread(jf.connectors.delete, tenant.admin, cid)
        stats = jf.runtime.delivery.stats
        for _ in range(200):
            if stats.rejected:
                break
            await asyncio.sleep(0.02)
    finally:
        await jf.stop()
    assert stats.rejected == 1 and stats.delivered == 0
    assert f"ack of {envelope} rejected: the message was deleted with its connector" in (
        caplog.text
    )
    assert "taken over" not in caplog.text


def test_released_messages_go_back_to_pending_with_the_attempt_uncounted(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin)
    envelopes = _queue(jf, cid, 3)
    store = OutboxStore(jf.db)
    claimed = store.claim(10, lease_seconds=30)
    assert sorted(c.envelope_id for c in claimed) == sorted(envelopes)
    report = store.ack([Ack(c, "release") for c in claimed])
    assert len(report.applied) == 3
    for envelope in envelopes:
        row = _row(jf, envelope)
        assert (row.state, row.attempts, row.lease_token) == ("pending", 0, None)
    assert len(store.claim(10, lease_seconds=30)) == 3


def test_claims_skip_disabled_connectors_and_excluded_ones(jf, tenant, make_connector):
    on = make_connector(tenant.admin)
    paused = make_connector(tenant.admin)
    _queue(jf, on, 2)
    _queue(jf, paused, 2)
    jf.connectors.set_enabled(tenant.admin, paused, False)
    store = OutboxStore(jf.db)
    assert store.claim(10, 30, exclude=[on]) == []
    assert {c.connector_id for c in store.claim(10, 30)} == {on}
    jf.connectors.set_enabled(tenant.admin, paused, True)
    assert {c.connector_id for c in store.claim(10, 30)} == {paused}


def test_concurrent_claims_on_postgresql_take_disjoint_messages(
    jf, tenant, make_connector, database_url
):
    if not database_url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has a single writer")
    cid = make_connector(tenant.admin)
    _queue(jf, cid, 10)
    store = OutboxStore(jf.db)
    with jf.db.transaction() as first:
        batch_one = store.claim(4, 30, session=first)  # rows locked until this commits
        batch_two = store.claim(10, 30)  # another transaction does not wait for them
    ids_one = {c.envelope_id for c in batch_one}
    ids_two = {c.envelope_id for c in batch_two}
    assert len(ids_one) == 4 and len(ids_two) == 6 and not ids_one & ids_two


def test_a_large_ack_batch_over_several_leases_records_each_result(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    envelopes = _queue(jf, cid, 290)
    store = OutboxStore(jf.db)
    first = store.claim(270, lease_seconds=30)  # chunks of 256 + 4*3 + 1*2 rows
    second = store.claim(270, lease_seconds=30)
    assert len(first) == 270 and len(second) == 20
    acks = [
        Ack(c, "delivered", result={"n": i, "big": 2**70}) for i, c in enumerate(first + second)
    ]
    report = store.ack(acks)
    assert len(report.applied) == 290 and report.rejected == []
    with jf.db.transaction() as s:
        rows = {r.envelope_id: r for r in s.scalars(select(OutboxMessage))}
    by_envelope = {a.claimed.envelope_id: a.result for a in acks}
    assert {e: (rows[e].state, rows[e].result) for e in envelopes} == {
        e: ("delivered", by_envelope[e]) for e in envelopes
    }
    assert {rows[e].lease_token for e in envelopes} == {None}
