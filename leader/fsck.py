"""fsck: how many intact copies every chunk of every live and trashed version has, asked live.

docs/failure-handling.md, "fsck". Every distinct chunk of every committed or deleted version is looked
up with ``POST /chunks/exists`` on its read candidates (:meth:`shared.ring.Ring.read_candidates`: the
owners plus the next ``EXTRA_READ_CANDIDATES``) on the leader's current ring, batched per server (one request
per server per ``EXISTS_BATCH`` digests, servers in parallel). Only a ring member answering
``COMMITTED`` counts as a copy; a server that does not answer holds nothing.

A chunk is **lost** with no copy, **under-replicated** with 1 .. RF-1 copies (so the two counts are
disjoint), and has a **misplaced** copy when one sits on a server outside both its owners and its
preference list (anti-entropy hands those off in time; they do not make the report fail).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from sqlalchemy import select

from leader.models import FileVersion as FV
from leader.store import Store
from leader.version_sql import COMMITTED, DELETED
from shared.errors import RingFSError
from shared.protocol.frames import DIGEST_SIZE, ChunkPresence
from shared.ring import EXTRA_READ_CANDIDATES, Ring
from shared.rpc.chunk_client import ChunkClient

log = logging.getLogger("ringfs.leader.fsck")
# Digests per ``/chunks/exists`` request: 256 KiB of body, well under the chunk server's 65536 limit.
EXISTS_BATCH = 8192
# Seconds one exists request may take: a batch is an indexed lookup per digest, so this only trips on a
# hung server, which then counts as holding nothing.
EXISTS_TIMEOUT = 30.0
# Chunks placed between yields to the event loop, so a big fsck does not starve the health checks.
YIELD_EVERY = 4096


async def _load_versions(store: Store) -> list[tuple[str, int, str, bytes]]:
    """``(path, version, state, packed digests)`` of every committed and deleted version."""
    q = (select(FV.path, FV.version, FV.state, FV.chunk_digests)
         .where(FV.state.in_((COMMITTED, DELETED))).order_by(FV.path, FV.version))
    async with store.read() as session:
        return [(p, v, s, bytes(d)) for p, v, s, d in (await session.execute(q)).all()]


async def _presence(chunks: ChunkClient, url: str, digests: list[bytes]) -> bytes | None:
    """One ``ChunkPresence`` byte per digest from ``url``, or None when it does not answer well."""
    try:
        return await chunks.rpc_exists(url, digests, timeout=EXISTS_TIMEOUT)
    except RingFSError as exc:
        log.warning("fsck: /chunks/exists on %s failed: %s", url, exc)
        return None


async def run_fsck(store: Store, ring: Ring, chunks: ChunkClient, replication_factor: int) -> dict:
    """Check every chunk of every live and trashed version against ``ring``; return the report dict
    ``{"ok", "files", "chunks", "under_replicated", "lost", "misplaced", "replication_factor", "epoch",
    "unreachable", "problems": [{"path", "version", "state", "under_replicated", "lost", "misplaced"}]}``.
    ``files`` counts versions checked, the chunk totals count distinct chunks and ``problems`` lists only
    versions with at least one under-replicated, lost or misplaced chunk. ``ok`` is false when anything
    is under-replicated or lost."""
    rf = replication_factor
    versions = await _load_versions(store)
    index: dict[bytes, int] = {}  # digest -> chunk number, in first-seen order
    file_chunks: list[set[int]] = []
    for _, _, _, blob in versions:
        file_chunks.append({index.setdefault(blob[i : i + DIGEST_SIZE], len(index))
                            for i in range(0, len(blob), DIGEST_SIZE)})
    digests = list(index)

    # server_id -> [(chunk number, whether this server is one of the chunk's owners or preference list)]
    asks: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for n, d in enumerate(digests):
        owners = {s.server_id for s in ring.owners(d, rf)}
        expected = owners | {s.server_id for s in ring.preference_list(d, rf)}
        for s in ring.read_candidates(d, rf, extra=EXTRA_READ_CANDIDATES):
            asks[s.server_id].append((n, s.server_id in expected))
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)

    copies = [0] * len(digests)
    misplaced = [False] * len(digests)
    unreachable: set[str] = set()

    async def ask_server(server_id: str) -> None:
        url = ring.servers[server_id].url
        wanted = asks[server_id]
        for start in range(0, len(wanted), EXISTS_BATCH):
            batch = wanted[start : start + EXISTS_BATCH]
            answer = await _presence(chunks, url, [digests[n] for n, _ in batch])
            if answer is None:
                unreachable.add(url)  # holds nothing as far as this report goes
                continue
            for (n, is_expected), presence in zip(batch, answer):
                if presence == ChunkPresence.COMMITTED:
                    copies[n] += 1
                    if not is_expected:
                        misplaced[n] = True

    await asyncio.gather(*(ask_server(sid) for sid in asks))

    problems = []
    for k, ((path, version, state, _), chunks) in enumerate(zip(versions, file_chunks)):
        if k % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        under = sum(1 for n in chunks if 0 < copies[n] < rf)
        lost = sum(1 for n in chunks if copies[n] == 0)
        moved = sum(1 for n in chunks if misplaced[n])
        if under or lost or moved:
            problems.append({"path": path, "version": version, "state": state, "under_replicated": under,
                             "lost": lost, "misplaced": moved})
    under_total = sum(1 for c in copies if 0 < c < rf)
    lost_total = sum(1 for c in copies if c == 0)
    return {
        "ok": under_total == 0 and lost_total == 0,
        "files": len(versions),
        "chunks": len(digests),
        "under_replicated": under_total,
        "lost": lost_total,
        "misplaced": sum(misplaced),
        "replication_factor": rf,
        "epoch": ring.epoch,
        "unreachable": sorted(unreachable),
        "problems": problems,
    }
