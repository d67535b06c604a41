"""The user web API (port 8010): the exact contract of the README's "User API" section.

Every request arrives authenticated (``user_app/auth/authentication.py``); each route checks what its key
may do with the paths it touches (403 otherwise) before it does anything, and every change is written to
the audit log (``user_app/auth/audit.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Request
from shared.http import JSONResponse
from fastapi.responses import Response, StreamingResponse

from shared.bodies import BodyLimit, iter_body, read_body
from shared.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, RingFSError
from shared.fast_routes import FastRoutes
from shared.numbers import parse_digits, parse_uint
from shared.paths import normalize_folder, normalize_path
from shared.protocol.models import PathRequest, RenameRequest, VersionInfo
from shared.protocol.rules import MAX_FILE_SIZE, MAX_VERSION
from shared.ring import ring_shares
from user_app import lease_routes, multi_file
from user_app.auth.audit import audited
from user_app.auth.principal import Principal
from user_app.preconditions import (
    NotModified, check_read, http_date, if_match_condition, last_modified, require_if_match,
)
from user_app.ranges import parse_range
from user_app.reader import chain_first
from user_app.services import Services

router = APIRouter()
fast = FastRoutes(router)  # PUT and GET of one file, the hot path (shared/fast_routes.py)
_PATH_PARAM = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}


CLUSTER_STATS_TIMEOUT = 2.0  # seconds each chunk server gets to answer GET /cluster's live stats


def _services(request: Request) -> Services:
    return request.app.state.services


def _principal(request: Request) -> Principal:
    return request.state.principal


def raw_path(request: Request, prefix: bytes) -> str:
    """The path after ``prefix`` decoded strictly from the raw URL: the ASGI server's own decoding
    replaces invalid UTF-8 with U+FFFD, which would turn a bad name into a different valid one."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    tail = raw.split(b"?", 1)[0][len(prefix):]
    try:
        return unquote_to_bytes(tail).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("path is not valid UTF-8") from None


def _file_path(request: Request, prefix: str) -> str:
    return normalize_path(raw_path(request, prefix))


def version_param(raw: str | None) -> int | None:
    """``?version=``: ASCII digits from 1 to ``MAX_VERSION`` (shared/numbers.py), else 400."""
    return None if raw is None else parse_uint("version", raw, minimum=1, maximum=MAX_VERSION)


def _int_param(name: str, raw: str | None) -> int | None:
    """A numeric query parameter: ASCII digits within 64 bits (shared/numbers.py), else 400."""
    return None if raw is None else parse_uint(name, raw)


def _length_hint(request: Request) -> int | None:
    """The request's ``Content-Length`` when it is a plain number (a hint only; the body is what counts)."""
    length = request.headers.get("content-length")
    return None if length is None else parse_digits(length)


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@fast.route("/files/{path:path}", ["PUT"], status_code=201, openapi_extra={
    "parameters": [_PATH_PARAM, {"name": "chunk_size", "in": "query", "required": False, "schema": {"type": "integer"}}],
    "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                         "format": "binary"}}}}})
async def put_file(request: Request) -> JSONResponse:
    """Store the raw body as the next version of ``path``; 201 with ``{"path","version","size","sha256",
    "chunks","replicas"}`` and the new ``ETag``. The chunk size follows the file's ``Content-Length`` by the
    leader's chunk-size policy (``shared/chunk_size.py``); ``?chunk_size=`` overrides it within its bounds.

    Conditional (RFC 9110 §13.1): ``If-None-Match: *`` makes it create-only, ``If-Match: *`` or
    ``If-Match: "<sha256>", ...`` makes it replace only a live version with one of those ETags; either
    answers 412 otherwise, checked by the leader atomically with the commit (two writers that both
    read one ETag cannot both replace it). An ``If-Match`` that already fails is answered before the body
    is read. 409 when a live file is above ``path`` or below it (a name is a file or a folder)."""
    return await write_file(request, _file_path(request, b"/files/"))


async def write_file(request: Request, path: str) -> JSONResponse:
    """What ``PUT /files/{path}`` does once it has the path (the web page's upload does the same):
    check the write grant and the preconditions, stream the body into a new version, answer 201."""
    principal = _principal(request)
    principal.check_write(path)
    inm = request.headers.get("if-none-match")
    if inm is not None and inm.strip() != "*":
        raise BadRequest("only 'If-None-Match: *' is supported on PUT")
    if_match = if_match_condition(request.headers.get("if-match"))
    chunk_size = _int_param("chunk_size", request.query_params.get("chunk_size"))
    services = _services(request)
    with audited(principal, "put", path) as details:
        if if_match is not None:  # fail fast; the leader checks again at prepare and at commit
            try:
                current = (await services.leader.rpc_stat(path)).sha256
            except NotFound:
                current = None
            require_if_match(if_match, path, current)
        result = await services.writer.write(path, iter_body(request), chunk_size=chunk_size,
                                             create_only=inm is not None, size_hint=_length_hint(request),
                                             if_match=if_match)
        details["version"] = result.version
    return JSONResponse(result.user_api_body(), status_code=201, headers={"ETag": f'"{result.sha256}"'})


@fast.route("/files/{path:path}", ["GET", "HEAD"], openapi_extra={"parameters": [
    _PATH_PARAM, {"name": "version", "in": "query", "required": False, "schema": {"type": "integer"}}]})
async def get_file(request: Request) -> Response:
    """The bytes of the latest (or ``?version=N``) version, with ``ETag`` (its SHA-256), ``Last-Modified``
    (its commit time) and ``Range`` support (206, or 416 with ``Content-Range: bytes */size``; an invalid
    ``Range`` is ignored, RFC 9110 §14.2).

    Conditional (RFC 9110 §13.2.2, ``user_app/preconditions.py``): ``If-Match`` not matching -> 412;
    ``If-None-Match`` matching, or else ``If-Modified-Since`` not older than the commit -> 304 with the
    validators and no body."""
    path = _file_path(request, b"/files/")
    _principal(request).check_read(path)
    return await file_response(request, path, version_param(request.query_params.get("version")))


async def file_response(request: Request, path: str, version: int | None, extra_headers: dict[str, str] | None = None,
                        media_type: str | None = None) -> Response:
    """The answer of ``GET``/``HEAD /files/{path}`` for a caller already allowed to read ``path``: the
    validators, conditionals and ``Range`` as documented there, plus ``extra_headers``; ``media_type``
    replaces the one guessed from the name. Raises :class:`NotFound`, :class:`Unavailable`."""
    reader = _services(request).reader
    view = await reader.open(path, version)
    size = view.size
    validators = {
        "ETag": f'"{view.info.sha256}"',
        "Last-Modified": http_date(last_modified(view.info)),
        "X-RingFS-Version": str(view.info.version),
    }
    try:
        check_read(request.headers, view.info)
    except NotModified:
        return Response(status_code=304, headers=validators)
    headers = {**validators, "Accept-Ranges": "bytes", **(extra_headers or {})}
    media_type = media_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
    rng = parse_range(request.headers.get("range"), size)
    status, start, end = 200, 0, size - 1
    if rng is not None:
        status, (start, end) = 206, rng
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    if size == 0:
        return Response(b"", status_code=status, headers=headers, media_type=media_type)
    blocks = reader.stream(view, start, end)
    # The first piece is fetched before any header is sent: a file whose chunks have no reachable copy
    # is a 503 with a JSON error, not a 200 whose body breaks off (the whole of a file up to PIECE_SIZE).
    first = await anext(blocks)
    return StreamingResponse(chain_first(first, blocks), status_code=status, headers=headers, media_type=media_type)


@router.delete("/files/{path:path}", status_code=204)
async def delete_file(path: str, request: Request) -> Response:
    """Move every version of ``path`` to the trash; 204, 404 when nothing is live. ``If-Match`` (``*`` or
    ETags, RFC 9110 §13.1.1) deletes only a matching live version, checked by the leader in the deleting
    transaction: 412 otherwise."""
    path = _file_path(request, b"/files/")
    principal = _principal(request)
    principal.check_write(path)
    if_match = if_match_condition(request.headers.get("if-match"))
    with audited(principal, "delete", path):
        await _services(request).leader.rpc_delete(path, if_match)
    return Response(status_code=204)


def _bool_param(name: str, raw: str | None) -> bool:
    if raw is None or raw.lower() in ("false", "0", ""):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise BadRequest(f"{name} must be true or false, got {raw!r}")


_BINARY_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}
_PATHS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["paths"],
    "properties": {"paths": {"type": "array", "items": {"type": "string"}, "maxItems": 1024}}}}}}}


@router.post("/batch/write", openapi_extra=_BINARY_BODY)
async def batch_write(request: Request) -> JSONResponse:
    """Many small files in one request. Body: per file ``u16 path length | UTF-8 path | u64 size | bytes``
    (``shared.protocol.batches.encode_batch_files``), at most 1024 files and 16 MiB (413). Each file is its own
    2PC write (``?create_only=true`` makes each create-only, ``?chunk_size=`` as on PUT); the answer lists
    per file, in order, what PUT would answer or ``{"path","error","status"}``."""
    create_only = _bool_param("create_only", request.query_params.get("create_only"))
    chunk_size = _int_param("chunk_size", request.query_params.get("chunk_size"))
    services = _services(request)
    limits = services.limits
    length = request.headers.get("content-length")
    announced = int(length) if length and length.isdigit() else multi_file.MAX_WRITE_BODY
    if announced > multi_file.MAX_WRITE_BODY:
        raise PayloadTooLarge(f"body of {announced} bytes exceeds the limit of {multi_file.MAX_WRITE_BODY} bytes")
    principal = _principal(request)
    async with limits.holding_body(principal.access_key, announced):  # bounded per process and per key
        body = await read_body(request, multi_file.MAX_WRITE_BODY)
        results = await multi_file.write_files(services.writer, services.rings, limits, body, principal,
                                               create_only=create_only, chunk_size=chunk_size)
    return JSONResponse({"results": results})


@router.post("/batch/read", openapi_extra=_PATHS_BODY)
async def batch_read(request: Request) -> Response:
    """Many small files in one request. Body: JSON ``{"paths": [...]}`` (at most 1024). Answer: per path, in
    order, ``u16 path length | path | u16 status | u64 length | bytes`` (``shared.protocol.batches``):
    the content with 200, else a JSON ``{"error"}`` with the status GET would answer (400, 404), or 413 for a
    file over 4 MiB (stream it with GET)."""
    services = _services(request)
    entries = await multi_file.plan_read(services.leader, await multi_file.parse_read_request(request),
                                         _principal(request))
    return StreamingResponse(multi_file.stream_read(services.reader, services.rings, services.limits, entries),
                             media_type="application/octet-stream")


def _stat_body(info: VersionInfo) -> dict[str, Any]:
    return {"path": info.path, "size": info.size, "version": info.version, "sha256": info.sha256,
            "chunks": info.chunks, "replication": info.replication, "created_at": info.created_at,
            "chunk_size": info.chunk_size}


@router.get("/stat/{path:path}")
async def stat(path: str, request: Request) -> dict:
    version = version_param(request.query_params.get("version"))
    path = _file_path(request, b"/stat/")
    _principal(request).check_read(path)
    return _stat_body(await _services(request).leader.rpc_stat(path, version))


@router.get("/versions/{path:path}")
async def versions(path: str, request: Request) -> dict:
    path = _file_path(request, b"/versions/")
    _principal(request).check_read(path)
    return {"path": path, "versions": [_stat_body(v) for v in await _services(request).leader.rpc_versions(path)]}


@router.get("/list")
@router.get("/list/{folder:path}")
async def list_folder(request: Request, folder: str = "", recursive: bool = False) -> dict:
    """Direct children (files and sub-folders) of ``folder``; every file below it with ``recursive``."""
    folder = normalize_folder(raw_path(request, b"/list/") if request.url.path.startswith("/list/") else "")
    return await folder_listing(_services(request), _principal(request), folder, recursive)


async def folder_listing(services: Services, principal: Principal, folder: str, recursive: bool = False,
                         folders: bool = False) -> dict:
    """The leader's ``{"folder", "entries"}`` of ``folder`` as ``principal`` may see it (``folders``: a
    recursive listing names the explicit folders below too). Raises :class:`Forbidden` when it may read
    nothing there, :class:`NotFound` for a folder with nothing in it."""
    if not principal.reads_anything_under(folder):
        raise Forbidden(f"access key {principal.access_key} may not read anything in {folder or 'the root'!r}")
    params: dict[str, Any] = {"folder": folder, "recursive": str(recursive).lower()}
    if folders:
        params["folders"] = "true"
    if "" not in principal.read_prefixes:  # the leader lists only what the key may read
        params["readable"] = list(principal.read_prefixes)
    return await services.leader.rpc_json("GET", "/list", params=params)


async def delete_tree(services: Services, principal: Principal, folder: str) -> int:
    """A folder and everything below it, for a caller that checked ``check_write_tree(folder)``: every
    file to the trash, then the explicit folders below, the deepest first, then the folder itself (an
    implied one is gone with its files); what is already gone is skipped. The number of files (as
    ``ringfs rm -r``, WebDAV's DELETE and the web page do it)."""
    try:
        entries = (await folder_listing(services, principal, folder, recursive=True, folders=True))["entries"]
    except NotFound:
        entries = []
    files = [e["path"] for e in entries if e["type"] == "file"]
    for path in files:
        with contextlib.suppress(NotFound):
            await services.leader.rpc_delete(path)
    below = sorted((e["path"] for e in entries if e["type"] == "dir"), key=len, reverse=True)
    for path in [*below, folder]:
        with contextlib.suppress(NotFound):
            await services.leader.rpc_delete_folder(path, only_if_empty=False)
    return len(files)


@router.post("/rename")
async def rename(body: RenameRequest, request: Request) -> dict:
    payload = {"src": normalize_path(body.src.rstrip("/")), "dst": normalize_path(body.dst.rstrip("/"))}
    principal = _principal(request)
    for side in (payload["src"], payload["dst"]):  # a folder moves with everything below it
        principal.check_write_tree(side)
    with audited(principal, "rename", f"{payload['src']} -> {payload['dst']}"):
        return await _services(request).leader.rpc_json("POST", "/rename", json=payload)


@router.get("/locations/{path:path}")
async def locations(path: str, request: Request) -> dict:
    """For each chunk index: its hash and the advertise URLs of the servers that hold it (asked live)."""
    services = _services(request)
    path = _file_path(request, b"/locations/")
    _principal(request).check_read(path)
    view = await services.reader.open(path, version_param(request.query_params.get("version")))
    digests = view.digest_list()
    placement = await services.rings.get()
    holders = await services.reader.locate(placement, digests, view.info.replication)
    return {"path": view.info.path, "version": view.info.version, "chunk_size": view.chunk_size,
            "chunks": [{"index": i, "hash": d.hex(), "servers": h} for i, (d, h) in enumerate(zip(digests, holders))]}


@router.get("/cluster")
async def cluster(request: Request) -> dict:
    """Every chunk server with its advertise URL, state, virtual nodes, ring share (fraction of the hash
    space it owns first), when the leader last saw it answer a health check (UNIX seconds) and (asked live,
    2 s timeout; null when it does not answer) committed chunks, bytes, disk bytes and anti-entropy
    progress; the ring epoch; the policy."""
    _principal(request).check_admin()
    return await cluster_report(_services(request))


async def cluster_report(services: Services) -> dict:
    """The body of ``GET /cluster`` (the web page's admin view shows the same)."""
    ring = await services.leader.rpc_ring()
    shares: dict[str, int] = {}
    for _, sid in ring.vnodes:
        shares[sid] = shares.get(sid, 0) + 1
    fractions = ring_shares(ring.vnodes)
    live = [s for s in ring.servers if s.state != "removed"]
    leaders, leader_view, *stats = await asyncio.gather(
        leader_roles(services),
        services.leader.rpc_json("GET", "/cluster"),
        *(services.chunks.rpc_stats(s.url, timeout=CLUSTER_STATS_TIMEOUT) for s in live), return_exceptions=True)
    last_seen = leader_view.get("last_seen_at", {}) if isinstance(leader_view, dict) else {}
    usage = {s.server_id: {k: st.get(k) for k in SERVER_STATS} for s, st in zip(live, stats) if isinstance(st, dict)}
    return {
        "leaders": leaders if isinstance(leaders, list) else [],
        "epoch": ring.epoch,
        "replication_factor": ring.replication_factor,
        "min_write_replicas": ring.min_write_replicas,
        "chunk_size": ring.chunk_size,
        "min_chunk_size": ring.min_chunk_size,
        "max_chunk_size": ring.max_chunk_size,
        "target_chunks_per_file": ring.target_chunks_per_file,
        "streamed_chunk_size": ring.streamed_chunk_size,
        "servers": [{**s.model_dump(), "virtual_nodes": shares.get(s.server_id, 0),
                     "ring_share": fractions.get(s.server_id, 0.0), "last_seen_at": last_seen.get(s.server_id),
                     **usage.get(s.server_id, dict.fromkeys(SERVER_STATS))}
                    for s in ring.servers],
    }


async def leader_roles(services: Services) -> list[dict]:
    """``[{"url", "role", "term"}]`` of every leader the user app knows (``LEADER_URLS``), from their
    ``/healthz``; role None for one that does not answer within ``CLUSTER_STATS_TIMEOUT``."""
    async def one(url: str) -> dict:
        try:
            body = (await services.leader.transport.call("GET", url + "/healthz", peer=f"leader at {url}",
                                                         timeout=CLUSTER_STATS_TIMEOUT)).json()
            return {"url": url, "role": body.get("role"), "term": body.get("term")}
        except (RingFSError, ValueError):
            return {"url": url, "role": None, "term": None}
    return list(await asyncio.gather(*(one(u) for u in services.leader.urls)))


SERVER_STATS = ("chunks", "bytes", "disk_bytes", "anti_entropy")  # what /cluster shows of a server's /stats


@router.post("/undelete")
async def undelete(body: PathRequest, request: Request) -> dict:
    """Restore the most recent delete of ``path`` from the trash; the restored file's stat. 404 when
    nothing of it is in the trash, 409 when the path exists again."""
    path = normalize_path(body.path)
    principal = _principal(request)
    principal.check_write(path)
    with audited(principal, "undelete", path):
        return _stat_body(await _services(request).leader.rpc_undelete(path))


@router.get("/trash")
async def trash(request: Request) -> dict:
    """Deleted paths still restorable: ``{"entries": [{"path","size","versions","deleted_at","expires_at"}]}``."""
    return await trash_listing(_services(request), _principal(request))


async def trash_listing(services: Services, principal: Principal) -> dict:
    """The leader's trash as ``principal`` may see it: all of it for an admin, else what it may read."""
    body = await services.leader.rpc_json("GET", "/trash")
    if not principal.admin:
        body["entries"] = [e for e in body["entries"] if principal.may_read(e["path"])]
    return body


@router.get("/fsck")
async def fsck(request: Request) -> dict:
    """The leader's replication report of every live and trashed file (docs/failure-handling.md). Bounded
    by ``REQUEST_TIMEOUT`` like every leader call; on a very large cluster ask the leader directly."""
    _principal(request).check_admin()
    return await _services(request).leader.rpc_json("GET", "/fsck")


# Bodies larger than JSON_BODY_LIMIT this router takes (shared.bodies.BodyLimitMiddleware applies them).
BODY_LIMITS = (
    BodyLimit("PUT", "/files/", MAX_FILE_SIZE),
    BodyLimit("PUT", "/dav/", MAX_FILE_SIZE),  # WebDAV PUTs stream (user_app/dav/)
    BodyLimit("PUT", "/web/upload/", MAX_FILE_SIZE),  # the web page's uploads stream (user_app/web/)
    BodyLimit("POST", "/batch/write", multi_file.MAX_WRITE_BODY),
    BodyLimit("POST", "/batch/read", multi_file.MAX_READ_BODY),
    lease_routes.BODY_LIMIT,
)
