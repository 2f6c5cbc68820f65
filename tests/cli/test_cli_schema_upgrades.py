"""Only ``jackfield serve`` and ``jackfield db upgrade`` upgrade the database schema.

Every other command may run beside live nodes; a newer CLI's ``providers list`` used to
migrate a database of an older version under the nodes still running it."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from jackfield.store import create_db_engine
from jackfield.store.migrate import _config

from .test_cli_tour import make_cli, user_error

OLDER = "0007"


def _revision(url: str) -> str:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def test_commands_refuse_a_database_of_an_older_version_until_db_upgrade(
    empty_database_url, tmp_path
):
    engine = create_db_engine(empty_database_url)
    cfg = _config()
    with engine.begin() as connection:  # as an older version of Jackfield left it
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, OLDER)
    engine.dispose()
    cli = make_cli(empty_database_url, tmp_path)

    for args in (
        ("providers", "list"),
        ("runtime", "status"),
        ("connectors", "list"),
        ("orgs", "create", "acme"),
    ):
        refused = cli.run(*args, expect=1)
        user_error(refused, f"the database is at revision {OLDER}", "jackfield db upgrade")
        assert _revision(empty_database_url) == OLDER, args

    upgraded = cli.run("db", "upgrade")
    assert f"upgraded from revision {OLDER}" in upgraded.stdout
    assert cli.json("orgs", "create", "acme")["name"] == "acme"
    assert cli.json("providers", "list")["items"]


def test_a_command_creates_the_schema_of_a_new_database(empty_database_url, tmp_path):
    """The first command of the README's tour on a new PostgreSQL database (SQLite: a
    new file) still needs no ``db upgrade`` first."""
    cli = make_cli(empty_database_url, tmp_path)
    assert cli.json("orgs", "create", "acme")["name"] == "acme"
    assert [o["name"] for o in cli.json("orgs", "list")["items"]] == ["acme"]
