"""A node killed (SIGKILL, the OOM killer) and started again on the same machine: the new
process takes over the killed one's inbound leases at once, instead of receiving nothing
for the lease's TTL (30 s), and the killed process's unit rows stop saying ``running``.
A live process's lease is not taken, and the killed owner's generation stays fenced.

The other nodes are real processes (``python -c``) on this host: each takes a lease and
writes a ``running`` unit row under its own node id (``hostname:pid``), then sleeps
until it is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import func, select

import jackfield
from jackfield import connector_registry
from jackfield.kernel import (
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    PollingSource,
    SentMessage,
)
from jackfield.runtime import node_id
from jackfield.runtime.inbound import DEFAULT_TTL, Lease, LeaseLost
from jackfield.service.nodes import ended_here
from jackfield.store import utcnow
from jackfield.store.models_inbound import InboxEvent, UnitLease
from jackfield.store.models_outbox import RuntimeUnit


class CountingFeed(MessagingProvider, PollingSource):
    """Polls three events, then nothing."""

    provider_type: ClassVar[str] = "counting_feed_test"
    display_name: ClassVar[str] = "Counting feed (tests)"
    poll_interval_seconds = 0.05

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        n = int(cursor or 0)
        if n >= 3:
            return [], cursor
        return [InboundEvent(f"n-{n}", "count", {"n": n})], str(n + 1)

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="c")


if not connector_registry.is_registered("messaging", "counting_feed_test"):
    connector_registry.register(CountingFeed)

NODE = """
import sys, time
from jackfield.runtime import node_id
from jackfield.runtime.inbound import Lease
from jackfield.store import Database, utcnow
from jackfield.store.models_outbox import RuntimeUnit

url, connector_id, organization_id = sys.argv[1:4]
db = Database(url)
held = Lease(db, f"inbound:{connector_id}", node_id(), ttl=30).acquire()
with db.transaction() as s:
    s.add(RuntimeUnit(
        connector_id=connector_id, node=node_id(), organization_id=organization_id,
        liveness="running", readiness="ready", restart_count=0, restart_seen=0,
        updated_at=utcnow(),
    ))
print(node_id(), held, flush=True)
time.sleep(600)
"""


class Node:
    """A process of this host holding the lease of ``connector_id`` unless another node
    does (``held``), with a ``running`` unit row of it."""

    def __init__(self, url: str, connector_id: str, organization_id: str) -> None:
        src = str(Path(jackfield.__file__).parent.parent)
        path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", NODE, url, connector_id, organization_id],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert self.process.stdout is not None
        self.id, held = self.process.stdout.readline().split() or ["", ""]
        self.held = held == "True"
        assert self.id == f"{socket.gethostname()}:{self.process.pid}", "the node did not start"

    def kill(self) -> None:
        """SIGKILL, and reaped (as the shell or systemd that started it does)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def _lease(jf, connector_id: str) -> UnitLease:
    with jf.db.transaction() as s:
        lease = s.get(UnitLease, f"inbound:{connector_id}")
        assert lease is not None
        s.expunge(lease)
        return lease


def test_a_killed_node_s_lease_is_taken_over_at_once_and_a_live_one_s_is_not(
    jf, tenant, make_connector, nodes
):
    killed_unit = make_connector(tenant.admin, enable=False)
    live_unit = make_connector(tenant.admin, enable=False)
    killed = Node(jf.db.url, killed_unit, tenant.org_id)
    live = Node(jf.db.url, live_unit, tenant.org_id)
    nodes += [killed, live]
    assert killed.held and live.held
    killed.kill()
    started = time.monotonic()

    here = node_id()
    taken = Lease(jf.db, f"inbound:{killed_unit}", here, ttl=DEFAULT_TTL)
    assert taken.acquire(), "the lease of a killed process of this host waits out its TTL"
    assert time.monotonic() - started < DEFAULT_TTL / 10
    lease = _lease(jf, killed_unit)
    assert (lease.owner, lease.generation) == (here, 2)

    # the killed owner's generation is fenced: a commit of it would be refused
    stale = Lease(jf.db, f"inbound:{killed_unit}", killed.id)
    stale.generation = 1
    with pytest.raises(LeaseLost), jf.db.transaction() as s:
        stale.fence(s)

    # a live process of this host keeps its lease until it expires
    assert not Lease(jf.db, f"inbound:{live_unit}", here, ttl=DEFAULT_TTL).acquire()
    lease = _lease(jf, live_unit)
    assert (lease.owner, lease.generation) == (live.id, 1)


def test_a_killed_node_s_unit_rows_stop_showing_running_at_once(jf, tenant, make_connector, nodes):
    connector = make_connector(tenant.admin, enable=False)
    killed = Node(jf.db.url, connector, tenant.org_id)
    live = Node(jf.db.url, connector, tenant.org_id)  # (not holding the lease: no matter)
    nodes += [killed, live]
    killed.kill()

    units = {u["node"]: u for u in jf.runtime.units.list(tenant.admin)}
    assert units[live.id]["liveness"] == "running"
    assert units[killed.id]["liveness"] == "stopped"
    assert "process is gone" in units[killed.id]["last_error"]

    jf.runtime.supervisor.store.sweep(node_id(), utcnow().replace(year=2000))  # (not silent)
    with jf.db.transaction() as s:
        left = set(s.scalars(select(RuntimeUnit.node).where(RuntimeUnit.connector_id == connector)))
    assert left == {live.id}


async def test_serve_started_again_after_a_sigkill_receives_at_once(
    jf, tenant, make_connector, nodes
):
    """The defect as users met it: ``jackfield serve`` killed, started again, nothing
    polled for 30 s while ``runtime status`` said ``running``/``ready`` twice."""
    feed = make_connector(tenant.admin, "counting_feed_test", enable=False)
    other = make_connector(tenant.admin, "counting_feed_test", enable=False)
    killed = Node(jf.db.url, feed, tenant.org_id)
    live = Node(jf.db.url, other, tenant.org_id)
    nodes += [killed, live]
    assert killed.held and live.held
    killed.kill()
    for connector in (feed, other):
        jf.connectors.set_enabled(tenant.admin, connector, True)

    def received(connector: str) -> int:
        with jf.db.transaction() as s:
            query = select(func.count()).where(InboxEvent.connector_id == connector)
            return int(s.scalar(query.select_from(InboxEvent)) or 0)

    await jf.start()
    try:
        started = time.monotonic()
        while await asyncio.to_thread(received, feed) < 3:
            assert time.monotonic() - started < 10, "nothing received: the killed lease waits"
            await asyncio.sleep(0.05)
        units = await asyncio.to_thread(jf.runtime.units.list, tenant.admin)
        assert not [u for u in units if u["node"] == killed.id and u["liveness"] == "running"]
        assert await asyncio.to_thread(received, other) == 0  # a live node's: not taken
        assert (await asyncio.to_thread(_lease, jf, other)).owner == live.id
    finally:
        await jf.stop()


def test_which_nodes_are_known_to_have_ended():
    assert not ended_here(node_id())  # this process
    assert not ended_here(f"{socket.gethostname()}:{os.getppid()}")  # alive
    assert not ended_here("another-host.invalid:999999")  # cannot tell: wait for the TTL
    assert not ended_here("node-a") and not ended_here("") and not ended_here("h:-1")
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ended_here(f"{socket.gethostname()}:{finished.stdout.strip()}")
