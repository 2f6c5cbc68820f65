"""A ``failed`` unit stays failed when its node restarts, until an operator restarts it.

More than 5 faults in the crash window mark a unit ``failed`` "until restarted through
the API or CLI". That used to last only as long as the process: ``jackfield serve``
stopped and started again ran the unit afresh, and the message that crashed it crashed
it again. Now the node's next process (a process of the same hostname, once the old one
has ended) takes over its ``failed`` rows and delivers and polls nothing for them until
a restart request; another node does not sweep a failed row of a silent node either.

The first runtime is named like a process of this host that has ended (``hostname:pid``
of a finished child), as ``jackfield serve`` stopped and started again would be.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

import jackfield.runtime
from jackfield import Jackfield
from jackfield.runtime.units import UnitStore
from jackfield.service import Principal
from jackfield.store import utcnow

from .conftest import Tenant, active_connector, eventually, new_tenant, plant_unit

FAST_FAIL = {"outbox_crash_limit": 1, "supervisor_backoff_max_seconds": 0.3}


def _ended_node() -> str:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return f"{socket.gethostname()}:{int(child.stdout)}"


def _units(jf, who, connector_id):
    return [u for u in jf.runtime.units.list(who) if u["connector_id"] == connector_id]


@dataclass
class FailedOnAnEndedNode:
    """A unit crashed into ``failed`` by a runtime named like an ended process of this
    host, now stopped; ``unit`` as it was seen failed while that runtime ran."""

    first: Jackfield
    who: Principal
    cid: str
    unit: dict[str, Any]
    ended: str
    waiting: str | None

    def next_node(self, make_jf) -> Jackfield:
        """The node's next process: the same host, the same database and master key."""
        key = self.first.settings.secret_key.get_secret_value()
        return make_jf(self.first.settings.database_url, **FAST_FAIL, secret_key=key)


async def _fail_on_an_ended_node(
    database_url, make_jf, monkeypatch, *, waiting: bool = False
) -> FailedOnAnEndedNode:
    """Six messages crash a connector's unit six times: ``failed``. With ``waiting``, one
    more crashing message is queued while it is failed (the failed unit leaves it)."""
    ended = _ended_node()
    monkeypatch.setattr(jackfield.runtime, "node_id", lambda: ended)
    first = make_jf(database_url, **FAST_FAIL)
    monkeypatch.undo()
    who = new_tenant(first).admin
    cid = active_connector(first, who, retry={"base_seconds": "0.01"})
    queued = None
    await first.start()
    try:
        for i in range(6):  # six messages, each crashing the unit once: six faults
            await asyncio.to_thread(first.send, cid, {"text": f"bad {i}", "simulate": "crash"})
        (unit,) = await eventually(
            lambda: _units(first, who, cid), lambda us: us and us[0]["liveness"] == "failed"
        )
        if waiting:
            queued = await asyncio.to_thread(
                first.send, cid, {"text": "bad again", "simulate": "crash"}
            )
    finally:
        await first.stop()
    return FailedOnAnEndedNode(first, who, cid, unit, ended, queued)


async def test_a_failed_unit_stays_failed_across_a_restart_of_its_node(
    database_url, make_jf, monkeypatch
):
    failed = await _fail_on_an_ended_node(database_url, make_jf, monkeypatch, waiting=True)
    first, who, cid, ended = failed.first, failed.who, failed.cid, failed.ended
    assert failed.unit["readiness"] == "degraded" and failed.unit["restart_count"] == 5
    (stopped,) = _units(first, who, cid)
    assert (stopped["liveness"], stopped["node"]) == ("failed", ended)  # not "stopped"

    # the connector's params are edited meanwhile: still failed (as while a node runs)
    first.connectors.update(who, cid, config={"delay_ms": 1, "retry": {"base_seconds": "0.01"}})
    second = failed.next_node(make_jf)
    await second.start()
    try:
        await asyncio.sleep(1.0)  # five supervisor polls: time to have delivered, wrongly
        (unit,) = _units(second, who, cid)  # the ended process's row is swept
        assert unit["node"] == second.runtime.node_id != ended
        assert (unit["liveness"], unit["readiness"]) == ("failed", "degraded"), unit
        assert "simulated crash" in unit["last_error"] and unit["restart_count"] == 5
        message = second.runtime.outbox.get(who, failed.waiting)
        assert (message["state"], message["attempts"]) == ("pending", 0), message

        # the operator's restart clears it: the waiting message crashes it once (dead),
        # and a good one is delivered
        restarted = await asyncio.to_thread(second.runtime.restart, who, cid)
        assert restarted["liveness"] != "failed"
        good = await asyncio.to_thread(second.send, cid, {"text": "good"})
        await eventually(lambda: second.runtime.outbox.get(who, good)["state"], "delivered".__eq__)
        await eventually(
            lambda: second.runtime.outbox.get(who, failed.waiting)["state"], "dead".__eq__
        )
        (unit,) = await eventually(
            lambda: _units(second, who, cid), lambda us: us[0]["liveness"] == "running"
        )
        assert unit["restart_count"] >= 6
    finally:
        await second.stop()


async def test_deactivating_a_connector_while_its_node_is_down_ends_failed(
    database_url, make_jf, monkeypatch
):
    """Deactivate and activate again while the node is down: the node, back, starts the
    unit afresh and delivers, as when the connector is deactivated while a node runs."""
    failed = await _fail_on_an_ended_node(database_url, make_jf, monkeypatch)
    first, who, cid = failed.first, failed.who, failed.cid
    first.connectors.set_enabled(who, cid, False)
    assert [u["liveness"] for u in _units(first, who, cid)] == ["stopped"]
    first.connectors.set_enabled(who, cid, True)
    second = failed.next_node(make_jf)
    await second.start()
    try:
        good = await asyncio.to_thread(second.send, cid, {"text": "good"})
        await eventually(lambda: second.runtime.outbox.get(who, good)["state"], "delivered".__eq__)
        (unit,) = await eventually(lambda: _units(second, who, cid), bool)
        assert (unit["node"], unit["liveness"]) == (second.runtime.node_id, "running")
    finally:
        await second.stop()


async def test_a_failed_unit_stays_failed_when_the_first_look_at_the_database_fails(
    database_url, make_jf, monkeypatch
):
    """The node comes back while the database fails its supervisor's first reads (a
    locked SQLite file, PostgreSQL restarting): its outbox claims nothing until the
    supervisor has seen which units it left failed, so the unit stays failed."""
    failed = await _fail_on_an_ended_node(database_url, make_jf, monkeypatch, waiting=True)
    who, cid, ended, waiting = failed.who, failed.cid, failed.ended, failed.waiting
    failing_reads = iter(range(3))
    real = UnitStore.failed_before

    def flaky(self, node):
        if next(failing_reads, None) is not None:
            raise OperationalError("SELECT", {}, Exception("database is locked"))
        return real(self, node)

    monkeypatch.setattr(UnitStore, "failed_before", flaky)
    second = failed.next_node(make_jf)
    await second.start()
    try:
        await eventually(lambda: _units(second, who, cid), lambda us: us and us[0]["node"] != ended)
        await asyncio.sleep(0.5)
        (unit,) = _units(second, who, cid)
        assert unit["liveness"] == "failed", unit
        message = second.runtime.outbox.get(who, waiting)
        assert (message["state"], message["attempts"]) == ("pending", 0), message
    finally:
        await second.stop()


def _failed_and_other_unit_of(jf, node: str, other_liveness: str, **row: Any) -> tuple[Tenant, str]:
    """A new organization with two active connectors whose unit rows ``node`` left: one
    ``failed``, the other ``other_liveness`` (and ``row``'s columns for both); returns
    the organization and the failed one's connector."""
    tenant = new_tenant(jf)
    failed, other = (active_connector(jf, tenant.admin) for _ in range(2))
    for cid, liveness in ((failed, "failed"), (other, other_liveness)):
        plant_unit(
            jf,
            cid,
            node,
            tenant.org_id,
            liveness=liveness,
            readiness="degraded",
            restart_count=5,
            **row,
        )
    return tenant, failed


def test_another_node_keeps_the_failed_row_of_a_silent_node(database_url, make_jf):
    """A node on another host, silent for longer than three heartbeats: its rows are
    swept, but not a ``failed`` one of an enabled connector (it is failed until an
    operator's restart, also when that node comes back); a restart request lets it go."""
    jf = make_jf(database_url)
    far = f"far-away-{uuid.uuid4().hex[:6]}:123"
    long_ago = utcnow() - timedelta(hours=1)
    tenant, failed = _failed_and_other_unit_of(jf, far, "running", updated_at=long_ago)
    store = UnitStore(jf.db)

    store.sweep("here:1", utcnow() - timedelta(minutes=1))
    left = {u["connector_id"]: u["liveness"] for u in jf.runtime.units.list(tenant.admin)}
    assert left == {failed: "failed"}

    jf.runtime.units.request_restart(tenant.admin, failed)
    store.sweep("here:1", utcnow() - timedelta(minutes=1))
    assert jf.runtime.units.list(tenant.admin) == []


def test_another_process_of_the_host_keeps_the_failed_row_for_the_next_one(database_url, make_jf):
    """Two ``jackfield serve`` on one machine: one ends with a unit failed; the other's
    sweep (which removes an ended process's rows at once) leaves that row, and the
    ended one's next process takes it over as its own -- failed still."""
    jf = make_jf(database_url)
    ended = _ended_node()
    tenant, failed = _failed_and_other_unit_of(
        jf, ended, "stopped", last_error="RuntimeError: boom"
    )
    store = UnitStore(jf.db)
    store.sweep(f"{socket.gethostname()}:1", utcnow() - timedelta(minutes=1))
    left = {u["connector_id"]: u["liveness"] for u in jf.runtime.units.list(tenant.admin)}
    assert left == {failed: "failed"}

    after = f"{socket.gethostname()}:2"
    assert set(store.failed_before(after)) == {failed}
    (unit,) = jf.runtime.units.list(tenant.admin)
    assert (unit["node"], unit["liveness"], unit["last_error"]) == (
        after,
        "failed",
        "RuntimeError: boom",
    )
