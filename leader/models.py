"""SQLAlchemy models of the leader's metadata store.

Nine tables: ``chunk_servers`` (membership and health), ``virtual_nodes`` (their ring positions, signed
64-bit so they fit a SQL ``BIGINT``), ``ring_state`` (the single-row ring epoch), ``file_versions`` (one
row per file version; its ordered chunk list is packed 32-byte digests in one column, never one row per
chunk, so a manifest is one indexed row read; GFS §2.6.1 keeps the file-to-chunk mapping per file; the
parts of multipart uploads are rows of it too, ``leader/parts.py``), ``expired_txns`` (transaction ids
whose pending version the sweeper dropped, so their commit answers 410), ``access_keys``, ``folders``
(folders created explicitly, which exist without a file below them), ``multipart_uploads`` and
``dav_properties`` (WebDAV dead properties).

Portable across SQLite and PostgreSQL: no dialect-only SQL; time stamps are float UNIX seconds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so the migration and ``alembic check`` agree on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Paths compare byte-wise so that the prefix range ``path >= 'a/b/' AND path < 'a/b0'`` finds exactly
# the paths under ``a/b/``. SQLite's default BINARY collation already does; PostgreSQL needs "C" (a
# locale collation would order '/' and '0' differently).
PathType = String(1024).with_variant(String(1024, collation="C"), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ChunkServer(Base):
    """A chunk server as the leader knows it. ``state`` is a :class:`shared.ring.ServerState` value."""

    __tablename__ = "chunk_servers"

    server_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Not unique in SQL: a server displaced by a newcomer on the same URL (its data dir was wiped) stays
    # listed as ``removed`` with its last URL. Uniqueness among live members is kept by membership.py.
    url: Mapped[str] = mapped_column(String(512), index=True)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    missed_checks: Mapped[int] = mapped_column(Integer)
    registered_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # When it last joined the ring (registered new, or came back from removed): anti-entropy counts only
    # members of some standing as proof holders before it drops a copy (docs/failure-handling.md).
    joined_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The server's own key, issued by the leader at its first registration and sealed with the cluster
    # secret: it proves health-check answers and re-registrations come from this server id.
    key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class VirtualNode(Base):
    """One of a server's ``VIRTUAL_NODES`` ring positions (Dynamo §4.2)."""

    __tablename__ = "virtual_nodes"

    server_id: Mapped[str] = mapped_column(String(64), ForeignKey("chunk_servers.server_id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class RingState(Base):
    """The single row (``id = 1``) holding the ring epoch, bumped on every membership change."""

    __tablename__ = "ring_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger)


class LeaderState(Base):
    """The single row (``id = 1``) naming the active leader: its ``term`` (incremented by each leader
    that becomes active), ``active_url`` and ``taken_at`` (UNIX seconds); ``leader/election.py``. And
    ``lease_horizon`` (UNIX seconds): no read lease granted so far runs past it (``leader/read_leases.py``)."""

    __tablename__ = "leader_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    term: Mapped[int] = mapped_column(BigInteger)
    active_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    taken_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_horizon: Mapped[float | None] = mapped_column(Float, nullable=True)


class FileVersion(Base):
    """One version of one file: ``pending`` (phase 2 of the write), ``committed`` (visible) or
    ``deleted`` (a tombstone); or one upload of a part of a multipart upload, ``part`` once committed, at
    a path no file can have (``leader/parts.py``). ``chunk_digests`` is ``chunk_count`` packed 32-byte
    SHA-256 digests."""

    __tablename__ = "file_versions"
    __table_args__ = (
        UniqueConstraint("path", "version"),
        # Serves "latest committed version of a path" (equality on path and state, max version) and
        # prefix listings by a range on path; the unique constraint's index serves "1 + max(version)".
        Index("ix_file_versions_path_state_version", "path", "state", "version"),
        # Serves the pending sweeper: ``state = 'pending' AND created_at < cutoff``.
        Index("ix_file_versions_state_created_at", "state", "created_at"),
        # Serves the trash purge (``state = 'deleted' AND deleted_at < cutoff``) and the trash listing.
        Index("ix_file_versions_state_deleted_at", "state", "deleted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(PathType, nullable=False)
    version: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    chunk_size: Mapped[int] = mapped_column(Integer)
    replication: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    chunk_digests: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    txn_id: Mapped[str] = mapped_column(String(64), unique=True)
    create_only: Mapped[bool] = mapped_column(Boolean)
    # A conditional write's If-Match (RFC 9110 §13.1.1), checked at commit: "*" or comma-separated
    # SHA-256s (shared.protocol.rules.if_match_allows); NULL for an unconditional write.
    if_match: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    committed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Object metadata (S3), NULL when the writer gave none (every version written before revision 0006):
    # the entity tag without quotes (shared.protocol.rules.ETAG_PATTERN), the Content-Type, and the user
    # metadata as canonical JSON text of an object of strings (rules.canonical_user_metadata).
    etag: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_metadata: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The other headers a GET answers with (Cache-Control, ..., the x-amz-checksum-* of the content), as
    # canonical JSON text (rules.parse_object_headers); NULL when none (every version before 0008).
    object_headers: Mapped[str | None] = mapped_column(Text, nullable=True)


class ExpiredTxn(Base):
    """A transaction whose pending version was swept after ``PENDING_TTL`` without being committed: its
    commit answers 410 Gone (not 404) and its id cannot be prepared again. Kept for
    ``leader.txns.EXPIRED_TXN_RETENTION`` seconds after ``expired_at``, then purged."""

    __tablename__ = "expired_txns"
    # Serves the purge: ``expired_at < cutoff``.
    __table_args__ = (Index("ix_expired_txns_expired_at", "expired_at"),)

    txn_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expired_at: Mapped[float] = mapped_column(Float)


class AccessKey(Base):
    """An access key of a user or a program (README "Security"): its secret sealed with the cluster
    secret (recoverable, as SigV4 needs it), its grants as JSON ``[{"prefix","access"}]`` and whether it
    is an admin key."""

    __tablename__ = "access_keys"

    access_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    grants: Mapped[str] = mapped_column(Text)
    admin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Float)


class Folder(Base):
    """A folder created explicitly (``POST /folders``; S3 buckets and ``dir/`` markers). A folder exists
    when it is explicit, or when a live file or an explicit folder lies below it (``leader/folders.py``).
    ``path`` is a normalized path, compared byte-wise like ``file_versions.path``."""

    __tablename__ = "folders"

    path: Mapped[str] = mapped_column(PathType, primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class DavProperty(Base):
    """A WebDAV dead property (RFC 4918 §4, PROPPATCH): ``name`` in Clark notation (``{namespace}local``)
    and its XML ``value``, of the file or folder at ``path`` (a normalized path, ``""`` the root;
    ``leader/dav_properties.py``). Keyed by path, so every user app sees the same ones."""

    __tablename__ = "dav_properties"

    path: Mapped[str] = mapped_column(PathType, primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MultipartUpload(Base):
    """An S3 multipart upload not yet completed or aborted (``leader/multipart.py``): the normalized
    ``path`` it will write and the object metadata that version will get (``content_type``, and
    ``user_metadata`` and ``object_headers`` as canonical JSON text, as on ``file_versions``). Its parts are ``file_versions``
    rows in state ``part`` below ``leader.parts.part_prefix(upload_id)``. Upload ids sort as their
    ``created_at`` (``leader.multipart.new_upload_id``)."""

    __tablename__ = "multipart_uploads"
    __table_args__ = (
        # Serves ListMultipartUploads: a range on path (a prefix, the key marker), in (path, created_at,
        # upload_id) order.
        Index("ix_multipart_uploads_path_created_at_upload_id", "path", "created_at", "upload_id"),
        # Serves the expiry: ``created_at < now - MULTIPART_TTL``.
        Index("ix_multipart_uploads_created_at", "created_at"),
    )

    upload_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(PathType, nullable=False)
    created_at: Mapped[float] = mapped_column(Float)
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_metadata: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The object headers of the version it will make (as on file_versions), and the checksum algorithm
    # and type the client chose at its creation (x-amz-checksum-algorithm / -type).
    object_headers: Mapped[str | None] = mapped_column(Text, nullable=True)
