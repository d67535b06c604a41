"""Read and namespace endpoints: ``GET /manifest`` (the read hot path: the manifest cache, else one indexed query), ``GET /stat``,
``GET /versions``, ``GET /list``, ``POST /rename``, ``DELETE /files``."""

from fastapi import APIRouter, Depends, Query, Request, Response
from shared.http import JSONResponse

from leader import namespace, versions
from leader.routes import get_store
from leader.store import Store
from shared.paths import normalize_folder, normalize_path
from shared.protocol import OCTET_STREAM, RenameRequest, encode_manifest

router = APIRouter()


@router.get("/manifest")
async def handle_manifest(request: Request, path: str = Query(),
                          version: int | None = Query(default=None, ge=1)) -> Response:
    """Binary: ``encode_manifest(VersionInfo, packed digests)`` (shared/protocol.py), from the manifest
    cache when it holds the version (leader/manifest_cache.py). The store is taken from ``request``
    rather than a sync dependency, which FastAPI would run in a worker thread."""
    entry = await versions.lookup(request.app.state.store, normalize_path(path), version)
    return Response(entry.manifest, media_type=OCTET_STREAM)


@router.get("/stat")
async def handle_stat(request: Request, path: str = Query(),
                      version: int | None = Query(default=None, ge=1)) -> JSONResponse:
    entry = await versions.lookup(request.app.state.store, normalize_path(path), version)
    return JSONResponse(entry.info)


@router.get("/versions")
async def handle_versions(path: str = Query(), store: Store = Depends(get_store)) -> JSONResponse:
    path = normalize_path(path)
    return JSONResponse({"path": path, "versions": await versions.list_versions(store, path)})


@router.get("/list")
async def handle_list(folder: str = Query(default=""), recursive: bool = Query(default=False),
                      store: Store = Depends(get_store)) -> JSONResponse:
    folder = normalize_folder(folder)
    return JSONResponse({"folder": folder, "entries": await namespace.list_folder(store, folder, recursive)})


@router.post("/rename")
async def handle_rename(req: RenameRequest, store: Store = Depends(get_store)) -> JSONResponse:
    # A trailing '/' is accepted on either side, so that a folder can be named as one.
    src, dst = normalize_path(req.src.rstrip("/")), normalize_path(req.dst.rstrip("/"))
    return JSONResponse({"src": src, "dst": dst, "renamed": await namespace.rename(store, src, dst)})


@router.delete("/files")
async def handle_delete(path: str = Query(), store: Store = Depends(get_store)) -> JSONResponse:
    path = normalize_path(path)
    return JSONResponse({"path": path, "deleted_versions": await namespace.delete_file(store, path)})
