"""Conditional writes: the If-Match of a pending version, checked at its commit.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09

``file_versions.if_match``: ``"*"`` or the comma-separated SHA-256s a PUT's ``If-Match`` listed (RFC 9110
§13.1.1); the commit refuses the version with 412 unless the path's live version then matches it. NULL
for unconditional writes, which every row written before this revision is.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("file_versions") as batch:
        batch.add_column(sa.Column("if_match", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("file_versions") as batch:
        batch.drop_column("if_match")
