"""Index for the trash: ``(state, deleted_at)`` serves the purge and ``GET /trash``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_file_versions_state_deleted_at", "file_versions", ["state", "deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_file_versions_state_deleted_at", table_name="file_versions")
