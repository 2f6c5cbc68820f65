"""Outbox use cases: send (a durable, idempotent write), list, show, replay, discard.

Sending commits the message before it returns; ``(connector_id, envelope_id)`` is the
idempotency key, so sending a known envelope id again returns the stored message and
sends nothing. Enqueues from many threads (API requests, ``Jackfield.send``) are
group-committed: each scheduled write drains every send queued so far and inserts them
with one ``executemany`` inside the ``GroupCommitter``'s shared transaction, so the
cost of a durable commit is shared by everything that arrived meanwhile.

Decisions (documented in the API and CLI help):

* a connector must exist in the caller's organization (404 otherwise) and be enabled
  (409 otherwise) -- a typo or an inactive connector never collects a silent backlog.
  Messages already queued when a connector is deactivated wait for it to be enabled.
* a known envelope id answers with the stored message even if the connector has been
  deactivated since (a retried request must not fail where the first one succeeded).
* replay resets ``attempts`` to 0 (a full retry budget) and keeps the envelope id; the
  audit log keeps the error that killed it.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..kernel.errors import ConflictError, ConnectorNotFoundError
from ..store import Connector, Database, utcnow
from ..store.group_commit import GroupCommitter
from ..store.models_outbox import OutboxMessage
from . import audit
from .context import Principal
from .messages import (
    MAX_LIST,
    STATES,
    InvalidMessageError,
    MessageNotFoundError,
    RowView,
    check_operation,
    check_payload,
    lookup_id,
    message_view,
    parse_envelope_id,
)


class SendResult:
    """What a send did: ``created`` is False when the envelope id was already known."""

    __slots__ = ("_row", "_view", "created", "envelope_id")

    def __init__(self, envelope_id: str, created: bool, row: Any) -> None:
        self.envelope_id = envelope_id
        self.created = created
        self._row = row
        self._view: dict[str, Any] | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The message as the API shows it (built on first use: most senders only
        need the envelope id)."""
        if self._view is None:
            row = self._row
            self._view = message_view(RowView(row) if isinstance(row, dict) else row)
        return self._view

    @property
    def state(self) -> str:
        return str(self.message["state"])


@dataclass(frozen=True)
class _Send:
    connector_id: str
    organization_id: str | None  # the caller's organization; None: embedded, any
    envelope_id: str
    operation: str
    payload: dict[str, Any]
    client_id: bool  # the caller chose the envelope id (it may be known already)


_Pending = tuple[_Send, "Future[SendResult]"]


class OutboxService:
    def __init__(self, db: Database, committer: GroupCommitter | None = None) -> None:
        self.db = db
        self.committer = committer or GroupCommitter(db, name="outbox-enqueue")
        self._lock = threading.Lock()
        self._queued: list[_Pending] = []
        self._scheduled = False
        self._listeners: list[Callable[[set[str]], None]] = []

    def add_listener(self, callback: Callable[[set[str]], None]) -> None:
        """Call ``callback(connector_ids)`` after new messages committed (wakes workers)."""
        self._listeners.append(callback)

    # -- sending ----------------------------------------------------------------------
    def send(
        self,
        who: Principal | None,
        connector_id: str,
        payload: Any,
        *,
        operation: str | None = None,
        envelope_id: str | None = None,
        timeout: float | None = 60,
    ) -> SendResult:
        """Queue one message and return once it is committed. ``who=None``: embedded use
        (any organization)."""
        return self.send_async(
            who, connector_id, payload, operation=operation, envelope_id=envelope_id
        ).result(timeout)

    def send_async(
        self,
        who: Principal | None,
        connector_id: str,
        payload: Any,
        *,
        operation: str | None = None,
        envelope_id: str | None = None,
    ) -> Future[SendResult]:
        """Like ``send``; the future resolves when the message is committed."""
        item = _Send(
            connector_id=str(connector_id),
            organization_id=who.organization_id if who is not None else None,
            envelope_id=parse_envelope_id(envelope_id),
            operation=check_operation(operation),
            payload=check_payload(payload),
            client_id=bool(envelope_id),
        )
        future: Future[SendResult] = Future()
        self._queue([(item, future)])
        return future

    def _queue(self, items: list[_Pending]) -> None:
        with self._lock:
            self._queued.extend(items)
            if self._scheduled:
                return  # the write already scheduled will drain these too
            self._scheduled = True
        drained: list[_Pending] = []
        self._submit(lambda s: self._write(s, self._drain_into(drained)), drained, alone=False)

    def _drain_into(self, drained: list[_Pending]) -> list[_Pending]:
        with self._lock:
            drained.extend(self._queued)
            self._queued = []
            self._scheduled = False
        return drained

    def _submit(
        self, fn: Callable[[Session], list[Any]], drained: list[_Pending], *, alone: bool
    ) -> None:
        written = self.committer.submit_async(fn)
        written.add_done_callback(lambda f: self._settle(f, drained, alone))

    def _submit_alone(self, pending: _Pending) -> None:
        single = [pending]
        self._submit(lambda s: self._write(s, single), single, alone=True)

    def _write(self, session: Session, drained: list[_Pending]) -> list[Any]:
        """Runs in the group transaction: validate and insert ``drained`` at once."""
        connector_ids = {item.connector_id for item, _ in drained}
        connectors = {
            row.id: row
            for row in session.execute(
                select(Connector.id, Connector.organization_id, Connector.is_enabled).where(
                    Connector.id.in_(connector_ids)
                )
            )
        }
        # Only client-chosen envelope ids can be known already; generated ULIDs are new.
        given = {item.envelope_id for item, _ in drained if item.client_id}
        known: dict[tuple[str, str], Any] = {}
        if given:
            known = {
                (row.connector_id, row.envelope_id): row
                for row in session.execute(
                    select(*_VIEW_COLUMNS).where(OutboxMessage.envelope_id.in_(given))
                )
            }
        now = utcnow()
        rows: list[dict[str, Any]] = []
        outcomes: list[Any] = []
        for item, _ in drained:
            connector = connectors.get(item.connector_id)
            key = (item.connector_id, item.envelope_id)
            if connector is None or item.organization_id not in (None, connector.organization_id):
                outcomes.append(ConnectorNotFoundError(f"no connector {item.connector_id}"))
            elif key in known:  # stored before, or earlier in this batch
                outcomes.append(SendResult(item.envelope_id, False, known[key]))
            elif not connector.is_enabled:
                outcomes.append(
                    ConflictError(
                        f"connector {item.connector_id} is not enabled",
                        remediation="Activate the connector, then send again.",
                    )
                )
            else:
                row = {
                    "envelope_id": item.envelope_id,
                    "connector_id": item.connector_id,
                    "organization_id": connector.organization_id,
                    "operation": item.operation,
                    "payload": item.payload,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "last_error": None,
                    "error_class": None,
                }
                rows.append(row)
                known[key] = row
                outcomes.append(SendResult(item.envelope_id, True, row))
        if rows:
            session.execute(insert(_TABLE), rows)
        return outcomes

    def _settle(self, written: Future[list[Any]], drained: list[_Pending], alone: bool) -> None:
        error = written.exception()
        if error is not None:
            if isinstance(error, IntegrityError) and not alone:
                # e.g. another node inserted one of these envelope ids concurrently, or
                # a connector was deleted meanwhile: write each send on its own, so each
                # sees the row now there (200) or gets its own error.
                for pending in drained:
                    self._submit_alone(pending)
                return
            for _, future in drained:
                future.set_exception(error)
            return
        created: set[str] = set()
        for (item, future), outcome in zip(drained, written.result(), strict=True):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                if outcome.created:
                    created.add(item.connector_id)
                future.set_result(outcome)
        if created:
            for listener in self._listeners:
                listener(created)

    # -- reading ----------------------------------------------------------------------
    def list(
        self,
        who: Principal,
        *,
        connector_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Messages of the caller's organization, newest first; ``cursor`` pages on."""
        if state is not None and state not in STATES:
            raise InvalidMessageError(
                f"unknown state {state!r}", field_errors={"state": "one of " + ", ".join(STATES)}
            )
        limit = max(1, min(int(limit), MAX_LIST))
        query = select(*_VIEW_COLUMNS, OutboxMessage.id).where(
            OutboxMessage.organization_id == who.organization_id
        )
        if connector_id:
            query = query.where(OutboxMessage.connector_id == str(connector_id))
        if state:
            query = query.where(OutboxMessage.state == state)
        if cursor:
            if not cursor.isdigit():
                raise InvalidMessageError("invalid cursor", field_errors={"cursor": "as returned"})
            query = query.where(OutboxMessage.id < int(cursor))
        with self.db.transaction() as s:
            rows = s.execute(query.order_by(OutboxMessage.id.desc()).limit(limit + 1)).all()
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        return [message_view(r) for r in rows[:limit]], next_cursor

    def get(
        self, who: Principal, envelope_id: str, *, connector_id: str | None = None
    ) -> dict[str, Any]:
        with self.db.transaction() as s:
            return message_view(self._load(s, who, envelope_id, connector_id))

    def organization_of(self, envelope_id: str) -> str:
        """The organization of a message (for the operator's CLI)."""
        with self.db.transaction() as s:
            org = s.scalar(
                select(OutboxMessage.organization_id)
                .where(OutboxMessage.envelope_id == lookup_id(envelope_id))
                .order_by(OutboxMessage.id.desc())
                .limit(1)
            )
        if org is None:
            raise MessageNotFoundError(f"no message {envelope_id}")
        return org

    # -- dead letters -------------------------------------------------------------------
    def replay(
        self, who: Principal, envelope_id: str, *, connector_id: str | None = None
    ) -> dict[str, Any]:
        """dead -> pending with the same envelope id and a fresh retry budget."""
        who.require_admin()
        with self.db.transaction() as s:
            row = self._load(s, who, envelope_id, connector_id, lock=True)
            _require_dead(row, "replayed")
            details = {"error_class": row.error_class, "attempts": row.attempts}
            row.state, row.attempts, row.next_attempt_at = "pending", 0, utcnow()
            row.last_error = row.error_class = None
            audit.record(s, who, "outbox.replay", "message", row.envelope_id, details=details)
            s.flush()
            view = message_view(row)
        for listener in self._listeners:
            listener({row.connector_id})
        return view

    def discard(
        self, who: Principal, envelope_id: str, *, connector_id: str | None = None
    ) -> dict[str, Any]:
        """dead -> discarded: kept for the record, never delivered."""
        who.require_admin()
        with self.db.transaction() as s:
            row = self._load(s, who, envelope_id, connector_id, lock=True)
            _require_dead(row, "discarded")
            row.state = "discarded"
            audit.record(s, who, "outbox.discard", "message", row.envelope_id)
            s.flush()
            return message_view(row)

    # -- internals ----------------------------------------------------------------------
    @staticmethod
    def _load(
        s: Session,
        who: Principal,
        envelope_id: str,
        connector_id: str | None,
        *,
        lock: bool = False,
    ) -> OutboxMessage:
        query = select(OutboxMessage).where(
            OutboxMessage.envelope_id == lookup_id(envelope_id),
            OutboxMessage.organization_id == who.organization_id,
        )
        if connector_id:
            query = query.where(OutboxMessage.connector_id == str(connector_id))
        if lock:
            query = query.with_for_update()
        row = s.scalar(query.order_by(OutboxMessage.id.desc()).limit(1))
        if row is None:
            raise MessageNotFoundError(f"no message {envelope_id}")
        return row


_TABLE: Table = OutboxMessage.__table__  # type: ignore[assignment]
_VIEW_COLUMNS = (
    OutboxMessage.envelope_id,
    OutboxMessage.connector_id,
    OutboxMessage.operation,
    OutboxMessage.state,
    OutboxMessage.attempts,
    OutboxMessage.next_attempt_at,
    OutboxMessage.last_error,
    OutboxMessage.error_class,
    OutboxMessage.result,
    OutboxMessage.created_at,
    OutboxMessage.updated_at,
)


def _require_dead(row: OutboxMessage, verb: str) -> None:
    if row.state != "dead":
        raise ConflictError(
            f"message {row.envelope_id} is {row.state!r}; only dead messages can be {verb}",
            remediation="List dead letters with state=dead.",
        )


__all__ = [
    "STATES",
    "InvalidMessageError",
    "MessageNotFoundError",
    "OutboxService",
    "SendResult",
    "message_view",
    "parse_envelope_id",
]
