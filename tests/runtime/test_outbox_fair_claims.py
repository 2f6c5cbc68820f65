"""Claims share a batch between the connectors with messages due: one connector's
backlog cannot hold up another's messages until it has drained. Real databases, both."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import update

from jackfield.runtime.outbox_store import OutboxStore
from jackfield.store import utcnow
from jackfield.store.models_outbox import OutboxMessage


def _queue(jf, connector_id, count):
    sent = jf.runtime.outbox.send_many_async(
        None, connector_id, [{"text": str(i)} for i in range(count)]
    )
    return [r.envelope_id for r in sent.result(60)]


def _claim_due(jf, store, limit, exclude=()):
    with jf.db.transaction() as s:
        return store.claim_due(limit, 30, exclude, s)


def test_a_backlog_does_not_hold_up_other_connectors_messages(jf, tenant, make_connector):
    busy, quiet, other = (make_connector(tenant.admin) for _ in range(3))
    _queue(jf, busy, 300)  # older than every message below
    [late] = _queue(jf, quiet, 1)
    _queue(jf, other, 20)
    store = OutboxStore(jf.db)

    first = _claim_due(jf, store, 30)
    assert late in {c.envelope_id for c in first.claimed}  # not after busy's 300
    # equal shares, longest waiting first; what quiet did not need goes to the next one
    assert Counter(c.connector_id for c in first.claimed) == {busy: 10, quiet: 1, other: 19}
    assert first.more  # busy and other have more due: the worker claims again at once

    rest = store.claim(1000, lease_seconds=30)
    assert Counter(c.connector_id for c in rest) == {busy: 290, other: 1}
    last = _claim_due(jf, store, 10)
    assert (last.claimed, last.more) == ([], False)
    assert last.next_due is not None  # the leases' expiry: when they may be claimed again


def test_a_disabled_connectors_backlog_is_not_claimed_nor_due(jf, tenant, make_connector):
    parked, live = make_connector(tenant.admin), make_connector(tenant.admin)
    _queue(jf, parked, 50)
    jf.connectors.set_enabled(tenant.admin, parked, False)
    store = OutboxStore(jf.db)
    result = _claim_due(jf, store, 10)
    assert (result.claimed, result.more, result.next_due) == ([], False, None)
    [envelope] = _queue(jf, live, 1)
    assert [c.envelope_id for c in _claim_due(jf, store, 10).claimed] == [envelope]


def test_the_next_due_time_counts_what_the_claimed_connector_holds_next(
    jf, tenant, make_connector
):
    """An idle worker sleeps until then: a retry falling due soon after the claimed
    message must wake it (not the poll interval, seconds later)."""
    cid = make_connector(tenant.admin)
    first, soon = _queue(jf, cid, 2)
    retry_at = utcnow() + timedelta(seconds=5)
    with jf.db.transaction() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.envelope_id == soon)
            .values(state="retrying", next_attempt_at=retry_at)
        )
    result = _claim_due(jf, OutboxStore(jf.db), 10)
    assert [c.envelope_id for c in result.claimed] == [first] and not result.more
    assert result.next_due is not None
    assert abs((result.next_due - retry_at).total_seconds()) < 0.01
