"""Bounds on a request's head (request line and headers), which uvicorn leaves open with httptools.

uvicorn's httptools protocol accepts headers of any size (20 MB of them were taken in a test, growing the
process by as much) and has no timer between a connection's first byte and the end of its headers: a
client that trickles its headers (slowloris), or connects and sends nothing, holds the connection until
it gives up. :class:`BoundedHttpToolsProtocol` adds both bounds to uvicorn's own protocol:

* **Size**: a head over ``MAX_HEADER_BYTES`` (64 KiB, twice nginx's default ``large_client_header_buffers``
  of 4 x 8 KiB; a presigned S3 URL is about 1-2 KiB) is answered ``431`` and the connection closed.
* **Time**: a head not complete ``HEADER_TIMEOUT`` seconds (default 20, like Apache's
  ``RequestReadTimeout header=20``) after the connection opened, or after its first byte on a kept-alive
  connection, is answered ``408`` and the connection closed. (An idle kept-alive connection is closed
  by uvicorn's own keep-alive timeout.)

The body is bounded by the app (``shared/bodies.py``); the number of connections by uvicorn's
``limit_concurrency`` (``MAX_CONNECTIONS``). It subclasses uvicorn internals
(``uvicorn.protocols.http.httptools_impl``), so ``pyproject.toml`` bounds uvicorn's version and
``tests/test_request_limits.py`` checks both bounds on real servers.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.response_writes import CoalescingTransport

MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 20.0  # seconds


def _plain_answer(status: str, message: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(message) + 13}\r\n\r\n" + '{"error": "' + message + '"}').encode()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit (431) and a deadline (408) on each request head:
    ``header_timeout`` seconds (see :func:`bounded_protocol`)."""

    header_timeout = DEFAULT_HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # one send per small response (shared/response_writes.py)
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
        self._head_bytes = 0
        self._head_too_large = False
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_deadline_passed)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_plain_answer("408 Request Timeout", "request headers not received in time"))
            self.transport.close()

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEADER_BYTES:
            self._head_too_large = True
            raise ValueError("request head too large")  # httptools stops parsing; send_400_response answers

    # -- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_deadline is None:
            self._arm_head_deadline()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self.transport.write(_plain_answer("431 Request Header Fields Too Large",
                                               f"request line and headers exceed {MAX_HEADER_BYTES} bytes"))
            self.transport.close()
            return
        super().send_400_response(msg)


_NAMED_PREFIX = "BoundedHttpToolsProtocol_"
_named: dict[str, type[BoundedHttpToolsProtocol]] = {}


def bounded_protocol(header_timeout: float) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to hand uvicorn (``http=``), with a head deadline of ``header_timeout`` s.

    The class is named after its timeout and found again by that name (the module's ``__getattr__``), so
    it pickles by reference: with ``WORKERS`` > 1 uvicorn sends its config, this class included, to
    worker processes it starts with ``spawn``."""
    return _protocol_named(_NAMED_PREFIX + repr(float(header_timeout)).replace(".", "_"))  # "." would nest


def _protocol_named(name: str) -> type[BoundedHttpToolsProtocol]:
    cls = _named.get(name)
    if cls is None:
        timeout = float(name[len(_NAMED_PREFIX):].replace("_", "."))
        cls = _named[name] = type(name, (BoundedHttpToolsProtocol,), {
            "header_timeout": timeout, "__module__": __name__, "__qualname__": name})
    return cls


def __getattr__(name: str):
    if name.startswith(_NAMED_PREFIX):  # unpickling in a worker process
        try:
            return _protocol_named(name)
        except ValueError:
            pass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
