"""Bounded request bodies: every endpoint that takes a binary or JSON body reads it through here."""

from __future__ import annotations

from starlette.requests import Request

from shared.errors import PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes.

    Raises :class:`PayloadTooLarge` (413) when the announced ``Content-Length`` exceeds ``limit``, before
    anything is read, and when the body grows past ``limit`` while being read (no length, or a false one),
    so an oversized body is never held whole in memory.
    """
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise PayloadTooLarge(f"body of {announced} bytes exceeds the limit of {limit} bytes")
    blocks, size = [], 0
    async for block in request.stream():
        size += len(block)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        blocks.append(block)
    return b"".join(blocks)
