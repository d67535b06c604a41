"""Object headers (S3): Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires
and the x-amz-checksum-* of the content, kept with each version and each multipart upload; and WebDAV
dead properties.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

One nullable JSON text column on ``file_versions`` and on ``multipart_uploads``
(``shared.protocol.rules.parse_object_headers``); every existing row gets NULL: no headers.
``dav_properties``: one row per dead property (PROPPATCH) of a path (``leader/dav_properties.py``).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# Byte-wise path ordering on PostgreSQL, as in leader.models.PathType.
PATH_TYPE = sa.String(length=1024).with_variant(sa.String(length=1024, collation="C"), "postgresql")

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("file_versions") as batch:
        batch.add_column(sa.Column("object_headers", sa.Text(), nullable=True))
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.add_column(sa.Column("object_headers", sa.Text(), nullable=True))
    op.create_table(
        "dav_properties",
        sa.Column("path", PATH_TYPE, nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("path", "name", name="pk_dav_properties"),
    )


def downgrade() -> None:
    op.drop_table("dav_properties")
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.drop_column("object_headers")
    with op.batch_alter_table("file_versions") as batch:
        batch.drop_column("object_headers")
