"""Deliveries whose acks meet a database outage: a real PostgreSQL behind a real network
cut (a TCP proxy the test closes while the deliveries are under way).

The acks are kept and written once the database is back, within the messages' leases,
so nothing is delivered twice; the log has a line for the outage, not one per ack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import ClassVar

import pytest
from sqlalchemy import create_engine, text

from jackfield import ConfigField, ConnectionTestResult, connector_registry
from jackfield.api import create_app
from jackfield.kernel import MessagingProvider
from jackfield.kernel.envelope import Delivered, Envelope
from jackfield.testing import LiveServer

from .conftest import active_connector, new_tenant

DELIVERIES: Counter[str] = Counter()  # envelope id -> deliveries started
DELIVERY_SECONDS = 1.0


class CountingSink(MessagingProvider):
    """A receiving system that counts every delivery it gets, each taking a second."""

    provider_type: ClassVar[str] = "counting_sink_test"
    display_name: ClassVar[str] = "Counting sink (tests)"

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return []

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(True, "always there")

    async def send_message(self, message):  # pragma: no cover - deliver() is used
        raise NotImplementedError

    async def deliver(self, envelope: Envelope) -> Delivered:
        DELIVERIES[envelope.envelope_id] += 1
        await asyncio.sleep(DELIVERY_SECONDS)
        return Delivered(result={"received": True})


if not connector_registry.is_registered("messaging", "counting_sink_test"):
    connector_registry.register(CountingSink)


def _states(database_url: str) -> Counter[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT state FROM outbox_messages")).scalars()
            return Counter(rows)
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_acks_that_meet_a_cut_are_written_after_it_and_nothing_is_delivered_twice(
    database_url, cuttable_proxy, make_jf, client, wait_until, caplog
):
    caplog.set_level(logging.INFO)
    lease = 6.0
    proxy, through_proxy = cuttable_proxy(database_url)
    jf = make_jf(through_proxy, outbox_lease_seconds=lease)
    tenant = new_tenant(jf)
    token, sink = tenant.admin_token, active_connector(jf, tenant.admin, "counting_sink_test")
    DELIVERIES.clear()

    with LiveServer(create_app(jf)) as server, client(server.url, token) as http:
        sent = []
        for i in range(10):
            answer = http.post(
                f"/api/connectors/{sink}/messages", json={"payload": {"text": f"m{i}"}}
            )
            assert answer.status_code == 202, answer.text
            sent.append(answer.json()["envelope_id"])
        wait_until(lambda: len(DELIVERIES) == len(sent), timeout=5)  # all under way
        claimed_at = time.monotonic()
        caplog.clear()
        proxy.cut()  # the deliveries end (and are acked) during the cut
        time.sleep(DELIVERY_SECONDS + 1.5)
        proxy.restore()
        wait_until(lambda: _states(database_url) == Counter(delivered=len(sent)), timeout=lease)
        # past the leases: a message whose ack was lost would have been delivered again
        time.sleep(max(0.0, claimed_at + lease + 2.0 - time.monotonic()))
        assert dict(DELIVERIES) == dict.fromkeys(sent, 1)
        assert _states(database_url) == Counter(delivered=len(sent))

    acker_lines = [r for r in caplog.records if r.name == "jackfield.runtime.outbox_acker"]
    assert len(acker_lines) <= 3, [r.getMessage() for r in acker_lines]
    assert not [r for r in acker_lines if r.exc_info]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_runtime_logs_a_cut_once_not_at_every_round(
    database_url, cuttable_proxy, make_jf, wait_until, caplog
):
    """The supervisor and the outbox's claims each logged a warning per round (about
    two lines a second) for as long as the database was away; now a line when it
    begins and one when it ends."""
    caplog.set_level(logging.INFO)
    proxy, through_proxy = cuttable_proxy(database_url)
    jf = make_jf(through_proxy)  # rounds every 0.2 s

    async def cut_for_a_while() -> None:
        await jf.start()
        try:
            await asyncio.sleep(0.5)
            caplog.clear()
            proxy.cut()
            await asyncio.sleep(4)
            proxy.restore()
            await asyncio.sleep(2)  # a round or two succeeds again
        finally:
            await jf.stop()

    asyncio.run(cut_for_a_while())
    runtime = [
        r
        for r in caplog.records
        if r.name in ("jackfield.runtime.supervisor", "jackfield.runtime.outbox")
    ]
    assert 2 <= len(runtime) <= 4, [r.getMessage() for r in runtime]  # began, ended (each)
    assert any("database unavailable" in r.getMessage() for r in runtime)
    assert any("available again" in r.getMessage() for r in runtime)
    assert not [r for r in runtime if r.exc_info]


class SlowSink(CountingSink):
    """Like ``CountingSink``, each delivery taking ``SLOW_SECONDS``."""

    provider_type: ClassVar[str] = "slow_sink_test"
    display_name: ClassVar[str] = "Slow sink (tests)"

    async def deliver(self, envelope: Envelope) -> Delivered:
        DELIVERIES[envelope.envelope_id] += 1
        await asyncio.sleep(SLOW_SECONDS)
        return Delivered(result={"received": True})


SLOW_SECONDS = 4.0
if not connector_registry.is_registered("messaging", "slow_sink_test"):
    connector_registry.register(SlowSink)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_acks_dropped_in_a_cut_leave_no_outage_behind_in_the_log(
    database_url, cuttable_proxy, make_jf, client, wait_until, caplog
):
    """Deliveries that end during a cut after their leases ran out (a 2 s lease, 4 s
    deliveries, nothing renewed meanwhile): their acks are dropped, and the log says so
    during the cut. Before, the acker then stayed "in outage": it logged "database
    available again after ..." only at its next write, a delivery after the database
    came back, timing the outage until then."""
    caplog.set_level(logging.INFO)
    proxy, through_proxy = cuttable_proxy(database_url)
    jf = make_jf(through_proxy, outbox_lease_seconds=2.0)
    tenant = new_tenant(jf)
    token, sink = tenant.admin_token, active_connector(jf, tenant.admin, "slow_sink_test")
    DELIVERIES.clear()

    with LiveServer(create_app(jf)) as server, client(server.url, token) as http:
        sent = []
        for i in range(4):
            answer = http.post(
                f"/api/connectors/{sink}/messages", json={"payload": {"text": f"m{i}"}}
            )
            assert answer.status_code == 202, answer.text
            sent.append(answer.json()["envelope_id"])
        wait_until(lambda: len(DELIVERIES) == len(sent), timeout=5)  # all under way
        caplog.clear()
        proxy.cut()  # the leases run out within 2 s, the deliveries end after 3 s
        time.sleep(SLOW_SECONDS + 0.8)
        proxy.restore()
        restored = time.time()
        # taken again once the claims reach the database, delivered (a second time)
        wait_until(lambda: _states(database_url) == Counter(delivered=len(sent)), timeout=15)

    acker_lines = [r for r in caplog.records if r.name == "jackfield.runtime.outbox_acker"]
    said = [r.getMessage() for r in acker_lines]
    assert [line for line in said if "outcomes of deliveries dropped" in line], said
    assert [r.getMessage() for r in acker_lines if r.created > restored] == []
