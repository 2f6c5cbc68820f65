"""A graceful stop: running deliveries get ``grace`` seconds, then everything not done
is given back (pending, attempt uncounted, no lease) -- nothing lost, nothing stuck."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from jackfield.store.models_outbox import OutboxMessage


@pytest.fixture
def jf(sqlite_url, make_jf):
    return make_jf(sqlite_url, runtime_shutdown_grace_seconds=0.3, outbox_concurrency=2)


def _rows(jf):
    with jf.db.transaction() as s:
        return list(s.scalars(select(OutboxMessage)))


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
    for envelope in slow:
        row = rows[envelope]
        assert (row.state, row.attempts, row.lease_token) == ("pending", 0, None)
