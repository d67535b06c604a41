"""The leader's half of chunk garbage collection: which of a chunk server's candidates no version
references (docs/failure-handling.md, "Garbage collection").

The referenced set is computed from SQL at the time of the request, never cached: a chunk server's GC
round relies on every version registered before the request being seen (the touch-time argument in the
design). Pending, committed and deleted (trashed) versions all reference their chunks, and so do the
parts of multipart uploads not yet completed or aborted (``leader/parts.py``).
"""

from __future__ import annotations

from sqlalchemy import select

from leader.models import FileVersion as FV
from leader.store import Store
from leader.version_sql import COMMITTED, DELETED, PART, PENDING
from shared.protocol.frames import DIGEST_SIZE

REFERENCING_STATES = (PENDING, COMMITTED, DELETED, PART)
# Rows fetched per round trip while scanning chunk lists: bounds memory whatever the table size.
SCAN_BATCH_ROWS = 2000


async def unreferenced(store: Store, candidates: list[bytes]) -> list[bytes]:
    """The ``candidates`` (32-byte digests) that no pending, committed or deleted version and no part of a
    live multipart upload references, in request order.

    One query streams the ``chunk_digests`` of every referencing row; each digest is tested against a
    Python set of the candidates (so memory is bounded by the request, not the table); the set shrinks as
    references are found and the scan stops early once every candidate is referenced.
    """
    if not candidates:
        return []
    remaining = set(candidates)
    q = (select(FV.chunk_digests).where(FV.state.in_(REFERENCING_STATES))
         .execution_options(yield_per=SCAN_BATCH_ROWS))
    async with store.read() as session:
        result = await session.stream_scalars(q)
        async for blob in result:
            blob = bytes(blob)
            remaining.difference_update([blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), DIGEST_SIZE)])
            if not remaining:
                await result.close()
                break
    return [d for d in candidates if d in remaining]
