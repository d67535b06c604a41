"""Write transactions (the name-mapping half of the two-phase commit): ``POST /txns`` (phase 2,
pending), ``POST /txns/{txn_id}/commit`` (phase 4), ``POST /txns/{txn_id}/abort``."""

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from shared.http import JSONResponse

from leader import versions
from leader.routes import get_store
from leader.store import Store
from shared.config import LeaderSettings
from shared.errors import BadRequest
from shared.paths import normalize_path
from shared.protocol import DIGEST_SIZE

router = APIRouter()


class PrepareQuery(BaseModel):
    """The query of ``POST /txns``: validated by pydantic exactly as FastAPI's ``Query()`` parameters were,
    but in one model validation (FastAPI's per-parameter machinery was a visible share of a write's CPU).
    Errors become the same :class:`RequestValidationError` (``loc`` ``("query", name)``)."""

    txn_id: str
    path: str
    size: int = Field(ge=0)
    sha256: str
    chunk_size: int | None = None
    replication: int | None = None
    create_only: bool = False


def prepare_query(request: Request) -> PrepareQuery:
    try:
        return PrepareQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("query", *err["loc"])} for err in exc.errors(include_url=False)]) from None


@router.post("/txns", status_code=201, openapi_extra={"parameters": [
    {"name": name, "in": "query", "required": field.is_required(), "schema": {"title": name}}
    for name, field in PrepareQuery.model_fields.items()]})
async def handle_prepare(request: Request) -> JSONResponse:
    """Query: :class:`PrepareQuery`. Body: the version's chunk digests, packed (``32 * ceil(size /
    chunk_size)`` bytes). Store and settings come from ``request`` rather than sync dependencies (FastAPI
    runs those in a worker thread)."""
    q = prepare_query(request)
    txn_id, path, size, sha256 = q.txn_id, q.path, q.size, q.sha256
    chunk_size, replication, create_only = q.chunk_size, q.replication, q.create_only
    store: Store = request.app.state.store
    settings: LeaderSettings = request.app.state.settings
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
    return JSONResponse(await versions.prepare(store, nv), status_code=201)


@router.post("/txns/{txn_id}/commit")
async def handle_commit(request: Request) -> JSONResponse:
    return JSONResponse(await versions.commit(request.app.state.store, request.path_params["txn_id"]))


@router.post("/txns/{txn_id}/abort")
async def handle_abort(txn_id: str, store: Store = Depends(get_store)) -> JSONResponse:
    await versions.abort(store, txn_id)
    return JSONResponse({"txn_id": txn_id, "aborted": True})
