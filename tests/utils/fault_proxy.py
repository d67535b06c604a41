"""A TCP proxy that injects faults on a real connection: delay, cut or black-hole a link.

After asyncpg's test base (``_testbase/fuzzer.py``): a small asyncio proxy on 127.0.0.1 in front of one
upstream port, run on an event loop of its own in a background thread so synchronous tests can steer it
while real service processes talk through it. A chunk server that advertises the proxy's URL is reached by
every peer (user apps, other chunk servers, the leader's health checks) through the proxy, so its link to
the rest of the cluster can be made slow, cut or silent without touching the process itself.

* :meth:`FaultProxy.delay`: every block of bytes, in both directions, waits that long before it is passed on.
* :meth:`FaultProxy.blackhole`: bytes are read and dropped, nothing is answered and nothing is closed, as a
  network partition looks to TCP (the peer sees its request time out).
* :meth:`FaultProxy.cut`: every open connection is reset, and new ones are reset as soon as they arrive.
* :meth:`FaultProxy.heal`: back to plain forwarding.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Literal

Mode = Literal["forward", "blackhole", "cut"]
BLOCK = 65536  # bytes read per step


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port``. Use as a context manager, or call
    :meth:`start` and :meth:`stop`."""

    def __init__(self, upstream_port: int, port: int) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.mode: Mode = "forward"
        self.delay_seconds = 0.0
        self.connections = 0  # accepted since start
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ control (from the test's thread)

    def start(self) -> "FaultProxy":
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def delay(self, seconds: float) -> None:
        """Pass every block on after ``seconds`` (both directions), on open and new connections."""
        self.mode, self.delay_seconds = "forward", seconds

    def blackhole(self) -> None:
        """Swallow everything from now on: no byte passes, no connection closes."""
        self.mode = "blackhole"

    def cut(self) -> None:
        """Reset every open connection now, and every new one as it arrives."""
        self.mode = "cut"
        self._run(self._reset_all())

    def heal(self) -> None:
        """Plain forwarding again for new connections (black-holed ones stay dead, as after a real
        partition the peers' timeouts have given up on them)."""
        self.mode, self.delay_seconds = "forward", 0.0

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ------------------------------------------------------------ the proxy (on its own loop)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()

    async def _reset_all(self) -> None:
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "cut":
            _reset(client_w)
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(client_w)
            return
        self._open.update((client_w, up_w))
        await asyncio.gather(self._pump(client_r, up_w), self._pump(up_r, client_w), return_exceptions=True)
        for w in (client_w, up_w):
            self._open.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            block = await reader.read(BLOCK)
            if not block:
                break
            if self.mode == "blackhole":
                continue
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            if self.mode != "forward":
                continue
            writer.write(block)
            await writer.drain()
        if self.mode == "forward" and writer.can_write_eof():
            writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped link or a killed peer looks."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.close()
