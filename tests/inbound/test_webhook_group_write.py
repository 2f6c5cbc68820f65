"""The webhook ingress's group write (``_write_batch``) on its own: many requests in one
driver transaction, each with its own outcome, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError

from jackfield.kernel.errors import ConnectorNotFoundError
from jackfield.kernel.inbound import InboundEvent
from jackfield.runtime.inbound.webhook import (
    IngestResult,
    WebhookIngress,
    _Pending,
    _Stale,
    _write_batch,
)
from jackfield.store.models_inbound import InboxEvent

SENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


_LOOP = asyncio.new_event_loop()  # the futures are never awaited here


def _pending(ingress: WebhookIngress, connector_id: str, *ids: str) -> _Pending:
    target = ingress._load(connector_id)
    events = [InboundEvent(i, "t", {"id": i, "n": 1.5}, occurred_at=SENT) for i in ids]
    return _Pending(connector_id, target, events, _LOOP.create_future())


def _write(jf, batch: list[_Pending]) -> list:
    """The group write in a transaction of its own, committed."""
    with jf.db.driver_transaction() as cursor:
        return _write_batch(batch, cursor)


def _stored(jf, connector_id: str) -> int:
    with jf.db.transaction() as s:
        return s.scalar(select(func.count()).where(InboxEvent.connector_id == connector_id))


def test_each_request_of_a_group_gets_its_own_outcome(jf, webhook_connector):
    ingress = WebhookIngress(jf)
    try:
        first = _pending(ingress, webhook_connector, "old")
        assert _write(jf, [first]) == [IngestResult(1, 0)]
        batch = [
            _pending(ingress, webhook_connector, "a"),
            _pending(ingress, webhook_connector, "old"),  # stored before
            _pending(ingress, webhook_connector, "a"),  # earlier in the group
            _pending(ingress, webhook_connector, "b", "b", "c"),
            _pending(ingress, webhook_connector),
        ]
        outcomes = _write(jf, batch)
        assert outcomes == [
            IngestResult(1, 0),
            IngestResult(0, 1),
            IngestResult(0, 1),
            IngestResult(2, 1),
            IngestResult(0, 0),
        ]
        with jf.db.transaction() as s:
            rows = s.scalars(
                select(InboxEvent)
                .where(InboxEvent.connector_id == webhook_connector)
                .order_by(InboxEvent.id)
            ).all()
            assert [r.event_id for r in rows] == ["old", "a", "b", "c"]
            assert rows[1].payload == {"id": "a", "n": 1.5}
            assert rows[1].occurred_at == SENT and rows[1].source == "webhook"
            assert rows[1].organization_id == batch[0].target.organization_id
            assert rows[1].received_at is not None and rows[1].dispatched_at is None
    finally:
        ingress.close()


def test_large_groups_are_written_in_chunks(jf, webhook_connector):
    ingress = WebhookIngress(jf)
    try:
        batch = [_pending(ingress, webhook_connector, f"e{i}") for i in range(620)]
        assert _write(jf, batch[:7]) == [IngestResult(1, 0)] * 7
        outcomes = _write(jf, batch)
        assert outcomes == [IngestResult(0, 1)] * 7 + [IngestResult(1, 0)] * 613
        assert _stored(jf, webhook_connector) == 620
    finally:
        ingress.close()


def test_a_disabled_or_edited_connector_stores_nothing(
    jf, admin, webhook_connector, webhook_secret
):
    ingress = WebhookIngress(jf)
    try:
        cached = _pending(ingress, webhook_connector, "x")
        jf.connectors.update(
            admin, webhook_connector, config={"secret": webhook_secret, "tolerance_seconds": 60}
        )
        (outcome,) = _write(jf, [cached])
        assert isinstance(outcome, _Stale)
        fresh = _pending(ingress, webhook_connector, "y")
        jf.connectors.set_enabled(admin, webhook_connector, False)
        (outcome,) = _write(jf, [fresh])
        assert isinstance(outcome, ConnectorNotFoundError)
        assert _stored(jf, webhook_connector) == 0
    finally:
        ingress.close()


def test_long_integers_are_exact_and_nan_is_stored_as_null(jf, webhook_connector):
    ingress = WebhookIngress(jf)
    try:
        pending = _pending(ingress, webhook_connector, "nan", "big")
        pending.events[:] = [
            InboundEvent("nan", "t", {"n": float("nan"), "none": None}, occurred_at=SENT),
            InboundEvent("big", "t", {"big": 2**70}, occurred_at=SENT),
        ]
        assert _write(jf, [pending]) == [IngestResult(2, 0)]
        with jf.db.transaction() as s:
            payloads = s.scalars(
                select(InboxEvent.payload)
                .where(InboxEvent.connector_id == webhook_connector)
                .order_by(InboxEvent.id)
            ).all()
        # NaN is not JSON (PostgreSQL refuses it): stored as null, as store.bulk does
        assert payloads == [{"n": None, "none": None}, {"big": 2**70}]
    finally:
        ingress.close()


async def test_an_event_the_database_refuses_fails_only_its_own_request(jf, webhook_connector):
    """A provider bug (an event without a type) makes the group's INSERT fail: the
    requests are then written one by one, so only that request gets the error."""
    ingress = WebhookIngress(jf)
    try:
        loop = asyncio.get_running_loop()
        first, bad, last = (_pending(ingress, webhook_connector, i) for i in ("g1", "b", "g2"))
        bad.events[:] = [InboundEvent("b", None, {})]  # type: ignore[arg-type]
        for pending in (first, bad, last):
            pending.future = loop.create_future()
        ingress._pending = [first, bad, last]
        await ingress._flush()
        assert (first.future.result(), last.future.result()) == (IngestResult(1, 0),) * 2
        with pytest.raises(IntegrityError):
            bad.future.result()
        with jf.db.transaction() as s:
            stored = s.scalars(select(InboxEvent.event_id).order_by(InboxEvent.id)).all()
        assert stored == ["g1", "g2"]
    finally:
        ingress.close()


async def test_a_value_postgresql_cannot_hold_fails_only_its_own_request(jf, webhook_connector):
    """NUL in text: SQLite stores it, PostgreSQL raises DataError for the whole INSERT.
    The webhook provider refuses it; a provider that does not must not fail the other
    requests (of any organization) committed in the same group."""
    ingress = WebhookIngress(jf)
    try:
        loop = asyncio.get_running_loop()
        first, bad, last = (_pending(ingress, webhook_connector, i) for i in ("g1", "b", "g2"))
        bad.events[:] = [InboundEvent("b", "nul\x00type", {})]
        for pending in (first, bad, last):
            pending.future = loop.create_future()
        ingress._pending = [first, bad, last]
        await ingress._flush()
        assert (first.future.result(), last.future.result()) == (IngestResult(1, 0),) * 2
        with jf.db.transaction() as s:
            stored = set(s.scalars(select(InboxEvent.event_id)))
        if jf.db.engine.dialect.name == "postgresql":
            with pytest.raises(DataError):
                bad.future.result()
            assert stored == {"g1", "g2"}
        else:
            assert bad.future.result() == IngestResult(1, 0)
            assert stored == {"g1", "b", "g2"}
    finally:
        ingress.close()


async def test_a_closed_ingress_commits_again_when_used_again(jf, webhook_connector):
    """An app's lifespan may end and start again with the same ingress (tests do)."""
    ingress = WebhookIngress(jf)
    try:
        before, after = (_pending(ingress, webhook_connector, i) for i in ("before", "after"))
        assert await ingress._commit([before]) == [IngestResult(1, 0)]
        ingress.close()
        assert await ingress._commit([after]) == [IngestResult(1, 0)]
    finally:
        ingress.close()
