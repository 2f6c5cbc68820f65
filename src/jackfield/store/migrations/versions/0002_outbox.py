"""outbox and runtime units

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
# Must stay textually identical to models_outbox.CLAIMABLE_SQL (the claim query uses it).
CLAIMABLE_SQL = "state IN ('pending', 'retrying', 'in_flight')"


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, primary_key=True),
        sa.Column("envelope_id", sa.String(26), nullable=False, index=True),
        sa.Column(
            "connector_id",
            sa.String(36),
            sa.ForeignKey("connectors.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("organization_id", sa.String(36), nullable=False),
        sa.Column("operation", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("lease_token", sa.String(36)),
        sa.Column("lease_expires_at", TS),
        sa.Column("last_error", sa.Text()),
        sa.Column("error_class", sa.String(100)),
        sa.Column("result", sa.JSON()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("connector_id", "envelope_id", name="uq_outbox_envelope"),
    )
    op.create_index(
        "ix_outbox_due",
        "outbox_messages",
        ["next_attempt_at"],
        sqlite_where=sa.text(CLAIMABLE_SQL),
        postgresql_where=sa.text(CLAIMABLE_SQL),
    )
    op.create_index("ix_outbox_org_id", "outbox_messages", ["organization_id", "id"])
    op.create_table(
        "runtime_units",
        sa.Column(
            "connector_id",
            sa.String(36),
            sa.ForeignKey("connectors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("organization_id", sa.String(36), nullable=False, index=True),
        sa.Column("liveness", sa.String(20), nullable=False),
        sa.Column("readiness", sa.String(30), nullable=False),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("node", sa.String(200)),
        sa.Column("next_restart_at", TS),
        sa.Column("restart_requested_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("runtime_units")
    op.drop_index("ix_outbox_org_id", "outbox_messages")
    op.drop_index("ix_outbox_due", "outbox_messages")
    op.drop_table("outbox_messages")
