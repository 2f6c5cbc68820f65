"""Webhook ingress: verify a raw request, commit its events, then let the caller answer.

The hot path of inbound traffic, so it avoids per-request work that does not need to
happen per request:

* the connector's provider instance is cached (decrypting the config and building the
  provider once), for ``cache_seconds`` at most;
* group commit: concurrent webhooks share one transaction and one fsync, and each
  caller still returns only after ITS events are durable. The requests verified while
  one commit is in flight are committed together by the next one (one thread hop back
  to the loop per group, not per request), in a driver transaction: two driver-level
  statements (the connector check, one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
  per chunk) and no ORM session, whose set-up cost more than SQLite's work on a group;
* the event router is woken once per committed group, not once per request.

The cache can never make a change of the connector take effect late: the commit itself
re-reads the connector row in the same transaction and refuses if it was disabled or
deleted, and if it was edited (``updated_at`` moved) the request is verified again with
the fresh configuration before anything is stored. A request the cached provider
refuses (say, signed with a secret rotated a moment ago) makes it ask whether the
connector changed, every time: a throttle here answered 401 to correctly signed
requests for up to a second after an edit. The question is one indexed read on the
failure path only, less than the commit a verified request costs, so forged requests
cannot cost more than genuine ones.

Duplicates (the same event id again, e.g. a sender retrying after a timeout) are
answered as success and stored once: the inbox's unique key decides, also when two
nodes receive the same event at the same moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError

from ...kernel import call_async
from ...kernel._async import STOPS, provider_stopped
from ...kernel.errors import (
    AuthError,
    ConnectorConfigError,
    ConnectorNotFoundError,
    TransientError,
)
from ...kernel.inbound import InboundEvent, WebhookRequest, WebhookSource
from ...service.lookup import connector_id_of
from ...store import Connector
from ...store.bulk import DriverCursor, DriverValues, placeholders
from ..inbox import InvalidEventError, add_event_batches, checked_events

INLINE_BODY_LIMIT = 64 * 1024
"""Bodies up to this size are verified on the event loop when the provider allows it."""
SOURCE = "webhook"


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


ACCEPTED_ONE = IngestResult(1, 0)
DUPLICATE_ONE = IngestResult(0, 1)


@dataclass(frozen=True)
class _Target:
    provider: WebhookSource
    organization_id: str
    updated_at: datetime
    loaded_at: float
    inline: bool
    """The provider verifies with bounded CPU work: small bodies on the event loop."""
    checked: bool
    """The provider's events need no ``event_problem`` check (``events_checked``)."""


@dataclass(slots=True)
class _Pending:
    connector_id: str
    target: _Target
    events: list[InboundEvent]
    future: asyncio.Future[IngestResult]


class _Stale(Exception):
    """The connector changed since its provider was cached: verify again."""


def no_webhook_endpoint() -> ConnectorNotFoundError:
    """Unknown, disabled, deleted or not a webhook connector: all look the same outside.
    The id is not quoted: the answer goes to anyone, and is the same for every id."""
    return ConnectorNotFoundError("no webhook endpoint for this connector id")


class WebhookIngress:
    """Webhook ingest for one application (one event loop).

    Verified requests wait in ``_pending`` while a commit is in flight; the next commit
    takes all of them at once (one thread hop, a few set-based statements), so the
    cost per webhook falls as the load rises. ``on_commit`` (if given) is called on the
    loop once per committed group that stored or confirmed events.
    """

    def __init__(
        self,
        jf: Any,
        *,
        cache_seconds: float = 30.0,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.jf = jf
        self.db = jf.db
        self._writer: ThreadPoolExecutor | None = None  # started by the first commit
        self.cache_seconds = cache_seconds
        self.on_commit = on_commit
        self._targets: dict[str, _Target] = {}
        self._loading: dict[str, asyncio.Future[_Target]] = {}
        self._pending: list[_Pending] = []
        self._flushing = False
        self._flush_task: asyncio.Future[None] | None = None

    async def receive(self, connector_id: str, request: WebhookRequest) -> IngestResult:
        """Verify ``request`` for ``connector_id`` and commit its events.

        Raises ``ConnectorNotFoundError`` (unknown, disabled or not a webhook
        connector), ``AuthError`` (verification failed), ``TransientError`` (the
        connector kept changing meanwhile), ``InvalidEventError`` (the provider returned
        an event the inbox cannot store: its bug, so the sender is asked to retry) or
        the provider's other errors (a malformed body); in every such case nothing is
        stored. ``connector_id`` may come in any letter case (senders' URLs do).
        """
        connector_id = connector_id_of(connector_id)  # one cache entry per connector
        for _ in range(2):
            target = self._targets.get(connector_id)  # the common case: no await
            if target is None or time.monotonic() - target.loaded_at >= self.cache_seconds:
                target = await self._target(connector_id)
            try:
                if target.inline and len(request.body) <= INLINE_BODY_LIMIT:
                    # bounded CPU work: cheaper than a thread hop
                    events = target.provider.parse_webhook(request)
                else:
                    events = await call_async(target.provider.parse_webhook, request)
            except STOPS as exc:  # a provider's bug, answered as one; the loop goes on
                raise provider_stopped(exc) from exc
            except AuthError:
                if not await self._changed(connector_id, target):
                    raise
                self._targets.pop(connector_id, None)  # e.g. a new secret: verify with it
                continue
            if target.checked:
                events = list(events)
            else:  # in a thread: a payload's walk is not bounded by the body's size
                events = await asyncio.to_thread(_checked, target, events)
            future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
            self._pending.append(_Pending(connector_id, target, events, future))
            if not self._flushing:
                self._flushing = True
                self._flush_task = asyncio.ensure_future(self._flush())
            try:
                return await future
            except _Stale:
                self._targets.pop(connector_id, None)
            except ConnectorNotFoundError:
                self._targets.pop(connector_id, None)
                raise
        raise TransientError(  # changed twice while we verified: the sender retries
            "the connector changed while this webhook was verified",
            retry_after=1,
            remediation="Send the webhook again.",
        )

    def organization_of(self, connector_id: str) -> str | None:
        """The organization of a connector this ingress has verified requests for."""
        target = self._targets.get(connector_id_of(connector_id))
        return target.organization_id if target is not None else None

    def close(self) -> None:
        """Wait for the commit in flight and stop the writer thread (a later commit,
        e.g. of an app started again, starts a new one)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        self._targets.clear()

    # -- the connector's provider, cached ------------------------------------------------
    async def _target(self, connector_id: str) -> _Target:
        target = self._targets.get(connector_id)
        if target is not None and time.monotonic() - target.loaded_at < self.cache_seconds:
            return target
        loading = self._loading.get(connector_id)
        if loading is None:  # one load per connector however many requests wait for it
            loading = asyncio.ensure_future(asyncio.to_thread(self._load, connector_id))
            self._loading[connector_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(connector_id, None))
        target = await asyncio.shield(loading)
        self._targets[connector_id] = target
        return target

    async def _changed(self, connector_id: str, target: _Target) -> bool:
        """Whether the connector was edited since ``target`` was cached -- asked each
        time a request fails verification, since a sender that rotated its secret signs
        with the new one at once (then: verify again with the new configuration)."""
        return await asyncio.to_thread(self._updated_at, connector_id) != target.updated_at

    def _updated_at(self, connector_id: str) -> datetime | None:
        with self.db.snapshot() as s:
            query = select(Connector.updated_at).where(Connector.id == connector_id)
            updated_at: datetime | None = s.scalar(query)
            return updated_at

    def _load(self, connector_id: str) -> _Target:
        try:
            row, cls, config = self.jf.connectors.resolve(connector_id)
        except (ConnectorNotFoundError, ConnectorConfigError):
            # (its provider is not installed: an anonymous sender learns nothing of the
            # connector or the plugin -- the runtime status tells its admins why)
            raise no_webhook_endpoint() from None
        if not row.is_enabled or not issubclass(cls, WebhookSource):
            raise no_webhook_endpoint()
        provider = cls.from_config(config)
        assert isinstance(provider, WebhookSource)
        inline = bool(getattr(provider, "verify_inline", False))
        checked = bool(provider.events_checked)
        loaded = time.monotonic()
        return _Target(provider, row.organization_id, row.updated_at, loaded, inline, checked)

    # -- committing ------------------------------------------------------------------------
    async def _flush(self) -> None:
        batch: list[_Pending] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                outcomes: list[IngestResult | BaseException]
                try:
                    outcomes = await self._commit(batch)  # one wake-up of this loop
                except (IntegrityError, DataError):
                    # e.g. a connector deleted by another node between the check and the
                    # insert (PostgreSQL), or a value the database cannot hold that the
                    # provider let through: redo the requests one by one, each its outcome
                    alone = [self._commit([p]) for p in batch]
                    results = await asyncio.gather(*alone, return_exceptions=True)
                    outcomes = [r[0] if isinstance(r, list) else r for r in results]
                except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                    outcomes = [exc] * len(batch)
                committed = False
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        pending.future.set_exception(outcome)
                    else:
                        committed = True
                        pending.future.set_result(outcome)
                if committed and self.on_commit is not None:
                    self.on_commit()  # before any of the callers answers
        finally:
            self._flushing = False
            # cancelled (shutdown) with requests waiting: fail them rather than hang them
            for pending in [*batch, *self._pending]:
                if not pending.future.done():
                    pending.future.set_exception(ConnectionAbortedError("shutting down"))
            self._pending = []

    async def _commit(self, batch: list[_Pending]) -> list[IngestResult | BaseException]:
        if self._writer is None:  # one thread writes: groups commit in order, one at a time
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="webhook-commit")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._write, batch)

    def _write(self, batch: list[_Pending]) -> list[IngestResult | BaseException]:
        with self.db.driver_transaction() as cursor:
            return _write_batch(batch, cursor)


def _checked(target: _Target, events: object) -> list[InboundEvent]:
    """The events of a provider that does not vouch for them, checked as polling's are:
    one the inbox cannot store refuses the whole request before anything is staged (on
    SQLite it would be stored as it is, on PostgreSQL fail the group; an empty id would
    make every later one a "duplicate" answered 200 and lost)."""
    try:
        return checked_events(events, SOURCE)
    except InvalidEventError as exc:
        provider_type = getattr(target.provider, "provider_type", "?")
        raise InvalidEventError(
            f"the {provider_type!r} provider's parse_webhook: {exc.message}",
            remediation="Send it again later: the receiving connector's provider must be"
            " fixed (its operators' log names the problem). Nothing was stored.",
        ) from None


# -- the group's write ----------------------------------------------------------------
_CONNECTOR_STATE = "SELECT id, is_enabled, updated_at FROM connectors WHERE id IN ({})"


def _write_batch(batch: list[_Pending], cursor: DriverCursor) -> list[IngestResult | BaseException]:
    """Stage many requests' events in ``cursor``'s transaction; each request gets its
    own outcome.

    Per request: the connector must still be enabled and unchanged since its provider
    was cached (else not found / stale: verify again), and an event id already stored
    for the connector (or earlier in the group, or by another node a moment ago) counts
    as a duplicate.
    """
    connector_ids = list({p.connector_id for p in batch})
    sql = _CONNECTOR_STATE.format(placeholders(cursor, len(connector_ids)))
    state = {
        row[0]: (row[1], DriverValues.read_timestamp(row[2]))
        for row in cursor.execute(sql, tuple(connector_ids)).fetchall()
    }
    outcomes: list[IngestResult | BaseException] = []
    accepted: list[_Pending] = []
    for pending in batch:
        found = state.get(pending.connector_id)
        if found is None or not found[0]:
            outcomes.append(no_webhook_endpoint())
        elif found[1] != pending.target.updated_at:
            outcomes.append(_Stale())
        else:
            outcomes.append(ACCEPTED_ONE)  # filled in below
            accepted.append(pending)
    if not accepted:
        return outcomes
    batches = [(p.connector_id, p.target.organization_id, p.events) for p in accepted]
    added = iter(add_event_batches(cursor, batches, SOURCE))
    for index, pending in enumerate(batch):
        if isinstance(outcomes[index], IngestResult):
            new, count = next(added), len(pending.events)
            if (new, count) != (1, 1):  # else ACCEPTED_ONE already
                single_duplicate = new == 0 and count == 1
                outcomes[index] = (
                    DUPLICATE_ONE if single_duplicate else IngestResult(new, count - new)
                )
    return outcomes
