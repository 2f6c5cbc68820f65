"""users.sessions_ended_at: logging out ends the user's sessions on the server

Revision ID: 0007
Revises: 0006

The UI's session cookie is signed, not stored; before, logging out only cleared it in
the browser, and a copy of it stayed valid until it expired (12 hours). A session
issued before ``sessions_ended_at`` is refused now.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("sessions_ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sessions_ended_at")
