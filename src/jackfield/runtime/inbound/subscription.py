"""Subscription units: consume a broker stream; ack only after the inbox commit.

Every ``ReceivedEvent`` is committed to the inbox (with the lease check) and only then
acknowledged to the broker. A crash between the two leaves the message unacknowledged,
so the broker redelivers it; the inbox's ``(connector_id, event_id)`` key keeps one
copy. The stream is read ahead into a buffer while a batch commits, and whatever
arrived meanwhile commits next, in one transaction: one commit per event held a unit to
the database's commits per second (about 150 here).

Delivery into the inbox is therefore at-least-once from the broker and exactly-once in
the inbox, provided the provider maps a redelivered message to the same ``event_id``
(its broker message id, not a fresh uuid).

While consuming, a heartbeat task renews the lease; if the lease is lost (another node
took over), consumption stops without acking anything further and the runner goes back
to standby.

A ``ConnectorError`` from the stream or from an ack (the broker unreachable, credentials
refused, ...), and a stream that ends, are not crashes: ``subscribe()`` is called again
on the same open provider after the delay the unit's ``failing`` callback returns, for
as long as it takes, so a provider connects in ``subscribe()`` (or reconnects there).
The source counts as working again once a batch commits, or once the new stream has run
for the lease's TTL without failing (a quiet broker sends nothing to commit; a provider
whose ``subscribe()`` hangs while it connects, without a timeout of its own, looks
working too: connect with a timeout). A wait of a lease's TTL or more hands the lease
over first (``back_off``), so a standby node may try.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from ...kernel._async import STOPS, guarded, provider_stopped
from ...kernel.errors import ConnectionFailedError, ConnectorError
from ...kernel.inbound import ReceivedEvent, SubscriptionSource
from ...kernel.redaction import get_logger
from ...store import Database
from ..inbox import InvalidEventError, add_events
from .leases import Lease, LeaseLost, back_off, keep_renewed

log = get_logger(__name__)


#: Events committed in one transaction at most (also how far the stream is read ahead).
MAX_BATCH = 500


class SourceFailed(Exception):
    """The stream (or an ack) raised ``error``, a ``ConnectorError``: not a crash."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(str(error))
        self.error = error


def commit_received(
    db: Database,
    lease: Lease,
    connector_id: str,
    organization_id: str,
    received: Sequence[ReceivedEvent],
) -> int:
    """Commit received events in one transaction under the lease; ``LeaseLost`` writes
    nothing."""
    for item in received:
        if not isinstance(item, ReceivedEvent):  # a provider's bug, named as such
            raise InvalidEventError(
                f"subscribe() must yield ReceivedEvent(event, ack), not {type(item).__name__}"
            )
    with db.transaction() as s:
        lease.fence(s)
        events = [item.event for item in received]
        return add_events(s, connector_id, organization_id, events, "subscription")


async def run_subscription(
    db: Database,
    connector_id: str,
    organization_id: str,
    source: SubscriptionSource,
    lease: Lease,
    committed: Callable[[int], None],
    failing: Callable[[ConnectorError], float] | None = None,
) -> None:
    """Consume forever while holding the lease; the broker redelivers what was not acked.

    A stream that ends, or raises a ``ConnectorError`` (as may an ack), goes to
    ``failing``, which says how many seconds to wait before subscribing again (without
    ``failing`` the error propagates). Anything else (a provider's bug, a database
    error) propagates: the supervisor counts it as a crash and restarts the unit."""
    while True:
        if not await asyncio.to_thread(lease.acquire):
            await asyncio.sleep(lease.ttl / 3)
            continue
        consumer = asyncio.create_task(
            _consume(db, connector_id, organization_id, source, lease, committed)
        )
        heartbeat = asyncio.create_task(keep_renewed(lease))
        settled = asyncio.create_task(_settle(lease.ttl, committed))
        try:
            done, _ = await asyncio.wait({consumer, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(consumer, heartbeat, settled)
        if consumer in done:
            error = consumer.exception()
            if isinstance(error, LeaseLost):
                log.warning("subscription unit %s lost its lease; standing by", connector_id)
                continue
            if error is None:  # (_consume only ends by raising)
                error = SourceFailed(ConnectionFailedError("the subscription stream ended"))
            if not isinstance(error, SourceFailed):
                raise error
            if failing is None:
                raise error.error
            await back_off(lease, failing(error.error))
            continue
        log.warning("subscription unit %s lost its lease; standing by", connector_id)


async def _settle(seconds: float, committed: Callable[[int], None]) -> None:
    """A stream that has run ``seconds`` without failing works (nothing to commit)."""
    await asyncio.sleep(seconds)
    committed(0)


async def _consume(
    db: Database,
    connector_id: str,
    organization_id: str,
    source: SubscriptionSource,
    lease: Lease,
    committed: Callable[[int], None],
) -> None:
    stream: AsyncIterator[ReceivedEvent] = guarded(source.subscribe)
    buffer: asyncio.Queue[ReceivedEvent] = asyncio.Queue(MAX_BATCH)
    reader = asyncio.create_task(_read_ahead(stream, buffer))
    try:
        while True:
            batch = await _next_batch(buffer, reader)
            added = await asyncio.to_thread(
                commit_received, db, lease, connector_id, organization_id, batch
            )
            committed(added)
            for received in batch:
                try:
                    await received.ack()
                except ConnectorError as exc:  # the broker redelivers it; the inbox has it
                    raise SourceFailed(exc) from exc
                except STOPS as exc:
                    raise provider_stopped(exc) from exc
    finally:
        await _cancel(reader)  # what it read and nobody acked, the broker redelivers
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception, *STOPS):  # closing a broken stream may fail too
                await aclose()


async def _read_ahead(
    stream: AsyncIterator[ReceivedEvent], buffer: asyncio.Queue[ReceivedEvent]
) -> None:
    try:
        async for received in stream:
            await buffer.put(received)
    except STOPS as exc:  # the provider's bug: a crash of its unit, not the loop's end
        raise provider_stopped(exc) from exc


async def _next_batch(
    buffer: asyncio.Queue[ReceivedEvent], reader: asyncio.Task[None]
) -> list[ReceivedEvent]:
    """What the reader has buffered: at least one event, at most ``MAX_BATCH``. Once the
    buffer is empty and the reader has ended, its error (or the end of the stream)."""
    batch: list[ReceivedEvent] = []
    if buffer.empty():
        getter = asyncio.ensure_future(buffer.get())
        try:
            await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():  # the reader ended (or we are stopped): nothing to take
                getter.cancel()
        if not getter.done() or getter.cancelled():
            try:
                reader.result()  # the stream's error
            except ConnectorError as exc:
                raise SourceFailed(exc) from exc
            raise SourceFailed(ConnectionFailedError("the subscription stream ended"))
        batch.append(getter.result())
    while len(batch) < MAX_BATCH and not buffer.empty():
        batch.append(buffer.get_nowait())
    return batch


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
