"""Several nodes on one database: each node's unit of a connector has its own row, so one
node's state never hides another's; a restart request reaches every node; the rows of a
node that stopped or vanished are swept by the nodes still running.

Two runtimes run in this process under different node names (``node-a``, ``node-b``),
as two ``jackfield serve`` processes would. Their supervisors poll every 0.2 s, so a
heartbeat is 2 s and a row is stale after 6 s."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import ClassVar

from jackfield import connector_registry
from jackfield.kernel import (
    AuthError,
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    PollingSource,
    SentMessage,
)
from jackfield.runtime import Runtime
from jackfield.store import utcnow
from jackfield.store.models_outbox import RuntimeRestart

from .conftest import eventually, plant_unit


class GatedProvider(MessagingProvider, PollingSource):
    """Polls nothing; cannot open while ``GatedProvider.shut``: its credentials are
    refused (a crash; one gate for every node, so a node started while it is shut
    fails, and one started later runs)."""

    provider_type: ClassVar[str] = "gated_test"
    display_name: ClassVar[str] = "Gated (tests)"
    poll_interval_seconds = 0.05
    shut: ClassVar[bool] = False

    def open(self) -> None:
        if GatedProvider.shut:
            raise AuthError("gate.invalid refuses the key")

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        return [], cursor

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="g")


if not connector_registry.is_registered("messaging", "gated_test"):
    connector_registry.register(GatedProvider)


async def test_each_node_keeps_its_own_unit_and_acts_on_every_restart_request(
    jf, make_jf, database_url, tenant, make_connector
):
    node_a = jf
    key = jf.settings.secret_key.get_secret_value()
    node_b = make_jf(database_url, secret_key=key, supervisor_crash_limit=0)  # 1 crash: failed
    node_a.runtime = Runtime(node_a, node="node-a")
    node_b.runtime = Runtime(node_b, node="node-b")
    units = node_a.runtime.units
    GatedProvider.shut = True
    cid = make_connector(tenant.admin, "gated_test")

    def by_node():
        return {u["node"]: u for u in units.list(tenant.admin) if u["connector_id"] == cid}

    def states():
        return {node: u["liveness"] for node, u in by_node().items()}

    try:
        await node_b.start()
        await eventually(states, lambda s: s == {"node-b": "failed"})
        GatedProvider.shut = False
        await node_a.start()
        # node A runs the connector; node B's failure stays visible beside it
        await eventually(states, lambda s: s == {"node-a": "running", "node-b": "failed"})
        failed = by_node()["node-b"]
        assert failed["readiness"] == "auth_failed" and "gate.invalid" in failed["last_error"]
        assert units.get(tenant.admin, cid)["node"] == "node-b"  # the one needing attention

        # asked through node A, both nodes restart their unit, and neither waits for more
        requested = await asyncio.to_thread(node_a.runtime.restart, tenant.admin, cid)
        assert requested["liveness"] == "restarting" and requested["restart_requested"]
        after = await eventually(
            by_node,
            lambda v: (
                len(v) == 2
                and all(
                    u["liveness"] == "running" and not u["restart_requested"] for u in v.values()
                )
            ),
        )
        assert {node: u["restart_count"] for node, u in after.items()} == {
            "node-a": 1,
            "node-b": 1,
        }
        assert by_node()["node-b"]["readiness"] == "ready"

        # a heartbeat later both rows are still there: a running node is never swept
        await asyncio.sleep(2.5)
        assert states() == {"node-a": "running", "node-b": "running"}

        # node B stops: its "stopped" is history while node A runs it, and is swept
        await node_b.stop()
        await eventually(states, lambda s: s.get("node-b") in ("stopped", None))
        assert units.get(tenant.admin, cid)["liveness"] == "running"
        await eventually(states, lambda s: s == {"node-a": "running"})

        # a node that vanished (killed) leaves rows nobody rewrites: swept once stale
        def plant(node, age, liveness="running"):
            written = utcnow() - timedelta(seconds=age)
            plant_unit(jf, cid, node, tenant.org_id, liveness=liveness, updated_at=written)

        await asyncio.to_thread(plant, "node-gone", 60, "failed")
        await asyncio.to_thread(plant, "node-recent", 0)
        # a restart request does not make the gone node's unit look alive (no node of
        # that name will act on it): it shows stopped, and is swept all the same
        await asyncio.to_thread(node_a.runtime.restart, tenant.admin, cid)
        assert states()["node-gone"] == "stopped"
        await eventually(states, lambda s: "node-gone" not in s)
        assert states() == {"node-a": "running", "node-recent": "running"}
    finally:
        GatedProvider.shut = False
        await node_b.stop()
        await node_a.stop()


async def test_a_restart_request_starts_an_idle_outbound_unit_on_a_running_node(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin)  # echo: outbound only, no unit until asked
    await jf.start()
    try:
        assert not [u for u in jf.runtime.units.list(tenant.admin) if u["connector_id"] == cid]
        requested = await asyncio.to_thread(jf.runtime.restart, tenant.admin, cid)
        assert requested["liveness"] == "starting" and requested["node"] is None
        [unit] = await eventually(
            lambda: [u for u in jf.runtime.units.list(tenant.admin) if u["connector_id"] == cid],
            lambda found: [u["liveness"] for u in found] == ["running"],
        )
        assert not unit["restart_requested"] and unit["node"] == jf.runtime.node_id
    finally:
        await jf.stop()


async def test_a_unit_started_before_the_first_reconcile_adopts_old_restart_requests(
    jf, tenant, make_connector
):
    """Restart requests from before this node started are history: a unit the outbox
    started before the supervisor could read them is not restarted for them; a request
    made afterwards restarts it once."""
    cid = make_connector(tenant.admin)
    for _ in range(2):  # two requests of an earlier run
        await asyncio.to_thread(jf.runtime.units.request_restart, tenant.admin, cid)
    supervisor = jf.runtime.supervisor
    unit = supervisor.unit_for_delivery(cid, tenant.org_id)  # before any reconcile
    try:
        await supervisor.reconcile()
        assert (unit.restart_count, unit.restart_seen, unit.liveness) == (0, 2, "running")
        await asyncio.to_thread(jf.runtime.units.request_restart, tenant.admin, cid)
        await supervisor.reconcile()
        await supervisor.reconcile()
        assert (unit.restart_count, unit.restart_seen) == (1, 3)
    finally:
        await supervisor.stop()


def test_restart_requests_made_at_once_each_count(jf, tenant, make_connector):
    """The first requests of a connector create its generation row together: each one
    counts, none fails."""
    cid = make_connector(tenant.admin)
    request = functools.partial(jf.runtime.units.request_restart, tenant.admin, cid)
    with ThreadPoolExecutor(4) as pool:
        answers = [f.result() for f in [pool.submit(request) for _ in range(4)]]
    assert [a["liveness"] for a in answers] == ["starting"] * 4
    with jf.db.transaction() as s:
        assert s.get(RuntimeRestart, cid).generation == 4


def test_a_unit_whose_node_ended_without_shutting_down_shows_stopped(jf, tenant, make_connector):
    """A node killed (or its machine lost) leaves rows saying ``running``. Another live
    node sweeps them; a lone node's never were, so ``runtime status`` showed a unit
    running that nothing ran, for good."""
    connector = make_connector(tenant.admin)
    now = utcnow()
    for node, written in (("killed-node", now - timedelta(minutes=5)), ("live-node", now)):
        plant_unit(jf, connector, node, tenant.org_id, updated_at=written)
    units = {u["node"]: u for u in jf.runtime.units.list(tenant.admin)}
    assert units["live-node"]["liveness"] == "running"
    gone = units["killed-node"]
    assert gone["liveness"] == "stopped"
    assert (
        "has not reported since" in gone["last_error"]
        and "without shutting down" in gone["last_error"]
    )
