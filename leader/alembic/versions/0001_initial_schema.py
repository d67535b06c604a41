"""Initial schema: chunk servers, virtual nodes, ring epoch, file versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Byte-wise path ordering on PostgreSQL, as in leader.models.PathType.
PATH_TYPE = sa.String(length=1024).with_variant(sa.String(length=1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "chunk_servers",
        sa.Column("server_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("capacity_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("missed_checks", sa.Integer(), nullable=False),
        sa.Column("registered_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("server_id", name="pk_chunk_servers"),
    )
    op.create_index("ix_chunk_servers_url", "chunk_servers", ["url"], unique=False)

    op.create_table(
        "virtual_nodes",
        sa.Column("server_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["chunk_servers.server_id"],
                                name="fk_virtual_nodes_server_id_chunk_servers"),
        sa.PrimaryKeyConstraint("server_id", "idx", name="pk_virtual_nodes"),
    )

    op.create_table(
        "ring_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ring_state"),
    )

    op.create_table(
        "file_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", PATH_TYPE, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("replication", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("chunk_digests", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("create_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("committed_at", sa.Float(), nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_file_versions"),
        sa.UniqueConstraint("path", "version", name="uq_file_versions_path_version"),
        sa.UniqueConstraint("txn_id", name="uq_file_versions_txn_id"),
    )
    op.create_index("ix_file_versions_path_state_version", "file_versions", ["path", "state", "version"])
    op.create_index("ix_file_versions_state_created_at", "file_versions", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_file_versions_state_created_at", table_name="file_versions")
    op.drop_index("ix_file_versions_path_state_version", table_name="file_versions")
    op.drop_table("file_versions")
    op.drop_table("ring_state")
    op.drop_table("virtual_nodes")
    op.drop_index("ix_chunk_servers_url", table_name="chunk_servers")
    op.drop_table("chunk_servers")
