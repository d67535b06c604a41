"""Splitting a byte stream into fixed-size chunks (reference design: "User chunks data into 1KB
segments, obtaining their hashes").

Work happens per *piece*: a run of whole chunks (``piece_size`` rounded down to a multiple of the chunk
size, at least one chunk) held as one ``bytes`` object; chunks are ``memoryview`` slices of it, so a
1 MiB piece of 1 KB chunks is one allocation, not a thousand.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import AsyncIterator


@dataclass
class Piece:
    """``data`` starting at byte ``offset`` of the file, cut into ``chunks`` of ``(digest, view)``."""

    offset: int
    data: bytes
    chunks: list[tuple[bytes, memoryview]]


def split_piece(data: bytes, chunk_size: int, offset: int = 0) -> Piece:
    """Cut ``data`` into ``chunk_size``-byte chunks (the last may be shorter) and hash each (SHA-256)."""
    mv = memoryview(data)
    sha = hashlib.sha256
    chunks = [(sha(mv[i : i + chunk_size]).digest(), mv[i : i + chunk_size]) for i in range(0, len(mv), chunk_size)]
    return Piece(offset, data, chunks)


async def pieces(stream: AsyncIterator[bytes], chunk_size: int, piece_size: int) -> AsyncIterator[Piece]:
    """Regroup an arbitrary byte stream (an HTTP request body) into :class:`Piece` objects of
    ``piece_size`` bytes rounded to whole chunks; only the final piece may be shorter. Memory held:
    at most one piece plus one incoming block."""
    target = max(chunk_size, piece_size - piece_size % chunk_size)
    buf = bytearray()
    offset = 0
    async for block in stream:
        if not block:
            continue
        buf += block
        while len(buf) >= target:
            data = bytes(buf[:target])
            del buf[:target]
            yield split_piece(data, chunk_size, offset)
            offset += target
    if buf:
        yield split_piece(bytes(buf), chunk_size, offset)


async def read_ahead(stream: AsyncIterator[bytes], limit: int) -> tuple[int | None, AsyncIterator[bytes]]:
    """Buffer ``stream`` until more than ``limit`` bytes have arrived or it ends. Returns the stream's
    size in bytes when it ended within ``limit`` (else ``None``) and an iterator over the whole stream,
    buffered blocks first. Memory held: at most ``limit`` bytes plus one block."""
    held: list[bytes] = []
    total = 0
    ended = True
    async for block in stream:
        held.append(block)
        total += len(block)
        if total > limit:
            ended = False
            break

    async def replay() -> AsyncIterator[bytes]:
        for block in held:
            yield block
        held.clear()
        if not ended:
            async for block in stream:
                yield block

    return (total if ended else None), replay()
