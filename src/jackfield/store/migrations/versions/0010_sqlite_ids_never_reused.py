"""SQLite: ids of inbox events and outbox messages are never handed out twice

Revision ID: 0010
Revises: 0009

A plain SQLite ``INTEGER PRIMARY KEY`` numbers a new row one above the highest row
*present*: once the newest events were deleted (their connector deleted, retention
pruning them all), new events took their ids again. A live-stream client resuming with
``Last-Event-ID`` of an event since deleted was then sent nothing until the ids passed
it, and a page cursor of ``GET /api/outbox`` could name a different message.
``AUTOINCREMENT`` numbers above the highest id the table *ever* had (kept in
``sqlite_sequence``), as PostgreSQL's sequences always did: nothing changes there.

SQLite cannot alter a column in place, so each table is copied into a new one with the
same rows, ids and indexes (batch mode). ``sqlite_sequence`` starts at the highest id
copied; ids of rows deleted before the upgrade cannot be known any more.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("inbox_events", "outbox_messages")


def upgrade() -> None:
    _recreate(autoincrement=True)


def downgrade() -> None:
    _recreate(autoincrement=False)


def _recreate(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
