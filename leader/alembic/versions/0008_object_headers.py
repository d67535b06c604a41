"""Object headers (S3): Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires
and the x-amz-checksum-* of the content, kept with each version and each multipart upload.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

One nullable JSON text column on ``file_versions`` and on ``multipart_uploads``
(``shared.protocol.rules.parse_object_headers``); every existing row gets NULL: no headers.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("file_versions") as batch:
        batch.add_column(sa.Column("object_headers", sa.Text(), nullable=True))
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.add_column(sa.Column("object_headers", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("multipart_uploads") as batch:
        batch.drop_column("object_headers")
    with op.batch_alter_table("file_versions") as batch:
        batch.drop_column("object_headers")
