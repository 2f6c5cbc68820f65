"""Outbox use cases: send (a durable, idempotent write), list, show, replay, discard.

Sending commits the message before it returns; ``(connector_id, envelope_id)`` is the
idempotency key, so sending a known envelope id again returns the stored message and
sends nothing. Enqueues from many threads (API requests, ``Jackfield.send``) are
group-committed, many sends to one INSERT, and may be handed straight to this process's
delivery worker (``outbox_enqueue``).

Decisions (documented in the API and CLI help):

* a connector must exist in the caller's organization (404 otherwise), be enabled and
  be of a type that sends (409 otherwise) -- a typo, an inactive connector or a webhook
  endpoint never collects a silent backlog.
  Messages already queued when a connector is deactivated wait for it to be enabled.
* a known envelope id answers with the stored message even if the connector has been
  deactivated since (a retried request must not fail where the first one succeeded).
* replay resets ``attempts`` to 0 (a full retry budget) and keeps the envelope id; the
  audit log keeps the error that killed it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from sqlalchemy import and_, select, text, true, update
from sqlalchemy.orm import Session

from ..kernel.errors import ConflictError
from ..store import Database, utcnow
from ..store.group_commit import GroupCommitter
from ..store.models_outbox import DEAD_SQL, OutboxMessage
from . import audit
from .context import Principal
from .lookup import load_connector, stored_connector_id, stored_id_of
from .messages import (
    MAX_LIST,
    STATES,
    InvalidMessageError,
    MessageNotFoundError,
    check_operation,
    encode_payload,
    lookup_id,
    message_view,
    new_ulid,
    parse_envelope_id,
)
from .outbox_enqueue import (
    VIEW_COLUMNS,
    DirectDelivery,
    Enqueuer,
    Lease,
    Send,
    Sending,
    SendResult,
)
from .views import InvalidQueryError, invalid_cursor, parse_row_id


class OutboxService:
    def __init__(
        self,
        db: Database,
        committer: GroupCommitter | None = None,
        *,
        sending: Callable[[str, str], Sending] | None = None,
    ) -> None:
        """``sending(category, provider_type)``: what connectors of that type accept (the
        registry knows): a message to one that only receives, or naming an operation its
        provider does not offer, is refused, saying so."""
        self.db = db
        self.committer = committer or GroupCommitter(db, name="outbox-enqueue")
        self._listeners: list[Callable[[set[str]], None]] = []
        self._enqueuer = Enqueuer(self.committer, self._notify, sending)

    def add_listener(self, callback: Callable[[set[str]], None]) -> None:
        """Call ``callback(connector_ids)`` after new messages committed that wait to be
        claimed (wakes workers)."""
        self._listeners.append(callback)

    def set_direct_delivery(self, worker: DirectDelivery | None) -> None:
        """Let ``worker`` (this process's delivery) take new messages without a claim."""
        self._enqueuer.direct = worker

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
        item = Send(
            stored_id_of(connector_id),
            who.organization_id if who is not None else None,
            parse_envelope_id(envelope_id),
            check_operation(operation),
            encode_payload(payload),
            bool(envelope_id),
        )
        return self._enqueuer.submit(item)

    def send_many_async(
        self,
        who: Principal | None,
        connector_id: str,
        payloads: Iterable[Any],
        *,
        operation: str | None = None,
    ) -> Future[builtins.list[SendResult]]:
        """Queue several messages to one connector, each with a new envelope id, in one
        write; the future resolves to their results (in order) once all are committed.
        Nothing is queued if one payload is invalid or the connector cannot take them."""
        organization = who.organization_id if who is not None else None
        operation = check_operation(operation)
        connector_id = stored_id_of(connector_id)
        items = [
            Send(connector_id, organization, new_ulid(), operation, encode_payload(p, i), False)
            for i, p in enumerate(payloads)
        ]
        return self._enqueuer.submit_many(items)

    def _notify(self, connector_ids: set[str]) -> None:
        for listener in self._listeners:
            listener(connector_ids)

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
        which = OutboxMessage.organization_id == who.organization_id
        if connector_id:
            # (no UUID: ``IS NULL``, which no message is -- not a query the database refuses)
            which = and_(which, OutboxMessage.connector_id == stored_connector_id(connector_id))
        return self._page(which, state, limit, cursor)

    def list_deployment(
        self, *, state: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Every organization's messages, newest first: the outbox as the runtime's
        operator sees it (the CLI, which holds the database and the master key anyway).
        Never for an API caller: organizations do not see each other."""
        return self._page(true(), state, limit, cursor)

    def _page(
        self, which: Any, state: str | None, limit: int, cursor: str | None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        if state is not None and state not in STATES:
            raise InvalidQueryError(
                f"unknown state {state[:40]!r}",
                field_errors={"state": "one of " + ", ".join(STATES)},
                remediation="Filter by one of the states: " + ", ".join(STATES) + ".",
            )
        limit = max(1, min(int(limit), MAX_LIST))
        query = select(*VIEW_COLUMNS, OutboxMessage.id).where(which)
        if state == "dead":  # the SQL text of the partial index: the database then uses it
            query = query.where(text(DEAD_SQL))
        elif state:
            query = query.where(OutboxMessage.state == state)
        if cursor:
            before = parse_row_id(cursor)
            if before is None:
                raise invalid_cursor(cursor)
            query = query.where(OutboxMessage.id < before)
        with self.db.snapshot() as s:
            rows = s.execute(query.order_by(OutboxMessage.id.desc()).limit(limit + 1)).all()
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        return [message_view(r) for r in rows[:limit]], next_cursor

    def get(
        self, who: Principal, envelope_id: str, *, connector_id: str | None = None
    ) -> dict[str, Any]:
        with self.db.snapshot() as s:
            return message_view(self._load(s, who, envelope_id, connector_id))

    def organization_of(self, envelope_id: str) -> str:
        """The organization of a message (for the operator's CLI)."""
        with self.db.snapshot() as s:
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

    def replay_dead(self, who: Principal, connector_id: str) -> dict[str, Any]:
        """Every dead letter of a connector back to pending, as ``replay`` does one (same
        envelope ids, fresh retry budgets): what an operator wants once the cause of an
        outage is fixed. One statement and one audit record; answers how many."""
        who.require_admin()
        now = utcnow()
        with self.db.transaction() as s:
            connector = load_connector(s, connector_id, organization_id=who.organization_id).id
            replayed = (
                s.connection()
                .execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.connector_id == connector, OutboxMessage.state == "dead")
                    .values(
                        state="pending",
                        attempts=0,
                        next_attempt_at=now,
                        last_error=None,
                        error_class=None,
                        updated_at=now,
                    )
                )
                .rowcount
            )
            details = {"replayed": replayed}
            audit.record(s, who, "outbox.replay_dead", "connector", connector, details=details)
        if replayed:
            for listener in self._listeners:
                listener({connector})
        return {"connector_id": connector, "replayed": replayed}

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
            query = query.where(OutboxMessage.connector_id == stored_connector_id(connector_id))
        if lock:
            query = query.with_for_update()
        row = s.scalar(query.order_by(OutboxMessage.id.desc()).limit(1))
        if row is None:
            raise MessageNotFoundError(f"no message {envelope_id}")
        return row


def _require_dead(row: OutboxMessage, verb: str) -> None:
    if row.state != "dead":
        raise ConflictError(
            f"message {row.envelope_id} is {row.state!r}; only dead messages can be {verb}",
            remediation="List dead letters with state=dead.",
        )


__all__ = [
    "STATES",
    "DirectDelivery",
    "InvalidMessageError",
    "Lease",
    "MessageNotFoundError",
    "OutboxService",
    "Send",
    "SendResult",
    "Sending",
    "message_view",
    "parse_envelope_id",
]
