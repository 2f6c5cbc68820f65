"""runtime units per node; restart requests as generations

Revision ID: 0005
Revises: 0004

``runtime_units`` had one row per connector, which every node overwrote; it is now keyed
by (connector, node). Restart requests move to ``runtime_restarts``, a generation number
per connector that no node clears. Existing rows are kept (a row without a node gets
``''``); a pending restart request is dropped: the units it was meant for belong to
processes that stopped for this upgrade, and start afresh.

The table is rebuilt (not altered) because SQLite cannot change a primary key in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
COPIED = "connector_id, organization_id, liveness, readiness, restart_count, last_error"


def _connector_fk() -> sa.Column[str]:
    return sa.Column(
        "connector_id",
        sa.String(36),
        sa.ForeignKey("connectors.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    op.drop_index("ix_runtime_units_organization_id", "runtime_units")
    op.rename_table("runtime_units", "runtime_units_0004")
    op.create_table(
        "runtime_units",
        _connector_fk(),
        sa.Column("node", sa.String(200), primary_key=True),
        sa.Column("organization_id", sa.String(36), nullable=False, index=True),
        sa.Column("liveness", sa.String(20), nullable=False),
        sa.Column("readiness", sa.String(30), nullable=False),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_restart_at", TS),
        sa.Column("restart_seen", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.execute(
        f"INSERT INTO runtime_units ({COPIED}, node, next_restart_at, restart_seen, updated_at)"
        f" SELECT {COPIED}, COALESCE(node, ''), next_restart_at, 0, updated_at"
        " FROM runtime_units_0004"
    )
    op.drop_table("runtime_units_0004")
    op.create_table(
        "runtime_restarts",
        _connector_fk(),
        sa.Column("organization_id", sa.String(36), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("runtime_restarts")
    op.drop_index("ix_runtime_units_organization_id", "runtime_units")
    op.rename_table("runtime_units", "runtime_units_0005")
    op.create_table(
        "runtime_units",
        _connector_fk(),
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
    # one row per connector again: the most recently written node's
    op.execute(
        f"INSERT INTO runtime_units ({COPIED}, node, next_restart_at, updated_at)"
        f" SELECT {COPIED}, node, next_restart_at, updated_at FROM runtime_units_0005 r"
        " WHERE NOT EXISTS (SELECT 1 FROM runtime_units_0005 n"
        " WHERE n.connector_id = r.connector_id AND (n.updated_at > r.updated_at"
        " OR (n.updated_at = r.updated_at AND n.node > r.node)))"
    )
    op.drop_table("runtime_units_0005")
