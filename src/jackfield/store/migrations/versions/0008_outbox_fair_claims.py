"""outbox: claimable messages indexed by connector; dead letters by organization

Revision ID: 0008
Revises: 0007

Claims were taken oldest first across all connectors from one index over the claimable
states: one connector's backlog held up every other connector until it had drained, and
a backlog parked on a disabled connector was walked by every claim. Claims now probe
each enabled connector's oldest message and share a batch between them, which needs the
claimable messages indexed by ``(connector_id, next_attempt_at)``. Listing dead letters
walked every newer row of the organization; a partial index holds just them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CLAIMABLE_SQL = "state IN ('pending', 'retrying', 'in_flight')"
DEAD_SQL = "state = 'dead'"


def upgrade() -> None:
    op.create_index(
        "ix_outbox_due_by_connector",
        "outbox_messages",
        ["connector_id", "next_attempt_at"],
        sqlite_where=sa.text(CLAIMABLE_SQL),
        postgresql_where=sa.text(CLAIMABLE_SQL),
    )
    op.drop_index("ix_outbox_due", "outbox_messages")
    op.create_index(
        "ix_outbox_org_dead",
        "outbox_messages",
        ["organization_id", "id"],
        sqlite_where=sa.text(DEAD_SQL),
        postgresql_where=sa.text(DEAD_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_org_dead", "outbox_messages")
    op.create_index(
        "ix_outbox_due",
        "outbox_messages",
        ["next_attempt_at"],
        sqlite_where=sa.text(CLAIMABLE_SQL),
        postgresql_where=sa.text(CLAIMABLE_SQL),
    )
    op.drop_index("ix_outbox_due_by_connector", "outbox_messages")
