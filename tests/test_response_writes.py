"""shared/response_writes.py: the writes of one event-loop turn leave as one send, in order, on a real
socket; large writes go out at once; close sends what is held."""

from __future__ import annotations

import asyncio
import socket

from shared.response_writes import DIRECT_WRITE_BYTES, CoalescingTransport


class Counting:
    """A real transport, with a count of the writes handed to it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport, self.writes = transport, []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name):
        return getattr(self.transport, name)


async def _pair():
    a, b = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
    reader, writer = await asyncio.open_connection(sock=b)  # the writer is kept: dropping it closes b
    counting = Counting(transport)
    return loop, counting, CoalescingTransport(counting, loop), reader, writer


def test_writes_of_one_turn_are_one_send_in_order():
    async def main():
        loop, counting, wrapped, reader, _writer = await _pair()
        wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        wrapped.write(b"ok")
        assert counting.writes == []  # held until the end of the turn
        await asyncio.sleep(0)
        assert counting.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
        big = b"x" * DIRECT_WRITE_BYTES
        wrapped.write(b"head")
        wrapped.write(big)  # goes at once, after what was held
        assert counting.writes[1:] == [b"head", big]
        wrapped.write(b"tail")
        wrapped.close()  # sends what is held, then closes
        data = await reader.read()
        assert data == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" + b"head" + big + b"tail"

    asyncio.run(main())
