"""Read and namespace endpoints: ``GET /manifest`` (the read hot path: the manifest cache, else one indexed query),
``POST /manifests`` (many paths in one call), ``GET /stat``, ``GET /versions``, ``GET /list``, ``POST /rename``,
``DELETE /files``, ``DELETE /versions`` (one version, for good) and ``POST /copy`` (a server-side copy that shares chunks)."""

from fastapi import APIRouter, Depends, Query, Request, Response
from shared.http import JSONResponse

from leader import copy, lookups, namespace
from leader.read_leases import BadHolder, parse_holder
from leader.routes import get_store
from leader.store import Store
from shared.bodies import BodyLimit, read_body
from shared.errors import BadRequest, RingFSError
from shared.fast_routes import FastRoutes, query_param
from shared.numbers import parse_uint
from shared.paths import normalize_folder, normalize_path
from shared.protocol.batches import parse_paths_body
from shared.protocol.manifests import encode_manifest_error, encode_manifests
from shared.protocol.models import CopyRequest, RenameRequest
from shared.protocol.rules import (
    LEASE_HEADER, LEASE_HOLDER_HEADER as HOLDER_HEADER, MAX_MANIFEST_CHUNKS, MAX_VERSION, OCTET_STREAM, validate_if_match,
)

router = APIRouter()
fast = FastRoutes(router)  # the read hot path (shared/fast_routes.py)


def _version(raw: str | None) -> int | None:
    """``?version=``: ASCII digits from 1 to ``MAX_VERSION`` (shared/numbers.py), else 400."""
    return None if raw is None else parse_uint("version", raw, minimum=1, maximum=MAX_VERSION)


@fast.route("/manifest", ["GET"], openapi_extra={"parameters": [
    {"name": "path", "in": "query", "required": True, "schema": {"type": "string"}},
    {"name": "version", "in": "query", "required": False, "schema": {"type": "string"}}]})
async def handle_manifest(request: Request) -> Response:
    """Binary: ``encode_manifest(VersionInfo, packed digests)`` (shared/protocol/manifests.py) of ``?path=``
    (latest, or ``?version=N``), from the manifest cache when it holds the version
    (leader/manifest_cache.py).

    A lookup of the latest version with ``X-RingFS-Lease-Holder: <holder id> <callback URL>`` also asks
    for a read lease; the answer's ``X-RingFS-Lease: <seconds>`` grants one (leader/read_leases.py).
    400 for a malformed holder header."""
    store = request.app.state.store
    path = normalize_path(query_param(request, "path"))
    version = _version(request.query_params.get("version"))
    holder_header = request.headers.get(HOLDER_HEADER)
    if holder_header is None or version is not None:
        return Response((await lookups.lookup(store, path, version)).manifest, media_type=OCTET_STREAM)
    try:
        holder, url = parse_holder(holder_header)
    except BadHolder as exc:
        raise BadRequest(str(exc)) from None
    seconds = store.leases.grant(path, holder, url)  # before the lookup: a mutation meanwhile revokes it
    entry = await lookups.lookup(store, path, None)
    headers = {LEASE_HEADER: f"{seconds:g}"} if seconds else None
    return Response(entry.manifest, media_type=OCTET_STREAM, headers=headers)


# A POST /manifests body: 1024 paths of at most 1024 bytes, JSON-escaped, fit easily.
MAX_MANIFESTS_BODY = 8 * 1024 * 1024


@fast.route("/manifests", ["POST"])
async def handle_manifests(request: Request) -> Response:
    """Binary: per requested path, in order, ``u32 length | payload`` (``encode_manifests``),
    the payload being what ``GET /manifest`` answers or a ``0xFF | {"error","status"}`` entry (400 bad path,
    404, 413 over ``max_size`` bytes or past ``MAX_MANIFEST_CHUNKS`` chunks in all). Body: JSON
    ``{"paths": [...], "version": null | N, "max_size": null | bytes}``, at most 1024 paths (a repeated path is
    looked up once, but its chunks count against ``MAX_MANIFEST_CHUNKS`` each time it is answered, so the
    answer stays bounded). Cache hits cost no SQL; the misses are looked up together (``lookups.lookup_many``)."""
    paths, doc = parse_paths_body(await read_body(request, MAX_MANIFESTS_BODY))
    version, max_size = doc.get("version"), doc.get("max_size")
    if version is not None and (type(version) is not int or not 1 <= version <= MAX_VERSION):
        raise BadRequest(f"version must be a positive integer or null, got {version!r}")
    if max_size is not None and (type(max_size) is not int or max_size < 0):
        raise BadRequest(f"max_size must be a number of bytes or null, got {max_size!r}")
    normalized: list[str | RingFSError] = []
    for raw in paths:
        try:
            if not isinstance(raw, str):
                raise BadRequest(f"path must be a string, got {type(raw).__name__}")
            normalized.append(normalize_path(raw))
        except BadRequest as exc:
            normalized.append(exc)
    good = [p for p in normalized if isinstance(p, str)]
    found = iter(await lookups.lookup_many(request.app.state.store, good, version, max_size, MAX_MANIFEST_CHUNKS))
    payloads: list[bytes] = []
    for p in normalized:
        entry = p if isinstance(p, RingFSError) else next(found)
        if isinstance(entry, RingFSError):
            payloads.append(encode_manifest_error(entry.message, entry.status))
        else:
            payloads.append(entry.manifest)
    return Response(encode_manifests(payloads), media_type=OCTET_STREAM)


@router.get("/stat")
async def handle_stat(request: Request, path: str = Query(), version: str | None = Query(default=None)) -> JSONResponse:
    entry = await lookups.lookup(request.app.state.store, normalize_path(path), _version(version))
    return JSONResponse(entry.info.model_dump())


@router.get("/versions")
async def handle_versions(path: str = Query(), store: Store = Depends(get_store)) -> JSONResponse:
    path = normalize_path(path)
    infos = await lookups.list_versions(store, path)
    return JSONResponse({"path": path, "versions": [info.model_dump() for info in infos]})


@router.get("/list")
async def handle_list(folder: str = Query(default=""), recursive: bool = Query(default=False),
                      readable: list[str] | None = Query(default=None, max_length=256),
                      folders: bool = Query(default=False),
                      store: Store = Depends(get_store)) -> JSONResponse:
    """``readable``: the path prefixes the asking key may read (repeated); absent, everything counts.
    ``folders``: a recursive listing also lists the explicit folders below as ``"dir"`` entries (a direct
    listing always shows them)."""
    folder = normalize_folder(folder)
    entries = await namespace.list_folder(store, folder, recursive, readable, folders)
    return JSONResponse({"folder": folder, "entries": entries})


@router.post("/rename")
async def handle_rename(req: RenameRequest, store: Store = Depends(get_store)) -> JSONResponse:
    # A trailing '/' is accepted on either side, so that a folder can be named as one.
    src, dst = normalize_path(req.src.rstrip("/")), normalize_path(req.dst.rstrip("/"))
    return JSONResponse({"src": src, "dst": dst, "renamed": await namespace.rename(store, src, dst)})


@router.delete("/files")
async def handle_delete(path: str = Query(), if_match: str | None = Query(default=None),
                        store: Store = Depends(get_store)) -> JSONResponse:
    """``{"path", "deleted_versions": n, "deleted_at"}``: ``path``'s versions tombstoned; with ``if_match``
    (``"*"`` or comma-separated SHA-256s) only if its live version matches, checked in the deleting
    transaction (412 otherwise)."""
    path = normalize_path(path)
    condition = None if if_match is None else validate_if_match(if_match)
    count, deleted_at = await namespace.delete_file(store, path, condition)
    return JSONResponse({"path": path, "deleted_versions": count, "deleted_at": deleted_at})


@router.delete("/versions")
async def handle_delete_version(path: str = Query(), version: str = Query(),
                                store: Store = Depends(get_store)) -> JSONResponse:
    """``{"path", "version", "state"}``: version ``version`` of ``path`` removed for good, committed or in
    the trash, ``state`` being the one it had (S3's DeleteObject of a version id); 404 when it has no such
    version, 400 for a bad path or version."""
    path, number = normalize_path(path), parse_uint("version", version, minimum=1, maximum=MAX_VERSION)
    state = await namespace.delete_version(store, path, number)
    return JSONResponse({"path": path, "version": number, "state": state})


@router.post("/copy", status_code=201)
async def handle_copy(req: CopyRequest, store: Store = Depends(get_store)) -> JSONResponse:
    """201 :class:`VersionInfo` of the new committed version of ``dst``, sharing the source version's
    chunks (``leader/copy.py``); 404 no such source (version), 409 ``dst`` would be a file and a folder,
    412 ``create_only`` / ``if_match`` failed, 400 a bad path or ``user_metadata``."""
    info = await copy.copy(store, req)
    return JSONResponse(info.model_dump(), status_code=201)


# Bodies larger than JSON_BODY_LIMIT this router takes (shared.bodies.BodyLimitMiddleware applies them).
BODY_LIMITS = (
    BodyLimit("POST", "/manifests", MAX_MANIFESTS_BODY),
)
