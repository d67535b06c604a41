"""Write transactions (the name-mapping half of the two-phase commit): ``POST /txns`` (phase 2,
pending), ``POST /txns/{txn_id}/commit`` (phase 4), ``POST /txns/{txn_id}/abort``."""

from fastapi import APIRouter, Depends, Query, Request
from shared.http import JSONResponse

from leader import versions
from leader.routes import get_settings, get_store
from leader.store import Store
from shared.config import LeaderSettings
from shared.errors import BadRequest
from shared.paths import normalize_path
from shared.protocol import DIGEST_SIZE

router = APIRouter()


@router.post("/txns", status_code=201)
async def handle_prepare(
    request: Request,
    txn_id: str = Query(),
    path: str = Query(),
    size: int = Query(ge=0),
    sha256: str = Query(),
    chunk_size: int | None = Query(default=None),
    replication: int | None = Query(default=None),
    create_only: bool = Query(default=False),
    store: Store = Depends(get_store),
    settings: LeaderSettings = Depends(get_settings),
) -> JSONResponse:
    """Body: the version's chunk digests, packed (``32 * ceil(size / chunk_size)`` bytes)."""
    chunk_size = settings.chunk_size if chunk_size is None else chunk_size
    if chunk_size <= 0:
        raise BadRequest(f"chunk_size must be positive, got {chunk_size}")
    want = DIGEST_SIZE * versions.expected_chunks(size, chunk_size)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != want:
        raise BadRequest(f"digest body is {declared} bytes; size {size} in {chunk_size}-byte chunks needs {want} bytes")
    nv = versions.NewVersion(
        txn_id=txn_id, path=normalize_path(path), size=size, sha256=sha256, chunk_size=chunk_size,
        replication=settings.replication_factor if replication is None else replication,
        create_only=create_only, digests=await request.body(),
    )
    versions.validate_new_version(nv, settings.min_chunk_size, settings.max_chunk_size)
    row = await versions.prepare(store, nv)
    return JSONResponse({"txn_id": row.txn_id, "path": row.path, "version": row.version, "state": row.state},
                          status_code=201)


@router.post("/txns/{txn_id}/commit")
async def handle_commit(txn_id: str, store: Store = Depends(get_store)) -> JSONResponse:
    return JSONResponse(await versions.commit(store, txn_id))


@router.post("/txns/{txn_id}/abort")
async def handle_abort(txn_id: str, store: Store = Depends(get_store)) -> JSONResponse:
    await versions.abort(store, txn_id)
    return JSONResponse({"txn_id": txn_id, "aborted": True})
