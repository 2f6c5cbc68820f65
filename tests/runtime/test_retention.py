"""Retention: finished outbox messages and inbox events older than the retention are
deleted; messages still owed to someone (pending, retrying, in flight, dead letters)
stay, however old."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select, update

from jackfield.runtime.inbound import LEASE_PREFIX
from jackfield.runtime.retention import Pruned, Retention, RetentionConfig
from jackfield.service import Principal, Role
from jackfield.service.events import EventService
from jackfield.store import utcnow
from jackfield.store.models_inbound import InboxEvent, UnitLease
from jackfield.store.models_outbox import OutboxMessage

STATES = ("pending", "retrying", "in_flight", "delivered", "dead", "discarded")


def _message(jf, connector_id, *, state, age, changed=None):
    """A message in ``state``, created ``age`` ago and last changed ``changed`` ago."""
    envelope = jf.send(connector_id, {"text": f"{state} {age}"})
    created = utcnow() - age
    with jf.db.transaction() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.envelope_id == envelope)
            .values(state=state, created_at=created, updated_at=utcnow() - (changed or age))
        )
    return envelope


def _event(jf, who, connector_id, *, dispatched, age):
    event = EventService(jf.db).inject(who, connector_id, {"text": "hi"})
    now = utcnow()
    with jf.db.transaction() as s:
        s.execute(
            update(InboxEvent)
            .where(InboxEvent.event_id == event["event_id"])
            .values(received_at=now - age, dispatched_at=now if dispatched else None)
        )
    return event["event_id"]


def _left(jf):
    with jf.db.transaction() as s:
        return (
            set(s.scalars(select(OutboxMessage.envelope_id))),
            set(s.scalars(select(InboxEvent.event_id))),
        )


def _prune(jf, **config) -> Pruned:
    retention = Retention(jf.db, jf.runtime.committer, RetentionConfig(**config))
    return asyncio.run(retention.prune())


def test_only_what_is_finished_and_older_than_the_retention_goes(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    old, young = timedelta(days=8), timedelta(hours=1)
    old_ones = {state: _message(jf, cid, state=state, age=old) for state in STATES}
    # created long ago, delivered an hour ago (after days of retries): its last change counts
    late = _message(jf, cid, state="delivered", age=old, changed=young)
    young_delivered = _message(jf, cid, state="delivered", age=young)
    old_dispatched = _event(jf, tenant.admin, cid, dispatched=True, age=old)
    old_waiting = _event(jf, tenant.admin, cid, dispatched=False, age=old)
    young_dispatched = _event(jf, tenant.admin, cid, dispatched=True, age=young)

    # defaults: 7 days for both; an event no handler took in 7 days had no handler process
    # running all that time (one dispatches within seconds): it goes too
    assert _prune(jf) == Pruned(messages=2, events=2)

    messages, events = _left(jf)
    gone = {old_ones["delivered"], old_ones["discarded"]}
    kept = {old_ones[s] for s in ("pending", "retrying", "in_flight", "dead")}
    assert messages == kept | {young_delivered, late}
    assert not gone & messages
    assert events == {young_dispatched}
    assert not {old_dispatched, old_waiting} & events
    assert _prune(jf) == Pruned()  # nothing more to do

    # the envelope id of a pruned message is free again: idempotency holds for the window
    again = jf.send(cid, {"text": "same id, new message"}, envelope_id=old_ones["delivered"])
    assert again == old_ones["delivered"]
    with jf.db.transaction() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.envelope_id == again))
        assert row.state == "pending" and row.payload == {"text": "same id, new message"}
    # and so is a pruned event's id: the inbox no longer drops it as a repeat
    events_service = EventService(jf.db)
    assert not events_service.inject(tenant.admin, cid, {}, event_id=old_dispatched)["duplicate"]
    assert events_service.inject(tenant.admin, cid, {}, event_id=young_dispatched)["duplicate"]


def test_a_backlog_goes_in_chunks_and_stops_at_the_first_young_row(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    old = [_message(jf, cid, state="delivered", age=timedelta(days=3)) for _ in range(23)]
    young = _message(jf, cid, state="delivered", age=timedelta(minutes=5))
    # old by its timestamps but inserted after a young row (another node's clock running
    # behind): left for a later pass, never a reason to scan the whole table
    straggler = _message(jf, cid, state="delivered", age=timedelta(days=3))

    assert _prune(jf, outbox_hours=24, inbox_hours=0, chunk=5) == Pruned(messages=23)
    messages, _ = _left(jf)
    assert messages == {young, straggler}
    assert not set(old) & messages


def test_the_lease_of_a_deleted_connector_goes_once_long_expired(jf, tenant, make_connector):
    now = utcnow()
    kept, deleted, just_deleted = (make_connector(tenant.admin) for _ in range(3))
    with jf.db.transaction() as s:
        for cid, expired in ((kept, timedelta(days=2)), (deleted, timedelta(days=2))):
            s.add(UnitLease(unit=LEASE_PREFIX + cid, owner="gone:1", expires_at=now - expired))
        # its holder may still be finishing: it stays a while
        s.add(UnitLease(unit=LEASE_PREFIX + just_deleted, owner="n:2", expires_at=now))
    jf.connectors.delete(tenant.admin, deleted)
    jf.connectors.delete(tenant.admin, just_deleted)

    assert _prune(jf).leases == 1
    with jf.db.transaction() as s:
        left = set(s.scalars(select(UnitLease.unit)))
    assert left == {LEASE_PREFIX + kept, LEASE_PREFIX + just_deleted}


def test_zero_keeps_rows_for_ever(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    message = _message(jf, cid, state="delivered", age=timedelta(days=400))
    event = _event(jf, tenant.admin, cid, dispatched=True, age=timedelta(days=400))
    retention = Retention(jf.db, jf.runtime.committer, RetentionConfig(0, 0))
    assert not retention.enabled
    assert asyncio.run(retention.prune()) == Pruned()
    assert _left(jf) == ({message}, {event})


async def test_the_running_runtime_prunes_by_itself(sqlite_url, make_jf, wait_until):
    jf = make_jf(sqlite_url, outbox_retention_hours=2, retention_interval_seconds=0.2)
    cid = _echo_connector(jf)
    stale = await asyncio.to_thread(_message, jf, cid, state="delivered", age=timedelta(hours=3))
    assert _left(jf)[0] == {stale}
    await jf.start()
    try:
        fresh = await asyncio.to_thread(jf.send, cid, {"text": "fresh"})
        await asyncio.to_thread(
            wait_until, lambda: _left(jf)[0] == {fresh} and _state(jf, fresh) == "delivered"
        )
        await asyncio.sleep(0.5)  # two more passes: a fresh delivered message stays
        assert _left(jf)[0] == {fresh}
    finally:
        await jf.stop()


def _echo_connector(jf):
    org = jf.accounts.create_org("acme")["id"]
    who = Principal(org, "admin@acme.io", Role.ADMIN)
    created = jf.connectors.create(who, name="echo", category="messaging", provider_type="echo")
    jf.connectors.test(who, created["id"])
    jf.connectors.set_enabled(who, created["id"], True)
    return created["id"]


def _state(jf, envelope):
    with jf.db.transaction() as s:
        return s.scalar(select(OutboxMessage.state).where(OutboxMessage.envelope_id == envelope))


async def test_a_pass_that_fails_unexpectedly_is_logged_and_the_next_one_runs(
    jf, tenant, make_connector, caplog, wait_until
):
    """An outbox retention too long for a date (refused by the settings now) made every
    pass raise OverflowError: the task died unlogged and never pruned again, the inbox
    included. A fault of one pass is logged with its traceback, and pruning goes on."""
    cid = make_connector(tenant.admin)
    event = await asyncio.to_thread(
        _event, jf, tenant.admin, cid, dispatched=True, age=timedelta(days=30)
    )
    caplog.set_level(logging.INFO, logger="jackfield")
    config = RetentionConfig(outbox_hours=2e7, inbox_hours=168, interval=0.05)
    broken = Retention(jf.db, jf.runtime.committer, config)
    broken.start()
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: len([r for r in caplog.records if "retention pass failed" in r.message]) >= 2,
        )
        assert broken._task is not None and not broken._task.done()
        failed = [r for r in caplog.records if "retention pass failed" in r.message]
        assert failed[0].exc_info and failed[0].exc_info[0] is OverflowError
        # the same task goes on: once the window is one a date can hold, it prunes
        object.__setattr__(config, "outbox_hours", 168)
        await asyncio.to_thread(wait_until, lambda: event not in _left(jf)[1])
    finally:
        await broken.stop()
