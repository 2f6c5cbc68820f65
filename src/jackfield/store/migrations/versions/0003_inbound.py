"""inbox, polling cursors, unit leases

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _connector_fk(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "connector_id",
        sa.String(36),
        sa.ForeignKey("connectors.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "inbox_events",
        sa.Column("id", sa.Integer(), autoincrement=True, primary_key=True),
        _connector_fk(),
        sa.Column("organization_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("occurred_at", TS),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("dispatched_at", TS),
        sa.Column("dispatch_token", sa.String(36)),
        sa.Column("dispatch_until", TS),
        sa.UniqueConstraint("connector_id", "event_id", name="uq_inbox_event"),
    )
    op.create_index("ix_inbox_org_id", "inbox_events", ["organization_id", "id"])
    op.create_index("ix_inbox_connector_id", "inbox_events", ["connector_id", "id"])
    op.create_index("ix_inbox_undispatched", "inbox_events", ["dispatched_at", "id"])
    op.create_table(
        "inbound_cursors",
        _connector_fk(primary_key=True),
        sa.Column("cursor", sa.Text()),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "unit_leases",
        sa.Column("unit", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("unit_leases")
    op.drop_table("inbound_cursors")
    op.drop_index("ix_inbox_undispatched", "inbox_events")
    op.drop_index("ix_inbox_connector_id", "inbox_events")
    op.drop_index("ix_inbox_org_id", "inbox_events")
    op.drop_table("inbox_events")
