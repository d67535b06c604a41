"""The leader term: which leader process is active, for standby leaders on PostgreSQL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

One row (``id = 1``): ``term``, incremented by every leader that becomes active (it holds the
PostgreSQL advisory lock, ``leader/election.py``), ``active_url`` (where it serves) and ``taken_at``
(UNIX seconds). Every metadata write of an active leader checks the term in its own transaction
(``leader/store.py``), so an old leader that lost the lock commits nothing.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: Union[str, None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    table = op.create_table(
        "leader_state",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.Column("active_url", sa.String(length=512), nullable=True),
        sa.Column("taken_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_leader_state"),
    )
    op.bulk_insert(table, [{"id": 1, "term": 0, "active_url": None, "taken_at": None}])


def downgrade() -> None:
    op.drop_table("leader_state")
