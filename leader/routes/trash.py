"""The trash: ``GET /trash`` (deleted paths and when they expire) and ``POST /undelete`` (restore the
most recent delete of a path, or a given one). docs/failure-handling.md, "Trash"."""

from fastapi import APIRouter, Depends
from shared.http import JSONResponse

from leader import trash
from leader.routes import get_settings, get_store
from leader.store import Store
from shared.config import LeaderSettings
from shared.paths import normalize_path
from shared.protocol.models import UndeleteRequest

router = APIRouter()


@router.get("/trash")
async def handle_trash(store: Store = Depends(get_store),
                       settings: LeaderSettings = Depends(get_settings)) -> JSONResponse:
    return JSONResponse({"entries": await trash.list_trash(store, settings.trash_retention)})


@router.post("/undelete")
async def handle_undelete(req: UndeleteRequest, store: Store = Depends(get_store)) -> JSONResponse:
    """``{"path", "restored_versions": n, "stat": VersionInfo of the newest restored version}``; 404 when
    nothing of the path (of the delete at ``deleted_at``) is in the trash, 409 when it has a live version
    that the restored ones would replace."""
    path = normalize_path(req.path)
    restored, info = await trash.undelete(store, path, req.deleted_at)
    return JSONResponse({"path": path, "restored_versions": restored, "stat": info.model_dump()})
