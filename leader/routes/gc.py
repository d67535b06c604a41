"""``POST /gc/unreferenced``: the leader's half of chunk garbage collection (docs/failure-handling.md,
"Garbage collection"). Body and answer are packed 32-byte digests."""

from fastapi import APIRouter, Depends, Request, Response

from leader import gc
from leader.routes import get_store
from leader.store import Store
from shared.bodies import BodyLimit, read_body
from shared.protocol.frames import DIGEST_SIZE, pack_digests, unpack_digests
from shared.protocol.rules import OCTET_STREAM

router = APIRouter()


# A chunk server asks about up to ~1M candidates per round; twice that bounds the body at 64 MiB.
MAX_GC_DIGESTS = 2 * 1024 * 1024


@router.post("/gc/unreferenced")
async def handle_gc_unreferenced(request: Request, store: Store = Depends(get_store)) -> Response:
    """The packed subset of the request's digests that no pending, committed or deleted version and no
    part of a live multipart upload references, in request order. 400 when the body is not a multiple of 32 bytes, 413 beyond
    ``MAX_GC_DIGESTS``."""
    body = await read_body(request, MAX_GC_DIGESTS * DIGEST_SIZE)
    candidates = unpack_digests(body)  # BadRequest (400) unless a multiple of 32 bytes
    return Response(pack_digests(await gc.unreferenced(store, candidates)), media_type=OCTET_STREAM)


# Bodies larger than JSON_BODY_LIMIT this router takes (shared.bodies.BodyLimitMiddleware applies them).
BODY_LIMITS = (
    BodyLimit("POST", "/gc/unreferenced", MAX_GC_DIGESTS * DIGEST_SIZE),
)
