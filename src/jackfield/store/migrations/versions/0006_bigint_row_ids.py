"""64-bit row ids for the tables that grow without end (PostgreSQL)

Revision ID: 0006
Revises: 0005

``inbox_events``, ``outbox_messages`` and ``audit_events`` number their rows from a
sequence that retention never winds back. As PostgreSQL ``integer`` (``serial``) the ids
ran out after 2^31 rows in the table's lifetime -- some 25 days at 1,000 webhooks a
second -- and every insert failed from then on. They are ``bigint`` now, sequences too.
SQLite's ``INTEGER PRIMARY KEY`` is 64-bit already: nothing changes there.

PostgreSQL rewrites each table to change the column type, holding its lock meanwhile:
on a large deployment run ``jackfield db upgrade`` in a quiet moment.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("inbox_events", "outbox_messages", "audit_events")


def upgrade() -> None:
    _set_type("bigint")


def downgrade() -> None:
    _set_type("integer")


def _set_type(sql_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE {sql_type}")
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS {sql_type}")
