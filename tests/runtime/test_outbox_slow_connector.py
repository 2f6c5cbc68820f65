"""A connector slower than its claims: a claim holds more messages than its workers
deliver within the lease, so the tail of each claim cannot be delivered in time.

Those messages must be given back untouched, not started and cut off by the lease:
a cut-off delivery counts as a failed attempt the message never really had (enough of
them dead-letter a healthy message) and may reach the external system twice. Only the
first claim, before the connector's pace is known, may cut deliveries off.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from jackfield.store.models_outbox import OutboxMessage

WORKERS = 4


@pytest.fixture
def jf(sqlite_url, make_jf):
    """A 2 s lease (0.2 s margin): four workers deliver about 24 slow messages in it."""
    return make_jf(sqlite_url, outbox_lease_seconds=2.0)


async def test_a_slow_connector_loses_no_attempts_to_its_lease(jf, tenant, make_connector):
    cid = make_connector(
        tenant.admin,
        runtime={"concurrency": str(WORKERS)},
        retry={"max_attempts": "3", "base_seconds": "0.01"},
    )
    await jf.start()
    try:
        warm = await asyncio.to_thread(jf.send, cid, {"text": "warm"})  # opens the unit,
        await _settled(jf, cid, 1)  # which reads its concurrency param
        slow = {"text": "slow", "simulate": "slow:300"}
        envelopes = await asyncio.to_thread(jf.send_many, cid, [slow] * 60)  # ~3 leases
        rows = await _settled(jf, cid, 61)
    finally:
        await jf.stop()
    assert {r.envelope_id for r in rows} == {warm, *envelopes}
    assert [r.envelope_id for r in rows if r.state == "dead"] == []
    retried = [r for r in rows if r.attempts > 1]
    assert len(retried) <= WORKERS, [(r.attempts, r.last_error) for r in retried]


async def test_a_connector_slower_than_half_its_lease_still_delivers(jf, tenant, make_connector):
    """1.3 s a message under a 2 s lease: no delivery after the first of a claim has
    twice that left. Each claim must still start one (it has most of a lease): before,
    every claim was given back untouched once the pace was known, for ever."""
    cid = make_connector(tenant.admin, runtime={"concurrency": "1"})
    await jf.start()
    try:
        slow = {"text": "slow", "simulate": "slow:1300"}
        envelopes = await asyncio.to_thread(jf.send_many, cid, [slow] * 3)
        rows = await _settled(jf, cid, 3, timeout=20)
    finally:
        await jf.stop()
    assert {r.envelope_id for r in rows} == set(envelopes)
    assert [r.state for r in rows] == ["delivered"] * 3
    # the first claim, before the pace is known, may cut one off (see above)
    assert sum(r.attempts for r in rows) <= 4, [r.last_error for r in rows]


async def _settled(jf, cid: str, count: int, timeout: float = 40.0) -> list[OutboxMessage]:
    """The connector's ``count`` messages once each is delivered or dead."""
    deadline = time.monotonic() + timeout
    while True:
        with jf.db.transaction() as s:
            query = select(OutboxMessage).where(OutboxMessage.connector_id == cid)
            rows = list(s.scalars(query))
        if len(rows) == count and all(r.state in ("delivered", "dead") for r in rows):
            return rows
        assert time.monotonic() < deadline, sorted({r.state for r in rows})
        await asyncio.sleep(0.1)
