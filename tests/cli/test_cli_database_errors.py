"""A command that meets a database it cannot use says what to do about the actual cause:
a full disk or a held lock is no reason to check JACKFIELD_DATABASE_URL (which is what
every database error used to suggest). Real SQLite errors, not hand-made ones."""

from __future__ import annotations

import sys

import pytest
import typer
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import ArgumentError, DatabaseError

from jackfield.app import Jackfield
from jackfield.cli.output import user_errors
from jackfield.store import create_db_engine


def _fails_with(capsys, engine, *statements: str) -> str:
    with pytest.raises(typer.Exit) as exit_info, user_errors(), engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()
    assert exit_info.value.exit_code == 1
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr


def test_a_full_disk_says_to_free_space(tmp_path, capsys):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    # a database that may not grow past 8 pages: SQLite's own "database or disk is full"
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA max_page_count=8"))
    stderr = _fails_with(
        capsys,
        engine,
        "CREATE TABLE t (v TEXT)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)"
        " INSERT INTO t SELECT hex(randomblob(4000)) FROM n",
    )
    assert "database or disk is full" in stderr
    assert "free disk space" in stderr and "JACKFIELD_DATABASE_URL" not in stderr


def test_a_held_lock_says_to_try_again(tmp_path, capsys):
    path = tmp_path / "x.db"
    holder = create_db_engine(f"sqlite:///{path}")
    with holder.connect() as conn:  # BEGIN IMMEDIATE: the write lock, held
        conn.execute(text("CREATE TABLE t (a)"))
        impatient = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
        stderr = _fails_with(capsys, impatient, "BEGIN IMMEDIATE")
    holder.dispose()
    assert "database is locked" in stderr and "try again" in stderr


def test_a_read_only_postgresql_says_to_use_the_primary(pg_database, capsys):
    """A PostgreSQL that takes no writes (a standby after a failover, a database set
    read-only) printed a hundred-line traceback from every command that writes, the
    statement's parameters (a sealed key check value) among its lines."""
    engine = create_db_engine(pg_database + "?options=-c%20default_transaction_read_only%3Don")
    stderr = _fails_with(capsys, engine, "CREATE TABLE never_made (a int)")
    assert stderr.startswith(
        "error: cannot use the database: cannot execute CREATE TABLE in a read-only transaction"
        " (the server takes no writes: point JACKFIELD_DATABASE_URL at the primary)"
    ), stderr


def test_a_statement_that_is_wrong_keeps_its_traceback(pg_database):
    """A bug (a statement the database refuses) is no user error: its traceback stays."""
    engine = create_db_engine(pg_database)
    with pytest.raises(DatabaseError), user_errors(), engine.connect() as conn:
        conn.execute(text("SELECT no_such_column FROM no_such_table_at_all"))
    engine.dispose()


def test_postgresql_without_its_extra_says_what_to_install(monkeypatch):
    """Before: "no driver for 'postgresql+psycopg' is installed (No module named
    'psycopg')", which did not say that ``jackfield[postgres]`` brings it."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(ArgumentError, match=r"pip install 'jackfield\[postgres\]'"):
        Jackfield(database_url="postgresql://jackfield@127.0.0.1/jackfield")
