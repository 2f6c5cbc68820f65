"""Driver-level statements for the hot, set-based writes (outbox, inbox).

SQLAlchemy's ``executemany`` processes every parameter of every row in Python (JSON
encoding, datetime formatting, type coercion) -- on the outbox's paths that costs
several times what SQLite itself spends on the row. A ``DriverStatement`` is a Core
statement compiled once per dialect with positional parameters and executed with
``exec_driver_sql``: each row is a tuple of values that are already what the driver
takes (``DriverValues``: a shared timestamp per batch, JSON text per document), in the
order the statement's ``params`` name them. Statements stay Core expressions, so the
SQL is still written once for SQLite and PostgreSQL.

JSON text is made and read with orjson (several times faster than the standard
library on small documents, and every outbox message passes through it four times).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, cast

import orjson
from sqlalchemy import CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from .models import UTCDateTime

Row = tuple[Any, ...]


class DriverStatement:
    """``statement`` executed at the driver level with rows of positional driver values.

    ``statement`` is a Core statement, or a function of the dialect name returning one
    (for dialect-specific constructs such as ``ON CONFLICT``). ``params`` names its bind
    parameters in the order every row carries them; a name may occur several times in
    the SQL. Constants belong in the SQL as literals, not as bound values.
    """

    def __init__(
        self,
        statement: ClauseElement | Callable[[str], ClauseElement],
        params: Sequence[str],
    ) -> None:
        self.statement = statement
        self.params = tuple(params)
        self._compiled: dict[str, tuple[str, Callable[[Row], Row] | None]] = {}

    def execute(self, session: Session, rows: Row | Sequence[Row]) -> CursorResult[Any]:
        """One statement (a tuple) or one ``executemany`` (a list of tuples) in
        ``session``'s transaction; the result's ``rowcount`` is the total over all rows."""
        connection = session.connection()
        sql, arrange = self._compile(connection.dialect)
        if arrange is not None:
            rows = arrange(rows) if isinstance(rows, tuple) else [arrange(r) for r in rows]
        return connection.exec_driver_sql(sql, rows)

    def _compile(self, dialect: Dialect) -> tuple[str, Callable[[Row], Row] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            # "?" for sqlite3, "%s" for psycopg: both take tuples
            style = "qmark" if dialect.paramstyle == "qmark" else "format"
            target = type(dialect)(paramstyle=style)  # type: ignore[call-arg]
            statement = self.statement
            if not isinstance(statement, ClauseElement):
                statement = statement(dialect.name)
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
            found = self._compiled[dialect.name] = (str(compiled), arrange)
        return found


_OPTIONS = orjson.OPT_NON_STR_KEYS
_fallback = json.JSONEncoder(separators=(",", ":"), default=str).encode


def json_text(value: Any) -> str:
    """A JSON column's value as text (both SQLite and psycopg take text). Values JSON
    has no type for are stored as their ``str``, not refused."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: the slow way
        return _fallback(value)


def encode_json(value: Any) -> str:
    """Strict JSON text of ``value``: raises ``TypeError``/``ValueError`` for what JSON
    cannot represent (for checking what callers send)."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)


class DriverValues:
    """Python values as the driver of ``dialect`` takes them (what SQLAlchemy's own bind
    processing would have produced for the column types used here)."""

    def __init__(self, dialect: Dialect) -> None:
        process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        self._timestamp: Callable[[Any], Any] = process if process is not None else _same

    def timestamp(self, value: datetime | None) -> Any:
        return None if value is None else self._timestamp(value)

    json = staticmethod(json_text)

    @staticmethod
    def read_timestamp(value: Any) -> datetime | None:
        """A timestamp column as read without SQLAlchemy's result processing (SQLite
        returns its text, psycopg a datetime), as an aware UTC datetime."""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return cast(datetime | None, value)

    @staticmethod
    def read_json(value: Any) -> Any:
        """A JSON column as read without result processing (text on SQLite, decoded by
        psycopg on PostgreSQL). Only for columns holding objects or arrays."""
        return orjson.loads(value) if isinstance(value, str | bytes) else value


def _same(value: Any) -> Any:
    return value


_values: dict[str, DriverValues] = {}


def driver_values(session: Session) -> DriverValues:
    """The ``DriverValues`` of the dialect ``session`` is bound to (cached)."""
    dialect = session.connection().dialect
    found = _values.get(dialect.name)
    if found is None:
        found = _values[dialect.name] = DriverValues(dialect)
    return found
