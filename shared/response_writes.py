"""One ``send`` per small HTTP response instead of two.

uvicorn's httptools protocol writes a response's status line and headers (``http.response.start``) and
then its body (``http.response.body``) with two ``transport.write`` calls, and asyncio sends each at
once: two ``send`` system calls, two TCP segments, and on loopback the receiving process woken twice. For
the small answers of internal calls (a commit's JSON, a manifest) that was about a fifth of the leader's
CPU in a py-spy profile of small writes. :class:`CoalescingTransport` holds what is written during one
turn of the event loop and sends it as one write at the end of the turn (``loop.call_soon``). A write of
``DIRECT_WRITE_BYTES`` or more goes out at once, after whatever is held, so a large body is never
copied to be joined.

Used by :class:`shared.header_limits.BoundedHttpToolsProtocol`, i.e. by every RingFS server.
"""

from __future__ import annotations

import asyncio
from typing import Any

DIRECT_WRITE_BYTES = 64 * 1024


class CoalescingTransport:
    """Wraps an ``asyncio`` transport: ``write`` is deferred to the end of the loop turn and joined with
    the other writes of that turn; ``close`` sends what is held first, ``abort`` drops it. Every other
    attribute is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._flush_scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if len(data) >= DIRECT_WRITE_BYTES:
            self.flush()
            self._transport.write(data)
            return
        self._held.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is held now (one write)."""
        self._flush_scheduled = False
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
