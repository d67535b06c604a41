"""Chunk data on the wire: digests, chunk frames and txn sections (docs/protocol.md).

* **digest list** (read / exists / verify requests, manifests): packed 32-byte SHA-256 digests.
* **chunk frame** (prepare and replicate requests, read responses): ``digest (32 bytes) | length (u32 BE) |
  data``. In a read response a length of ``MISSING`` (0xFFFFFFFF) means "not held here" and no data follows.
* **txn sections** (``/chunks/prepare-many``): ``txn id length (u8) | txn id (ASCII) | frames length (u32
  BE) | chunk frames``, repeated: phase-1 batches of several transactions in one body.
* **exists response**: one byte per requested digest, a :class:`ChunkPresence` value.
"""

from __future__ import annotations

import hashlib
import struct
from enum import IntEnum
from typing import Iterable, Iterator

from shared.errors import BadRequest, Unencodable
from shared.protocol.rules import MAX_TXN_ID_LENGTH, validate_txn_id

DIGEST_SIZE = 32
U8 = struct.Struct(">B")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
FRAME_HEADER_SIZE = DIGEST_SIZE + U32.size
MISSING = 0xFFFFFFFF
_TXN_ID_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")

Chunk = tuple[bytes, memoryview]  # (digest, data)


class ChunkPresence(IntEnum):
    """What a chunk server holds for one digest."""

    ABSENT = 0
    PENDING = 1
    COMMITTED = 2


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
            parts.append(digest + U32.pack(MISSING))
        else:
            parts.append(digest + U32.pack(len(data)))
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
        (length,) = U32.unpack_from(mv, pos + DIGEST_SIZE)
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


def encode_txn_sections(sections: Iterable[tuple[str, bytes | memoryview]]) -> bytes:
    """A ``/chunks/prepare-many`` body: for each ``(txn_id, encoded chunk frames)``, ``txn id length (u8) |
    txn id (ASCII) | frames length (u32 BE) | frames``. Raises :class:`Unencodable` on a bad txn id."""
    parts: list[bytes | memoryview] = []
    for txn_id, frames in sections:
        try:
            raw = validate_txn_id(txn_id).encode("ascii")
        except BadRequest as exc:
            raise Unencodable(exc.message) from None
        parts.append(U8.pack(len(raw)) + raw + U32.pack(len(frames)))
        parts.append(frames)
    return b"".join(parts)


def iter_txn_sections(body: bytes | memoryview) -> Iterator[tuple[str, memoryview]]:
    """Decode a ``/chunks/prepare-many`` body into ``(txn_id, chunk frames)``; the frames are a view into
    ``body`` (decode them with :func:`iter_frames`). Raises :class:`BadRequest` on a truncated section or
    a bad txn id."""
    mv = memoryview(body)
    pos, end = 0, len(mv)
    while pos < end:
        n = mv[pos]
        if not 1 <= n <= MAX_TXN_ID_LENGTH:
            raise BadRequest(f"bad txn id length {n} at byte {pos}")
        if end - pos < 1 + n + U32.size:
            raise BadRequest(f"truncated section header at byte {pos}")
        raw = bytes(mv[pos + 1 : pos + 1 + n])
        if not _TXN_ID_BYTES.issuperset(raw):
            raise BadRequest(f"bad txn id {raw[:80]!r} at byte {pos}")
        (length,) = U32.unpack_from(mv, pos + 1 + n)
        pos += 1 + n + U32.size
        if end - pos < length:
            raise BadRequest(f"truncated section of txn {raw.decode()}: {length} bytes announced, {end - pos} left")
        yield raw.decode("ascii"), mv[pos : pos + length]
        pos += length


# ---------------------------------------------------------------- proofs of possession
# ``POST /chunks/prove``: body ``nonce (32 bytes) | packed digests``; answer 32 bytes per digest, the
# proof that the server holds the chunk's bytes, or ``NO_PROOF`` (docs/failure-handling.md, "Handoff").
# Only a server that holds the bytes can compute SHA-256(nonce | data) for a nonce it has never seen; the
# asker checks it against its own intact copy, so a bare claim ("exists") never passes.
NONCE_SIZE = 32
NO_PROOF = bytes(DIGEST_SIZE)


def possession_proof(nonce: bytes, data: bytes | memoryview) -> bytes:
    """SHA-256 of ``nonce`` followed by the chunk's bytes (32 bytes)."""
    h = hashlib.sha256(nonce)
    h.update(data)
    return h.digest()


def split_prove_body(body: bytes) -> tuple[bytes, list[bytes]]:
    """``(nonce, digests)`` of a ``/chunks/prove`` body. Raises :class:`BadRequest` when malformed."""
    if len(body) < NONCE_SIZE:
        raise BadRequest(f"a prove body starts with a {NONCE_SIZE}-byte nonce")
    return body[:NONCE_SIZE], unpack_digests(body[NONCE_SIZE:])
