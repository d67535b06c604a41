"""What a prepare (phase 2) records, validated: :class:`NewVersion`, from a
:class:`shared.protocol.models.VersionPrepare` (the query of ``POST /txns`` or the JSON of one
``/txns/batch`` section) and its packed chunk digests.

The model already bounds what needs no cluster knowledge (transaction id, size, replication, a positive
chunk size, the entity tag's and Content-Type's forms). This module adds what depends on the settings or
the body: the path (normalized), the chunk size within ``[MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]``, the file's
SHA-256, the digest body's length and the user metadata (``shared.protocol.rules.parse_user_metadata``). A
single prepare and a batch section run the same checks in the same order (:func:`check_digest_length`,
then :func:`new_version`), so a section is answered exactly as its single request would be.

A part of a multipart upload (``upload_id`` and ``part_number`` given) is stored at its part path
(``leader/parts.py``), not at ``path``; ``path`` (normalized) is kept as ``upload_path``, for the prepare
to check against the upload's (``leader/txns.py``), which needs SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from leader.parts import part_path
from shared.config import LeaderSettings
from shared.errors import BadRequest
from shared.paths import normalize_path
from shared.protocol.frames import DIGEST_SIZE
from shared.protocol.models import VersionPrepare
from shared.protocol.rules import (
    PART_ETAG_PATTERN, SHA256_RE, canonical_user_metadata, expected_chunks, parse_object_headers, parse_user_metadata,
)

_PART_ETAG_RE = re.compile(PART_ETAG_PATTERN)


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A validated prepare: the version's metadata (sizes in bytes, ``path`` normalized, ``chunk_size``
    and ``replication`` resolved against the cluster's defaults) and ``digests``, its chunks' packed
    32-byte SHA-256 digests in file order. ``if_match``: None, ``"*"`` or comma-separated SHA-256s
    (``shared.protocol.rules.if_match_allows``), checked at prepare and again at commit. ``etag``,
    ``content_type``, ``user_metadata`` and ``object_headers`` (canonical JSON text,
    ``rules.canonical_user_metadata``): the object metadata stored with the version, or None. For a part of a multipart upload: ``upload_id``,
    ``part_number``, ``upload_path`` (the normalized path the upload writes) and ``path`` its part path."""

    txn_id: str
    path: str
    size: int
    sha256: str
    chunk_size: int
    replication: int
    create_only: bool
    digests: bytes
    if_match: str | None = None
    etag: str | None = None
    content_type: str | None = None
    user_metadata: str | None = None
    object_headers: str | None = None
    upload_id: str | None = None
    part_number: int | None = None
    upload_path: str | None = None

    @property
    def chunk_count(self) -> int:
        return len(self.digests) // DIGEST_SIZE

    @property
    def is_part(self) -> bool:
        return self.upload_id is not None


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
    problem: the path (``normalize_path``), a part's own rules (no ``create_only`` or ``if_match``, an
    ``etag`` of 32 lowercase hex), the chunk size bounds, ``sha256`` (64 lowercase hex characters), the
    digest body's length, then ``user_metadata`` and ``object_headers`` (:func:`checked_user_metadata`,
    :func:`checked_object_headers`)."""
    path = normalize_path(prepare.path)
    stored = path
    if prepare.upload_id is not None:
        if prepare.create_only or prepare.if_match is not None:
            raise BadRequest("a part of a multipart upload cannot be create_only or if_match: the upload's "
                             "completion takes the conditions")
        if prepare.etag is None or not _PART_ETAG_RE.fullmatch(prepare.etag):
            raise BadRequest("a part of a multipart upload needs its etag: the MD5 of its content, 32 lowercase "
                             "hex characters")
        stored = part_path(prepare.upload_id, prepare.part_number)
    chunk_size = chunk_size_of(prepare, settings)
    if not (settings.min_chunk_size <= chunk_size <= settings.max_chunk_size):
        raise BadRequest(f"chunk_size {chunk_size} is outside [{settings.min_chunk_size}, {settings.max_chunk_size}]")
    if not SHA256_RE.fullmatch(prepare.sha256):
        raise BadRequest(f"sha256 must be 64 lowercase hex characters, got {prepare.sha256[:80]!r}")
    check_digest_length(prepare, len(digests), settings)
    return NewVersion(
        txn_id=prepare.txn_id, path=stored, size=prepare.size, sha256=prepare.sha256, chunk_size=chunk_size,
        replication=settings.replication_factor if prepare.replication is None else prepare.replication,
        create_only=prepare.create_only, digests=digests, if_match=prepare.if_match, etag=prepare.etag,
        content_type=prepare.content_type, user_metadata=checked_user_metadata(prepare.user_metadata),
        object_headers=checked_object_headers(prepare.object_headers), upload_id=prepare.upload_id, part_number=prepare.part_number,
        upload_path=path if prepare.upload_id is not None else None,
    )


def checked_user_metadata(text: str | None) -> str | None:
    """The canonical JSON text to store for a writer's ``user_metadata`` (None stays None). Raises
    :class:`BadRequest` unless it is a JSON object of string names (lowercase HTTP token characters,
    1-128) and string values (no control character but tab), at most 2048 bytes of both in UTF-8
    (``shared.protocol.rules.parse_user_metadata``)."""
    return None if text is None else canonical_user_metadata(parse_user_metadata(text))


def checked_object_headers(text: str | None) -> str | None:
    """The canonical JSON text to store for a writer's ``object_headers`` (None stays None). Raises
    :class:`BadRequest` unless it is a JSON object of strings named among
    ``shared.protocol.rules.OBJECT_HEADER_NAMES`` (``rules.parse_object_headers``)."""
    return None if text is None else canonical_user_metadata(parse_object_headers(text))
