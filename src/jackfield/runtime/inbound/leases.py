"""Unit leases: one node at a time runs an inbound unit (a poller, a subscription).

A lease row names the unit, its owner (a node id), a generation and an expiry. The owner
renews it while it runs (heartbeat); once it expires, any node may take it over, which
increments the generation. A node need not wait for the expiry when the owner is a
process of its own hostname that is gone (``jackfield serve`` killed and started again
on the same machine): it takes the lease over at once (``jackfield.service.nodes`` says
when a node can tell; otherwise the TTL decides). Every write a unit makes (events,
cursor) happens in a transaction that first checks, under a row lock, that the lease
still has the owner's generation — so a stale owner (paused, partitioned, slow) that
wakes up after a takeover has its commit refused and writes nothing. That check is the
fence; the expiry (or the owner's end) only decides who may take over.

Times are the nodes' own clocks (UTC); nodes are expected to run NTP. A skew shorter
than the TTL only shifts when a takeover may happen, never lets two owners commit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...service.nodes import ended_here
from ...store import Database, utcnow
from ...store.models_inbound import UnitLease

DEFAULT_TTL = 30.0
T = TypeVar("T")


class LeaseLost(Exception):
    """This runner no longer owns its unit: another node took over (or nobody holds it)."""


class Lease:
    """The lease of one unit as seen by one owner; one runner uses it.

    Its database calls run in worker threads, and a runner cancelled at shutdown does
    not stop the one under way: ``release`` waits for it (a lock) and marks the lease
    released, so an ``acquire`` finishing late cannot take the unit back afterwards.
    """

    def __init__(self, db: Database, unit: str, owner: str, ttl: float = DEFAULT_TTL) -> None:
        self.db = db
        self.unit = unit
        self.owner = owner
        self.ttl = ttl
        self.generation: int | None = None
        self._lock = threading.Lock()
        self._released = False

    @property
    def held(self) -> bool:
        return self.generation is not None

    def acquire(self) -> bool:
        """Take the unit, or renew it if held; ``True`` when this owner holds it after.

        A lease held by this same owner under another generation (a previous runner on
        this node that crashed) is taken over at once with a new generation, which also
        fences that previous runner should it still be alive. So is a lease whose owner
        is a process of this hostname that no longer exists (killed, say, and this node
        started in its place), without waiting for its expiry.
        """
        with self._lock:
            return not self._released and self._acquire()

    def _acquire(self) -> bool:
        try:
            with self.db.transaction() as s:
                row = s.get(UnitLease, self.unit, with_for_update=True, populate_existing=True)
                now = utcnow()
                if row is None:
                    s.add(
                        UnitLease(
                            unit=self.unit,
                            owner=self.owner,
                            generation=1,
                            expires_at=self._until(now),
                        )
                    )
                    s.flush()
                    self.generation = 1
                elif row.owner == self.owner and row.generation == self.generation:
                    row.expires_at = self._until(now)
                elif row.owner == self.owner or row.expires_at <= now or ended_here(row.owner):
                    row.owner = self.owner
                    row.generation += 1
                    row.expires_at = self._until(now)
                    self.generation = row.generation
                else:
                    self.generation = None
                    return False
        except IntegrityError:  # another node inserted the row first
            self.generation = None
            return False
        return True

    def renew(self) -> bool:
        """Heartbeat: extend the lease if still held; ``False`` (and not held) if lost."""
        with self._lock:
            return self.generation is not None and self._renew()

    def _renew(self) -> bool:
        with self.db.transaction() as s:
            try:
                self.fence(s)
            except LeaseLost:
                self.generation = None
                return False
        return True

    def fence(self, session: Session) -> None:
        """Inside a writing transaction: raise ``LeaseLost`` unless this owner still holds
        the lease with its generation; extends the lease as a side effect (heartbeat).

        The row lock (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction is
        exclusive anyway) keeps a takeover from slipping in before the commit.
        """
        row = session.get(UnitLease, self.unit, with_for_update=True, populate_existing=True)
        now = utcnow()
        if (
            row is None
            or row.owner != self.owner
            or row.generation != self.generation
            or row.expires_at <= now
        ):
            raise LeaseLost(f"lease of {self.unit} lost by {self.owner}")
        row.expires_at = self._until(now)

    def release(self) -> None:
        """Give the unit up (expire it now) so another node can take over at once; this
        lease is not taken again."""
        with self._lock:
            self._released = True
            if self.generation is not None:
                self._expire()

    def hand_over(self) -> None:
        """Expire the lease now, so any node may take the unit over at once (this owner
        too, by a later ``acquire``, under a new generation)."""
        with self._lock:
            if self.generation is not None:
                self._expire()

    def _expire(self) -> None:
        with self.db.transaction() as s:
            row = s.get(UnitLease, self.unit, with_for_update=True, populate_existing=True)
            if row is not None and row.owner == self.owner and row.generation == self.generation:
                row.expires_at = utcnow()
        self.generation = None

    def _until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.ttl)


async def keep_renewed(lease: Lease) -> None:
    """Heartbeat: renew every third of the TTL; return when the lease is lost."""
    while True:
        await asyncio.sleep(lease.ttl / 3)
        if not await asyncio.to_thread(lease.renew):
            return


async def holding(lease: Lease, work: Awaitable[T]) -> T:
    """Await ``work`` while renewing ``lease``, so work longer than the TTL (a slow
    poll) still ends with the lease held and its result can be committed."""
    heartbeat = asyncio.create_task(keep_renewed(lease))
    try:
        return await work
    finally:
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


async def back_off(lease: Lease, seconds: float) -> None:
    """Wait ``seconds`` before a failing source tries again. A wait shorter than the
    lease's TTL keeps the lease (renewed); a longer one -- the backoff after repeated
    failures -- hands it over first: the failure may be this node's own (its network,
    its DNS, a firewall), and a standby node may reach the system. This node competes
    for the unit again afterwards (alone, it simply takes it back)."""
    if seconds < lease.ttl:
        await sleep_holding(lease, seconds)
        return
    await asyncio.to_thread(lease.hand_over)
    await asyncio.sleep(seconds)


async def sleep_holding(lease: Lease, seconds: float) -> None:
    """Sleep ``seconds``, renewing the lease often enough that it never lapses (returns
    early if it is lost)."""
    step = lease.ttl / 3
    while seconds > 0:
        await asyncio.sleep(min(step, seconds))
        seconds -= step
        if seconds > 0 and not await asyncio.to_thread(lease.renew):
            return
