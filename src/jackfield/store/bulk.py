"""Driver-level statements for the hot, set-based writes (outbox, loopback inbox).

SQLAlchemy's ``executemany`` processes every parameter of every row in Python (JSON
encoding, datetime formatting, type coercion) -- on the outbox's paths that costs
several times what SQLite itself spends on the row. A ``DriverStatement`` is a Core
statement compiled once per dialect and executed with ``exec_driver_sql``: the rows are
plain dicts whose values are already what the driver takes, produced by ``DriverValues``
once per batch (a shared timestamp) or once per row (a JSON document). Statements stay
Core expressions, so the SQL is still written once for SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from .models import UTCDateTime

Row = dict[str, Any]


class DriverStatement:
    """``statement`` executed at the driver level with rows of driver values.

    ``statement`` is a Core statement, or a function of the dialect name returning one
    (for dialect-specific constructs such as ``ON CONFLICT``). Binds given a value in the
    statement itself (``state == "in_flight"``) are filled in by ``execute``; every
    other bind must be a key of each row.
    """

    def __init__(self, statement: ClauseElement | Callable[[str], ClauseElement]) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, Row]] = {}

    def execute(self, session: Session, rows: Row | Sequence[Row]) -> CursorResult[Any]:
        """One statement (a dict) or one ``executemany`` (a list) in ``session``'s
        transaction; the result's ``rowcount`` is the total over all rows."""
        connection = session.connection()
        sql, constants = self._compile(connection.dialect)
        if constants:
            if isinstance(rows, dict):
                rows = {**constants, **rows}
            else:
                rows = [{**constants, **row} for row in rows]
        return connection.exec_driver_sql(sql, rows)

    def _compile(self, dialect: Dialect) -> tuple[str, Row]:
        found = self._compiled.get(dialect.name)
        if found is None:
            # sqlite3 takes named parameters (":name") with dicts as well as "?"
            target = dialect
            if dialect.paramstyle == "qmark":
                target = type(dialect)(paramstyle="named")  # type: ignore[call-arg]
            statement = self.statement
            if not isinstance(statement, ClauseElement):
                statement = statement(dialect.name)
            compiled = cast(SQLCompiler, statement.compile(dialect=target))
            constants: Row = {}
            for name, value in compiled.params.items():
                bind = compiled.binds[name]
                if bind.required:
                    continue
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                constants[name] = process(value) if process is not None else value
            found = self._compiled[dialect.name] = (str(compiled), constants)
        return found


class DriverValues:
    """Python values as the driver of ``dialect`` takes them (what SQLAlchemy's own bind
    processing would have produced for the column types used here)."""

    def __init__(self, dialect: Dialect) -> None:
        process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        self._timestamp: Callable[[Any], Any] = process if process is not None else _same

    def timestamp(self, value: datetime | None) -> Any:
        return None if value is None else self._timestamp(value)

    @staticmethod
    def json(value: Any) -> str:
        """A JSON column's value: its text (both SQLite and psycopg take text). Values
        JSON has no type for are stored as their ``str``, not refused."""
        return _encode(value)

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
        return json.loads(value) if isinstance(value, str | bytes) else value


# made once: ``json.dumps`` with options builds an encoder per call (slower than the
# encoding of a small document itself)
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


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
