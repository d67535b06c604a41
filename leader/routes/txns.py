"""Write transactions (the name-mapping half of the two-phase commit): ``POST /txns`` (phase 2,
pending), ``POST /txns/{txn_id}/commit`` (phase 4), ``POST /txns/{txn_id}/abort``, and their batch forms
``POST /txns/batch`` (many prepares) and ``POST /txns/batch-commit`` (many commits), which a user app's
batcher (``user_app/leader_batcher.py``) uses to coalesce concurrent uploads."""

import struct

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from shared.http import JSONResponse

from leader import versions
from leader.routes import get_store
from leader.store import Store
from shared.config import LeaderSettings
from shared.errors import BadRequest, RingFSError
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


def validation_message(exc: RequestValidationError) -> str:
    """The message of the 400 the app's handler answers for ``exc`` (shared/errors.py), for batch
    sections, which answer per section instead of raising."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def parse_query(fields: dict) -> PrepareQuery:
    """:class:`PrepareQuery` of ``fields`` (a query string's or a batch section's); pydantic's errors
    become a :class:`RequestValidationError` located in ``query``."""
    try:
        return PrepareQuery.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("query", *err["loc"])} for err in exc.errors(include_url=False)]) from None


def prepare_query(request: Request) -> PrepareQuery:
    return parse_query(dict(request.query_params))


def check_length(q: PrepareQuery, declared: int | None, settings: LeaderSettings) -> int:
    """The checks of a prepare that come before its body is read: a positive chunk size and, when the
    client announced the body's length (``declared``), that length. Returns the chunk size."""
    chunk_size = settings.chunk_size if q.chunk_size is None else q.chunk_size
    if chunk_size <= 0:
        raise BadRequest(f"chunk_size must be positive, got {chunk_size}")
    want = DIGEST_SIZE * versions.expected_chunks(q.size, chunk_size)
    if declared is not None and declared != want:
        raise BadRequest(f"digest body is {declared} bytes; size {q.size} in {chunk_size}-byte chunks needs {want} bytes")
    return chunk_size


def new_version(q: PrepareQuery, digests: bytes, chunk_size: int, settings: LeaderSettings) -> versions.NewVersion:
    """The validated :class:`versions.NewVersion` of one prepare (after :func:`check_length`). Raises
    :class:`BadRequest` naming the first problem."""
    nv = versions.NewVersion(
        txn_id=q.txn_id, path=normalize_path(q.path), size=q.size, sha256=q.sha256, chunk_size=chunk_size,
        replication=settings.replication_factor if q.replication is None else q.replication,
        create_only=q.create_only, digests=digests,
    )
    versions.validate_new_version(nv, settings.min_chunk_size, settings.max_chunk_size)
    return nv


@router.post("/txns", status_code=201, openapi_extra={"parameters": [
    {"name": name, "in": "query", "required": field.is_required(), "schema": {"title": name}}
    for name, field in PrepareQuery.model_fields.items()]})
async def handle_prepare(request: Request) -> JSONResponse:
    """Query: :class:`PrepareQuery`. Body: the version's chunk digests, packed (``32 * ceil(size /
    chunk_size)`` bytes). Store and settings come from ``request`` rather than sync dependencies (FastAPI
    runs those in a worker thread)."""
    q = prepare_query(request)
    store: Store = request.app.state.store
    settings: LeaderSettings = request.app.state.settings
    declared = request.headers.get("content-length")
    chunk_size = check_length(q, int(declared) if declared is not None and declared.isdigit() else None, settings)
    nv = new_version(q, await request.body(), chunk_size, settings)
    return JSONResponse(await versions.prepare(store, nv), status_code=201)


_U32 = struct.Struct(">I")


def split_sections(body: bytes) -> list[tuple[bytes, bytes]]:
    """``POST /txns/batch``'s body as ``[(json, digests)]``: sections of ``json length (u32 BE) | JSON |
    digests length (u32 BE) | packed digests``. Raises :class:`BadRequest` on a broken framing."""
    sections = []
    view = memoryview(body)
    pos = 0
    while pos < len(body):
        parts = []
        for what in ("JSON", "digests"):
            if pos + 4 > len(body):
                raise BadRequest(f"batch section {len(sections)}: truncated {what} length")
            (n,) = _U32.unpack_from(body, pos)
            pos += 4
            if pos + n > len(body):
                raise BadRequest(f"batch section {len(sections)}: {what} of {n} bytes runs past the body")
            parts.append(bytes(view[pos:pos + n]))
            pos += n
        sections.append((parts[0], parts[1]))
        if len(sections) > versions.MAX_BATCH:
            raise BadRequest(f"a batch holds at most {versions.MAX_BATCH} sections")
    return sections


@router.post("/txns/batch")
async def handle_prepare_batch(request: Request) -> JSONResponse:
    """Many ``POST /txns`` in one request: body = sections (:func:`split_sections`), each a JSON object
    of :class:`PrepareQuery`'s fields and that version's packed digests. Each section is validated as
    ``POST /txns`` validates its request (same messages); a bad one fails only itself. Answers
    ``{"results": {"<txn_id>": {"txn_id","path","version","state"} | {"error","status"}}}`` (a section
    without a usable ``txn_id`` string is keyed ``"#<index>"``)."""
    store: Store = request.app.state.store
    settings: LeaderSettings = request.app.state.settings
    sections = split_sections(await request.body())
    keys: list[str] = []
    seen: set[str] = set()
    results: dict[str, dict] = {}
    valid: list[tuple[str, versions.NewVersion]] = []
    for i, (raw, digests) in enumerate(sections):
        try:
            fields = orjson.loads(raw)
        except orjson.JSONDecodeError:
            fields = None
        txn_id = fields.get("txn_id") if isinstance(fields, dict) else None
        key = txn_id if isinstance(txn_id, str) else f"#{i}"
        if key in seen:
            raise BadRequest(f"txn_id {key[:80]!r} appears twice in one batch")
        seen.add(key)
        keys.append(key)
        try:
            if not isinstance(fields, dict):
                raise BadRequest(f"batch section {i}: not a JSON object")
            q = parse_query(fields)
            valid.append((key, new_version(q, digests, check_length(q, len(digests), settings), settings)))
        except RequestValidationError as exc:
            results[key] = {"error": validation_message(exc), "status": 400}
        except RingFSError as exc:
            results[key] = versions.error_result(exc)
    for (key, _), result in zip(valid, await versions.prepare_many(store, [nv for _, nv in valid])):
        results[key] = result
    return JSONResponse({"results": {key: results[key] for key in keys}})


class BatchCommit(BaseModel):
    txn_ids: list[str] = Field(max_length=versions.MAX_BATCH)


@router.post("/txns/batch-commit")
async def handle_commit_batch(request: Request) -> JSONResponse:
    """Many ``POST /txns/{txn_id}/commit`` in one request: JSON ``{"txn_ids": [...]}`` (at most
    ``MAX_BATCH``) -> ``{"results": {"<txn_id>": VersionInfo | {"error","status"}}}``, each exactly what
    the single commit answers (a repeated id is committed once)."""
    try:
        body = BatchCommit.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    txn_ids = list(dict.fromkeys(body.txn_ids))
    return JSONResponse({"results": await versions.commit_many(request.app.state.store, txn_ids)})


@router.post("/txns/{txn_id}/commit")
async def handle_commit(request: Request) -> JSONResponse:
    return JSONResponse(await versions.commit(request.app.state.store, request.path_params["txn_id"]))


@router.post("/txns/{txn_id}/abort")
async def handle_abort(txn_id: str, store: Store = Depends(get_store)) -> JSONResponse:
    await versions.abort(store, txn_id)
    return JSONResponse({"txn_id": txn_id, "aborted": True})
