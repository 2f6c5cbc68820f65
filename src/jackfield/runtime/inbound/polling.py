"""Polling units: ``poll(cursor)`` on an interval, cursor committed with its events.

Each round reads the stored cursor, asks the provider for the events after it, and
commits the events and the new cursor in ONE transaction that also checks the unit's
lease (commit after emit); the lease is renewed while ``poll`` runs, however long it
takes. A crash anywhere — in ``poll``, in the middle of the commit, after it — leaves
the inbox and the cursor consistent: either both moved or neither did, so the next
round (on this node or another) fetches the same batch again, and the inbox's
``(connector_id, event_id)`` key drops what was already stored. Nothing is lost and
nothing is stored twice.

A ``ConnectorError`` from ``poll`` (the system unreachable, throttling, credentials
refused, a config it rejects) is not a crash: the round is tried again after the delay
the unit's ``failing`` callback returns, for as long as it takes, with the lease kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from ...kernel import call_async
from ...kernel.errors import ConnectorError
from ...kernel.inbound import InboundEvent, PollingSource
from ...kernel.redaction import get_logger
from ...store import Database
from ...store.models_inbound import InboundCursor
from ..inbox import add_events
from .leases import Lease, LeaseLost, holding, sleep_holding

log = get_logger(__name__)


def load_cursor(db: Database, connector_id: str) -> str | None:
    with db.transaction() as s:
        row = s.get(InboundCursor, connector_id)
        return row.cursor if row is not None else None


def commit_polled(
    db: Database,
    lease: Lease,
    connector_id: str,
    organization_id: str,
    events: Sequence[InboundEvent],
    cursor: str | None,
) -> int:
    """Store a polled batch and its cursor atomically; ``LeaseLost`` writes nothing.

    Returns how many events were new.
    """
    with db.transaction() as s:
        lease.fence(s)
        added = add_events(s, connector_id, organization_id, events, "polling")
        row = s.get(InboundCursor, connector_id)
        if row is None:
            s.add(InboundCursor(connector_id=connector_id, cursor=cursor))
        else:
            row.cursor = cursor
        return added


async def run_polling(
    db: Database,
    connector_id: str,
    organization_id: str,
    source: PollingSource,
    lease: Lease,
    committed: Callable[[int], None],
    failing: Callable[[ConnectorError], float] | None = None,
) -> None:
    """Poll forever while holding the lease; wait as a standby while another node does.

    A ``ConnectorError`` from ``poll`` goes to ``failing``, which says how many seconds
    to wait before polling again (without ``failing`` it propagates). Anything else
    ``poll`` raises (a provider's bug), a malformed answer, or a database error
    propagates: the supervisor counts it as a crash and restarts the unit with backoff.
    """
    interval = max(float(getattr(source, "poll_interval_seconds", 30.0)), 0.01)
    while True:
        if not await asyncio.to_thread(lease.acquire):
            await asyncio.sleep(lease.ttl / 3)
            continue
        cursor = await asyncio.to_thread(load_cursor, db, connector_id)
        try:
            answer = await holding(lease, call_async(source.poll, cursor))
        except ConnectorError as exc:
            if failing is None:
                raise
            await sleep_holding(lease, failing(exc))
            continue
        events, next_cursor = polled(answer)
        try:
            added = await asyncio.to_thread(
                commit_polled, db, lease, connector_id, organization_id, events, next_cursor
            )
        except LeaseLost:
            log.warning("polling unit %s lost its lease; standing by", connector_id)
            continue
        committed(added)
        await sleep_holding(lease, interval)


def polled(result: object) -> tuple[list[InboundEvent], str | None]:
    """``poll()``'s answer, or ``TypeError`` naming what is wrong with it (before, a bare
    unpacking error, or the database's error about a cursor it cannot store)."""
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise TypeError(f"poll() must return (events, cursor), not {_described(result)}")
    events, cursor = result
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError(
            f"poll() must return its cursor as text or None, not {type(cursor).__name__}"
            " (it comes back as text: encode a structured cursor, e.g. as JSON)"
        )
    return list(events), cursor


def _described(value: object) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
