"""The web page's file bytes: ``GET /web/file/{path}`` (previews, downloads) and ``PUT /web/upload/{path}``
(what ``static/app.js`` sends for each dropped or chosen file).

They are the user API's ``GET``/``PUT /files`` (validators, ``Range``, streaming, the 2PC write) under the
session cookie, with headers that keep an uploaded file from acting as part of the page: a file is
served with ``Content-Security-Policy: sandbox`` (no scripts, an origin of its own), ``nosniff``, and
types that a browser would run (HTML, SVG, XML, JavaScript) as ``text/plain`` unless downloaded.
PDFs are not sandboxed: Chromium's viewer refuses sandboxed documents, and it runs no page script.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from shared.paths import normalize_path
from user_app.routes import file_response, raw_path, version_param, write_file
from user_app.web.forms import csrf_protect
from user_app.web.pages import principal_of
from user_app.web.previews import media_type_of

router = APIRouter(prefix="/web", dependencies=[Depends(csrf_protect)], include_in_schema=False)
ACTIVE_TYPES = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml",
                "text/javascript", "application/javascript")
SANDBOX = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"


def content_disposition(path: str, attachment: bool) -> str:
    """RFC 6266 with the RFC 5987 UTF-8 name, and an ASCII fallback."""
    name = path.rsplit("/", 1)[-1]
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"{'attachment' if attachment else 'inline'}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@router.api_route("/file/{path:path}", methods=["GET", "HEAD"])
async def file(request: Request, path: str = "") -> Response:
    """A version's bytes (``?version=N``; ``?download=1`` saves it instead of showing it)."""
    path = normalize_path(raw_path(request, b"/web/file/"))
    principal_of(request).check_read(path)
    version = version_param(request.query_params.get("version"))
    download = request.query_params.get("download") in ("1", "true")
    media_type = media_type_of(path)
    headers = {"X-Content-Type-Options": "nosniff", "Content-Disposition": content_disposition(path, download),
               "Cache-Control": "private, no-cache"}
    if media_type != "application/pdf":
        headers["Content-Security-Policy"] = SANDBOX
    if media_type in ACTIVE_TYPES and not download:
        media_type = "text/plain; charset=utf-8"
    return await file_response(request, path, version, headers, media_type)


@router.put("/upload/{path:path}", status_code=201)
async def upload(request: Request, path: str = ""):
    """Store the body as the next version of ``path``, streamed (the user API's ``PUT /files``: 201 JSON,
    403 without a write grant, 409 file/folder clash, 413 over the size limit)."""
    return await write_file(request, normalize_path(raw_path(request, b"/web/upload/")))
