"""A failing source's wait: short ones keep the unit's lease, long ones hand it over so
that a standby node may reach the system this node cannot (its network, its DNS)."""

from __future__ import annotations

import asyncio

import pytest

from jackfield.runtime.inbound.leases import Lease, back_off


@pytest.fixture
def jf(database_url, make_jf):
    return make_jf(database_url)


def test_a_long_wait_hands_the_lease_over_and_a_short_one_keeps_it(jf):
    async def scenario() -> tuple[bool, bool]:
        here = Lease(jf.db, "inbound:back-off-test", "node-a", ttl=0.6)
        there = Lease(jf.db, "inbound:back-off-test", "node-b", ttl=0.6)
        assert await asyncio.to_thread(here.acquire)
        short = asyncio.create_task(back_off(here, 0.4))  # renewed meanwhile
        await asyncio.sleep(0.3)
        taken_during_short = await asyncio.to_thread(there.acquire)
        await short
        long = asyncio.create_task(back_off(here, 1.0))  # a TTL or more: handed over
        await asyncio.sleep(0.2)
        taken_during_long = await asyncio.to_thread(there.acquire)
        await long
        return taken_during_short, taken_during_long

    taken_during_short, taken_during_long = asyncio.run(scenario())
    assert not taken_during_short
    assert taken_during_long  # before, the failing node renewed it for as long as it failed
