"""WebDAV dead properties (``leader/dav_properties.py``): ``POST /properties/get``, ``/properties/patch``,
``/properties/remove`` and ``/properties/move``, called by the user apps' WebDAV layer."""

from fastapi import APIRouter, Depends

from leader import dav_properties
from leader.routes import get_store
from leader.store import Store
from shared.http import JSONResponse
from shared.paths import normalize_folder
from shared.protocol.models import PropertiesMove, PropertiesPatch, PropertiesQuery, PropertiesRemoval

router = APIRouter()


def _path(raw: str) -> str:
    """A property's path: a normalized path, ``""`` for the root (trailing ``/`` accepted)."""
    return normalize_folder(raw)


@router.post("/properties/get")
async def handle_get(req: PropertiesQuery, store: Store = Depends(get_store)) -> JSONResponse:
    """``{"properties": {path: {name: value}}}`` of ``paths`` and of every path directly in folder
    ``children_of``; 400 for a bad path or more than 1024 paths."""
    children = None if req.children_of is None else _path(req.children_of)
    found = await dav_properties.properties(store, [_path(p) for p in req.paths], children)
    return JSONResponse({"properties": found})


@router.post("/properties/patch")
async def handle_patch(req: PropertiesPatch, store: Store = Depends(get_store)) -> JSONResponse:
    """``{"path"}``: properties of ``path`` set and removed in one transaction; 400 for a bad path, name
    or value, or more than 1024 of them."""
    path = _path(req.path)
    await dav_properties.patch(store, path, req.set, req.remove)
    return JSONResponse({"path": path})


@router.post("/properties/remove")
async def handle_remove(req: PropertiesRemoval, store: Store = Depends(get_store)) -> JSONResponse:
    """``{"path"}``: every property of ``path`` (and with ``below``, of what is below it) dropped."""
    path = _path(req.path)
    await dav_properties.remove_all(store, path, req.below)
    return JSONResponse({"path": path})


@router.post("/properties/move")
async def handle_move(req: PropertiesMove, store: Store = Depends(get_store)) -> JSONResponse:
    """``{"src", "dst"}``: ``dst`` (and with ``below`` what is below it) got ``src``'s properties;
    ``keep_source`` (a COPY) keeps them at ``src`` too."""
    src, dst = _path(req.src), _path(req.dst)
    await dav_properties.move(store, src, dst, req.keep_source, req.below)
    return JSONResponse({"src": src, "dst": dst})
