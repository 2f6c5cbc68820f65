"""Engines and transactions for SQLite (default, WAL) and PostgreSQL (by URL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from jackfield.kernel.private_paths import create_private_file, make_private_dir

from .bulk import DriverCursor


def parse_url(url: str) -> URL:
    """``url`` parsed; ``ArgumentError`` when it does not parse (a port that is not a
    number raised a bare ``ValueError``), without quoting it: it may hold a password."""
    try:
        return make_url(url)
    except ValueError as exc:
        raise ArgumentError("its host and port do not parse (a port is a number)") from exc


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver the ``postgres`` extra installs)."""
    parsed = parse_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; ``None`` for another database or memory."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        # a URI (sqlite:///file:name.db?uri=true): its path is the file, unless in memory
        if parsed.query.get("mode") == "memory":
            return None
        database = unquote(urlsplit(database).path)
    if database in ("", ":memory:"):
        return None
    return Path(database)


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; ``ArgumentError`` when its database has no driver here
    (``mysql://`` without MySQLdb), instead of the import's traceback."""
    url = normalize_url(url)
    parsed = parse_url(url)
    try:
        return _create_engine(parsed, url, **kwargs)
    except ImportError as exc:
        # PostgreSQL's driver is an extra: say which, not only which module is missing
        remedy = (
            "install it with: pip install 'jackfield[postgres]'"
            if parsed.get_backend_name() == "postgresql"
            else "Jackfield runs on SQLite and PostgreSQL"
        )
        raise ArgumentError(
            f"no driver for {parsed.drivername!r} is installed ({exc}); {remedy}"
        ) from exc


def _create_engine(parsed: URL, url: str, **kwargs: Any) -> Engine:
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:  # it holds password hashes and every organization's data
            make_private_dir(path.parent)
            create_private_file(path)
            # The pool hands out the connection returned last, so the database thread
            # (``GroupCommitter``) keeps getting the one it wrote with: SQLite drops a
            # connection's page cache whenever another connection wrote since its last
            # transaction, and with the pool's default (oldest first) the writer took
            # turns between connections and re-read its index pages every time
            # (~12% of the outbox's statement time). A memory database has no pool.
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args = {k: v for k, v in POSTGRES_CONNECT.items() if k not in parsed.query}
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _postgres_utc)
    return engine


POSTGRES_CONNECT = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
"""libpq's connection parameters that make a PostgreSQL that stops answering (a
partition, dropped packets, a server that accepts and then says nothing) an outage of
seconds rather than of minutes: without them a connection attempt waited as long as
the system let it (131 s), and a connection whose server went silent waited for ever
-- requests and the CLI answered nothing, and ``serve`` could not stop. A connection
is given 5 s; one whose server's kernel sends no acknowledgement of what was written
(``tcp_user_timeout``, ms) or no answer to keepalive probes after 5 s idle is dropped
within about 10 s. A long statement is not cut: a server busy with it still
acknowledges. A parameter in the URL's query (``?connect_timeout=30``) wins."""


def _postgres_utc(dbapi_conn: Any, _record: Any) -> None:
    """Every session in UTC, whatever the server's or the client's (``PGTZ``) zone: the
    driver hands back timestamps in the session's zone, and a time shown or answered in
    New York's offset (or read back into text) is not the UTC every page and response
    promises. A ``SET`` rather than a startup option, which poolers such as PgBouncer
    refuse."""
    cursor = dbapi_conn.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    dbapi_conn.commit()


READ_ONLY = "jackfield_read_only"


def _sqlite_begin(conn: Any) -> None:
    """Take the write lock at BEGIN, so concurrent writers queue instead of failing with
    "database is locked" when a read transaction upgrades to a write -- except in
    ``Database.snapshot()``, which never writes: a deferred BEGIN reads a snapshot of
    the WAL without taking the lock at all."""
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" hook issues BEGIN itself
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit survives power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """An engine plus a session factory; ``transaction()`` commits or rolls back as one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        # SQLite has one writer; queueing this process's transactions on a lock is far
        # cheaper than SQLite's busy-wait sleeps (other processes still use busy_timeout).
        self._write_lock: threading.RLock | None = (
            threading.RLock() if is_sqlite(self.engine) else None
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        if self._write_lock is None:
            with self.sessions.begin() as session:
                yield session
            return
        with self._write_lock, self.sessions.begin() as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it neither takes nor waits for the
        write lock (WAL readers see a consistent snapshot while writers commit), so a
        long read -- counting a large table for ``/metrics`` -- never holds up the
        outbox or webhooks. Do not write in it (it would fail as "database is locked"
        while another writer holds the lock)."""
        with self._readers.begin() as session:
            yield session

    @contextmanager
    def driver_transaction(self) -> Iterator[DriverCursor]:
        """A write transaction on a pooled DBAPI connection, without a ``Session``: for
        hot paths whose statements are all driver-level (``store.bulk``). Setting up and
        tearing down a session costs more than SQLite spends on a small group of rows
        (measured on a webhook group of three: ~0.6 ms of CPU against ~0.2 ms). Driver
        errors come out as SQLAlchemy's (``IntegrityError`` ...), as from a session.
        Not for a thread already inside a transaction: on SQLite the two would wait for
        each other's write lock."""
        dialect = self.engine.dialect
        dbapi = dialect.loaded_dbapi
        with self._write_lock or nullcontext():
            try:  # the pool's connect (no server to connect to) raises the driver's error
                connection = self.engine.raw_connection()
            except dbapi.Error as exc:
                raise DBAPIError.instance(None, None, exc, dbapi.Error) from exc
            try:
                cursor = connection.cursor()
                if self._write_lock is not None:
                    cursor.execute("BEGIN IMMEDIATE")  # as the sessions' "begin" hook does
                try:
                    yield DriverCursor(cursor, dialect)
                    connection.commit()
                except BaseException:
                    connection.rollback()
                    raise
            except dbapi.Error as exc:
                # a connection the server closed is dropped, as a session's is, not put
                # back in the pool (whose reset would log the failed rollback's traceback)
                lost = dialect.is_disconnect(exc, connection.dbapi_connection, None)
                if lost:
                    connection.invalidate(exc)
                raise DBAPIError.instance(
                    None, None, exc, dbapi.Error, connection_invalidated=lost
                ) from exc
            finally:
                connection.close()  # back to the pool

    def dispose(self) -> None:
        self.engine.dispose()
