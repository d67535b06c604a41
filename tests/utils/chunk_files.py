"""Reach into a stopped chunk server's store on disk (chunk_server/store/, docs/chunk-store.md) to damage
it the way a bad disk would: find a chunk's record through the index and overwrite bytes of it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from chunk_server.store.connections import INDEX_FILE, SEGMENTS_DIR
from chunk_server.store.schema import key_of
from chunk_server.store.segments import HEADER_SIZE, segment_name


def record_of(data_dir: str | Path, digest: bytes | None = None) -> tuple[bytes, Path, int, int]:
    """``(digest, segment file, offset of the data, size)`` of the committed chunk ``digest`` (or of the
    first committed chunk). Raises ``LookupError`` if there is none."""
    conn = sqlite3.connect(Path(data_dir) / INDEX_FILE)
    try:
        sql = "SELECT key, tail, segment, offset, size FROM chunks WHERE state = 2"
        rows = conn.execute(sql + (" AND key = ?" if digest else "") + " ORDER BY id",
                            (key_of(digest),) if digest else ()).fetchall()
    finally:
        conn.close()
    for key, tail, segment, offset, size in rows:
        found = key.to_bytes(8, "big", signed=True) + tail
        if digest is None or found == digest:
            return found, Path(data_dir) / SEGMENTS_DIR / segment_name(segment), offset + HEADER_SIZE, size
    raise LookupError(f"no committed chunk {digest.hex() if digest else ''} under {data_dir}")


def read_chunk(data_dir: str | Path, digest: bytes) -> bytes:
    _, path, offset, size = record_of(data_dir, digest)
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def corrupt_chunk(data_dir: str | Path, digest: bytes | None = None) -> bytes:
    """Flip the first byte of a committed chunk's data in place (bit rot: the length stays, the CRC and the
    digest no longer match); returns the chunk's digest."""
    digest, path, offset, _ = record_of(data_dir, digest)
    fd = os.open(path, os.O_RDWR)
    try:
        first = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([first[0] ^ 0xFF]), offset)
    finally:
        os.close(fd)
    return digest
