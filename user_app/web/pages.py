"""The web page's views (README "Web page"): log in and out, browse a folder, a file with its preview
and versions, and the trash. Rendered on the server (``templates/``); ``static/app.js`` only adds
uploads, "load more" in place and confirmations, so browsing and downloading work without JavaScript.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from shared.errors import NotFound, Unauthorized
from shared.paths import normalize_folder, normalize_path, parent_of
from user_app.auth.audit import audited
from user_app.auth.authentication import authenticate
from user_app.auth.principal import Principal
from user_app.routes import folder_listing, raw_path, trash_listing
from user_app.services import Services
from user_app.web import previews
from user_app.web.forms import csrf_protect, form
from user_app.web.listing import ListingQuery, arrange
from user_app.web.sessions import LOGIN_COOKIE, LOGIN_COOKIE_SECONDS, SESSION_COOKIE, SessionSigner
from user_app.web.templating import render

router = APIRouter(prefix="/web", dependencies=[Depends(csrf_protect)], include_in_schema=False)
root = APIRouter(include_in_schema=False)
HOME = "/web/browse/"


def services_of(request: Request) -> Services:
    return request.app.state.services


def principal_of(request: Request) -> Principal:
    return request.state.principal


def local_target(raw: str | None, default: str = HOME) -> str:
    """Where to send the browser after a form: a path on this page only (no open redirect)."""
    if not raw or not raw.startswith("/web/") or raw.startswith("//") or "\\" in raw:
        return default
    return raw


def breadcrumbs(folder: str) -> list[tuple[str, str]]:
    """``[(name, folder path), ...]`` from the root's first child down to ``folder``."""
    parts = folder.split("/") if folder else []
    return [(name, "/".join(parts[:i + 1])) for i, name in enumerate(parts)]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@root.get("/")
@root.get("/web")
@root.get("/web/")
async def home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str = HOME):
    """The login form, with a fresh pre-session cookie that its CSRF token is tied to."""
    if getattr(request.state, "principal", None) is not None:
        return RedirectResponse(local_target(next), status_code=303)
    return _login_page(request, local_target(next))


def _login_page(request: Request, next_: str, error: str | None = None, access_key: str | None = None,
                status: int = 200):
    signer: SessionSigner = request.app.state.web_signer
    cookie_value, nonce = signer.new_login_nonce()
    response = render(request, "login.html", status=status, login_csrf=signer.csrf_token(nonce), next=next_,
                      error=error, access_key=access_key)
    response.set_cookie(LOGIN_COOKIE, cookie_value, max_age=LOGIN_COOKIE_SECONDS, path="/web/login",
                        httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.post("/login")
async def login(request: Request):
    """Check the access key and secret (as HTTP Basic is checked), then set the session cookie and go to
    ``next``; 401 with the form again otherwise."""
    fields = await form(request)
    access_key, secret = fields.get("access_key", "").strip(), fields.get("secret_key", "")
    next_ = local_target(fields.get("next"))
    try:
        principal = await authenticate(services_of(request).keys, access_key, secret)
    except Unauthorized as exc:
        return _login_page(request, next_, exc.message, access_key[:128], status=401)
    with audited(principal, "web-login", principal.access_key):
        signer: SessionSigner = request.app.state.web_signer
        response = RedirectResponse(next_, status_code=303)
        response.set_cookie(SESSION_COOKIE, signer.new_session(access_key, secret), max_age=int(signer.lifetime),
                            path="/", httponly=True, samesite="strict", secure=_secure(request))
        response.delete_cookie(LOGIN_COOKIE, path="/web/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse("/web/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.get("/browse/{folder:path}")
async def browse(request: Request, folder: str = ""):
    """A folder: its sub-folders, then its files, sorted, filtered and paged (``user_app/web/listing.py``)."""
    folder = normalize_folder(raw_path(request, b"/web/browse/"))
    principal = principal_of(request)
    query = ListingQuery.parse(request.query_params)
    listing = await folder_listing(services_of(request), principal, folder)
    entries, total = arrange(listing["entries"], query)
    for e in entries:
        e["writable"] = principal.may_write_tree(e["path"]) if e["type"] == "dir" else principal.may_write(e["path"])
    next_offset = query.offset + len(entries)
    return render(request, "browse.html", folder=folder, breadcrumbs=breadcrumbs(folder), entries=entries,
                  total=total, query=query, next_offset=next_offset if next_offset < total else None,
                  can_write=principal.writes_anything_under(folder), here=request.url.path)


@router.get("/view/{path:path}")
async def view(request: Request, path: str = ""):
    """One file: its preview (``user_app/web/previews.py``), details and versions."""
    path = normalize_path(raw_path(request, b"/web/view/"))
    principal = principal_of(request)
    principal.check_read(path)
    services = services_of(request)
    versions = sorted(await services.leader.rpc_versions(path), key=lambda v: v.version, reverse=True)
    if not versions:
        raise NotFound(f"no such file: {path!r}")
    latest = versions[0]
    preview = await previews.preview(services.reader, latest)
    folder = parent_of(path)
    return render(request, "view.html", path=path, name=path.rsplit("/", 1)[-1], latest=latest, versions=versions,
                  preview=preview, breadcrumbs=breadcrumbs(folder), can_write=principal.may_write(path),
                  here=request.url.path, folder_url=f"/web/browse/{folder}/" if folder else HOME)


@router.get("/trash")
async def trash(request: Request):
    """What was deleted and can still be restored, newest first."""
    principal = principal_of(request)
    entries = (await trash_listing(services_of(request), principal))["entries"]
    entries.sort(key=lambda e: e.get("deleted_at") or 0, reverse=True)
    for e in entries:
        e["writable"] = principal.may_write(e["path"])
    return render(request, "trash.html", entries=entries, here=request.url.path)
