"""Expired transactions: the ids of pending versions the sweeper dropped, so a late commit answers 410.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The pending sweep deletes pending versions and records their txn ids here in one transaction; the
trash-purge job forgets records older than ``leader.txns.EXPIRED_TXN_RETENTION`` (by ``expired_at``).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "expired_txns",
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("expired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("txn_id", name="pk_expired_txns"),
    )
    op.create_index("ix_expired_txns_expired_at", "expired_txns", ["expired_at"])


def downgrade() -> None:
    op.drop_index("ix_expired_txns_expired_at", table_name="expired_txns")
    op.drop_table("expired_txns")
