"""Durable on-chain expiry: sessions remember a timer-driven expiry still to be mirrored on chain.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("chain_expiry_due", sa.Float, nullable=True))
        batch.add_column(sa.Column("chain_expiry_attempts", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_sessions_chain_expiry_due", "sessions", ["chain_expiry_due"])


def downgrade() -> None:
    op.drop_index("ix_sessions_chain_expiry_due", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("chain_expiry_attempts")
        batch.drop_column("chain_expiry_due")
