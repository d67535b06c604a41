"""The two-phase commit write path (reference design, "Two-Phase Commit Process"; GFS §3.1 splits data
flow from control flow the same way).

1. **prepare chunks**: every chunk goes *pending* under the transaction id to each server of its
   preference list, batched per server, servers in parallel, pieces pipelined;
2. **prepare version**: the leader records the name → chunk list mapping as *pending*;
3. **commit chunks** on every server that took pending data;
4. **commit version** on the leader: only now is the version visible.

A failure before (4) returns an error and leaves nothing visible; pending leftovers are aborted here on
a best-effort basis and otherwise swept after ``PENDING_TTL``. A small file (one piece) runs (1) and (2)
concurrently: (2) does not depend on (1)'s result, only (3) must wait for both.

When a replica fails during (1) its chunks are handed to the next healthy server clockwise that does not
hold them yet (a sloppy quorum, Dynamo §4.6), so a write still gets ``replication_factor`` copies while a
dead server has not yet been noticed by the leader; reads look that far along the ring.

**Write quorum** (Garage's write quorum, HDFS's minimum replication): when fewer than
``replication_factor`` servers can take a chunk (one is down, or fails during the write), the write
still succeeds once every chunk has ``MIN_WRITE_REPLICAS`` durable copies (default ``min(2, RF)``, the
leader's policy); anti-entropy makes the missing copies once servers are back or added. The answer's
``replicas`` is the fewest copies of any chunk, and such writes are counted
(``ringfs_user_under_replicated_writes_total``). Below the quorum the write fails with 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import AsyncIterator

from shared.errors import Gone, RingFSError, Unavailable
from shared.protocol.frames import DIGEST_SIZE
from shared.protocol.models import PreparedVersion, VersionPrepare
from shared.ring import ServerInfo, ServerState, chunk_position
from shared.rpc.ring_cache import Placement, RingCache
from user_app.chunker import Piece, pieces, read_ahead
from user_app.metrics import BYTES_IN, UNDER_REPLICATED_WRITES, WRITES
from user_app.phases import PhaseCalls

log = logging.getLogger("ringfs.writer")

# A Content-Length is only a hint from the client: preallocate at most this many digests (32 MiB, a
# 1 GiB file of 1 KB chunks) and grow past it, so a lying header cannot make us allocate a huge buffer.
MAX_PREALLOCATED_DIGESTS = 1 << 20


@dataclass
class WriteResult:
    """What ``PUT /files/{path}`` answers (201): ``replicas`` is the fewest durable copies of any chunk
    (the replication factor when every chunk got all of its copies). ``etag`` (the S3 ETag, the MD5 of
    the content in hex) is kept apart: the user API's answer and ETag are the SHA-256."""

    path: str
    version: int
    size: int
    sha256: str
    chunks: int
    replicas: int
    etag: str = field(default="", repr=False)

    def user_api_body(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "etag"}


@dataclass
class ObjectMetadata:
    """What a version keeps beside its bytes for the S3 API: the ``Content-Type`` the client sent, its
    ``x-amz-meta-*`` pairs and its object headers (Cache-Control, ..., the checksum) as JSON object texts
    (validated by the leader), each None when not sent, and ``etag``, an S3 ETag to record instead of the
    content's MD5 (a multipart upload's ``<md5>-<parts>``).

    The writer reads it when it prepares the version, after the body ended: a caller may still complete it
    from what only the end of the body tells (the checksum of an aws-chunked trailer)."""

    content_type: str | None = None
    user_metadata: str | None = None
    etag: str | None = None
    object_headers: str | None = None


@dataclass
class _Txn:
    txn_id: str
    placement: Placement
    replication: int
    chunk_size: int
    # chunks each server acknowledged as newly pending; commit must confirm at least this many
    pending_by_server: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    urls: dict[str, str] = field(default_factory=dict)
    # per chunk (by index in the file): how many servers hold it, and per server which chunks it holds
    # (one byte per chunk), so a server lost in phase 3 takes exactly its copies off the count
    copies: bytearray = field(default_factory=bytearray)
    held: dict[str, bytearray] = field(default_factory=dict)

    def note_placed(self, sid: str, index: int) -> None:
        for arr in (self.copies, self.held.setdefault(sid, bytearray())):
            if len(arr) <= index:
                arr.extend(bytes(index + 1 - len(arr)))
        self.copies[index] += 1
        self.held[sid][index] = 1

    def lose(self, sid: str) -> None:
        """``sid`` failed to commit: its copies do not count."""
        for index, holds in enumerate(self.held.pop(sid, b"")):
            if holds:
                self.copies[index] -= 1

    def fewest_copies(self) -> int:
        return min(self.copies) if self.copies else self.replication


class WriteCoordinator:
    """Runs the 2PC write of one file at a time per call; shared by all requests of a user app."""

    def __init__(self, phases: PhaseCalls, rings: RingCache, piece_size: int, pieces_in_flight: int,
                 crash_after_phase: int = 0) -> None:
        self.phases = phases
        self.rings = rings
        self.piece_size = piece_size
        self.pieces_in_flight = pieces_in_flight
        self.crash_after_phase = crash_after_phase

    def _crash_point(self, phase: int) -> None:
        """Test-only fault injection (``CRASH_AFTER_PHASE``): die like ``kill -9`` after ``phase``."""
        if self.crash_after_phase == phase:
            log.warning("CRASH_AFTER_PHASE=%d: exiting", phase)
            os._exit(70)

    async def write(self, path: str, body: AsyncIterator[bytes], *, chunk_size: int | None = None,
                    create_only: bool = False, size_hint: int | None = None,
                    if_match: str | None = None, metadata: ObjectMetadata | None = None,
                    part: tuple[str, int] | None = None) -> WriteResult:
        """Store ``body`` as the next version of ``path``.

        ``size_hint`` (the request's ``Content-Length``, bytes) picks the chunk size by the leader's
        chunk-size policy (``shared/chunk_size.py``; without it up to the policy's threshold is read
        first) and lets the chunk list be allocated once: 32 bytes per chunk is the only part of the
        write's memory that grows with the file. ``chunk_size`` (``?chunk_size=``) overrides the policy.

        Raises :class:`Unavailable` (503) when fewer healthy servers than the replication factor can be
        reached or the leader is down, :class:`PreconditionFailed` (412) for ``create_only`` on an
        existing path, :class:`BadRequest` for a chunk size outside the leader's bounds.

        ``if_match`` (``"*"`` or comma-separated SHA-256s, RFC 9110 §13.1.1) makes the write conditional
        on the path's live version; the leader checks it at prepare and again, atomically, at commit:
        :class:`PreconditionFailed` (412) when it does not match. A write that would make a name a file
        and a folder is a :class:`Conflict` (409).

        Every version records the MD5 of its content as its S3 ETag, and ``metadata`` when given. An
        exception raised by ``body`` (a body that fails its signature or checksum) aborts the write.
        ``part`` (upload id, part number) writes part of a multipart upload to ``path`` instead of a
        version (``user_app/s3/multipart.py``): the leader records it as a part, not visible as a file.
        """
        placement = await self.rings.get()
        if chunk_size is None and size_hint is None and placement.policy_threshold:
            # no Content-Length: the policy needs the size, so hold up to its threshold to learn it
            size_hint, body = await read_ahead(body, placement.policy_threshold)
        chunk_size = placement.chunk_size_for_upload(chunk_size, size_hint)
        txn = _Txn(uuid.uuid4().hex, placement, placement.replication_factor, chunk_size)
        whole = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)  # the S3 ETag of a single upload
        meta = metadata or ObjectMetadata()
        digests = _DigestList(size_hint, chunk_size)
        size = 0
        in_flight: deque[asyncio.Task] = deque()
        version_task: asyncio.Task | None = None
        try:
            stream = pieces(body, chunk_size, self.piece_size)
            first = await anext(stream, None)
            piece_iter = _chain_first(first, stream)
            async for piece in piece_iter:
                whole.update(piece.data)
                md5.update(piece.data)
                size += len(piece.data)
                digests.extend(piece.chunks)
                in_flight.append(asyncio.create_task(self._prepare_piece(txn, piece)))
                if len(in_flight) >= self.pieces_in_flight:
                    await in_flight.popleft()
                if size == len(piece.data) and piece_iter.exhausted:
                    # one-piece file: phase 2 overlaps phase 1
                    version_task = asyncio.create_task(self._prepare_version(txn, path, size, whole.hexdigest(),
                                                                             chunk_size, create_only, digests.view(),
                                                                             if_match, md5.hexdigest(), meta, part))
            if first is None:  # empty file: no chunks, no phase 1
                version_task = asyncio.create_task(self._prepare_version(txn, path, 0, whole.hexdigest(), chunk_size,
                                                                         create_only, b"", if_match, md5.hexdigest(),
                                                                         meta, part))
            while in_flight:
                await in_flight.popleft()
            self._crash_point(1)
            if version_task is None:
                version_task = asyncio.create_task(self._prepare_version(txn, path, size, whole.hexdigest(),
                                                                         chunk_size, create_only, digests.view(),
                                                                         if_match, md5.hexdigest(), meta, part))
            prepared = await version_task
            self._crash_point(2)
            await self._commit_chunks(txn)
            self._crash_point(3)
        except BaseException:
            for task in [*in_flight, *([version_task] if version_task else [])]:
                task.cancel()
            WRITES.labels("failed").inc()
            await asyncio.shield(self._abort(txn, leader=version_task is not None))
            raise
        try:
            info = await self.phases.commit_version(txn.txn_id)
        except Gone as exc:  # the leader swept the pending version: the upload took longer than PENDING_TTL
            WRITES.labels("failed").inc()
            raise Unavailable(f"the write of {path!r} expired before it could commit ({exc.message}); retry it") from exc
        except BaseException:
            WRITES.labels("failed").inc()
            raise
        WRITES.labels("committed").inc()
        BYTES_IN.inc(size)
        replicas = txn.fewest_copies()
        if replicas < txn.replication:
            UNDER_REPLICATED_WRITES.inc()
            log.warning("committed %s version %s with %d of %d copies of some chunks; anti-entropy makes the "
                        "rest", path, prepared.version, replicas, txn.replication)
        log.info("committed %s version %s: %d bytes, %d chunks, txn %s", path, prepared.version, size,
                 len(digests), txn.txn_id)
        return WriteResult(path=info.path, version=prepared.version, size=size, sha256=whole.hexdigest(),
                           chunks=len(digests), replicas=replicas, etag=meta.etag or md5.hexdigest())

    async def _prepare_version(self, txn: _Txn, path: str, size: int, sha: str, chunk_size: int,
                               create_only: bool, digests: bytes | memoryview, if_match: str | None,
                               etag: str, meta: ObjectMetadata, part: tuple[str, int] | None) -> PreparedVersion:
        upload_id, part_number = part if part is not None else (None, None)
        prepare = VersionPrepare(txn_id=txn.txn_id, path=path, size=size, sha256=sha, chunk_size=chunk_size,
                                 replication=txn.replication, create_only=create_only, if_match=if_match,
                                 etag=meta.etag or etag, content_type=meta.content_type,
                                 user_metadata=meta.user_metadata, object_headers=meta.object_headers,
                                 upload_id=upload_id, part_number=part_number)
        return await self.phases.prepare_version(prepare, digests)

    async def _prepare_piece(self, txn: _Txn, piece: Piece) -> None:
        """Phase 1 for one piece: every chunk pending on ``replication`` distinct healthy servers, or on
        at least ``min_write_replicas`` of them when no more can take it. Raises :class:`Unavailable`
        below that."""
        ring = txn.placement.ring
        rf, quorum = txn.replication, txn.placement.min_write_replicas
        first_index = piece.offset // txn.chunk_size
        failed: set[str] = set()
        # for each chunk: the servers holding it pending so far, and its healthy candidates in ring order
        placed: list[set[str]] = [set() for _ in piece.chunks]
        candidates: list[list[ServerInfo]] = []
        for digest, _ in piece.chunks:
            cands = [s for s in ring.walk_ring(chunk_position(digest)) if s.state == ServerState.HEALTHY]
            if len(cands) < quorum:
                raise Unavailable(f"only {len(cands)} healthy chunk servers: a write needs {quorum} "
                                  f"(MIN_WRITE_REPLICAS) of its {rf} copies")
            candidates.append(cands)
        while True:
            batches: dict[str, list[int]] = defaultdict(list)
            for i, cands in enumerate(candidates):
                need = rf - len(placed[i])
                for server in cands:
                    if need == 0:
                        break
                    if server.server_id in failed or server.server_id in placed[i]:
                        continue
                    batches[server.server_id].append(i)
                    need -= 1
                if need and len(placed[i]) + (rf - len(placed[i]) - need) < quorum:
                    raise Unavailable(f"cannot place chunk {piece.chunks[i][0].hex()} on {quorum} servers "
                                      f"(MIN_WRITE_REPLICAS): {len(failed)} failed during the write")
            if not batches:
                return
            sids = list(batches)
            results = await asyncio.gather(
                *(self.phases.prepare_chunks(ring.servers[sid].url, txn.txn_id,
                                             [piece.chunks[i] for i in batches[sid]]) for sid in sids),
                return_exceptions=True)
            for sid, result in zip(sids, results):
                if isinstance(result, Unavailable):
                    log.warning("prepare on %s failed (%s); handing its chunks off", sid, result)
                    failed.add(sid)
                    continue
                if isinstance(result, BaseException):
                    raise result
                txn.urls[sid] = ring.servers[sid].url
                txn.pending_by_server[sid] += result.stored
                for i in batches[sid]:
                    placed[i].add(sid)
                    txn.note_placed(sid, first_index + i)

    async def _commit_chunks(self, txn: _Txn) -> None:
        """Phase 3: commit on every server that took part. A server that fails, or confirms fewer chunks
        than it took, holds none of them; every chunk must still have ``min_write_replicas`` copies, or
        :class:`Unavailable` is raised."""
        sids = list(txn.urls)
        results = await asyncio.gather(*(self.phases.commit_chunks(txn.urls[s], txn.txn_id) for s in sids),
                                       return_exceptions=True)
        lost = []
        for sid, result in zip(sids, results):
            if isinstance(result, BaseException):
                lost.append(f"commit on chunk server {txn.urls[sid]} failed: {result}")
            elif result < txn.pending_by_server[sid]:
                lost.append(f"chunk server {txn.urls[sid]} lost pending chunks of transaction {txn.txn_id}")
            else:
                continue
            txn.lose(sid)
        quorum = txn.placement.min_write_replicas
        if lost and txn.fewest_copies() < quorum:
            raise Unavailable(f"{'; '.join(lost)}: some chunks have fewer than {quorum} (MIN_WRITE_REPLICAS) copies")
        for reason in lost:
            log.warning("%s; the write keeps its other copies", reason)

    async def _abort(self, txn: _Txn, leader: bool) -> None:
        """Best-effort abort of everything the txn left; the sweepers clear what this misses."""
        calls = [self.phases.chunks.rpc_abort(url, [txn.txn_id]) for url in txn.urls.values()]
        if leader:
            calls.append(self.phases.leader.rpc_abort_version(txn.txn_id))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, RingFSError):
                log.warning("abort of %s: %r", txn.txn_id, r)


class _chain_first:
    """Async iterator over ``first`` then ``rest`` that knows when the stream is exhausted, so the
    coordinator can tell a one-piece file while handling its only piece."""

    def __init__(self, first: Piece | None, rest: AsyncIterator[Piece]) -> None:
        self._next = first
        self._rest = rest
        self.exhausted = first is None

    def __aiter__(self) -> "_chain_first":
        return self

    async def __anext__(self) -> Piece:
        if self._next is None:
            raise StopAsyncIteration
        current = self._next
        self._next = await anext(self._rest, None)
        self.exhausted = self._next is None
        return current


class _DigestList:
    """The ordered chunk digests of one upload, packed: 32 bytes per chunk, allocated once when the
    size is known in advance (no doubling, no copy when it is sent to the leader)."""

    def __init__(self, size_hint: int | None, chunk_size: int) -> None:
        n = min(-(-size_hint // chunk_size), MAX_PREALLOCATED_DIGESTS) if size_hint else 0
        self._buf = bytearray(n * DIGEST_SIZE)
        self._used = 0

    def extend(self, chunks: list[tuple[bytes, memoryview]]) -> None:
        need = self._used + len(chunks) * DIGEST_SIZE
        if need > len(self._buf):  # the body was longer than announced, or no size was given
            self._buf.extend(bytes(max(need - len(self._buf), len(self._buf))))
        pos = self._used
        for digest, _ in chunks:
            self._buf[pos : pos + DIGEST_SIZE] = digest
            pos += DIGEST_SIZE
        self._used = pos

    def view(self) -> memoryview:
        return memoryview(self._buf)[: self._used]

    def __len__(self) -> int:
        return self._used // DIGEST_SIZE
