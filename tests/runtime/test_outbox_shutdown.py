"""A graceful stop: running deliveries get ``grace`` seconds; everything not started is
given back (pending, attempt uncounted, no lease), and a delivery cut off after the grace
counts its attempt and is due again at once -- nothing lost, nothing stuck."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from jackfield.store import utcnow
from jackfield.store.models_outbox import OutboxMessage


@pytest.fixture
def jf(database_url, make_jf):
    return make_jf(database_url, runtime_shutdown_grace_seconds=0.3, outbox_concurrency=2)


def _rows(jf):
    with jf.db.transaction() as s:
        return list(s.scalars(select(OutboxMessage)))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # (in claim order)
async def test_stop_finishes_quick_deliveries_and_gives_back_the_rest(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    quick = [jf.send(cid, {"text": "quick", "simulate": "slow:100"}) for _ in range(2)]
    slow = [jf.send(cid, {"text": "slow", "simulate": "slow:3000"}) for _ in range(6)]
    await jf.start()
    for _ in range(100):
        if {r.envelope_id for r in _rows(jf) if r.state == "delivered"} == set(quick):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # two slow deliveries running, four waiting for a slot
    await jf.stop()
    rows = {r.envelope_id: r for r in _rows(jf)}
    assert {rows[e].state for e in quick} == {"delivered"}
    outcomes = sorted((rows[e].state, rows[e].attempts, rows[e].lease_token) for e in slow)
    assert outcomes == [("pending", 0, None)] * 4 + [("retrying", 1, None)] * 2  # cut off


async def test_a_delivery_cut_off_by_a_stop_counts_its_attempt(jf, tenant, make_connector):
    """A delivery longer than the grace (3 s against 0.3 s) is cancelled by the stop after
    its request went out: that is an attempt, shown as such and due again at once (the
    receiver did not fail), or dead if it was the last one allowed. Before, it was given
    back as if never started, so a delivery always longer than the grace was sent again
    at every restart and never ran out of attempts. A message only waiting in the buffer
    is still given back without an attempt."""
    again = make_connector(tenant.admin, retry={"max_attempts": "2"}, runtime={"concurrency": "1"})
    last = make_connector(tenant.admin, retry={"max_attempts": "1"})
    await jf.start()
    long = await asyncio.to_thread(jf.send, again, {"text": "long", "simulate": "slow:3000"})
    only = await asyncio.to_thread(jf.send, last, {"text": "long", "simulate": "slow:3000"})
    for _ in range(100):
        rows = {r.envelope_id: r for r in await asyncio.to_thread(_rows, jf)}
        if rows[long].state == rows[only].state == "in_flight":
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # both under way: their requests have gone out
    waiting = await asyncio.to_thread(jf.send, again, {"text": "waiting"})  # behind `long`
    await asyncio.sleep(0.2)
    await jf.stop()
    rows = {r.envelope_id: r for r in await asyncio.to_thread(_rows, jf)}
    row = rows[long]
    assert (row.state, row.attempts, row.lease_token) == ("retrying", 1, None)
    assert (row.error_class, row.last_error) == ("Shutdown", "cut off by the node's shutdown")
    assert row.next_attempt_at is not None and row.next_attempt_at <= utcnow()
    row = rows[only]
    assert (row.state, row.attempts, row.lease_token) == ("dead", 1, None)
    assert row.last_error == "gave up after 1 attempts: cut off by the node's shutdown"
    row = rows[waiting]
    assert (row.state, row.attempts, row.lease_token) == ("pending", 0, None)
