"""Inbound: how events get into the inbox (webhook ingress, polling and subscription
units), leases for multi-node operation, and the live feed of new events.

The supervisor asks ``inbound_runner`` for the unit of a connector and runs it; a
webhook-only provider needs no unit (the HTTP endpoint is the source).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ...kernel.errors import ConnectorError
from ...kernel.inbound import PollingSource, SubscriptionSource
from ...kernel.redaction import get_logger
from .leases import DEFAULT_TTL, Lease, LeaseLost
from .polling import PollSlot, PollTimeoutError, commit_polled, poll_deadline, run_polling
from .subscription import commit_received, run_subscription

log = get_logger(__name__)
LEASE_PREFIX = "inbound:"  # + connector id: the name of its unit's lease


def inbound_runner(
    jf: Any,
    connector_id: str,
    provider: object,
    node_id: str,
    *,
    lease_ttl: float = DEFAULT_TTL,
    healthy: Callable[[], None] = lambda: None,
    failing: Callable[[ConnectorError], float] | None = None,
    slot: PollSlot | None = None,
) -> Callable[[], Awaitable[None]] | None:
    """A coroutine function running the provider's inbound unit forever, or ``None``.

    A ``SubscriptionSource`` wins over a ``PollingSource`` when a provider offers both.
    The unit holds the lease ``LEASE_PREFIX + connector_id`` as ``node_id``; without it the
    coroutine waits as a standby. It raises when the unit crashes, for the supervisor to
    restart it, and releases the lease when cancelled. ``healthy`` is called after each
    commit (a poll, a batch of the stream): the source works. ``failing`` is called with
    each ``ConnectorError`` that ``poll`` or the stream raises (the external system is
    down, refuses the credentials, ...), which is no crash: it returns the seconds to
    wait before trying again. Without ``failing``, such an error ends the unit too.
    ``slot`` (a polling source's) tracks its poll across runners, so a sync poll stuck
    in its thread past its deadline is never joined by another (see ``run_polling``).
    """
    if isinstance(provider, SubscriptionSource):
        run: Callable[..., Awaitable[None]] = run_subscription
    elif isinstance(provider, PollingSource):
        run = functools.partial(run_polling, slot=slot)
    else:
        return None
    db = jf.db

    def committed(added: int) -> None:
        events = getattr(getattr(jf, "runtime", None), "events", None)
        if added and events is not None:
            events.wake()
        healthy()

    async def unit() -> None:
        organization_id = await asyncio.to_thread(jf.connectors.organization_of, connector_id)
        lease = Lease(db, LEASE_PREFIX + connector_id, node_id, ttl=lease_ttl)
        try:
            await run(db, connector_id, organization_id, provider, lease, committed, failing)
        finally:
            try:
                await asyncio.shield(asyncio.to_thread(lease.release))
            except SQLAlchemyError as exc:  # the lease then simply expires after its TTL
                log.warning("could not release the lease of %s: %s", connector_id, exc)

    return unit


__all__ = [
    "DEFAULT_TTL",
    "LEASE_PREFIX",
    "Lease",
    "LeaseLost",
    "PollSlot",
    "PollTimeoutError",
    "commit_polled",
    "commit_received",
    "inbound_runner",
    "poll_deadline",
    "run_polling",
    "run_subscription",
]
