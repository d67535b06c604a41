"""Multipart uploads (S3 CreateMultipartUpload ... CompleteMultipartUpload).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-23

``multipart_uploads``: one row per upload not yet completed or aborted, with the path it will write and
the Content-Type and user metadata its version will get. Its parts need no table of their own: they are
``file_versions`` rows in the new state ``part`` (``state`` is a free String(16), so no column changes) at
paths below ``"\\x7f/multipart/<upload_id>/"``, which no file path can have (``leader/parts.py``).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Byte-wise path ordering on PostgreSQL, as in leader.models.PathType.
PATH_TYPE = sa.String(length=1024).with_variant(sa.String(length=1024, collation="C"), "postgresql")
# Where every part row lives (leader.parts.PART_ROOT): the downgrade drops them with their uploads.
PART_ROOT = "\x7f/multipart/"


def upgrade() -> None:
    op.create_table(
        "multipart_uploads",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("path", PATH_TYPE, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("user_metadata", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("upload_id", name="pk_multipart_uploads"),
    )
    op.create_index("ix_multipart_uploads_path_created_at_upload_id", "multipart_uploads",
                    ["path", "created_at", "upload_id"])
    op.create_index("ix_multipart_uploads_created_at", "multipart_uploads", ["created_at"])


def downgrade() -> None:
    # Without their uploads the part rows would be orphans that nothing ever drops.
    versions = sa.table("file_versions", sa.column("path", PATH_TYPE))
    op.execute(versions.delete().where(versions.c.path >= PART_ROOT, versions.c.path < PART_ROOT[:-1] + "0"))
    op.drop_index("ix_multipart_uploads_created_at", table_name="multipart_uploads")
    op.drop_index("ix_multipart_uploads_path_created_at_upload_id", table_name="multipart_uploads")
    op.drop_table("multipart_uploads")
