"""Many items in one body: whole small files (user API ``POST /batch/write`` and ``/batch/read``), paths
(``/batch/read``, leader ``POST /manifests``) and version prepares (leader ``POST /txns/batch``).

Each item is answered on its own (README "User API", docs/protocol.md)::

    /batch/write body   = (path length (u16 BE) | UTF-8 path | size (u64 BE) | bytes)*
    /batch/read answer  = (path length (u16 BE) | UTF-8 path | status (u16 BE) | length (u64 BE) | bytes)*
    /txns/batch body    = (json length (u32 BE) | VersionPrepare JSON | digests length (u32 BE) | digests)*
"""

from __future__ import annotations

from typing import Iterable, Iterator

import orjson

from shared.errors import BadRequest, Unencodable
from shared.protocol.frames import U16, U32, U64
from shared.protocol.models import VersionPrepare
from shared.protocol.rules import MAX_BATCH_FILES, MAX_TXNS_PER_BATCH

_MAX_U16 = 0xFFFF


# ---------------------------------------------------------------- paths


def parse_paths_body(body: bytes) -> tuple[list, dict]:
    """``(paths, document)`` of a JSON batch body ``{"paths": [...], ...}`` (``POST /manifests`` on the
    leader, ``POST /batch/read`` on the user app). The paths are not validated here (each gets its own
    answer). Raises :class:`BadRequest` unless the body is such a document with at most
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


# ---------------------------------------------------------------- /batch/write


def encode_batch_files(files: Iterable[tuple[str, bytes | memoryview]]) -> bytes:
    """A ``POST /batch/write`` body from ``(path, bytes)`` pairs. Raises :class:`Unencodable` on a path
    longer than 65535 bytes in UTF-8."""
    parts: list[bytes | memoryview] = []
    for path, data in files:
        raw = path.encode("utf-8")
        if len(raw) > _MAX_U16:
            raise Unencodable(f"path of {len(raw)} bytes does not fit a batch section")
        parts.append(U16.pack(len(raw)) + raw + U64.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def iter_batch_files(body: bytes | memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """Decode a ``POST /batch/write`` body into ``(raw UTF-8 path, data view)`` pairs; the path stays
    bytes so that the caller can answer a bad one per file. Raises :class:`BadRequest` on a truncated
    section."""
    mv = memoryview(body)
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < U16.size:
            raise BadRequest(f"truncated file section header at byte {pos}")
        (n,) = U16.unpack_from(mv, pos)
        if end - pos < U16.size + n + U64.size:
            raise BadRequest(f"truncated file section header at byte {pos}")
        raw = bytes(mv[pos + U16.size : pos + U16.size + n])
        (size,) = U64.unpack_from(mv, pos + U16.size + n)
        pos += U16.size + n + U64.size
        if end - pos < size:
            raise BadRequest(f"truncated file section: {size} bytes announced, {end - pos} left")
        yield raw, mv[pos : pos + size]
        pos += size


# ---------------------------------------------------------------- /batch/read


def _path_field(path: str) -> bytes:
    """``path`` as UTF-8 for a u16-length field: cut (at a character boundary) to 65535 bytes, and
    unencodable characters replaced, so an echo of a bad request path always fits."""
    raw = path.encode("utf-8", "replace")
    if len(raw) > _MAX_U16:
        raw = raw[:_MAX_U16].decode("utf-8", "ignore").encode("utf-8")
    return raw


def encode_batch_entry_header(path: str, status: int, length: int) -> bytes:
    """The head of one file of a ``POST /batch/read`` answer; ``length`` bytes follow (the content for
    status 200, else a JSON ``{"error"}`` document)."""
    raw = _path_field(path)
    return U16.pack(len(raw)) + raw + U16.pack(status) + U64.pack(length)


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
        if end - pos < U16.size:
            raise BadRequest(f"truncated batch entry header at byte {pos}")
        (n,) = U16.unpack_from(mv, pos)
        head = U16.size + n + U16.size + U64.size
        if end - pos < head:
            raise BadRequest(f"truncated batch entry header at byte {pos}")
        try:
            path = bytes(mv[pos + U16.size : pos + U16.size + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"batch entry path at byte {pos} is not UTF-8") from None
        (status,) = U16.unpack_from(mv, pos + U16.size + n)
        (length,) = U64.unpack_from(mv, pos + U16.size + n + U16.size)
        pos += head
        if end - pos < length:
            raise BadRequest(f"truncated batch entry {path!r}: {length} bytes announced, {end - pos} left")
        yield path, status, mv[pos : pos + length]
        pos += length


# ---------------------------------------------------------------- /txns/batch


def encode_version_sections(items: Iterable[tuple[VersionPrepare, bytes | memoryview]]) -> bytes:
    """A leader ``POST /txns/batch`` body from ``(prepare, packed digests)`` pairs."""
    parts: list[bytes | memoryview] = []
    for prepare, digests in items:
        head = prepare.model_dump_json(exclude_none=True).encode()
        parts += [U32.pack(len(head)), head, U32.pack(len(digests)), digests]
    return b"".join(parts)


def split_version_sections(body: bytes | memoryview) -> list[tuple[bytes, bytes]]:
    """A ``POST /txns/batch`` body as ``[(JSON, packed digests)]``, the JSON left unparsed so each
    section can be answered on its own. Raises :class:`BadRequest` on a broken framing or more than
    ``MAX_TXNS_PER_BATCH`` sections."""
    sections: list[tuple[bytes, bytes]] = []
    view = memoryview(body)
    pos, end = 0, len(view)
    while pos < end:
        parts = []
        for what in ("JSON", "digests"):
            if pos + U32.size > end:
                raise BadRequest(f"batch section {len(sections)}: truncated {what} length")
            (n,) = U32.unpack_from(view, pos)
            pos += U32.size
            if pos + n > end:
                raise BadRequest(f"batch section {len(sections)}: {what} of {n} bytes runs past the body")
            parts.append(bytes(view[pos : pos + n]))
            pos += n
        sections.append((parts[0], parts[1]))
        if len(sections) > MAX_TXNS_PER_BATCH:
            raise BadRequest(f"a batch holds at most {MAX_TXNS_PER_BATCH} sections")
    return sections
