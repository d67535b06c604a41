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



def parse_paths_body(body: bytes) -> tuple[list, dict]:
    """``(paths, document)`` of a JSON batch body ``{"paths": [...], ...}`` (``POST /manifests`` on the
    leader, ``POST /batch/read`` on the user app). The paths are not validated here (each gets its own
    per-path answer). Raises :class:`BadRequest` unless the body is such a document with at most
    ``MAX_BATCH_FILES`` paths."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest('body must be JSON {"paths": [...]}') from None
    paths = doc.get("paths") if isinstance(doc, dict) else None
    if not isinstance(paths, list):
        raise BadRequest('body must be JSON {"paths": [...]}')
    if len(paths) > MAX_BATCH_FILES:
        raise BadRequest(f"{len(paths)} paths exceed the limit of {MAX_BATCH_FILES} per batch")
    return paths, doc

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


# ---------------------------------------------------------------- batches of whole files
# ``POST /manifests`` (leader), ``POST /batch/write`` and ``POST /batch/read`` (user app): many small
# files in one request, each answered on its own (docs/protocol.md, README "User API").

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
# Most paths in one ``POST /manifests`` / ``/batch/read`` request and files in one ``/batch/write``.
MAX_BATCH_FILES = 1024
# First byte of an error entry in a ``POST /manifests`` answer. A manifest entry starts with its JSON
# length (u32 big-endian), whose first byte is never 0xFF (that would be a JSON head of at least 4 GiB).
MANIFEST_ERROR_MARKER = 0xFF
_MAX_U16 = 0xFFFF


def encode_manifest_error(message: str, status: int) -> bytes:
    """The payload of a failed path in a ``POST /manifests`` answer: ``0xFF | JSON {"error","status"}``."""
    return bytes((MANIFEST_ERROR_MARKER,)) + orjson.dumps({"error": message, "status": status})


def encode_manifests(payloads: Iterable[bytes]) -> bytes:
    """A ``POST /manifests`` answer: per requested path, in order, ``length (u32 BE) | payload``, the
    payload being :func:`encode_manifest` of the found version or :func:`encode_manifest_error`."""
    parts: list[bytes] = []
    for payload in payloads:
        parts.append(_U32.pack(len(payload)))
        parts.append(payload)
    return b"".join(parts)


def decode_manifests(blob: bytes | memoryview) -> list[tuple[dict, bytes] | dict]:
    """Inverse of :func:`encode_manifests`: per entry ``(metadata, packed digests)``, or for a failed path
    a dict ``{"error","status"}``. Raises :class:`BadRequest` on a truncated or malformed entry."""
    mv = memoryview(blob)
    pos, end = 0, len(mv)
    out: list[tuple[dict, bytes] | dict] = []
    while pos < end:
        if end - pos < _U32.size:
            raise BadRequest(f"truncated manifest entry header at byte {pos}")
        (n,) = _U32.unpack_from(mv, pos)
        pos += _U32.size
        if end - pos < n:
            raise BadRequest(f"truncated manifest entry: {n} bytes announced, {end - pos} left")
        payload = bytes(mv[pos : pos + n])
        pos += n
        try:
            if payload[:1] == bytes((MANIFEST_ERROR_MARKER,)):
                err = orjson.loads(payload[1:])
                if not isinstance(err, dict) or not isinstance(err.get("status"), int):
                    raise ValueError("error entry without a status")
                out.append(err)
                continue
            if len(payload) < _U32.size:
                raise ValueError("manifest entry shorter than its header")
            (m,) = _U32.unpack_from(payload, 0)
            if len(payload) - _U32.size < m or (len(payload) - _U32.size - m) % DIGEST_SIZE:
                raise ValueError("manifest entry with a bad JSON or digest length")
            out.append(decode_manifest(payload))
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            raise BadRequest(f"malformed manifest entry #{len(out)}: {exc}") from None
    return out


def encode_batch_files(files: Iterable[tuple[str, bytes | memoryview]]) -> bytes:
    """A ``POST /batch/write`` body: per file ``path length (u16 BE) | UTF-8 path | size (u64 BE) |
    bytes``. Raises :class:`ValueError` on a path longer than 65535 bytes in UTF-8."""
    parts: list[bytes | memoryview] = []
    for path, data in files:
        raw = path.encode("utf-8")
        if len(raw) > _MAX_U16:
            raise ValueError(f"path of {len(raw)} bytes does not fit a batch section")
        parts.append(_U16.pack(len(raw)) + raw + _U64.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def iter_batch_files(body: bytes | memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """Decode a ``POST /batch/write`` body into ``(raw UTF-8 path, data view)`` pairs; the path stays
    bytes so that the caller can answer a bad one per file. Raises :class:`BadRequest` on a truncated
    section."""
    mv = memoryview(body)
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < _U16.size:
            raise BadRequest(f"truncated file section header at byte {pos}")
        (n,) = _U16.unpack_from(mv, pos)
        if end - pos < _U16.size + n + _U64.size:
            raise BadRequest(f"truncated file section header at byte {pos}")
        raw = bytes(mv[pos + _U16.size : pos + _U16.size + n])
        (size,) = _U64.unpack_from(mv, pos + _U16.size + n)
        pos += _U16.size + n + _U64.size
        if end - pos < size:
            raise BadRequest(f"truncated file section: {size} bytes announced, {end - pos} left")
        yield raw, mv[pos : pos + size]
        pos += size


def _path_field(path: str) -> bytes:
    """``path`` as UTF-8 for a u16-length field: cut (at a character boundary) to 65535 bytes, and
    unencodable characters replaced, so an echo of a bad request path always fits."""
    raw = path.encode("utf-8", "replace")
    if len(raw) > _MAX_U16:
        raw = raw[:_MAX_U16].decode("utf-8", "ignore").encode("utf-8")
    return raw


def encode_batch_entry_header(path: str, status: int, length: int) -> bytes:
    """The head of one file of a ``POST /batch/read`` answer: ``path length (u16 BE) | UTF-8 path |
    status (u16 BE) | length (u64 BE)``; ``length`` bytes follow (the content for status 200, else a
    JSON ``{"error"}`` document)."""
    raw = _path_field(path)
    return _U16.pack(len(raw)) + raw + _U16.pack(status) + _U64.pack(length)


def encode_batch_entries(entries: Iterable[tuple[str, int, bytes | memoryview]]) -> bytes:
    """A whole ``POST /batch/read`` answer from ``(path, status, bytes)`` entries."""
    parts: list[bytes | memoryview] = []
    for path, status, data in entries:
        parts.append(encode_batch_entry_header(path, status, len(data)))
        parts.append(data)
    return b"".join(parts)


def iter_batch_entries(blob: bytes | memoryview) -> Iterator[tuple[str, int, memoryview]]:
    """Decode a ``POST /batch/read`` answer into ``(path, status, bytes view)``. Raises
    :class:`BadRequest` on a truncated entry or a path that is not UTF-8."""
    mv = memoryview(blob)
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < _U16.size:
            raise BadRequest(f"truncated batch entry header at byte {pos}")
        (n,) = _U16.unpack_from(mv, pos)
        head = _U16.size + n + _U16.size + _U64.size
        if end - pos < head:
            raise BadRequest(f"truncated batch entry header at byte {pos}")
        try:
            path = bytes(mv[pos + _U16.size : pos + _U16.size + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"batch entry path at byte {pos} is not UTF-8") from None
        (status,) = _U16.unpack_from(mv, pos + _U16.size + n)
        (length,) = _U64.unpack_from(mv, pos + _U16.size + n + _U16.size)
        pos += head
        if end - pos < length:
            raise BadRequest(f"truncated batch entry {path!r}: {length} bytes announced, {end - pos} left")
        yield path, status, mv[pos : pos + length]
        pos += length
