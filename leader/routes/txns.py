"""Write transactions (the name-mapping half of the two-phase commit): ``POST /txns`` (phase 2,
pending), ``POST /txns/{txn_id}/commit`` (phase 4), ``POST /txns/{txn_id}/abort``, and their batch forms
``POST /txns/batch`` (many prepares) and ``POST /txns/batch-commit`` (many commits), which a user app's
coalescer (``user_app/phases.py``) uses for concurrent uploads. Each section of a batch is validated and
answered exactly as its single request."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from shared.http import JSONResponse

from leader import txns
from leader.new_version import NewVersion, check_digest_length, digest_length, new_version
from leader.routes import get_store
from leader.store import Store
from shared.bodies import BodyLimit, read_body
from shared.config import LeaderSettings
from shared.errors import BadRequest, RingFSError, validation_message
from shared.fast_routes import FastRoutes, json_body_doc, read_model
from shared.protocol.batches import split_version_sections
from shared.protocol.models import BatchError, VersionPrepare
from shared.protocol.rules import MAX_TXNS_PER_BATCH

router = APIRouter()
fast = FastRoutes(router)  # phases 2 and 4 of every write (shared/fast_routes.py)


def parse_prepare(fields: dict) -> VersionPrepare:
    """The :class:`VersionPrepare` of ``fields`` (a query string's or a batch section's), validated in one
    model validation (FastAPI's per-parameter machinery was a visible share of a write's CPU). Errors
    become a :class:`RequestValidationError` located in ``query``, as FastAPI's ``Query()`` parameters
    would raise."""
    try:
        return VersionPrepare.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("query", *err["loc"])} for err in exc.errors(include_url=False)]) from None


def batch_answer(outcome: BaseModel | RingFSError) -> dict:
    """One transaction's entry in a batch answer: its result, or the ``{"error","status"}`` its single
    request would have answered."""
    if isinstance(outcome, RingFSError):
        return BatchError(error=outcome.message, status=outcome.status).model_dump()
    return outcome.model_dump()


# Bytes of packed digests one version may list: 8M chunks (8 GiB of 1 KiB chunks, 32 TiB of 4 MiB ones).
MAX_DIGEST_BODY = 256 * 1024 * 1024
# A /txns/batch body: MAX_TXNS_PER_BATCH small files' sections (the user app batches files up to 1 MiB).
MAX_BATCH_BODY = 64 * 1024 * 1024


@fast.route("/txns", ["POST"], status_code=201, openapi_extra={"parameters": [
    {"name": name, "in": "query", "required": field.is_required(), "schema": {"title": name}}
    for name, field in VersionPrepare.model_fields.items()]})
async def handle_prepare(request: Request) -> JSONResponse:
    """Query: :class:`VersionPrepare`. Body: the version's chunk digests, packed (``32 * ceil(size /
    chunk_size)`` bytes, checked against ``Content-Length`` before the body is read). Answers 201
    :class:`PreparedVersion`; for a part of a multipart upload (``upload_id``, ``part_number``) its
    ``path`` is the part's (``leader/parts.py``), 404 when there is no such upload. Store and settings come from ``request`` rather than sync dependencies
    (FastAPI runs those in a worker thread)."""
    prepare = parse_prepare(dict(request.query_params))
    settings: LeaderSettings = request.app.state.settings
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_digest_length(prepare, int(declared), settings)
    # Without a Content-Length the body is read up to the length the query says it must have (+1, so a
    # longer one is told apart from an exact one and refused by new_version's length check).
    nv = new_version(prepare, await read_body(request, digest_length(prepare, settings) + 1), settings)
    prepared = await txns.prepare(request.app.state.store, nv)
    return JSONResponse(prepared.model_dump(), status_code=201)


@fast.route("/txns/batch", ["POST"])
async def handle_prepare_batch(request: Request) -> JSONResponse:
    """Many ``POST /txns`` in one request: body = sections (``split_version_sections``), each a JSON
    :class:`VersionPrepare` and that version's packed digests, at most ``MAX_TXNS_PER_BATCH``. A bad
    section fails only itself. Answers ``{"results": {"<txn_id>": PreparedVersion | {"error","status"}}}``
    (a section without a usable ``txn_id`` string is keyed ``"#<index>"``). 400 for a broken framing, too
    many sections or a transaction id twice."""
    settings: LeaderSettings = request.app.state.settings
    sections = split_version_sections(await read_body(request, MAX_BATCH_BODY))
    keys: list[str] = []
    outcomes: dict[str, BaseModel | RingFSError] = {}
    seen: set[str] = set()
    valid: list[tuple[str, NewVersion]] = []
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
            prepare = parse_prepare(fields)
            check_digest_length(prepare, len(digests), settings)
            valid.append((key, new_version(prepare, digests, settings)))
        except RequestValidationError as exc:
            outcomes[key] = BadRequest(validation_message(exc.errors()))
        except RingFSError as exc:
            outcomes[key] = exc
    prepared = await txns.prepare_many(request.app.state.store, [nv for _, nv in valid])
    outcomes.update((key, outcome) for (key, _), outcome in zip(valid, prepared))
    return JSONResponse({"results": {key: batch_answer(outcomes[key]) for key in keys}})


class BatchCommit(BaseModel):
    """The body of ``POST /txns/batch-commit``."""

    txn_ids: list[str] = Field(max_length=MAX_TXNS_PER_BATCH)


@fast.route("/txns/batch-commit", ["POST"], openapi_extra=json_body_doc(BatchCommit))
async def handle_commit_batch(request: Request) -> JSONResponse:
    """Many ``POST /txns/{txn_id}/commit`` in one request: JSON ``{"txn_ids": [...]}`` (at most
    ``MAX_TXNS_PER_BATCH``) -> ``{"results": {"<txn_id>": VersionInfo | {"error","status"}}}``, each
    exactly what the single commit answers (a repeated id is committed once). 400 for a bad body."""
    body = await read_model(request, BatchCommit)
    txn_ids = list(dict.fromkeys(body.txn_ids))
    committed = await txns.commit_many(request.app.state.store, txn_ids)
    return JSONResponse({"results": {t: batch_answer(outcome) for t, outcome in zip(txn_ids, committed)}})


@fast.route("/txns/{txn_id}/commit", ["POST"])
async def handle_commit(request: Request) -> JSONResponse:
    """:class:`VersionInfo` of the committed version; 400, 404 unknown, 410 expired (swept), 409 the path
    would be a file and a folder (a live file above or below it), 412 a create-only write lost its race or
    a conditional one's ``if_match`` no longer holds (both aborted). A part's commit answers state
    ``part`` at its part path, or 404 when its upload was aborted, expired or completed meanwhile."""
    info = await txns.commit(request.app.state.store, request.path_params["txn_id"])
    return JSONResponse(info.model_dump())


@router.post("/txns/{txn_id}/abort")
async def handle_abort(txn_id: str, store: Store = Depends(get_store)) -> JSONResponse:
    await txns.abort(store, txn_id)
    return JSONResponse({"txn_id": txn_id, "aborted": True})


# Bodies larger than JSON_BODY_LIMIT this router takes (shared.bodies.BodyLimitMiddleware applies them).
BODY_LIMITS = (
    BodyLimit("POST", "/txns", MAX_DIGEST_BODY),
    BodyLimit("POST", "/txns/batch", MAX_BATCH_BODY),
)
