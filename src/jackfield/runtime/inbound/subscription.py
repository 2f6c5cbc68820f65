"""Subscription units: consume a broker stream; ack only after the inbox commit.

For every ``ReceivedEvent`` the event is committed to the inbox (with the lease check)
and only then acknowledged to the broker. A crash between the two leaves the message
unacknowledged, so the broker redelivers it; the inbox's ``(connector_id, event_id)`` key
keeps one copy. Delivery into the inbox is therefore at-least-once from the broker and
exactly-once in the inbox, provided the provider maps a redelivered message to the same
``event_id`` (its broker message id, not a fresh uuid).

While consuming, a heartbeat task renews the lease; if the lease is lost (another node
took over), consumption stops without acking anything further and the runner goes back
to standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from ...kernel.errors import ConnectionFailedError
from ...kernel.inbound import ReceivedEvent, SubscriptionSource
from ...store import Database
from ..inbox import add_events
from .leases import Lease, LeaseLost, keep_renewed

log = logging.getLogger(__name__)


def commit_received(
    db: Database, lease: Lease, connector_id: str, organization_id: str, received: ReceivedEvent
) -> int:
    """Commit one received event under the lease; ``LeaseLost`` writes nothing."""
    with db.transaction() as s:
        lease.fence(s)
        return add_events(s, connector_id, organization_id, [received.event], "subscription")


async def run_subscription(
    db: Database,
    connector_id: str,
    organization_id: str,
    source: SubscriptionSource,
    lease: Lease,
    wake: Callable[[], None],
) -> None:
    """Consume forever while holding the lease. A stream that ends or fails raises, so
    the supervisor restarts the unit (with backoff) and the broker redelivers what was
    not acked."""
    while True:
        if not await asyncio.to_thread(lease.acquire):
            await asyncio.sleep(lease.ttl / 3)
            continue
        consumer = asyncio.create_task(
            _consume(db, connector_id, organization_id, source, lease, wake)
        )
        heartbeat = asyncio.create_task(keep_renewed(lease))
        try:
            done, _ = await asyncio.wait({consumer, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(consumer, heartbeat)
        if consumer in done:
            error = consumer.exception()
            if isinstance(error, LeaseLost):
                log.warning("subscription unit %s lost its lease; standing by", connector_id)
                continue
            if error is not None:
                raise error
            raise ConnectionFailedError("the subscription stream ended")
        log.warning("subscription unit %s lost its lease; standing by", connector_id)


async def _consume(
    db: Database,
    connector_id: str,
    organization_id: str,
    source: SubscriptionSource,
    lease: Lease,
    wake: Callable[[], None],
) -> None:
    stream: AsyncIterator[ReceivedEvent] = source.subscribe()
    try:
        async for received in stream:
            added = await asyncio.to_thread(
                commit_received, db, lease, connector_id, organization_id, received
            )
            if added:
                wake()
            await received.ack()
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # closing a broken stream may fail too
                await aclose()


async def _cancel(*tasks: asyncio.Task[None], grace: float = 1.0, attempts: int = 10) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again while one is still running.

    Asking once is not always enough: on Python 3.11 a cancellation that coincides with
    a read timeout inside a client library (``asyncio.timeout``) can be turned into a
    timeout that the library swallows (redis-py does this), and the task reads on. A
    unit must stop when told, or the supervisor could never restart it.
    """
    pending = {task for task in tasks if not task.done()}
    for _ in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace)
    if pending:
        log.warning("a subscription task ignored %d cancellations; abandoning it", attempts)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved here; the caller inspects the consumer's itself
