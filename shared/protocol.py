"""Wire protocol: JSON models shared by the services and the binary chunk framing.

Chunk data never travels as JSON or base64. Batches are plain concatenations of frames:

* **chunk frame** (prepare request, read response): ``digest (32 bytes) | length (u32, big-endian) |
  data (length bytes)``. In a read response a length of ``MISSING`` (0xFFFFFFFF) means "not held here"
  and no data follows.
* **digest list** (read / exists / commit requests, manifests): packed 32-byte SHA-256 digests.
* **txn sections** (``/chunks/prepare-many`` request): ``txn id length (u8) | txn id (ASCII) | frames
  length (u32, big-endian) | chunk frames``, repeated: phase-1 batches of several transactions in one body.
* **exists response**: one byte per requested digest, a :class:`ChunkPresence` value.
* **manifest response** (leader → user app): ``json length (u32) | JSON metadata | packed digests``, so a
  path resolves to its version and ordered chunk list in one call (reference design: "Leader provides
  chunk hashes").
"""

from __future__ import annotations

import hashlib
import struct
from enum import IntEnum
from typing import Iterable, Iterator

import orjson
from pydantic import BaseModel, Field

from shared.errors import BadRequest

DIGEST_SIZE = 32
_U32 = struct.Struct(">I")
FRAME_HEADER_SIZE = DIGEST_SIZE + _U32.size
MISSING = 0xFFFFFFFF
OCTET_STREAM = "application/octet-stream"

# Headers the leader puts on every response so that user apps notice a stale cached ring.
RING_EPOCH_HEADER = "X-Ring-Epoch"
# Header the leader sends with its health checks, so a chunk server knows it is still watched.
HEALTH_CHECK_HEADER = "X-RingFS-Health-Check"


class ChunkPresence(IntEnum):
    """What a chunk server holds for one digest."""

    ABSENT = 0
    PENDING = 1
    COMMITTED = 2


# ---------------------------------------------------------------- digests and frames


def sha256(data: bytes | memoryview) -> bytes:
    """The 32-byte SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def parse_hex_digest(text: str) -> bytes:
    """A chunk id (64 lowercase hex characters) as 32 bytes. Raises :class:`BadRequest` otherwise, so no
    id can ever become a path trick."""
    if len(text) != 64 or text.strip("0123456789abcdef"):
        raise BadRequest(f"chunk id must be 64 lowercase hex characters, got {text[:80]!r}")
    return bytes.fromhex(text)


def pack_digests(digests: Iterable[bytes]) -> bytes:
    """Concatenate 32-byte digests."""
    return b"".join(digests)


def unpack_digests(blob: bytes | memoryview) -> list[bytes]:
    """Split packed digests. Raises :class:`BadRequest` when the length is not a multiple of 32 bytes."""
    if len(blob) % DIGEST_SIZE:
        raise BadRequest(f"digest list length {len(blob)} is not a multiple of {DIGEST_SIZE} bytes")
    mv = memoryview(blob)
    return [bytes(mv[i : i + DIGEST_SIZE]) for i in range(0, len(mv), DIGEST_SIZE)]


def encode_frames(chunks: Iterable[tuple[bytes, bytes | memoryview | None]]) -> bytes:
    """Encode ``(digest, data)`` pairs as chunk frames; ``data=None`` encodes a ``MISSING`` frame."""
    parts: list[bytes | memoryview] = []
    for digest, data in chunks:
        if data is None:
            parts.append(digest + _U32.pack(MISSING))
        else:
            parts.append(digest + _U32.pack(len(data)))
            parts.append(data)
    return b"".join(parts)


def iter_frames(blob: bytes | memoryview, max_chunk_size: int | None = None) -> Iterator[tuple[bytes, memoryview | None]]:
    """Decode chunk frames into ``(digest, data)``; ``data`` is None for a ``MISSING`` frame.

    Raises :class:`BadRequest` on a truncated frame or a chunk larger than ``max_chunk_size`` bytes.
    """
    mv = memoryview(blob)
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < FRAME_HEADER_SIZE:
            raise BadRequest(f"truncated chunk frame header at byte {pos}")
        digest = bytes(mv[pos : pos + DIGEST_SIZE])
        (length,) = _U32.unpack_from(mv, pos + DIGEST_SIZE)
        pos += FRAME_HEADER_SIZE
        if length == MISSING:
            yield digest, None
            continue
        if max_chunk_size is not None and length > max_chunk_size:
            raise BadRequest(f"chunk of {length} bytes exceeds the limit of {max_chunk_size} bytes")
        if end - pos < length:
            raise BadRequest(f"truncated chunk frame: {length} bytes announced, {end - pos} left")
        yield digest, mv[pos : pos + length]
        pos += length


_U8 = struct.Struct(">B")
_TXN_ID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_TXN_ID_LENGTH = 64


def encode_txn_sections(sections: Iterable[tuple[str, bytes | memoryview]]) -> bytes:
    """Multi-transaction prepare body (``POST /chunks/prepare-many``): for each ``(txn_id, frames)``,
    ``txn id length (u8) | txn id (ASCII) | frames length (u32, big-endian) | chunk frames``.

    Raises :class:`ValueError` on a txn id that is not 1-64 characters of ``[A-Za-z0-9_-]``."""
    parts: list[bytes | memoryview] = []
    for txn_id, frames in sections:
        raw = txn_id.encode("ascii")
        if not 1 <= len(raw) <= MAX_TXN_ID_LENGTH or not _TXN_ID_CHARS.issuperset(raw):
            raise ValueError(f"bad txn id {txn_id!r}")
        parts.append(_U8.pack(len(raw)) + raw + _U32.pack(len(frames)))
        parts.append(frames)
    return b"".join(parts)


def iter_txn_sections(body: bytes | memoryview) -> Iterator[tuple[str, memoryview]]:
    """Decode a multi-transaction prepare body into ``(txn_id, chunk frames)``; the frames are a view
    into ``body`` (decode them with :func:`iter_frames`). Raises :class:`BadRequest` on a truncated
    section or a txn id that is not 1-64 characters of ``[A-Za-z0-9_-]``."""
    mv = memoryview(body)
    pos, end = 0, len(mv)
    while pos < end:
        n = mv[pos]
        if not 1 <= n <= MAX_TXN_ID_LENGTH:
            raise BadRequest(f"bad txn id length {n} at byte {pos}")
        if end - pos < 1 + n + _U32.size:
            raise BadRequest(f"truncated section header at byte {pos}")
        raw = bytes(mv[pos + 1 : pos + 1 + n])
        if not _TXN_ID_CHARS.issuperset(raw):
            raise BadRequest(f"bad txn id {raw[:80]!r} at byte {pos}")
        (length,) = _U32.unpack_from(mv, pos + 1 + n)
        pos += 1 + n + _U32.size
        if end - pos < length:
            raise BadRequest(f"truncated section of txn {raw.decode()}: {length} bytes announced, {end - pos} left")
        yield raw.decode("ascii"), mv[pos : pos + length]
        pos += length


def encode_manifest(meta: dict, digests: bytes) -> bytes:
    """Leader → user app: JSON metadata followed by packed chunk digests."""
    head = orjson.dumps(meta)
    return _U32.pack(len(head)) + head + digests


def decode_manifest(blob: bytes) -> tuple[dict, bytes]:
    """Inverse of :func:`encode_manifest`: ``(metadata, packed digests)``."""
    (n,) = _U32.unpack_from(blob, 0)
    return orjson.loads(blob[4 : 4 + n]), blob[4 + n :]


# ---------------------------------------------------------------- JSON models


class ServerRegistration(BaseModel):
    """Chunk server → leader on start (and again whenever it stops receiving health checks)."""

    server_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    advertise_url: str = Field(min_length=1, max_length=512, pattern=r"^https?://")
    capacity_bytes: int = Field(ge=0)


class RingServer(BaseModel):
    """One chunk server in ``GET /ring`` and ``GET /cluster``."""

    server_id: str
    url: str
    state: str
    missed_checks: int = 0
    capacity_bytes: int = 0


class RingView(BaseModel):
    """``GET /ring`` on the leader: the ring at one epoch plus the cluster policy.

    ``vnodes`` is ``[[position, server_id], ...]``; servers in state ``removed`` are listed in ``servers``
    for operators but own no virtual nodes.
    """

    epoch: int
    replication_factor: int
    chunk_size: int
    min_chunk_size: int
    max_chunk_size: int
    servers: list[RingServer]
    vnodes: list[tuple[int, str]]


class RegistrationResult(BaseModel):
    """Leader → chunk server after registration."""

    server_id: str
    epoch: int
    health_check_interval: float


class VersionInfo(BaseModel):
    """Metadata of one file version (without the chunk list)."""

    path: str
    version: int
    size: int
    sha256: str
    chunks: int
    chunk_size: int
    replication: int
    state: str
    created_at: float
    committed_at: float | None = None
    deleted_at: float | None = None


class ListEntry(BaseModel):
    """One entry of a folder listing."""

    name: str
    path: str
    type: str  # "file" or "dir"
    size: int
    version: int | None = None
    created_at: float | None = None


class RenameRequest(BaseModel):
    src: str
    dst: str
