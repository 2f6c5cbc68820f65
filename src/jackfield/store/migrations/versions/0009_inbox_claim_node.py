"""inbox_events.dispatch_node: which process holds an event's dispatch claim

Revision ID: 0009
Revises: 0008

After an application embedding Jackfield crashed mid-batch, the process started in its
place waited for the batch's claim to expire (120 s) before running any handler of it.
The claim now names its process (``hostname:pid``), so a process of the same host takes
over the claim of one that is gone at once, as it does with inbound leases. The partial
index keeps finding the claimed rows' owners cheap whatever the backlog.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CLAIMED_SQL = "dispatch_node IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("inbox_events") as batch:
        batch.add_column(sa.Column("dispatch_node", sa.String(200), nullable=True))
    op.create_index(
        "ix_inbox_claimed_by",
        "inbox_events",
        ["dispatch_node"],
        sqlite_where=sa.text(CLAIMED_SQL),
        postgresql_where=sa.text(CLAIMED_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_claimed_by", "inbox_events")
    with op.batch_alter_table("inbox_events") as batch:
        batch.drop_column("dispatch_node")
