"""Access keys, and each chunk server's own key and join time (README "Security").

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``access_keys``: one row per key, its secret sealed (Fernet) under a key derived from the cluster secret.
``chunk_servers.key_sealed``: the key the leader issued to the server at its first registration, sealed
the same way; servers registered before this revision get one at their next registration.
``chunk_servers.joined_at``: when the server last joined the ring.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("access_key", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("grants", sa.Text(), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("access_key", name="pk_access_keys"),
    )
    with op.batch_alter_table("chunk_servers") as batch:
        batch.add_column(sa.Column("joined_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("key_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunk_servers") as batch:
        batch.drop_column("key_sealed")
        batch.drop_column("joined_at")
    op.drop_table("access_keys")
