"""Explicit folders and the ordered key scan: ``POST /folders``, ``GET /folders``, ``DELETE /folders``
(``leader/folders.py``) and ``GET /scan`` (``leader/scan.py``), which the user app's S3 API uses for
buckets, folder markers and listings."""

from fastapi import APIRouter, Depends, Query, Response
from shared.http import JSONResponse

from leader import folders, scan
from leader.routes import get_store
from leader.store import Store
from shared.numbers import parse_uint
from shared.paths import normalize_path
from shared.protocol.models import PathRequest
from shared.protocol.rules import MAX_SCAN_LIMIT

router = APIRouter()


def _folder(raw: str) -> str:
    """A folder's path: a normalized path; trailing ``/`` are accepted (``a/b/`` names folder ``a/b``)."""
    return normalize_path(raw.rstrip("/") if raw.strip("/") else raw)


@router.post("/folders", status_code=201)
async def handle_create_folder(req: PathRequest, store: Store = Depends(get_store)) -> JSONResponse:
    """201 ``{"path", "created_at", "created": true}``, or 200 with ``"created": false`` when the folder was
    explicit already; 409 when a live file is at the path or above it, 400 for a bad path."""
    result = await folders.create_folder(store, _folder(req.path))
    return JSONResponse(result, status_code=201 if result["created"] else 200)


@router.get("/folders")
async def handle_folder(path: str = Query(), store: Store = Depends(get_store)) -> JSONResponse:
    """``{"path", "explicit", "created_at", "empty"}``; 404 when the folder is neither explicit nor implied
    by something live below it."""
    return JSONResponse(await folders.folder_state(store, _folder(path)))


@router.delete("/folders", status_code=204)
async def handle_delete_folder(path: str = Query(), only_if_empty: bool = Query(default=True),
                               store: Store = Depends(get_store)) -> Response:
    """204 once the explicit record is gone; 404 when the folder is not explicit, 409 when
    ``only_if_empty`` (the default) and a live file or an explicit folder is below it."""
    await folders.delete_folder(store, _folder(path), only_if_empty)
    return Response(status_code=204)


@router.get("/scan")
async def handle_scan(prefix: str = Query(default=""), after: str | None = Query(default=None),
                      start: str | None = Query(default=None), limit: str | None = Query(default=None),
                      delimiter: str | None = Query(default=None),
                      readable: list[str] | None = Query(default=None, max_length=256),
                      history: bool = Query(default=False),
                      store: Store = Depends(get_store)) -> JSONResponse:
    """``{"items": [...], "truncated", "next"}``: the keys in order (:func:`leader.scan.scan` has the
    shapes). ``limit``: 1 to 1000 (default 1000); ``readable``: the prefixes the asking key may read
    (repeated), absent: everything; ``history``: every path with committed or tombstoned versions, each
    with all of them (ListObjectVersions). 400 for a bad ``limit``, a delimiter over 16 bytes or a bad bound."""
    n = MAX_SCAN_LIMIT if limit is None else parse_uint("limit", limit, minimum=1, maximum=MAX_SCAN_LIMIT)
    return JSONResponse(await scan.scan(store, prefix, after, start, n, delimiter, readable, history))
