"""Calling the user app's async services from WsgiDAV's worker threads.

WsgiDAV is a WSGI application: a2wsgi runs each request in a thread, while the services (leader client,
chunk reader, 2PC writer) live on the event loop of the server. :class:`LoopBridge` runs a coroutine on
that loop and waits for it; :class:`ReadStream` and :class:`WriteStream` are the file-like objects
WsgiDAV reads a GET from and writes a PUT into, moving one block at a time between the thread and the
loop, so no file is ever held whole (a PUT waits for the writer to take each block: backpressure).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Blocks a PUT may have queued for the writer: the thread waits beyond that.
WRITE_QUEUE_BLOCKS = 4


class LoopBridge:
    """Runs coroutines on ``loop`` (the server's) from another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """``await coro`` on the loop; its result, or its exception raised here."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class ReadStream:
    """A read-only, seekable file-like over ``open_at(offset)``, an async iterator of the content's blocks
    from byte ``offset`` on. Opened lazily, so a ``seek`` before the first ``read`` (WsgiDAV's Range)
    starts the stream there; a later ``seek`` starts it again."""

    def __init__(self, bridge: LoopBridge, open_at: Callable[[int], AsyncIterator[bytes]]) -> None:
        self.bridge = bridge
        self.open_at = open_at
        self.offset = 0
        self._blocks: AsyncIterator[bytes] | None = None
        self._left = b""

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset < 0:
            raise OSError("ReadStream seeks only to an absolute offset")
        if offset != self.offset or self._blocks is not None:
            self._drop()
            self.offset = offset
        return offset

    def tell(self) -> int:
        return self.offset

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if not self._left:
                if self._blocks is None:
                    self._blocks = self.open_at(self.offset)
                self._left = self.bridge.run(_next(self._blocks))
                if not self._left:
                    break
            take = self._left if size < 0 else self._left[: size - len(out)]
            out += take
            self._left = self._left[len(take):]
        self.offset += len(out)
        return bytes(out)

    def _drop(self) -> None:
        if self._blocks is not None and hasattr(self._blocks, "aclose"):
            self.bridge.run(self._blocks.aclose())
        self._blocks, self._left = None, b""

    def close(self) -> None:
        self._drop()


async def _next(blocks: AsyncIterator[bytes]) -> bytes:
    try:
        return await anext(blocks)
    except StopAsyncIteration:
        return b""


class WriteStream:
    """A write-only file-like whose blocks feed ``write(blocks)``, a coroutine (the 2PC writer) started on
    the loop at once and given an async iterator of them. ``close()`` ends the body and waits for the
    write; ``abort()`` cancels it (the writer aborts its transaction: nothing is stored). ``result`` is
    the write's result after ``close``; its exception is raised by ``write``/``close``."""

    def __init__(self, bridge: LoopBridge, write: Callable[[AsyncIterator[bytes]], Awaitable[T]]) -> None:
        self.bridge = bridge
        self.result: Any = None
        self._closed = False

        async def start() -> tuple[asyncio.Queue, asyncio.Task]:
            queue: asyncio.Queue = asyncio.Queue(maxsize=WRITE_QUEUE_BLOCKS)
            return queue, asyncio.ensure_future(write(_drain(queue)))

        self._queue, self._task = bridge.run(start())

    def write(self, data: bytes) -> int:
        if data:
            self.bridge.run(self._put(bytes(data)))
        return len(data)

    async def _put(self, item: bytes | None) -> None:
        """Queue ``item`` unless the write ended first (then raise what it raised)."""
        put = asyncio.ensure_future(self._queue.put(item))
        await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            await self._task  # raises the write's error
            raise OSError("the write ended before its body did")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def finish():
            await self._put(None)
            return await self._task

        self.result = self.bridge.run(finish())

    def abort(self) -> None:
        """Cancel the write (a body that broke off): the writer aborts, nothing is stored."""
        self._closed = True

        async def cancel():
            self._task.cancel()
            try:
                await self._task
            except BaseException:  # the cancellation, or what the write raised: either way nothing commits
                pass

        self.bridge.run(cancel())


async def _drain(queue: asyncio.Queue) -> AsyncIterator[bytes]:
    while True:
        block = await queue.get()
        if block is None:
            return
        yield block
