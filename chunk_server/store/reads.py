"""The chunk store's serving reads (``/chunks/read``, ``/chunks/exists``, ``GET /chunks/{id}``).

Kept apart from txns.py: they never write, they run beside the writer (WAL: on the event loop when small,
else on the reader threads, connections.py), and they read chunks whichever way they were stored (prepare /
commit in txns.py, replicate in maintenance.py).
"""

from __future__ import annotations

from typing import Sequence

from shared.protocol.frames import ChunkPresence

from .connections import Connections
from .schema import STATE_OF, select_rows


class Reads(Connections):
    """read_many / presence_many: batched lookups by digest, any number of digests."""

    async def read_many(self, digests: Sequence[bytes]) -> list[bytes | None]:
        """The data of each committed chunk, ``None`` where the chunk is absent or only pending; one entry
        per digest, in order."""
        found = await self._read_small(lambda conn: dict(select_rows(
            conn, "SELECT c.digest, c.data FROM chunks c JOIN chunk_state s ON s.id = c.id "
                  "WHERE s.state = 2 AND c.digest IN ({})", digests)), len(digests))
        return [found.get(d) for d in digests]

    async def presence_many(self, digests: Sequence[bytes]) -> bytes:
        """One :class:`ChunkPresence` byte per digest, in order (the ``state`` column's value is the
        presence byte)."""
        states = await self._read_small(lambda conn: {d: st for d, _, st in select_rows(conn, STATE_OF, digests)},
                                        len(digests))
        absent = ChunkPresence.ABSENT
        return bytes(states.get(d, absent) for d in digests)
