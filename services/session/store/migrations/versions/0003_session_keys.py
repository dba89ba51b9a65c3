"""Checkpoint data keys: the session_keys table and the owner's public key on each session.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("owner_public_key", sa.LargeBinary, nullable=True))
    op.create_table(
        "session_keys",
        sa.Column("session_id", sa.String(78), primary_key=True),
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        sa.Column("executor", sa.String(42), nullable=False),
        sa.Column("custodian", sa.String(42), nullable=False),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_keys")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("owner_public_key")
