"""Object metadata of each version, and explicit folders (the S3 API).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16

``file_versions.etag``, ``content_type``, ``user_metadata``: the entity tag (32 hex of the content's MD5,
or ``<32 hex>-<N>`` for a multipart upload), the Content-Type and the ``x-amz-meta-*`` pairs as JSON text
that a writer gives at prepare; NULL for every version written before this revision.
``folders``: folders created explicitly (an S3 bucket, a ``dir/`` marker, a web page's "new folder"),
which exist without a file below them; ``path`` orders byte-wise as ``file_versions.path`` does.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Byte-wise path ordering on PostgreSQL, as in leader.models.PathType.
PATH_TYPE = sa.String(length=1024).with_variant(sa.String(length=1024, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("file_versions") as batch:
        batch.add_column(sa.Column("etag", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("content_type", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("user_metadata", sa.Text(), nullable=True))
    op.create_table(
        "folders",
        sa.Column("path", PATH_TYPE, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_folders"),
    )


def downgrade() -> None:
    op.drop_table("folders")
    with op.batch_alter_table("file_versions") as batch:
        batch.drop_column("user_metadata")
        batch.drop_column("content_type")
        batch.drop_column("etag")
