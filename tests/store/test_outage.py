"""What counts as a database outage (waited out: 503, acks kept) and what is a fault of
a statement (500 with its traceback, never retried as if it would pass): real errors of
SQLite and PostgreSQL, not hand-made ones."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, PendingRollbackError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jackfield.store import create_db_engine
from jackfield.store.outage import OutageLog, database_unavailable


def error_of(url: str, *statements: str, engine: Engine | None = None) -> DBAPIError:
    engine = engine or create_db_engine(url)
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{statements} raised nothing")


@pytest.mark.parametrize(
    "statements",
    [
        ["SELECT no_such_function(1)"],
        ["SELECT (SELECT 1, 2)"],  # a sub-select of two columns
        ["SELECT * FROM no_such_table"],
    ],
)
def test_a_wrong_statement_is_a_fault_on_sqlite(tmp_path, statements):
    assert not database_unavailable(error_of(f"sqlite:///{tmp_path / 'x.db'}", *statements))


def test_a_locked_sqlite_database_is_an_outage(tmp_path):
    path = tmp_path / "x.db"
    holder = create_db_engine(f"sqlite:///{path}")
    with holder.connect() as conn:  # BEGIN IMMEDIATE: the write lock, held
        conn.execute(text("CREATE TABLE t (a)"))
        impatient = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
        locked = error_of("", "BEGIN IMMEDIATE", engine=impatient)
    holder.dispose()
    assert "database is locked" in str(locked)
    assert database_unavailable(locked)


@pytest.mark.parametrize(
    "statements",
    [
        ["SET statement_timeout = 1", "SELECT pg_sleep(1)"],  # 57014: the statement's fault
        ["SELECT (SELECT 1, 2)"],
        [
            "CREATE TEMP TABLE t (v text)",
            "CREATE INDEX ON t (v)",
            "INSERT INTO t SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g",
        ],
    ],
)
def test_a_wrong_statement_is_a_fault_on_postgresql(pg_database, statements):
    assert not database_unavailable(error_of(pg_database, *statements))


def test_a_postgresql_that_does_not_answer_is_an_outage():
    refused = error_of("postgresql+psycopg://postgres@127.0.0.1:9/x?connect_timeout=2", "SELECT 1")
    assert database_unavailable(refused)


def _terminated(url: str) -> tuple[DBAPIError, PendingRollbackError]:
    """What a transaction gets when its connection is cut, by its server, in the middle
    (a failover, a restart): the statement's error, then -- used again, as a group
    commit's next write or its commit is -- "Can't reconnect until invalid transaction
    is rolled back"."""
    engine = create_db_engine(url)
    killer = create_db_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # in a transaction now
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with killer.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as lost:
                conn.execute(text("SELECT 1"))
            with pytest.raises(PendingRollbackError) as again:
                conn.execute(text("SELECT 1"))
        return lost.value, again.value
    finally:
        killer.dispose()
        engine.dispose()


def test_a_connection_cut_inside_a_transaction_is_an_outage_on_postgresql(pg_database):
    """Webhooks and sends answered 500 with a traceback each, instead of 503, while the
    server's connections were being terminated: the second error was not recognised."""
    lost, again = _terminated(pg_database)
    assert database_unavailable(lost)
    assert database_unavailable(again)


class _Base(DeclarativeBase):
    pass


class _Row(_Base):
    __tablename__ = "outage_rows"
    id: Mapped[int] = mapped_column(primary_key=True)


def test_a_session_used_after_its_flush_failed_is_a_fault(tmp_path):
    """The other ``PendingRollbackError``: a statement of this transaction was wrong (here
    a duplicate key), and the session was used again. Nothing to wait out."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    _Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(_Row(id=1))
        session.commit()
        session.add(_Row(id=1))
        with pytest.raises(DBAPIError):
            session.flush()
        with pytest.raises(PendingRollbackError) as again:
            session.execute(text("SELECT 1"))
    engine.dispose()
    assert not database_unavailable(again.value)


def test_an_outage_whose_failures_are_slow_is_logged_as_one_until_a_success(caplog):
    """Against a hung database each failure took over two minutes (longer than the log's
    minute): the log said the database was "available again after 18.6s (1 failures)"
    although it had been away for 4.5 minutes. Only a success ends an outage."""
    refused = error_of("postgresql+psycopg://postgres@127.0.0.1:9/x?connect_timeout=2", "SELECT 1")
    caplog.set_level(logging.WARNING)
    outages = OutageLog(logging.getLogger("jackfield.test"), "nothing is done", every=0.2)
    started = time.monotonic()
    for _ in range(3):
        outages.failed(refused)
        time.sleep(0.3)  # each failure "takes" longer than ``every``
    outages.recovered()
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if line.startswith("database unavailable")]) == 1, lines
    assert lines[-1].startswith("database available again after ")
    assert lines[-1].endswith("(3 failures)")
    seconds = float(lines[-1].split(" after ")[1].split("s ")[0])
    assert seconds >= 0.85 and seconds <= time.monotonic() - started + 0.05


def test_a_postgresql_that_stops_answering_is_an_outage_within_seconds(pg_database, cuttable_proxy):
    """A server that accepts connections and then says nothing (a hung server, a network
    that drops packets): a new connection waited as long as the system let it (131 s).
    Now it fails within seconds, as an outage."""
    proxy, through_proxy = cuttable_proxy(pg_database)
    proxy.hang()
    engine = create_db_engine(through_proxy)
    started = time.monotonic()
    try:
        with pytest.raises(DBAPIError) as hung, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    assert time.monotonic() - started < 8
    assert database_unavailable(hung.value)


KERNEL_KEEPIDLE = int(Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text())
"""The idle time a socket keeps when nobody sets one (the machine's, often 7200 s)."""


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", (1, 5, 10_000)), ("?keepalives=0&tcp_user_timeout=0", (0, KERNEL_KEEPIDLE, 0))],
)
def test_a_postgresql_connection_notices_a_silent_server(pg_database, query, expected):
    """TCP keepalives and a user timeout, so a connection to a server gone silent (packets
    dropped) is dropped within seconds instead of waiting for ever; the URL's own
    parameters win (libpq's names)."""
    engine = create_db_engine(pg_database + query)
    try:
        with engine.connect() as conn:
            sock = socket.socket(fileno=conn.connection.dbapi_connection.fileno())
            try:
                found = (
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
                )
            finally:
                sock.detach()
    finally:
        engine.dispose()
    assert found == expected


def test_a_read_does_not_end_an_outage_a_write_began(caplog):
    """A full disk, or a standby after a failover, answers reads and refuses writes: a
    read's success said 'available again' while every write still failed."""
    refused = error_of("sqlite://", "SELECT 1 FROM no_such_table")  # (any driver error)
    caplog.set_level(logging.WARNING)
    outages = OutageLog(logging.getLogger("jackfield.test"), "nothing is written")
    outages.failed(refused)
    outages.recovered(writing=False)
    assert outages.ongoing
    outages.failed(refused, writing=False)
    outages.recovered()
    assert not outages.ongoing
    outages.failed(refused, writing=False)  # an outage only reads met: a read ends it
    outages.recovered(writing=False)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" (")[0].split(" after")[0] for line in lines] == [
        "database unavailable",
        "database available again",
        "database unavailable",
        "database available again",
    ], lines
    assert lines[1].endswith("(2 failures)"), lines
