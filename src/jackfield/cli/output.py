"""Output and error conventions shared by every command.

``--json`` prints machine-readable output (a list is ``{"items": [...]}``); otherwise rich
tables. A user error prints one line on stderr and exits 1, never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from ..kernel.errors import JackfieldError
from ..secrets import redactor

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")
# stored text (names, payloads, vendors' errors) is printed as it is, never as rich markup
# (a "[/x]" in it crashed the command, and "[red]" vanished)
console = Console(markup=False)


@cache
def jackfield(*, upgrade: bool = False) -> Any:
    """The application for this command, built from the environment (as ``serve`` is).

    Only ``serve`` (``upgrade=True``) and ``db upgrade`` upgrade the database: every
    other command may run beside live nodes, and a newer CLI would otherwise migrate
    their tables under them. They stop with one line asking for ``jackfield db upgrade``
    instead, and create the schema of a new database (the first command of a tour)."""
    from ..app import Jackfield
    from ..logs import configure_logging
    from ..settings import Settings
    from ..store import sqlite_file

    settings = Settings()
    # a command's errors are one line: a provider's crash logged during it, too (serve
    # turns tracebacks back on: a long-running server's log is where they are read)
    configure_logging(settings.log_format, tracebacks=False)
    database = sqlite_file(settings.database_url)
    new = database is not None and not database.exists()
    app = Jackfield(settings=settings, migrate=True if upgrade else "only_new")
    if new:  # a mistyped path would otherwise look like an empty installation
        print(
            f"note: there was no database at {database}: created a new, empty one"
            " (JACKFIELD_DATABASE_URL names it)",
            file=sys.stderr,
        )
    return app


def existing_database() -> None:
    """For a command that only lists: a SQLite database that is not there is refused, not
    created empty -- a mistyped JACKFIELD_DATABASE_URL would otherwise list nothing and
    exit 0, as if the installation were empty."""
    from ..settings import Settings
    from ..store import sqlite_file

    path = sqlite_file(Settings().database_url)
    if path is not None and not path.exists():
        fail(
            f"there is no database at {path}",
            "check JACKFIELD_DATABASE_URL; 'jackfield serve' or 'jackfield db upgrade' creates one",
        )


def fail(message: str, remediation: str = "") -> NoReturn:
    message = printable(" ".join(message.split()))  # one line, e.g. of a driver's two
    text = f"error: {message}" + (f" ({printable(remediation)})" if remediation else "")
    print(redactor.redact(text), file=sys.stderr)
    raise typer.Exit(1)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn Jackfield's errors into one line on stderr and exit code 1."""
    try:
        yield
    except JackfieldError as exc:
        fields = getattr(exc, "field_errors", None) or {}
        problems = "; ".join(f"{key}: {problem}" for key, problem in sorted(fields.items()))
        message = str(exc)
        if problems and problems not in message:  # e.g. "state: one of pending, ..."
            message = f"{message} ({problems})"
        fail(message, exc.remediation)
    except ValidationError as exc:  # only Settings are validated by pydantic out here
        problems = "; ".join(map(_setting_problem, exc.errors()))
        fail(f"the settings are not valid: {problems}", "fix the environment variables")
    except DatabaseError as exc:
        if not _cannot_use(exc):
            raise
        fail(f"cannot use the database: {exc.orig}", _database_remedy(str(exc.orig)))
    except ArgumentError as exc:  # also an unknown driver (NoSuchModuleError)
        fail(f"JACKFIELD_DATABASE_URL cannot be used: {exc}", "sqlite:///PATH or postgresql://...")
    except OSError as exc:  # a data directory or database path that cannot be used
        what = exc.filename or "a file"
        fail(
            f"cannot use {what}: {exc.strerror or exc}",
            "check JACKFIELD_DATA_DIR and JACKFIELD_DATABASE_URL",
        )


def _cannot_use(exc: DatabaseError) -> bool:
    """Whether ``exc`` says the database cannot be used -- unreachable, locked, full,
    read-only (a standby), a URL parameter its driver refused while connecting, or the
    driver's generic error (a file that is not a SQLite database, or a damaged one) --
    rather than that a statement was wrong (IntegrityError, ProgrammingError ...: a bug,
    whose traceback stays)."""
    from ..store import database_unavailable

    return (
        isinstance(exc, OperationalError)
        or type(exc) is DatabaseError
        or exc.statement is None  # (raised while connecting)
        or database_unavailable(exc)
    )


# what a database error asks of the operator; any other error: the URL is the likely cause
_DATABASE_REMEDIES = (
    ("disk is full", "free disk space where the database lives"),
    ("disk i/o error", "check the disk where the database lives"),
    ("locked", "another process holds the database's write lock: try again"),
    ("readonly", "check the permissions of the database file and its directory"),
    ("unable to open", "check JACKFIELD_DATABASE_URL and the permissions of its directory"),
    ("not a database", "JACKFIELD_DATABASE_URL names a file that is not a SQLite database"),
    ("malformed", "the database file is damaged: restore it from a backup"),
    (
        "read-only transaction",
        "the server takes no writes: point JACKFIELD_DATABASE_URL at the primary",
    ),
)


def _database_remedy(error: str) -> str:
    text = error.lower()
    fixes = (fix for cause, fix in _DATABASE_REMEDIES if cause in text)
    return next(fixes, "check JACKFIELD_DATABASE_URL")


def _setting_problem(error: Any) -> str:
    name = "JACKFIELD_" + "_".join(map(str, error["loc"])).upper()
    return f"{name}: {error['msg'].removeprefix('Value error, ')}"


def emit(data: Any, as_json: bool, render: Callable[[Any], None] | None = None) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    elif render is not None:
        render(data)
    else:
        console.print_json(json.dumps(data, default=str))


def emit_items(items: list[dict[str, Any]], as_json: bool, columns: Iterable[str]) -> None:
    if as_json:
        print(json.dumps({"items": items}, indent=2, default=str))
        return
    cols = list(columns)
    rows = [[_cell(item.get(c)) for c in cols] for item in items]
    table = Table()
    for index, name in enumerate(cols):
        if name == "id" or name.endswith("_id"):  # never cut: ids get pasted into commands
            width = max([len(name), *(len(row[index]) for row in rows)])
            table.add_column(name, no_wrap=True, min_width=width)
        else:  # wrapped when narrow, but never narrower than a short header
            table.add_column(name, overflow="fold", min_width=min(len(name), 10))
    for row in rows:
        table.add_row(*row)
    # a terminal: its width, or wider than it rather than cut; a pipe: one line per row
    measured = Measurement.get(console, console.options.update(max_width=10_000), table)
    width = max(console.width, measured.minimum) if console.is_terminal else measured.maximum
    wide = Console(width=width, markup=False) if width != console.width else console
    wide.print(table, crop=False)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters shown escaped (``\\x1b``): stored text
    comes from outside (a webhook body's type, a vendor's error, a connector's name),
    and an escape sequence printed raw would drive the operator's terminal -- retitle
    it, clear it, recolour what follows, hide text. ``--json`` prints text unchanged
    (JSON escapes control characters itself)."""
    if _CONTROL.search(text) is None:  # the common case: nothing to do
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return printable(", ".join(map(str, value)))
    return printable(str(value))
