"""Apply Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from ..kernel.errors import JackfieldError

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x4A46_4D49_4752  # "JFMIGR": PostgreSQL advisory lock key


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


class DatabaseTooNewError(JackfieldError):
    """The database was migrated by a newer version of Jackfield than this one."""

    code = "database_too_new"


class DatabaseTooOldError(JackfieldError):
    """The database has the schema of an older version, and this caller may not upgrade
    it (only ``serve`` and ``db upgrade`` do, once every node is stopped)."""

    code = "database_too_old"


def upgrade(engine: Engine, *, only_new: bool = False) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision of every branch (idempotent); returns the
    revision before and after (equal when it was current).

    ``only_new``: create the schema of a database that has none, but raise
    ``DatabaseTooOldError`` for one at an older revision rather than upgrade it -- for a
    command run beside live nodes of the older version, whose tables a migration may
    change under them.

    Several nodes starting at once (a fresh database, or a new version) would each run
    the same DDL, and all but one fail on PostgreSQL. So the migration holds an
    advisory lock for its transaction: the others wait, then find the schema current.
    (SQLite: the transaction's ``BEGIN IMMEDIATE`` already lets one writer in.)"""
    cfg = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = connection
        before = _revision(connection)
        known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
        if before is not None and before not in known:
            # (alembic's own error is a traceback: "Can't locate revision ...")
            raise DatabaseTooNewError(
                f"the database is at revision {before}, which this version of Jackfield"
                " does not know: a newer version migrated it",
                remediation="Run the newer version, or restore the backup taken before"
                " its upgrade.",
            )
        heads = ",".join(sorted(ScriptDirectory.from_config(cfg).get_heads()))
        if only_new and before is not None and before != heads:
            raise DatabaseTooOldError(
                f"the database is at revision {before}, older than this version of"
                f" Jackfield ({heads}); this command does not upgrade it",
                remediation="Stop every node, then run 'jackfield db upgrade'.",
            )
        command.upgrade(cfg, "heads")
        return before, _revision(connection)


def _revision(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None


def is_current(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(_config()).get_heads())
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads()) == heads
