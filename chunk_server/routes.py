"""HTTP handlers of the chunk server (docs/protocol.md, "Chunk server").

Chunk data travels as binary frames (``shared.protocol``), never JSON. Every chunk of a prepare batch is
checked against its SHA-256 digest before anything is written, so a corrupted transfer stores nothing
(GFS §5.2: chunk servers verify the data they receive). Every bad input is a 4xx ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from chunk_server.registration import Registration
from chunk_server.store import ChunkStore
from shared.auth.middleware import request_target
from shared.auth.rpc_signing import HEADER as CLUSTER_AUTH_HEADER
from shared.auth.server_identity import health_proof
from shared.bodies import BodyLimit, read_body
from shared.fast_routes import FastRoutes, json_body_doc, query_param, read_model
from shared.errors import BadRequest, IntegrityFailure, NotFound, RingFSError, Unauthorized
from shared.http import JSONResponse
from shared.protocol.frames import (
    DIGEST_SIZE, NO_PROOF, NONCE_SIZE, encode_frames, iter_frames, iter_txn_sections, parse_hex_digest,
    possession_proof, split_prove_body, unpack_digests,
)
from shared.protocol.rules import (
    HEALTH_CHECK_HEADER, MAX_DIGESTS_PER_REQUEST, MAX_SECTIONS_ACCEPTED, MAX_TXNS_PER_REQUEST, OCTET_STREAM,
    TXN_ID_PATTERN,
)

# A prepare batch is ~1 MiB in practice; 256 MiB bounds memory while letting 4 MiB chunks batch.
MAX_PREPARE_BODY = 256 * 1024 * 1024
# Batches above this are hashed in a worker thread so the event loop is never held for long (hashlib
# releases the GIL for large buffers); below it, inline. The user app sends 1 MiB pieces: hashing them
# inline (0.6 ms each) instead of in a thread cut the chunk servers' CPU of a 256 MiB write from 0.90 to
# 0.72 s each and raised large_write from 89 to 107 MB/s (python -m benchmarks --only large_write,large_read,
# 2026-12-04): on 2 cores shared by five processes the hop and the GIL hand-over cost more than they free.
HASH_IN_THREAD_BYTES = 8 * 1024 * 1024
DIGESTS_BODY = MAX_DIGESTS_PER_REQUEST * DIGEST_SIZE  # bytes of a read / exists / verify / prove body

router = APIRouter()
fast = FastRoutes(router)  # the hot endpoints: phase 1 and 3 of a write, reads (shared/fast_routes.py)

TxnId = Annotated[str, Field(pattern=TXN_ID_PATTERN)]


class TxnIdsBody(BaseModel):
    """Body of ``/chunks/commit`` and ``/chunks/abort``: ``{"txn_ids": [...]}``, each id checked."""

    txn_ids: list[TxnId] = Field(max_length=MAX_TXNS_PER_REQUEST)


def _store(request: Request) -> ChunkStore:
    return request.app.state.store


def _registration(request: Request) -> Registration:
    return request.app.state.registration


def binary(content: bytes) -> Response:
    return Response(content=content, media_type=OCTET_STREAM)


async def read_digests(request: Request) -> list[bytes]:
    """Packed digests of a read / exists request; 400 when malformed, 413 beyond ``MAX_DIGESTS_PER_REQUEST``."""
    return unpack_digests(await read_body(request, DIGESTS_BODY))


def decode_verified(body: bytes, max_chunk_size: int) -> list[tuple[bytes, memoryview]]:
    """Decode chunk frames and check every digest. Raises :class:`BadRequest` (bad frames, ``MISSING``
    frames) or :class:`IntegrityFailure` (a chunk does not hash to its digest)."""
    chunks = list(iter_frames(body, max_chunk_size=max_chunk_size))  # every frame is well-formed first
    sha = hashlib.sha256
    for digest, data in chunks:
        if data is None:
            raise BadRequest("a prepare batch cannot contain MISSING frames")
        if sha(data).digest() != digest:
            raise IntegrityFailure(f"chunk {digest.hex()} does not match its SHA-256 digest")
    return chunks


def decode_sections_verified(body: bytes, max_chunk_size: int
                             ) -> list[tuple[str, list[tuple[bytes, memoryview]] | RingFSError]]:
    """Decode a ``/chunks/prepare-many`` body into ``(txn_id, verified chunks or the section's error)``,
    in body order. A bad frame or digest mismatch fails only its section; a malformed section structure
    (truncation, bad txn id) fails the whole request with :class:`BadRequest`."""
    sections = list(iter_txn_sections(body))
    if len(sections) > MAX_SECTIONS_ACCEPTED:
        raise BadRequest(f"{len(sections)} sections exceed the limit of {MAX_SECTIONS_ACCEPTED}")
    out: list[tuple[str, list[tuple[bytes, memoryview]] | RingFSError]] = []
    for txn_id, frames in sections:
        try:
            out.append((txn_id, decode_verified(frames, max_chunk_size)))
        except (BadRequest, IntegrityFailure) as exc:
            out.append((txn_id, exc))
    return out


@router.get("/healthz")
async def handle_healthz(request: Request) -> dict:
    """Liveness, open to anyone: ``{"status","server_id"}``. The leader's health check (cluster-signed,
    with a challenge in ``X-RingFS-Health-Check``) also gets ``proof``, this server's key over the
    challenge (``shared/auth/server_identity.py``), and counts as a check received."""
    registration = _registration(request)
    answer: dict = {"status": "ok", "server_id": registration.server_id}
    challenge = request.headers.get(HEALTH_CHECK_HEADER)
    if challenge is None:
        return answer
    try:
        request.app.state.auth.check_internal(request.headers.get(CLUSTER_AUTH_HEADER), "GET",
                                              request_target(request.scope))
    except Unauthorized:
        return answer  # not the leader: liveness only
    registration.record_health_check()
    if registration.key is not None:
        answer["proof"] = health_proof(registration.key, registration.server_id, challenge[:128])
    return answer


async def _decode_checked(request: Request, decode):
    """Read a prepare body and ``decode(body, max_chunk_size)`` it, hash checks included: in a worker
    thread when the body is large (hashlib releases the GIL on big inputs), inline when it is small."""
    body = await read_body(request, MAX_PREPARE_BODY)
    max_chunk_size = request.app.state.settings.max_chunk_size
    if len(body) > HASH_IN_THREAD_BYTES:
        return await asyncio.to_thread(decode, body, max_chunk_size)
    return decode(body, max_chunk_size)


@fast.route("/chunks/prepare", ["POST"], openapi_extra={"parameters": [
    {"name": "txn_id", "in": "query", "required": True, "schema": {"type": "string", "pattern": TXN_ID_PATTERN}}]})
async def handle_prepare(request: Request) -> Response:
    """Phase 1 of the write: store the batch as pending under ``?txn_id=``."""
    txn_id = query_param(request, "txn_id", TXN_ID_PATTERN)
    chunks = await _decode_checked(request, decode_verified)
    result = await _store(request).prepare(txn_id, chunks)
    return JSONResponse({"stored": result.stored, "already_committed": result.already_committed})


@fast.route("/chunks/prepare-many", ["POST"])
async def handle_prepare_many(request: Request) -> Response:
    """Phase 1 for several txns at once (the user app's prepare batcher): a body of txn sections
    (``shared.protocol.encode_txn_sections``). Every good section is stored in one write transaction;
    a section with a bad frame (400) or a digest mismatch (422) stores nothing and fails alone.

    ``results`` is per txn id (sections of one txn are summed; any failed section makes the txn's
    entry that error); ``sections`` is per section, in body order."""
    sections = await _decode_checked(request, decode_sections_verified)
    good = [(txn_id, chunks) for txn_id, chunks in sections if not isinstance(chunks, RingFSError)]
    stored = iter(await _store(request).prepare_many(good))
    per_section: list[dict] = []
    results: dict[str, dict] = {}
    for txn_id, chunks in sections:
        if isinstance(chunks, RingFSError):
            entry = {"error": chunks.message, "status": chunks.status}
            results[txn_id] = results[txn_id] if "error" in results.get(txn_id, {}) else entry
        else:
            res = next(stored)
            entry = {"stored": res.stored, "already_committed": res.already_committed}
            prev = results.setdefault(txn_id, {"stored": 0, "already_committed": 0})
            if "error" not in prev:
                prev["stored"] += res.stored
                prev["already_committed"] += res.already_committed
        per_section.append(entry)
    return JSONResponse({"results": results, "sections": per_section})


@fast.route("/chunks/commit", ["POST"], openapi_extra=json_body_doc(TxnIdsBody))
async def handle_commit(request: Request) -> Response:
    """Phase 3: make the txns' pending chunks readable. Body :class:`TxnIdsBody`."""
    body = await read_model(request, TxnIdsBody)
    return JSONResponse({"committed": await _store(request).commit(body.txn_ids)})


@fast.route("/chunks/abort", ["POST"], openapi_extra=json_body_doc(TxnIdsBody))
async def handle_abort(request: Request) -> Response:
    """Drop the txns' pending chunks and pins. Body :class:`TxnIdsBody`."""
    body = await read_model(request, TxnIdsBody)
    return JSONResponse({"aborted": await _store(request).abort(body.txn_ids)})


@fast.route("/chunks/read", ["POST"])
async def handle_read(request: Request) -> Response:
    """Committed chunks as frames, in request order; a ``MISSING`` frame for each one not held."""
    digests = await read_digests(request)
    datas = await _store(request).read_many(digests)
    return binary(encode_frames(zip(digests, datas)))


@router.post("/chunks/prove")
async def handle_prove(request: Request) -> Response:
    """Proofs of possession: body ``nonce (32 bytes) | packed digests``; answer 32 bytes per digest,
    ``SHA-256(nonce | data)`` of the committed copy, or 32 zero bytes where none is held
    (``shared.protocol.frames.possession_proof``)."""
    nonce, digests = split_prove_body(await read_body(request, NONCE_SIZE + DIGESTS_BODY))
    datas = await _store(request).read_many(digests)
    return binary(b"".join(NO_PROOF if data is None else possession_proof(nonce, data) for data in datas))


@fast.route("/chunks/exists", ["POST"])
async def handle_exists(request: Request) -> Response:
    """One ``ChunkPresence`` byte per requested digest."""
    digests = await read_digests(request)
    return binary(await _store(request).presence_many(digests))


@router.get("/chunks/{chunk_id}")
async def handle_get_chunk(request: Request, chunk_id: str) -> Response:
    digest = parse_hex_digest(chunk_id)
    (data,) = await _store(request).read_many([digest])
    if data is None:
        raise NotFound(f"chunk {chunk_id} is not held here")
    return binary(bytes(data))


@router.post("/chunks/replicate")
async def handle_replicate(request: Request) -> dict:
    """Anti-entropy push / repair: store hash-checked chunk frames committed at once. 422 on a mismatch,
    and then nothing of the batch is stored."""
    chunks = await _decode_checked(request, decode_verified)
    return {"stored": await _store(request).replicate(chunks)}


@router.post("/chunks/verify")
async def handle_verify(request: Request) -> dict:
    """Read repair: re-hash the given chunks now, quarantine bad ones and repair them from other replicas.
    ``{"checked","corrupt","repaired"}``."""
    digests = await read_digests(request)
    return await request.app.state.scrubber.verify(digests)


# Job counters kept in the store's meta table, reported flat in /stats (0 until the job counts one).
STATS_COUNTERS = ("scrubbed", "corrupt", "repaired", "gc_deleted", "gc_bytes", "gc_rounds", "compacted_segments",
                  "compacted_bytes", "compaction_moved_bytes")


@router.get("/stats")
async def handle_stats(request: Request) -> dict:
    """Store totals, anti-entropy progress and scrub / GC counters (docs/protocol.md)."""
    store = _store(request)
    stats = await store.stats()
    meta = await store.get_meta(STATS_COUNTERS)
    return {"server_id": _registration(request).server_id, **stats,
            **{k: meta.get(k, 0) for k in STATS_COUNTERS},
            "anti_entropy": await request.app.state.anti_entropy.progress()}


# Bodies larger than JSON_BODY_LIMIT this router takes (shared.bodies.BodyLimitMiddleware applies them).
BODY_LIMITS = (
    BodyLimit("POST", "/chunks/prepare", MAX_PREPARE_BODY),
    BodyLimit("POST", "/chunks/prepare-many", MAX_PREPARE_BODY),
    BodyLimit("POST", "/chunks/read", DIGESTS_BODY),
    BodyLimit("POST", "/chunks/prove", NONCE_SIZE + DIGESTS_BODY),
    BodyLimit("POST", "/chunks/exists", DIGESTS_BODY),
    BodyLimit("POST", "/chunks/replicate", MAX_PREPARE_BODY),
    BodyLimit("POST", "/chunks/verify", DIGESTS_BODY),
)
