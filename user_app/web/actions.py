"""The web page's form actions: new folder, rename or move, delete (to the trash), restore an older
version as the latest, and undelete. Each one checks the key's grants like the user API does (403,
nothing changed), is audited, and answers ``303`` back to the page it came from."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from shared.errors import BadRequest
from shared.numbers import parse_uint
from shared.paths import normalize_folder, normalize_path
from shared.protocol.rules import MAX_VERSION
from user_app.auth.audit import audited
from user_app.routes import delete_tree
from user_app.web.forms import csrf_protect, form
from user_app.web.pages import local_target, principal_of, services_of

router = APIRouter(prefix="/web", dependencies=[Depends(csrf_protect)], include_in_schema=False)


def _back(fields: dict[str, str]) -> RedirectResponse:
    return RedirectResponse(local_target(fields.get("back")), status_code=303)


def _field(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise BadRequest(f"the form field {name!r} is missing")
    return value


@router.post("/mkdir")
async def mkdir(request: Request) -> RedirectResponse:
    """An explicit, empty folder ``name`` inside ``folder``."""
    fields = await form(request)
    name = _field(fields, "name").strip("/")
    if "/" in name:
        raise BadRequest("a folder name cannot contain '/'; create the folders one at a time")
    folder = normalize_folder(fields.get("folder", ""))
    path = normalize_path(f"{folder}/{name}" if folder else name)
    principal = principal_of(request)
    principal.check_write(path + "/")
    with audited(principal, "mkdir", path):
        await services_of(request).leader.rpc_create_folder(path)
    return _back(fields)


@router.post("/rename")
async def rename(request: Request) -> RedirectResponse:
    """Rename or move a file or a folder (with everything below it) from ``src`` to ``dst``."""
    fields = await form(request)
    src, dst = normalize_path(_field(fields, "src").rstrip("/")), normalize_path(_field(fields, "dst").rstrip("/"))
    principal = principal_of(request)
    for side in (src, dst):
        principal.check_write_tree(side)
    if src != dst:
        with audited(principal, "rename", f"{src} -> {dst}"):
            await services_of(request).leader.rpc_json("POST", "/rename", json={"src": src, "dst": dst})
    return _back(fields)


@router.post("/delete")
async def delete(request: Request) -> RedirectResponse:
    """Move a file (``kind=file``) to the trash, or a folder (``kind=dir``) with everything below it
    (``user_app.routes.delete_tree``)."""
    fields = await form(request)
    path = normalize_path(_field(fields, "path").rstrip("/"))
    principal = principal_of(request)
    services = services_of(request)
    if fields.get("kind") != "dir":
        principal.check_write(path)
        with audited(principal, "delete", path):
            await services.leader.rpc_delete(path)
        return _back(fields)
    principal.check_write_tree(path)
    with audited(principal, "delete-folder", path) as details:
        details["files"] = await delete_tree(services, principal, path)
    return _back(fields)


@router.post("/restore")
async def restore(request: Request) -> RedirectResponse:
    """Make version ``version`` of ``path`` the latest again: a new version sharing its chunks (no data
    is copied; the versions in between stay)."""
    fields = await form(request)
    path = normalize_path(_field(fields, "path"))
    version = parse_uint("version", _field(fields, "version"), minimum=1, maximum=MAX_VERSION)
    principal = principal_of(request)
    principal.check_write(path)
    with audited(principal, "restore-version", f"{path}@{version}") as details:
        info = await services_of(request).leader.rpc_copy(path, path, src_version=version)
        details["version"] = info.version
    return _back(fields)


@router.post("/undelete")
async def undelete(request: Request) -> RedirectResponse:
    """Bring back the most recent delete of ``path`` from the trash."""
    fields = await form(request)
    path = normalize_path(_field(fields, "path"))
    principal = principal_of(request)
    principal.check_write(path)
    with audited(principal, "undelete", path):
        await services_of(request).leader.rpc_undelete(path)
    return _back(fields)
