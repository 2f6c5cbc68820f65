"""Driver-level statements for the hot, set-based writes (outbox, inbox).

SQLAlchemy's ``executemany`` processes every parameter of every row in Python (JSON
encoding, datetime formatting, type coercion) -- on the outbox's paths that costs
several times what SQLite itself spends on the row. A ``DriverStatement`` is a Core
statement compiled once per dialect with positional parameters and executed with
``exec_driver_sql``: each row is a tuple of values that are already what the driver
takes (``DriverValues``: a shared timestamp per batch, JSON text per document), in the
order the statement's ``params`` name them. Statements stay Core expressions, so the
SQL is still written once for SQLite and PostgreSQL.

JSON text is made (``kernel.payloads``) and read (``DriverValues.read_json``) with
orjson: several times faster than the standard library on small documents, and every
outbox message passes through it four times.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any, cast

import orjson
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement, Insert
from sqlalchemy.sql.compiler import SQLCompiler

from .models import UTCDateTime, as_utc

Row = tuple[Any, ...]


#: Row counts of one multi-row statement; a batch is split into these, largest first, so
#: ``n`` rows take at most as many statements as ``n`` has bits set (below 1024). Eleven
#: statement texts per statement stay well within the drivers' caches of prepared ones
#: (sqlite3: 128, psycopg: 100). Powers of four took up to three statements per digit --
#: 255 acks were 12 statements, each a round of the GIL between the database thread and
#: the busy event loop; a statement of 1024 rows of 12 columns binds 12,288 values
#: (SQLite allows 32,766, PostgreSQL 65,535).
ROW_CHUNKS = (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


class DriverStatement:
    """``statement`` executed at the driver level with rows of positional driver values.

    ``statement`` is a Core statement, or a function of the dialect name returning one
    (for dialect-specific constructs such as ``ON CONFLICT``). ``params`` names its bind
    parameters in the order every row carries them; a name may occur several times in
    the SQL. Constants belong in the SQL as literals, not as bound values.

    Several rows of an INSERT go in multi-row ``VALUES`` statements rather than an
    ``executemany``: the driver then hands SQLite one statement per chunk instead of one
    per row, and each of those steps releases and re-takes the GIL -- with the event
    loop busy in the other thread, re-taking it is what an ``executemany`` spent most of
    its time on.
    """

    def __init__(
        self,
        statement: ClauseElement | Callable[[str], ClauseElement],
        params: Sequence[str],
    ) -> None:
        self.statement = statement
        self.params = tuple(params)
        self._compiled: dict[str, _Compiled] = {}

    def execute(self, session: Session, rows: Row | Sequence[Row]) -> int:
        """One statement (a tuple) or one per row (a list of tuples) in ``session``'s
        transaction; returns the number of rows changed, in total."""
        connection = session.connection()
        run = connection.exec_driver_sql
        return sum(run(sql, params).rowcount for sql, params in self._calls(connection, rows))

    def fetch(self, cursor: DriverCursor, rows: Sequence[Row]) -> list[Row]:
        """Execute an INSERT's ``rows`` in ``cursor``'s transaction and return what its
        ``RETURNING`` clause gave back, for all chunks."""
        out: list[Row] = []
        for sql, params in self._calls(cursor, list(rows)):
            out.extend(cursor.execute(sql, params).fetchall())
        return out

    def _calls(
        self, connection: Connection | DriverCursor, rows: Row | Sequence[Row]
    ) -> Iterator[tuple[str, Any]]:
        """The driver calls for ``rows``: ``(sql, params)``, where ``params`` is a list
        of rows (an ``executemany``) only for statements that cannot take several rows."""
        compiled = self._compile(connection.dialect)
        arrange = compiled.arrange
        if isinstance(rows, tuple):
            yield compiled.sql, arrange(rows) if arrange is not None else rows
            return
        if arrange is not None:
            rows = [arrange(r) for r in rows]
        if compiled.values is None:
            if rows:
                yield compiled.sql, rows
            return
        start = 0
        for size in ROW_CHUNKS:
            while len(rows) - start >= size:
                chunk = rows[start : start + size]
                yield compiled.multi(size), tuple(chain.from_iterable(chunk))
                start += size

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            # "?" for sqlite3, "%s" for psycopg: both take tuples
            style = "qmark" if dialect.paramstyle == "qmark" else "format"
            target = type(dialect)(paramstyle=style)  # type: ignore[call-arg]
            statement = self.statement
            if not isinstance(statement, ClauseElement):
                statement = statement(dialect.name)
            if isinstance(statement, Insert):  # no implicit RETURNING of the key (PostgreSQL)
                statement = statement.inline()
            compiled = cast(SQLCompiler, statement.compile(dialect=target))
            order = list(compiled.positiontup or ())
            unknown = [name for name in order if name not in self.params]
            if unknown or any(not compiled.binds[name].required for name in order):
                raise ValueError(f"statement binds {order}, rows carry {self.params}")
            indexes = [self.params.index(name) for name in order]
            arrange = None
            if indexes != list(range(len(self.params))):
                getter = itemgetter(*indexes)
                arrange = getter if len(indexes) > 1 else lambda row: (getter(row),)
            sql = str(compiled)
            values = None
            if isinstance(statement, Insert):
                values = _values_group(sql, len(order), "?" if style == "qmark" else "%s")
            found = self._compiled[dialect.name] = _Compiled(sql, arrange, values)
        return found


def _values_group(sql: str, count: int, placeholder: str) -> str | None:
    """The one row's ``(...)`` after ``VALUES`` in an INSERT's SQL, if it holds all
    ``count`` parameters (psycopg's carry casts: ``%s::VARCHAR``)."""
    start = sql.find("VALUES (")
    if start < 0 or sql.find("VALUES (", start + 1) >= 0:
        return None
    depth = 0
    for end in range(start + len("VALUES "), len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[end], 0)
        if depth == 0:
            group = sql[start + len("VALUES ") : end + 1]
            return group if group.count(placeholder) == count else None
    return None


class _Compiled:
    """A statement's SQL for one dialect; for an INSERT, its multi-row forms."""

    def __init__(self, sql: str, arrange: Callable[[Row], Row] | None, values: str | None):
        self.sql = sql
        self.arrange = arrange
        self.values = values  # the VALUES group of one row, if rows can be joined
        self._multi: dict[int, str] = {}

    def multi(self, rows: int) -> str:
        found = self._multi.get(rows)
        if found is None:
            assert self.values is not None
            joined = "VALUES " + ", ".join([self.values] * rows)
            found = self._multi[rows] = self.sql.replace(f"VALUES {self.values}", joined, 1)
        return found


class DriverValues:
    """Python values as the driver of ``dialect`` takes them (what SQLAlchemy's own bind
    processing would have produced for the column types used here)."""

    def __init__(self, dialect: Dialect) -> None:
        process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        self._timestamp: Callable[[Any], Any] = process if process is not None else _same

    def timestamp(self, value: datetime | None) -> Any:
        return None if value is None else self._timestamp(as_utc(value))

    @staticmethod
    def read_timestamp(value: Any) -> datetime | None:
        """A timestamp column as read without SQLAlchemy's result processing (SQLite
        returns its text, psycopg a datetime), as an aware UTC datetime."""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            return as_utc(value)
        return cast(datetime | None, value)

    @staticmethod
    def read_json(value: Any) -> Any:
        """A JSON column as read without result processing (text on SQLite, decoded by
        psycopg on PostgreSQL). Only for columns holding objects or arrays. Text orjson
        refuses (an unpaired surrogate stored before ``kernel.payloads`` refused it) is
        read as the standard library reads it, so one old row cannot stop a claim."""
        if not isinstance(value, str | bytes):
            return value
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return json.loads(value)


def _same(value: Any) -> Any:
    return value


_values: dict[str, DriverValues] = {}


def values_for(dialect: Dialect) -> DriverValues:
    """The ``DriverValues`` of ``dialect`` (cached)."""
    found = _values.get(dialect.name)
    if found is None:
        found = _values[dialect.name] = DriverValues(dialect)
    return found


def driver_values(session: Session) -> DriverValues:
    """The ``DriverValues`` of the dialect ``session`` is bound to."""
    return values_for(session.connection().dialect)


class DriverCursor:
    """A DBAPI cursor inside a driver transaction (``Database.driver_transaction``):
    statements go straight to the driver, in its ``dialect``'s parameter style."""

    __slots__ = ("cursor", "dialect", "values")

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.values = values_for(dialect)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run ``sql``; returns the cursor (``fetchall``, ``rowcount``)."""
        self.cursor.execute(sql, params)
        return self.cursor


def placeholders(connection: Connection | DriverCursor, count: int) -> str:
    """``count`` positional parameters for a driver-level statement (an ``IN`` list)."""
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * count)
