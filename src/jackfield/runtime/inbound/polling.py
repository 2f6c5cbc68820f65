"""Polling units: ``poll(cursor)`` on an interval, cursor committed with its events.

Each round reads the stored cursor, asks the provider for the events after it, and
commits the events and the new cursor in ONE transaction that also checks the unit's
lease (commit after emit); the lease is renewed while ``poll`` runs, up to its
deadline (below). A crash anywhere — in ``poll``, in the middle of the commit, after
it — leaves the inbox and the cursor consistent: either both moved or neither did, so
the next round (on this node or another) fetches the same batch again, and the inbox's
``(connector_id, event_id)`` key drops what was already stored. Nothing is lost and
nothing is stored twice.

A ``ConnectorError`` from ``poll`` (the system unreachable, throttling, credentials
refused, a config it rejects) is not a crash: the round is tried again after the delay
the unit's ``failing`` callback returns, for as long as it takes: with the lease kept
for a short wait, handed over first for one of a lease's TTL or more (``back_off``: the
failure may be this node's own, and a standby may reach the system).

A poll has a deadline (``poll_deadline``: the source's ``poll_timeout_seconds``, else
the longer of 60 s and five poll intervals). One that misses it is an outage too
(``PollTimeoutError``, a ``ConnectionFailedError``: readiness ``unreachable``), and the
unit stops waiting for it: an async poll is cancelled; a sync poll's thread cannot be
stopped (Python cannot kill a thread), so it is left to finish, its answer discarded,
and no other poll of the unit starts on this node until it has ended (``PollSlot``):
a poll that hangs for good holds one thread, never more. The lease is handed over at
each missed deadline rather than renewed while the call hangs: the hang may be this
node's own (a stuck connection, a deadlocked client), and another node may well poll
fine, so any node may take the unit over at once. This node competes for it again
after the backoff, once its own abandoned poll has ended; alone, it simply takes it
back then.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ...kernel._async import PROVIDER_CALLS, STOPS, call_async, guarded, is_async, provider_stopped
from ...kernel.errors import ConnectionFailedError, ConnectorError
from ...kernel.inbound import InboundEvent, PollingSource
from ...kernel.redaction import get_logger
from ...store import Database
from ...store.models_inbound import InboundCursor
from ..inbox import add_events
from .leases import Lease, LeaseLost, back_off, holding, sleep_holding

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


DEFAULT_POLL_TIMEOUT = 60.0
"""The shortest default deadline of a poll, in seconds."""
POLL_TIMEOUT_INTERVALS = 5
"""... else this many poll intervals, when longer."""


class PollTimeoutError(ConnectionFailedError):
    """A poll did not return within its deadline: an outage of the source, not a crash."""


def poll_deadline(source: PollingSource) -> float:
    """Seconds a poll of ``source`` may take: its ``poll_timeout_seconds`` if positive,
    else the longer of ``DEFAULT_POLL_TIMEOUT`` and ``POLL_TIMEOUT_INTERVALS`` intervals."""
    explicit = getattr(source, "poll_timeout_seconds", None)
    if isinstance(explicit, int | float) and not isinstance(explicit, bool) and explicit > 0:
        return float(explicit)
    return max(DEFAULT_POLL_TIMEOUT, POLL_TIMEOUT_INTERVALS * _interval(source))


def _interval(source: PollingSource) -> float:
    return max(float(getattr(source, "poll_interval_seconds", 30.0)), 0.01)


class PollSlot:
    """The poll of one unit on this node that is running, or was abandoned and still is.

    It outlives the unit's generations (the supervisor keeps one per unit), so neither a
    missed deadline nor a restart of the unit starts a second poll beside a sync one
    still stuck in its thread: hung threads cannot pile up.
    """

    def __init__(self) -> None:
        self.running: asyncio.Future[Any] | None = None
        self.started = 0.0  # (loop time) when ``running`` began

    def running_for(self) -> float:
        return asyncio.get_running_loop().time() - self.started

    @property
    def busy(self) -> bool:
        return self.running is not None and not self.running.done()

    async def wait(self, seconds: float) -> None:
        """Wait until the abandoned poll ends, ``seconds`` at most."""
        if self.running is not None:
            await asyncio.wait({self.running}, timeout=seconds)

    async def poll(self, source: PollingSource, cursor: str | None, deadline: float) -> object:
        """``source.poll(cursor)``'s answer, or ``PollTimeoutError`` after ``deadline``
        seconds: an async poll is then cancelled, a sync one left running in its thread
        (``busy`` until it ends; its answer is discarded)."""
        loop = asyncio.get_running_loop()
        started = self.started = loop.time()
        running: asyncio.Future[Any]
        fn: Callable[..., Any] = source.poll  # declared sync; may be ``async def``
        if is_async(fn):  # (its SystemExit or KeyboardInterrupt, an error: ``call_async``)
            running = asyncio.ensure_future(call_async(fn, cursor))
        else:
            call = functools.partial(contextvars.copy_context().run, guarded, fn, cursor)
            running = loop.run_in_executor(PROVIDER_CALLS, call)
        running.add_done_callback(_retrieve)  # an abandoned poll's error is nobody's
        self.running = running
        try:
            done, _ = await asyncio.wait({running}, timeout=deadline)
            if not done:
                raise PollTimeoutError(f"poll did not return within {deadline:g} s")
            result = running.result()
            if inspect.isawaitable(result):  # a sync poll handing back an awaitable
                left = max(deadline - (loop.time() - started), 0.0)
                try:
                    async with asyncio.timeout(left):
                        result = await result
                except TimeoutError:
                    raise PollTimeoutError(f"poll did not return within {deadline:g} s") from None
                except STOPS as exc:
                    raise provider_stopped(exc) from exc
            return result
        finally:
            # an async poll is cancelled (``busy`` until it has stopped); a sync one runs
            # on in its thread, and its future, left alone, says when that ends
            if isinstance(running, asyncio.Task) and not running.done():
                running.cancel()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def run_polling(
    db: Database,
    connector_id: str,
    organization_id: str,
    source: PollingSource,
    lease: Lease,
    committed: Callable[[int], None],
    failing: Callable[[ConnectorError], float] | None = None,
    slot: PollSlot | None = None,
) -> None:
    """Poll forever while holding the lease; wait as a standby while another node does.

    A ``ConnectorError`` from ``poll`` goes to ``failing``, which says how many seconds
    to wait before polling again (without ``failing`` it propagates); so does a poll
    past its deadline (``PollTimeoutError``), after the lease is handed over. While
    ``slot`` (this unit's, on this node) still runs an abandoned poll, no poll starts.
    Anything else ``poll`` raises (a provider's bug), a malformed answer, or a database
    error propagates: the supervisor counts it as a crash and restarts the unit with
    backoff.
    """
    interval = _interval(source)
    deadline = poll_deadline(source)
    slot = slot if slot is not None else PollSlot()
    while True:
        if slot.busy and slot.running_for() < deadline:
            # a poll of the unit's previous generation (a restart, a reload) still runs
            # in its thread, within its deadline: wait for it quietly, it is no outage
            await slot.wait(deadline - slot.running_for())
            continue
        if slot.busy:  # this node's abandoned poll still runs: leave the unit to others
            hung = PollTimeoutError(f"poll did not return within {deadline:g} s")
            if failing is None:
                raise hung
            await slot.wait(failing(hung))
            continue
        if not await asyncio.to_thread(lease.acquire):
            await asyncio.sleep(lease.ttl / 3)
            continue
        cursor = await asyncio.to_thread(load_cursor, db, connector_id)
        try:
            answer = await holding(lease, slot.poll(source, cursor, deadline))
        except PollTimeoutError as exc:
            log.warning("polling unit %s: %s; handing its lease over", connector_id, exc)
            await asyncio.to_thread(lease.hand_over)
            if failing is None:
                raise
            await asyncio.sleep(failing(exc))
            continue
        except ConnectorError as exc:
            if failing is None:
                raise
            await back_off(lease, failing(exc))
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
