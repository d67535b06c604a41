"""What a prepare (phase 2) records, validated: :class:`NewVersion`, from a
:class:`shared.protocol.models.VersionPrepare` (the query of ``POST /txns`` or the JSON of one
``/txns/batch`` section) and its packed chunk digests.

The model already bounds what needs no cluster knowledge (transaction id, size, replication, a positive
chunk size). This module adds what depends on the settings or the body: the path (normalized), the chunk
size within ``[MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]``, the file's SHA-256 and the digest body's length. A
single prepare and a batch section run the same checks in the same order (:func:`check_digest_length`,
then :func:`new_version`), so a section is answered exactly as its single request would be.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import LeaderSettings
from shared.errors import BadRequest
from shared.paths import normalize_path
from shared.protocol.frames import DIGEST_SIZE
from shared.protocol.models import VersionPrepare
from shared.protocol.rules import SHA256_RE, expected_chunks


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A validated prepare: the version's metadata (sizes in bytes, ``path`` normalized, ``chunk_size``
    and ``replication`` resolved against the cluster's defaults) and ``digests``, its chunks' packed
    32-byte SHA-256 digests in file order. ``if_match``: None, ``"*"`` or comma-separated SHA-256s
    (``shared.protocol.rules.if_match_allows``), checked at prepare and again at commit."""

    txn_id: str
    path: str
    size: int
    sha256: str
    chunk_size: int
    replication: int
    create_only: bool
    digests: bytes
    if_match: str | None = None

    @property
    def chunk_count(self) -> int:
        return len(self.digests) // DIGEST_SIZE


def chunk_size_of(prepare: VersionPrepare, settings: LeaderSettings) -> int:
    """The chunk size (bytes) ``prepare`` asks for, or the cluster's ``CHUNK_SIZE``."""
    return settings.chunk_size if prepare.chunk_size is None else prepare.chunk_size


def digest_length(prepare: VersionPrepare, settings: LeaderSettings) -> int:
    """Bytes of packed digests ``prepare``'s file needs: 32 per chunk."""
    return DIGEST_SIZE * expected_chunks(prepare.size, chunk_size_of(prepare, settings))


def check_digest_length(prepare: VersionPrepare, length: int, settings: LeaderSettings) -> None:
    """Raise :class:`BadRequest` unless a digest body of ``length`` bytes holds exactly one 32-byte digest
    per chunk of ``prepare``'s file. ``POST /txns`` runs it on the announced ``Content-Length`` before
    reading the body."""
    chunk_size = chunk_size_of(prepare, settings)
    want = digest_length(prepare, settings)
    if length != want:
        raise BadRequest(f"digest body is {length} bytes; size {prepare.size} in {chunk_size}-byte chunks "
                         f"needs {want} bytes")


def new_version(prepare: VersionPrepare, digests: bytes, settings: LeaderSettings) -> NewVersion:
    """The :class:`NewVersion` of ``prepare`` with ``digests``. Raises :class:`BadRequest` naming the first
    problem: the path (``normalize_path``), the chunk size bounds, ``sha256`` (64 lowercase hex
    characters), then the digest body's length."""
    path = normalize_path(prepare.path)
    chunk_size = chunk_size_of(prepare, settings)
    if not (settings.min_chunk_size <= chunk_size <= settings.max_chunk_size):
        raise BadRequest(f"chunk_size {chunk_size} is outside [{settings.min_chunk_size}, {settings.max_chunk_size}]")
    if not SHA256_RE.fullmatch(prepare.sha256):
        raise BadRequest(f"sha256 must be 64 lowercase hex characters, got {prepare.sha256[:80]!r}")
    check_digest_length(prepare, len(digests), settings)
    return NewVersion(
        txn_id=prepare.txn_id, path=path, size=prepare.size, sha256=prepare.sha256, chunk_size=chunk_size,
        replication=settings.replication_factor if prepare.replication is None else prepare.replication,
        create_only=prepare.create_only, digests=digests, if_match=prepare.if_match,
    )
