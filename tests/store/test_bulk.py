"""Driver-level statements: rows go in the order the statement declares, whatever order
the SQL binds them in, on both databases; JSON text round-trips what JSON can hold."""

from __future__ import annotations

import pytest
from sqlalchemy import Table, bindparam, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from jackfield.kernel.inbound import InboundEvent
from jackfield.kernel.payloads import json_text
from jackfield.runtime.inbox import add_event_batches, insert_event_batches
from jackfield.store.bulk import DriverStatement, DriverValues
from jackfield.store.models import utcnow
from jackfield.store.models_inbound import InboxEvent
from jackfield.store.models_outbox import OutboxMessage

T: Table = OutboxMessage.__table__  # type: ignore[assignment]
COLUMNS = (
    "envelope_id",
    "connector_id",
    "organization_id",
    "operation",
    "payload",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


def _connector(jf, admin) -> str:
    return jf.connectors.create(admin, name="e", category="messaging", provider_type="echo")["id"]


def test_rows_are_bound_in_the_declared_order_on_both_databases(jf, admin):
    cid = _connector(jf, admin)
    now = utcnow()
    statement = insert(T).values({name: bindparam(name) for name in COLUMNS})
    # the UPDATE binds its SET values before its WHERE: the rows need not know
    rename = DriverStatement(
        update(T)
        .where(T.c.envelope_id == bindparam("u_envelope"))
        .values(operation=bindparam("u_operation"), updated_at=bindparam("u_now")),
        ("u_envelope", "u_now", "u_operation"),
    )
    with jf.db.transaction() as s:
        values = DriverValues(s.connection().dialect)
        stamp = values.timestamp(now)
        org = admin.organization_id
        rows = [
            (f"E{i}", cid, org, "", json_text({"n": i}), "dead", 0, stamp, stamp, stamp)
            for i in range(3)
        ]
        assert DriverStatement(statement, COLUMNS).execute(s, rows) == 3
        changed = rename.execute(s, [("E1", values.timestamp(now), "renamed")])
        assert changed == 1
    with jf.db.transaction() as s:
        stored = {r.envelope_id: r for r in s.execute(select(T))}
    assert {e: (r.payload, r.operation) for e, r in stored.items()} == {
        "E0": ({"n": 0}, ""),
        "E1": ({"n": 1}, "renamed"),
        "E2": ({"n": 2}, ""),
    }


def test_a_statement_with_a_bound_constant_or_an_undeclared_bind_is_refused(jf, admin):
    constant = DriverStatement(update(T).values(state="pending"), ())
    undeclared = DriverStatement(update(T).values(state=bindparam("x")), ("y",))
    with jf.db.transaction() as s:
        for statement in (constant, undeclared):
            with pytest.raises(ValueError, match="statement binds"):
                statement.execute(s, [()])


def test_json_text_keeps_what_json_can_hold_and_strings_the_rest():
    assert json_text({"a": [1, 2.5, None, True], 3: "int key"}) == (
        '{"a":[1,2.5,null,true],"3":"int key"}'
    )
    assert json_text({"big": 2**70}) == '{"big":1180591620717411303424}'  # beyond 64 bits
    assert json_text({"big": 2**70, "nan": [float("nan")]}) == (
        '{"big":1180591620717411303424,"nan":[null]}'
    )
    assert json_text({"odd": {1, 2}}).startswith('{"odd":"{')  # stored as its str
    assert DriverValues.read_json(json_text({"x": "é"})) == {"x": "é"}
    # text that could be stored but never served (an unpaired surrogate) becomes U+FFFD
    big = 2**70
    assert json_text({"t": "a\ud800", "big": big}) == f'{{"t":"a\\ufffd","big":{big}}}'


def test_read_json_reads_what_an_earlier_version_stored():
    """Rows written before payloads were checked may hold an unpaired surrogate, which
    orjson refuses: they are read the standard library's way, not left unreadable."""
    assert DriverValues.read_json('{"t":"\\ud800"}') == {"t": "\ud800"}


def test_many_rows_of_an_insert_are_all_written_and_duplicates_skipped(jf, admin):
    cid = _connector(jf, admin)
    events = [InboundEvent(f"e{i}", "t", {"i": i}) for i in range(300)]  # 256 + 2*16 + 3*4
    again = [*events[250:262], InboundEvent("new", "t", {})]  # across a chunk boundary
    with jf.db.transaction() as s:
        assert insert_event_batches(s, [(cid, admin.organization_id, events)], "test") == 300
    with jf.db.transaction() as s:
        assert insert_event_batches(s, [(cid, admin.organization_id, again)], "test") == 1
    with jf.db.transaction() as s:
        stored = s.execute(select(InboxEvent.event_id, InboxEvent.payload)).all()
    assert len(stored) == 301
    assert {e: p for e, p in stored}["e299"] == {"i": 299}


def test_a_returning_insert_gives_back_the_rows_it_took_in_every_chunk(jf, admin):
    cid, org = _connector(jf, admin), admin.organization_id
    first = [InboundEvent(f"e{i}", "t", {"i": i}) for i in range(261)]  # 256 + 4 + 1
    with jf.db.driver_transaction() as cursor:
        assert add_event_batches(cursor, [(cid, org, first)], "test") == [261]
    again = [InboundEvent("e0", "t", {}), InboundEvent("new", "t", {})]
    repeated = [InboundEvent("new", "t", {}), InboundEvent("e260", "t", {})]
    with jf.db.driver_transaction() as cursor:
        # per batch: what was new; "new" counts for the first batch that carries it
        assert add_event_batches(cursor, [(cid, org, again), (cid, org, repeated)], "t") == [1, 0]
    with jf.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(InboxEvent)) == 262


def test_a_driver_transaction_commits_or_stores_nothing(jf, admin):
    cid, org = _connector(jf, admin), admin.organization_id
    with pytest.raises(ZeroDivisionError):
        with jf.db.driver_transaction() as cursor:
            add_event_batches(cursor, [(cid, org, [InboundEvent("lost", "t", {})])], "test")
            1 / 0  # noqa: B018 - the caller fails after writing
    # a driver's own error surfaces as SQLAlchemy's, as from a session
    with pytest.raises(IntegrityError):
        with jf.db.driver_transaction() as cursor:
            add_event_batches(
                cursor, [("no-such-connector", org, [InboundEvent("x", "t", {})])], "t"
            )
    with jf.db.driver_transaction() as cursor:
        add_event_batches(cursor, [(cid, org, [InboundEvent("kept", "t", {})])], "test")
    with jf.db.transaction() as s:
        assert s.scalars(select(InboxEvent.event_id)).all() == ["kept"]


def test_a_batch_of_any_size_takes_one_statement_per_bit_of_its_size(jf, admin):
    """255 loopback events were twelve statements (three per power of four), each one a
    trip of the GIL between the database thread and the event loop; now eight."""
    cid, org = _connector(jf, admin), admin.organization_id
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith("INSERT INTO inbox_events"):
            statements.append(statement)

    event.listen(jf.db.engine, "before_cursor_execute", count)
    try:
        for size, first in ((255, 0), (1000, 255), (1024, 1255)):
            statements.clear()
            events = [InboundEvent(f"b{first + i}", "t", {"i": i}) for i in range(size)]
            with jf.db.transaction() as s:
                assert insert_event_batches(s, [(cid, org, events)], "test") == size
            assert len(statements) == bin(size).count("1")
    finally:
        event.remove(jf.db.engine, "before_cursor_execute", count)
    with jf.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(InboxEvent)) == 255 + 1000 + 1024
