"""Read and namespace endpoints: ``GET /manifest`` (the read hot path: the manifest cache, else one indexed query),
``POST /manifests`` (many paths in one call), ``GET /stat``, ``GET /versions``, ``GET /list``, ``POST /rename``,
``DELETE /files``."""

from fastapi import APIRouter, Depends, Query, Request, Response
from shared.http import JSONResponse

from leader import lookups, namespace
from leader.routes import get_store
from leader.store import Store
from shared.bodies import read_body
from shared.errors import BadRequest, RingFSError
from shared.paths import normalize_folder, normalize_path
from shared.protocol.batches import parse_paths_body
from shared.protocol.manifests import encode_manifest_error, encode_manifests
from shared.protocol.models import RenameRequest
from shared.protocol.rules import MAX_VERSION, OCTET_STREAM

router = APIRouter()


@router.get("/manifest")
async def handle_manifest(request: Request, path: str = Query(),
                          version: int | None = Query(default=None, ge=1, le=MAX_VERSION)) -> Response:
    """Binary: ``encode_manifest(VersionInfo, packed digests)`` (shared/protocol/manifests.py), from the manifest
    cache when it holds the version (leader/manifest_cache.py). The store is taken from ``request``
    rather than a sync dependency, which FastAPI would run in a worker thread."""
    entry = await lookups.lookup(request.app.state.store, normalize_path(path), version)
    return Response(entry.manifest, media_type=OCTET_STREAM)


# A POST /manifests body: 1024 paths of at most 1024 bytes, JSON-escaped, fit easily.
MAX_MANIFESTS_BODY = 8 * 1024 * 1024


@router.post("/manifests")
async def handle_manifests(request: Request) -> Response:
    """Binary: per requested path, in order, ``u32 length | payload`` (``encode_manifests``),
    the payload being what ``GET /manifest`` answers or a ``0xFF | {"error","status"}`` entry (400 bad path,
    404). Body: JSON ``{"paths": [...], "version": null | N}``, at most 1024 paths. Cache hits cost no SQL;
    the misses are looked up together (``lookups.lookup_many``)."""
    paths, doc = parse_paths_body(await read_body(request, MAX_MANIFESTS_BODY))
    version = doc.get("version")
    if version is not None and (type(version) is not int or not 1 <= version <= MAX_VERSION):
        raise BadRequest(f"version must be a positive integer or null, got {version!r}")
    normalized: list[str | RingFSError] = []
    for raw in paths:
        try:
            if not isinstance(raw, str):
                raise BadRequest(f"path must be a string, got {type(raw).__name__}")
            normalized.append(normalize_path(raw))
        except BadRequest as exc:
            normalized.append(exc)
    good = [p for p in normalized if isinstance(p, str)]
    found = iter(await lookups.lookup_many(request.app.state.store, good, version))
    payloads: list[bytes] = []
    for p in normalized:
        entry = p if isinstance(p, RingFSError) else next(found)
        if isinstance(entry, RingFSError):
            payloads.append(encode_manifest_error(entry.message, entry.status))
        else:
            payloads.append(entry.manifest)
    return Response(encode_manifests(payloads), media_type=OCTET_STREAM)


@router.get("/stat")
async def handle_stat(request: Request, path: str = Query(),
                      version: int | None = Query(default=None, ge=1, le=MAX_VERSION)) -> JSONResponse:
    entry = await lookups.lookup(request.app.state.store, normalize_path(path), version)
    return JSONResponse(entry.info.model_dump())


@router.get("/versions")
async def handle_versions(path: str = Query(), store: Store = Depends(get_store)) -> JSONResponse:
    path = normalize_path(path)
    infos = await lookups.list_versions(store, path)
    return JSONResponse({"path": path, "versions": [info.model_dump() for info in infos]})


@router.get("/list")
async def handle_list(folder: str = Query(default=""), recursive: bool = Query(default=False),
                      readable: list[str] | None = Query(default=None, max_length=256),
                      store: Store = Depends(get_store)) -> JSONResponse:
    """``readable``: the path prefixes the asking key may read (repeated); absent, everything counts."""
    folder = normalize_folder(folder)
    entries = await namespace.list_folder(store, folder, recursive, readable)
    return JSONResponse({"folder": folder, "entries": entries})


@router.post("/rename")
async def handle_rename(req: RenameRequest, store: Store = Depends(get_store)) -> JSONResponse:
    # A trailing '/' is accepted on either side, so that a folder can be named as one.
    src, dst = normalize_path(req.src.rstrip("/")), normalize_path(req.dst.rstrip("/"))
    return JSONResponse({"src": src, "dst": dst, "renamed": await namespace.rename(store, src, dst)})


@router.delete("/files")
async def handle_delete(path: str = Query(), store: Store = Depends(get_store)) -> JSONResponse:
    path = normalize_path(path)
    return JSONResponse({"path": path, "deleted_versions": await namespace.delete_file(store, path)})
