"""Manifests: a version's :class:`VersionInfo` and its ordered chunk digests, in one binary body.

Reference design: the leader "provides chunk hashes" for a read, so a path resolves to its version and
chunk list in one call (``GET /manifest``), or many paths in one (``POST /manifests``)::

    manifest       = json length (u32 BE) | VersionInfo JSON | packed 32-byte digests
    manifest error = 0xFF | JSON {"error","status"}
    manifests      = (payload length (u32 BE) | manifest or manifest error)*

A manifest's first byte is the high byte of its JSON length, never 0xFF (that would be a JSON head of at
least 4 GiB), so the two payloads cannot be confused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import orjson
from pydantic import ValidationError

from shared.errors import BadRequest
from shared.protocol.frames import DIGEST_SIZE, U32
from shared.protocol.models import BatchError, VersionInfo

MANIFEST_ERROR_MARKER = 0xFF


@dataclass(frozen=True, slots=True)
class Manifest:
    """A committed version to read: its metadata and its packed chunk digests (32 bytes each, in file
    order)."""

    info: VersionInfo
    digests: bytes

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def chunk_size(self) -> int:
        return self.info.chunk_size

    def __len__(self) -> int:
        return len(self.digests) // DIGEST_SIZE

    def digest(self, index: int) -> bytes:
        """The digest of chunk ``index`` (0-based)."""
        return self.digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]

    def digest_list(self) -> list[bytes]:
        return [self.digests[i : i + DIGEST_SIZE] for i in range(0, len(self.digests), DIGEST_SIZE)]


def encode_manifest(info: VersionInfo, digests: bytes | memoryview) -> bytes:
    """Leader → user app: ``info`` followed by the version's packed chunk digests."""
    head = info.model_dump_json().encode()
    return U32.pack(len(head)) + head + digests


def decode_manifest(blob: bytes | memoryview) -> Manifest:
    """Inverse of :func:`encode_manifest`. Raises :class:`BadRequest` on a truncated body, a JSON head
    that is not a :class:`VersionInfo` or a digest list that is not whole 32-byte digests."""
    blob = bytes(blob)
    if len(blob) < U32.size:
        raise BadRequest("manifest shorter than its header")
    (n,) = U32.unpack_from(blob, 0)
    rest = len(blob) - U32.size - n
    if rest < 0 or rest % DIGEST_SIZE:
        raise BadRequest("manifest with a bad JSON or digest length")
    try:
        info = VersionInfo.model_validate_json(blob[U32.size : U32.size + n])
    except ValidationError as exc:
        raise BadRequest(f"manifest metadata is not a VersionInfo: {exc.error_count()} problem(s)") from None
    return Manifest(info, blob[U32.size + n :])


def encode_manifest_error(message: str, status: int) -> bytes:
    """The payload of a failed path in a ``POST /manifests`` answer."""
    return bytes((MANIFEST_ERROR_MARKER,)) + orjson.dumps({"error": message, "status": status})


def encode_manifests(payloads: Iterable[bytes]) -> bytes:
    """A ``POST /manifests`` answer: per requested path, in order, ``length (u32 BE) | payload``, the
    payload being :func:`encode_manifest` of the found version or :func:`encode_manifest_error`."""
    parts: list[bytes] = []
    for payload in payloads:
        parts.append(U32.pack(len(payload)))
        parts.append(payload)
    return b"".join(parts)


def decode_manifests(blob: bytes | memoryview) -> list[Manifest | BatchError]:
    """Inverse of :func:`encode_manifests`: per entry a :class:`Manifest`, or a :class:`BatchError` for a
    failed path. Raises :class:`BadRequest` on a truncated or malformed entry."""
    mv = memoryview(blob)
    pos, end = 0, len(mv)
    out: list[Manifest | BatchError] = []
    while pos < end:
        if end - pos < U32.size:
            raise BadRequest(f"truncated manifest entry header at byte {pos}")
        (n,) = U32.unpack_from(mv, pos)
        pos += U32.size
        if end - pos < n:
            raise BadRequest(f"truncated manifest entry: {n} bytes announced, {end - pos} left")
        payload = mv[pos : pos + n]
        pos += n
        if payload[:1] == bytes((MANIFEST_ERROR_MARKER,)):
            try:
                out.append(BatchError.model_validate_json(bytes(payload[1:])))
            except ValidationError:
                raise BadRequest(f"malformed manifest entry #{len(out)}: an error without a message and status") from None
            continue
        try:
            out.append(decode_manifest(payload))
        except BadRequest as exc:
            raise BadRequest(f"malformed manifest entry #{len(out)}: {exc.message}") from None
    return out
