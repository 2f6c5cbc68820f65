"""Scale-out with slow connectors: a node whose workers for a connector are all busy with
long deliveries does not hold that connector's other messages; a node with free workers
takes them.

Before, the node that claimed (or was handed) a batch kept all of it: with 48 deliveries
of 25 s to one connector (concurrency 16) on 3 nodes, one node ran 16 and buffered 32
while the others sat idle, and the batch took three rounds instead of one; the buffered
messages were given back as their leases ran low and claimed straight back by the same
node, thousands of times.

Two runtimes on one database play two nodes (``node-a``, ``node-b``); a 2 s lease (its
margin 0.2 s); a connector of concurrency 2 and four deliveries of 4 s each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from jackfield.app import Jackfield
from jackfield.runtime import Runtime
from jackfield.store.models_outbox import OutboxMessage

LEASE = 2.0
SECONDS = 4.0


def _rows(jf: Jackfield) -> list[OutboxMessage]:
    with jf.db.transaction() as s:
        return list(s.scalars(select(OutboxMessage)))


@pytest.fixture
def jf(database_url: str, make_jf: Callable[..., Jackfield]) -> Jackfield:
    return make_jf(database_url, outbox_lease_seconds=LEASE)


async def test_messages_a_busy_node_cannot_start_go_to_an_idle_node(
    database_url: str, make_jf: Callable[..., Jackfield], jf, tenant, make_connector
):
    node_a = jf
    key = node_a.settings.secret_key.get_secret_value()
    node_b = make_jf(database_url, secret_key=key, outbox_lease_seconds=LEASE)
    node_a.runtime = Runtime(node_a, node="node-a")
    node_b.runtime = Runtime(node_b, node="node-b")
    cid = make_connector(tenant.admin, runtime={"concurrency": "2"})
    await node_a.start()
    await node_b.start()
    try:
        payload = {"text": "slow", "simulate": f"slow:{int(SECONDS * 1000)}"}
        started = time.monotonic()
        sent = await asyncio.to_thread(node_a.send_many, cid, [payload] * 4)
        deadline = started + 3 * SECONDS
        while {r.state for r in await asyncio.to_thread(_rows, node_a)} != {"delivered"}:
            assert time.monotonic() < deadline, "not delivered"
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
    finally:
        await node_b.stop()
        await node_a.stop()
    a, b = node_a.runtime.delivery.stats, node_b.runtime.delivery.stats
    assert (a.delivered, b.delivered) == (2, 2)  # two each, side by side
    assert took < 1.6 * SECONDS  # one round (and a claim), not two
    assert a.released + b.released <= 2  # given back once, not again and again
    rows = {r.envelope_id: r for r in _rows(node_a)}
    assert sorted(rows) == sorted(sent)
    assert {r.attempts for r in rows.values()} == {1}
