"""The read-lease horizon: until when user apps may hold read leases this cluster's leader granted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

``leader_state.lease_horizon`` (UNIX seconds, null: never): a leader moves it past every lease before it
grants that lease (``leader/read_leases.py``), so a leader that starts or takes over waits only while
leases granted before it may still run, and not at all when none were granted lately.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("leader_state") as batch:
        batch.add_column(sa.Column("lease_horizon", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leader_state") as batch:
        batch.drop_column("lease_horizon")
