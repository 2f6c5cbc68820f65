"""The migrations create exactly the schema the models describe, on both backends."""

import subprocess
import sys
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

from jackfield.service import Principal
from jackfield.service.events import EventService
from jackfield.store import Base, create_db_engine, is_current, upgrade, utcnow
from jackfield.store.migrate import _config
from jackfield.store.models_outbox import RuntimeUnit
from jackfield.store.tables import load_all_models


def test_migrations_match_the_models(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert is_current(engine)
    load_all_models()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_nodes_starting_together_migrate_one_at_a_time(empty_database_url):
    """Several nodes starting at once on a new database (or a new version) each run the
    migrations -- as processes, as nodes do. On PostgreSQL all but one used to fail
    ("duplicate key value violates unique constraint pg_type_typname_nsp_index") and
    their ``serve`` exited."""
    node = (
        "import sys; from jackfield.store import create_db_engine, upgrade;"
        " upgrade(create_db_engine(sys.argv[1]))"
    )
    started = [
        subprocess.Popen(
            [sys.executable, "-c", node, empty_database_url], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in started]
    assert [p.returncode for p in started] == [0] * 4, errors
    engine = create_db_engine(empty_database_url)
    assert is_current(engine)
    engine.dispose()


def _migrate(engine, direction, revision):
    """``alembic upgrade/downgrade <revision>`` on ``engine``."""
    cfg = _config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        getattr(command, direction)(cfg, revision)


def test_runtime_units_survive_the_move_to_rows_per_node(jf):
    """0005 keys ``runtime_units`` by (connector, node): an old row is kept, and going
    back keeps one row per connector, the one written last."""
    org = jf.accounts.create_org("migrations")["id"]
    who = Principal.operator(org)
    cid = jf.connectors.create(
        who, name="m", category="messaging", provider_type="echo", config={}
    )["id"]
    engine = jf.db.engine
    old = (
        "INSERT INTO runtime_units (connector_id, organization_id, liveness, readiness,"
        " restart_count, last_error, node, next_restart_at, restart_requested_at, updated_at)"
        " VALUES (:cid, :org, 'failed', 'unreachable', 4, 'boom', NULL, NULL, :now, :now)"
    )
    now = utcnow()
    try:
        _migrate(engine, "downgrade", "0004")
        with engine.begin() as conn:
            conn.execute(text(old), {"cid": cid, "org": org, "now": now})
        _migrate(engine, "upgrade", "heads")
        with jf.db.transaction() as s:
            [row] = s.scalars(select(RuntimeUnit))
            assert (row.connector_id, row.node, row.liveness, row.restart_count) == (
                cid,
                "",
                "failed",
                4,
            )
            assert (row.last_error, row.restart_seen) == ("boom", 0)
            s.add(
                RuntimeUnit(
                    connector_id=cid,
                    node="node-b",
                    organization_id=org,
                    liveness="running",
                    readiness="ready",
                    restart_count=1,
                    restart_seen=0,
                    updated_at=now + timedelta(seconds=1),
                )
            )
        _migrate(engine, "downgrade", "0004")
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT node, liveness FROM runtime_units")).all()
        assert [tuple(r) for r in rows] == [("node-b", "running")]
    finally:
        _migrate(engine, "upgrade", "heads")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_row_ids_go_past_32_bits(jf, admin):
    """As PostgreSQL ``serial`` the ids of the ever-growing tables ran out at 2^31 rows
    in a table's lifetime (retention never winds a sequence back): from then on every
    webhook, send and audit record failed."""
    with jf.db.engine.begin() as conn:
        for table in ("inbox_events", "outbox_messages", "audit_events"):
            conn.exec_driver_sql(f"SELECT setval('{table}_id_seq', 2147483646)")
    connector = jf.connectors.create(  # an audit record
        admin, name="echo", category="messaging", provider_type="echo", config={}
    )["id"]
    events = EventService(jf.db)
    for n in range(3):
        events.inject(admin, connector, {"n": n})
    page = events.list(admin, connector, limit=2)
    assert [e["payload"]["n"] for e in page["items"]] == [2, 1]
    assert int(page["next_cursor"]) >= 2**31
    older = events.list(admin, connector, cursor=page["next_cursor"])
    assert [e["payload"]["n"] for e in older["items"]] == [0]


def test_ids_of_deleted_events_and_messages_are_never_handed_out_again(jf, admin):
    """Once the newest events were deleted (their connector deleted, retention), SQLite
    gave new events their ids again, and a live-stream client resuming with the
    ``Last-Event-ID`` of one of them was sent nothing. 0010 keeps every row, id and
    index of a database made before it, and from then on ids only grow (as on
    PostgreSQL, where 0010 changes nothing)."""
    engine = jf.db.engine
    events = EventService(jf.db)

    def connector(name: str) -> str:
        made = jf.connectors.create(
            admin, name=name, category="messaging", provider_type="echo", config={}
        )["id"]
        jf.connectors.test(admin, made)
        jf.connectors.set_enabled(admin, made, True)
        return str(made)

    kept, gone = connector("kept"), connector("gone")
    try:
        _migrate(engine, "downgrade", "0009")
        old = [events.inject(admin, kept, {"n": 0})["id"]]
        old += [events.inject(admin, gone, {"n": n})["id"] for n in (1, 2)]
        for n in range(3):
            jf.send(gone if n else kept, {"text": f"m{n}"})
        with engine.connect() as conn:
            outbox_old = conn.execute(text("SELECT id, envelope_id FROM outbox_messages")).all()
            indexes = _index_definitions(conn)
        _migrate(engine, "upgrade", "heads")
        with engine.connect() as conn:
            assert _index_definitions(conn) == indexes
            rows = conn.execute(text("SELECT id, event_id FROM inbox_events ORDER BY id")).all()
            outbox_rows = conn.execute(text("SELECT id, envelope_id FROM outbox_messages")).all()
        assert [r[0] for r in rows] == old  # every row kept, with its id
        assert sorted(outbox_rows) == sorted(outbox_old)

        jf.connectors.delete(admin, gone)  # the newest events and messages go with it
        new = events.inject(admin, kept, {"n": 3})["id"]
        jf.send(kept, {"text": "m3"})
        with engine.connect() as conn:
            newest_message = conn.execute(text("SELECT max(id) FROM outbox_messages")).scalar()
        assert new > max(old)
        assert newest_message > max(r[0] for r in outbox_old)
    finally:
        _migrate(engine, "upgrade", "heads")


def _index_definitions(conn) -> set[tuple[str, str]]:
    """Name and definition of each index of the two tables (partial ones included)."""
    if conn.dialect.name == "sqlite":
        query = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            " AND tbl_name IN ('inbox_events', 'outbox_messages')"
        )
    else:
        query = (
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE tablename IN ('inbox_events', 'outbox_messages')"
        )
    return {(name, sql or "") for name, sql in conn.execute(text(query))}
