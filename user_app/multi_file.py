"""Many small files in one request: ``POST /batch/write`` and ``POST /batch/read`` (README, "User API").

Copying a tree of thousands of 10 KiB files one request per file is dominated by per-request overhead:
an HTTP request to the user app per file, and on a read one leader manifest call and one chunk read per
file. A batch pays each of those once per batch instead:

* **write**: every file is still its own two-phase-commit transaction (``WriteCoordinator.write``; one
  failing file affects no other), but they run concurrently (``WRITE_CONCURRENCY`` at a time), so the
  phase coalescers (``user_app/phases.py``) carry their phase-1..4 calls in a handful of batch requests. Writes of the same path within a batch run in batch order.
* **read**: one leader ``POST /manifests`` for every path, then one ``ChunkReader.fetch`` over the union
  of the needed digests (deduplicated; batched per server, with fallback and hash checks), answered in
  the binary framing of ``shared.protocol.batches.encode_batch_entries``. Only small files: a file over
  ``MAX_READ_FILE_SIZE`` gets a per-file 413 (stream it with ``GET /files/{path}``). A batch holding more
  than ``READ_GROUP_BYTES`` of content is fetched in several rounds, streamed out as it goes, so memory
  stays bounded whatever the batch.

Memory: a small file costs its size several times over while it is written or read (request body,
pieces, frames per server, the coalesced batch requests, responses). Per process, :class:`MultiFileLimits`
bounds the batch bodies being held (``BODY_BUDGET``, of which one access key holds at most
``KEY_BODY_SHARE``, so a client whose bodies stall, until their 408, delays no other key's batches),
the file bytes being written (``WRITE_BUDGET``:
a tree of 1 MiB files then writes as many at a time as eight streaming PUTs would) and the content of
the read rounds in flight (``READ_BUDGET``). Waiters are served in arrival order; a single item bigger
than a budget waits until the budget is idle and then runs alone (``user_app/byte_budget.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, AsyncIterator

import orjson
from starlette.requests import Request

from shared.bodies import read_body
from shared.errors import BadRequest, Forbidden, RingFSError
from shared.paths import normalize_path
from shared.protocol.batches import encode_batch_entry_header, iter_batch_files, parse_paths_body
from shared.protocol.manifests import Manifest
from shared.protocol.rules import MAX_BATCH_FILES
from shared.rpc.leader_client import LeaderClient
from shared.rpc.ring_cache import Placement, RingCache
from user_app.auth.audit import audited
from user_app.auth.principal import Principal
from user_app.byte_budget import ByteBudget
from user_app.metrics import BYTES_OUT
from user_app.reader import ChunkReader
from user_app.writer import WriteCoordinator

log = logging.getLogger("ringfs.multi_file")

# Largest POST /batch/write body (the whole batch is held in memory while its files are written).
MAX_WRITE_BODY = 16 * 1024 * 1024
# Largest POST /batch/read body (a JSON list of at most MAX_BATCH_FILES paths).
MAX_READ_BODY = 8 * 1024 * 1024
# Files of one batch written at the same time.
WRITE_CONCURRENCY = 64
# Largest file POST /batch/read returns; bigger ones get a per-file 413 (the leader sends no chunk list).
MAX_READ_FILE_SIZE = 4 * 1024 * 1024
# Largest answer of one POST /batch/read (a repeated file counts each time it is sent): files past it get
# a per-file 413, so a small request cannot ask for gigabytes.
MAX_READ_ANSWER = 64 * 1024 * 1024
# Content (bytes) and distinct chunks fetched by one reader.fetch; a batch above either is fetched in
# several rounds (one round ahead of the response).
READ_GROUP_BYTES = 8 * 1024 * 1024
READ_GROUP_DIGESTS = 16384
# Files fetched alone at a time when their round failed, to isolate the files that cannot be read.
RETRY_CONCURRENCY = 16

# Per-process budgets (bytes), see the module docstring.
BODY_BUDGET = 4 * MAX_WRITE_BODY  # 64 MiB: one request holds at most a quarter of it
KEY_BODY_SHARE = BODY_BUDGET // 2  # and one access key at most half (two full bodies, or the CLI's 8 jobs)
WRITE_BUDGET = 8 * 1024 * 1024
READ_BUDGET = 3 * READ_GROUP_BYTES


class MultiFileLimits:
    """The budgets of one user app process (``Services.limits``)."""

    def __init__(self) -> None:
        self.body = ByteBudget(BODY_BUDGET)
        self.write = ByteBudget(WRITE_BUDGET)
        self.read = ByteBudget(READ_BUDGET)
        self._key_bodies: dict[str, ByteBudget] = {}  # access key -> its share of ``body``, while in use

    @contextlib.asynccontextmanager
    async def holding_body(self, access_key: str, n: int) -> AsyncIterator[None]:
        """Hold ``n`` bytes of the body budget for ``access_key``: first of the key's own share
        (``KEY_BODY_SHARE``), then of the process's (``BODY_BUDGET``), so that bodies a client stops
        sending hold at most its share until their 408. Released on exit."""
        share = self._key_bodies.setdefault(access_key, ByteBudget(KEY_BODY_SHARE))
        held_share = 0
        try:
            held_share = await share.acquire(n)
            held = await self.body.acquire(n)
            try:
                yield
            finally:
                self.body.release(held)
        finally:
            share.release(held_share)
            if share.idle:
                self._key_bodies.pop(access_key, None)


def _error(path: str, exc: BaseException) -> dict:
    if isinstance(exc, RingFSError):
        return {"path": path, "error": exc.message, "status": exc.status}
    log.error("batch: unexpected error on %r", path, exc_info=exc)
    return {"path": path, "error": f"internal error: {type(exc).__name__}", "status": 500}


# ------------------------------------------------------------------ write


async def _one_block(data: memoryview) -> AsyncIterator[bytes]:
    if len(data):
        yield data  # type: ignore[misc]  # the chunker copies what it keeps


async def write_files(writer: WriteCoordinator, rings: RingCache, limits: MultiFileLimits, body: bytes | bytearray,
                      principal: Principal, *, create_only: bool, chunk_size: int | None) -> list[dict]:
    """Write every file of a ``POST /batch/write`` body (``shared.protocol.batches.iter_batch_files``); per file, in
    order, ``{"path","version","size","sha256","chunks"}`` or ``{"path","error","status"}``. Raises
    :class:`BadRequest` (whole request) on broken framing, more than ``MAX_BATCH_FILES`` files or a chunk
    size outside the cluster's bounds."""
    sections = list(iter_batch_files(body))
    if len(sections) > MAX_BATCH_FILES:
        raise BadRequest(f"{len(sections)} files exceed the limit of {MAX_BATCH_FILES} per batch")
    if chunk_size is not None:
        (await rings.get()).chunk_size_for_upload(chunk_size)  # one 400 for the whole batch
    results: list[dict | None] = [None] * len(sections)
    by_path: dict[str, list[int]] = defaultdict(list)  # normalized path -> its sections, in batch order
    for i, (raw, _) in enumerate(sections):
        shown = raw.decode("utf-8", "replace")
        try:
            try:
                path = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("path is not valid UTF-8") from None
            path = normalize_path(path)
            principal.check_write(path)  # a forbidden file is answered on its own (403)
            by_path[path].append(i)
        except (BadRequest, Forbidden) as exc:
            results[i] = _error(shown, exc)
    gate = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def write_path(path: str, idxs: list[int]) -> None:
        for i in idxs:  # same path: one after the other, so versions follow batch order
            data = sections[i][1]
            async with gate:
                held = await limits.write.acquire(len(data))
                try:
                    with audited(principal, "put", path) as details:
                        result = await writer.write(path, _one_block(data), chunk_size=chunk_size,
                                                    create_only=create_only, size_hint=len(data))
                        details["version"] = result.version
                    results[i] = result.user_api_body()
                except Exception as exc:  # noqa: BLE001 - answered per file
                    results[i] = _error(path, exc)
                finally:
                    limits.write.release(held)

    await asyncio.gather(*(write_path(p, idxs) for p, idxs in by_path.items()))
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------ read


async def parse_read_request(request: Request) -> list[Any]:
    """The ``paths`` of a ``POST /batch/read`` body; :class:`BadRequest` unless it is JSON
    ``{"paths": [...]}`` with at most ``MAX_BATCH_FILES`` entries."""
    return parse_paths_body(await read_body(request, MAX_READ_BODY))[0]


@dataclass
class _Entry:
    """One requested file of a batch read: what to answer, or what to fetch."""

    path: str  # as requested (echoed in the answer)
    status: int = 200
    error: str = ""
    manifest: Manifest | None = None
    group: int = -1  # fetch round, -1 for an entry answered without chunks
    content: bytes = b""


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def plan_read(leader: LeaderClient, raw_paths: list[Any], principal: Principal) -> list[_Entry]:
    """Validate the paths and resolve them in one leader call; returns the entries with their fetch round
    set (``group``). Raises :class:`Unavailable` when the leader is down (the whole request fails)."""
    entries: list[_Entry] = []
    to_look: list[int] = []
    names: list[str] = []
    for raw in raw_paths:
        entry = _Entry(path=raw if isinstance(raw, str) else str(raw))
        entries.append(entry)
        try:
            if not isinstance(raw, str):
                raise BadRequest(f"path must be a string, got {type(raw).__name__}")
            path = normalize_path(raw)
            principal.check_read(path)  # a forbidden file is answered on its own (403)
            names.append(path)
            to_look.append(len(entries) - 1)
        except (BadRequest, Forbidden) as exc:
            entry.status, entry.error = exc.status, exc.message
    distinct = list(dict.fromkeys(names))  # a repeated path is resolved, fetched and counted once
    resolved = dict(zip(distinct, await leader.rpc_manifests(distinct, max_size=MAX_READ_FILE_SIZE)))
    group, group_bytes, group_digests, answer_bytes = 0, 0, 0, 0
    in_group: set[str] = set()  # distinct paths of the current round
    for i, name in zip(to_look, names):
        entry, found = entries[i], resolved[name]
        if isinstance(found, RingFSError):
            entry.status, entry.error = found.status, found.message
            continue
        size = found.size
        if answer_bytes + size > MAX_READ_ANSWER:
            entry.status, entry.error = 413, (f"this batch's answer would pass {MAX_READ_ANSWER} bytes: ask for "
                                              f"{found.info.path} in another batch")
            continue
        answer_bytes += size
        entry.manifest = found
        if size == 0:
            continue  # answered without a fetch
        if name not in in_group:
            if group_bytes and (group_bytes + size > READ_GROUP_BYTES or group_digests + len(found) > READ_GROUP_DIGESTS):
                group, group_bytes, group_digests, in_group = group + 1, 0, 0, set()
            in_group.add(name)
            group_bytes += size
            group_digests += len(found)
        entry.group = group
    return entries


async def _fetch_files(reader: ChunkReader, placement: Placement, files: list[_Entry]) -> None:
    """One ``reader.fetch`` over the distinct digests of ``files``; fills each one's ``content``. Raises
    what fetch raises."""
    manifests = list({id(e.manifest): e.manifest for e in files if e.manifest is not None}.values())
    wanted = list(dict.fromkeys(d for m in manifests for d in m.digest_list()))
    replication = max(m.info.replication for m in manifests)
    cacheable = max(m.size for m in manifests) <= reader.cache_max_file
    datas = await reader.fetch(placement, wanted, replication, cacheable=cacheable)
    got = dict(zip(wanted, datas))
    contents: dict[int, bytes] = {}  # one content per distinct manifest: repeated paths share it
    for e in files:
        m = e.manifest
        content = contents.get(id(m))
        if content is None:
            content = contents[id(m)] = b"".join([got[d] for d in m.digest_list()])  # type: ignore[union-attr]
        if len(content) != m.size:  # type: ignore[union-attr]
            e.status, e.error = 503, f"{m.info.path} is corrupt: its chunks add up to {len(content)} bytes, not {m.size}"  # type: ignore[union-attr]
        else:
            e.content = content


async def _fetch_group(reader: ChunkReader, placement: Placement, files: list[_Entry]) -> None:
    """Fetch one round; when it fails (a chunk with no intact copy anywhere), fetch its files one by one
    so that only the files that cannot be read get an error entry."""
    try:
        await _fetch_files(reader, placement, files)
        return
    except Exception as exc:  # noqa: BLE001
        if len(files) == 1:
            e = files[0]
            err = _error(e.path, exc)
            e.status, e.error = err["status"], err["error"]
            return
        log.warning("batch read of %d files failed (%s); retrying them one by one", len(files), exc)
    gate = asyncio.Semaphore(RETRY_CONCURRENCY)

    async def alone(e: _Entry) -> None:
        async with gate:
            await _fetch_group(reader, placement, [e])

    await asyncio.gather(*(alone(e) for e in files))


# Entries are sent in blocks of about this many bytes (one ASGI message each, not one per small file).
SEND_BLOCK = 1024 * 1024


async def stream_read(reader: ChunkReader, rings: RingCache, limits: MultiFileLimits, entries: list[_Entry]
                      ) -> AsyncIterator[bytes]:
    """The binary answer of a planned batch read (``shared.protocol.batches.encode_batch_entries`` framing), in
    blocks of about ``SEND_BLOCK`` bytes; the next fetch round runs while the current one is sent. Each
    round holds its content's worth of the read budget from before its fetch until it is sent."""
    groups: dict[int, list[_Entry]] = defaultdict(list)
    for e in entries:
        if e.group >= 0:
            groups[e.group].append(e)
    placement = await rings.get() if groups else None
    tasks: dict[int, asyncio.Task] = {}
    held: dict[int, int] = {}  # group -> bytes of the read budget it holds

    async def fetch(g: int) -> None:
        distinct = {id(e.manifest): e.manifest.size for e in groups[g]}  # type: ignore[union-attr]
        held[g] = await limits.read.acquire(sum(distinct.values()))
        await _fetch_group(reader, placement, groups[g])  # type: ignore[arg-type]

    def start(g: int) -> None:
        if g in groups and g not in tasks:
            tasks[g] = asyncio.create_task(fetch(g))

    def done(g: int) -> None:
        limits.read.release(held.pop(g, 0))

    try:
        start(0)
        block: list[bytes] = []
        size = 0
        current = -1
        for e in entries:
            if e.group > current:
                done(current)
                current = e.group
                start(current + 1)
                await tasks[current]
                BYTES_OUT.inc(sum(len(x.content) for x in groups[current]))
            data = e.content if e.status == 200 else _error_body(e.error)
            e.content = b""  # sent below: let it go
            block.append(encode_batch_entry_header(e.path, e.status, len(data)))
            block.append(data)
            size += len(data) + 32
            if size >= SEND_BLOCK:
                yield b"".join(block)
                block, size = [], 0
        if block:
            yield b"".join(block)
    finally:
        for t in tasks.values():
            t.cancel()
        for g in list(held):
            done(g)

