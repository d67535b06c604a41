"""Calls to the leader (docs/protocol.md, "Leader"), from user apps and chunk servers.

Every leader answer carries ``X-Ring-Epoch``; each one is handed to ``on_epoch`` so a ring cache notices a
membership change from any reply (shared/rpc/ring_cache.py). Errors are what :meth:`Transport.call`
raises; a malformed answer is an :class:`UpstreamError`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable
from urllib.parse import quote

import orjson

from shared.errors import NotActiveLeader, NotFound, RingFSError, Unavailable, UpstreamError, error_for_status
from shared.protocol.batches import encode_version_sections
from shared.protocol.frames import pack_digests, unpack_digests
from shared.protocol.manifests import Manifest, decode_manifest, decode_manifests
from shared.protocol.models import (
    AccessKeyInfo, AccessKeySecret, AssemblyPlan, BatchError, NewAccessKey, PartListing, PreparedVersion,
    RegistrationResult, RingView, ServerRegistration, UploadInfo, UploadListing, UploadProblem, UploadSummary,
    VersionInfo, VersionPrepare,
)
from shared.protocol.rules import (
    JSON, LEASE_HEADER, LEASE_HOLDER_HEADER, MAX_LEASE_SECONDS, MAX_SCAN_LIMIT, OCTET_STREAM, RING_EPOCH_HEADER,
    UPLOAD_ID_RE,
)
from shared.rpc.transport import RpcResponse, Transport, parsed


# A call looks for the active leader this long (seconds) before it gives up: a takeover's lease expiry,
# lock and term (leader/election.py), with room to spare. Between rounds of every leader it waits from
# the first to the second figure, doubling.
FAILOVER_WINDOW = 20.0
FAILOVER_BACKOFF = (0.1, 1.0)
SUSPECT_AFTER = 2.0  # seconds without an answer before the other leaders are asked who is active


class _Moved(Exception):
    """Another leader is active (``url``): send the call there."""

    def __init__(self, url: str) -> None:
        self.url = url


def _query_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class LeaderClient:
    """``rpc_*`` calls on the active leader, over one :class:`Transport`.

    ``leader_urls``: one URL, or every leader of the cluster (``LEADER_URLS``: standbys on one
    PostgreSQL, ``leader/election.py``). A call goes to the leader that answered last. When that one is a
    standby (503 naming the active leader) or cannot be reached, the call moves on: to the named leader,
    or to the next URL, trying each in turn with a growing pause (``FAILOVER_BACKOFF``) for up to
    ``FAILOVER_WINDOW`` seconds before it raises :class:`Unavailable`. A request that reached no leader,
    or one that a standby refused, was not applied, so it is safe to send again. One sent to a leader that
    died while answering may have been applied: the calls that change state are idempotent by
    transaction id (commit, abort) or fail cleanly when repeated (a second create is a 409)."""

    def __init__(self, transport: Transport, leader_urls: str | list[str]) -> None:
        self.transport = transport
        urls = [leader_urls] if isinstance(leader_urls, str) else list(leader_urls)
        self.urls = [u.rstrip("/") for u in urls]
        self.leader_url = self.urls[0]
        self.on_epoch: Callable[[int], None] | None = None  # set by the ring cache

    @property
    def peer(self) -> str:
        return f"leader at {self.leader_url}"

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                   body: bytes | memoryview | None = None, content_type: str | None = None,
                   timeout: float | None = None, headers: dict[str, str] | None = None) -> RpcResponse:
        """One request to the active leader (see the class docstring); notes the ring epoch of its answer."""
        if len(self.urls) == 1:
            resp = await self.transport.call(method, self.leader_url + path, peer=self.peer, params=params,
                                             body=body, content_type=content_type, timeout=timeout, headers=headers)
        else:
            resp = await self._call_active(method, path, params, body, content_type, timeout, headers)
        epoch = resp.headers.get(RING_EPOCH_HEADER)
        if epoch is not None and epoch.isdigit() and self.on_epoch is not None:
            self.on_epoch(int(epoch))
        return resp

    async def _call_active(self, method, path, params, body, content_type, timeout, headers=None) -> RpcResponse:
        deadline = time.monotonic() + FAILOVER_WINDOW
        pause, tried = FAILOVER_BACKOFF[0], 0
        while True:
            url = self.leader_url
            try:
                return await self._send_watched(url, method, path, params, body, content_type, timeout, headers)
            except _Moved as moved:
                if time.monotonic() >= deadline:
                    raise Unavailable(f"no answer from the leaders {', '.join(self.urls)} in time") from None
                self.leader_url = moved.url
                continue
            except NotActiveLeader as exc:
                hint = exc.active_url.rstrip("/") if exc.active_url else None
                problem: Unavailable = exc
            except Unavailable as exc:
                if exc.__cause__ is None:  # an answered 503 (not a standby's): the leader's own answer
                    raise
                hint, problem = None, exc
            tried += 1
            if time.monotonic() >= deadline:
                raise Unavailable(f"no active leader among {', '.join(self.urls)}: {problem.message}") from None
            if hint and hint != url and hint in self.urls:
                self.leader_url = hint
            else:
                self.leader_url = self.urls[(self.urls.index(url) + 1) % len(self.urls)]
            if tried % len(self.urls) == 0:  # every leader tried once: wait before the next round
                await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, FAILOVER_BACKOFF[1])

    async def _send_watched(self, url, method, path, params, body, content_type, timeout, headers=None) -> RpcResponse:
        """The call to ``url``; while it has no answer, every ``SUSPECT_AFTER`` seconds the other leaders
        are asked who is active. A paused or cut-off leader accepts connections and never answers, so
        when another one says it is active the call is abandoned there (:class:`_Moved`): whatever the
        old leader does with it later, its term has ended and it commits nothing (``leader/store.py``)."""
        call = asyncio.ensure_future(self.transport.call(method, url + path, peer=self.peer, params=params,
                                                         body=body, content_type=content_type, timeout=timeout,
                                                         headers=headers))
        try:
            while True:
                done, _ = await asyncio.wait({call}, timeout=SUSPECT_AFTER)
                if done:
                    return call.result()
                other = await self._active_elsewhere(url)
                if other is not None:
                    raise _Moved(other)
        finally:
            if not call.done():
                call.cancel()

    async def _active_elsewhere(self, url: str) -> str | None:
        """The first of the other leaders whose ``/healthz`` says it is active, or None."""
        async def role(other: str) -> str | None:
            try:
                resp = await self.transport.call("GET", other + "/healthz", peer=f"leader at {other}",
                                                 timeout=SUSPECT_AFTER)
                return other if orjson.loads(resp.body).get("role") == "active" else None
            except (RingFSError, ValueError, AttributeError):
                return None
        found = await asyncio.gather(*(role(u) for u in self.urls if u != url))
        return next((u for u in found if u is not None), None)

    def _parsed(self, resp: RpcResponse, what: str, parse):
        return parsed(resp, self.peer, what, parse)

    # ------------------------------------------------------------ membership

    async def rpc_ring(self) -> RingView:
        """``GET /ring``: the ring at the current epoch and the cluster policy."""
        return self._parsed(await self.call("GET", "/ring"), "ring", lambda r: RingView.model_validate_json(r.body))

    async def rpc_register(self, registration: ServerRegistration, timeout: float | None = None) -> RegistrationResult:
        """``POST /servers``: a chunk server joins (or rejoins) the ring."""
        resp = await self.call("POST", "/servers", body=registration.model_dump_json().encode(), content_type=JSON,
                               timeout=timeout)
        return self._parsed(resp, "registration", lambda r: RegistrationResult.model_validate_json(r.body))

    # ------------------------------------------------------------ two-phase commit (phases 2 and 4)

    async def rpc_prepare_version(self, prepare: VersionPrepare, digests: bytes | memoryview) -> PreparedVersion:
        """Phase 2 (``POST /txns``): record the name mapping as pending."""
        params = {k: _query_value(v) for k, v in prepare.model_dump(exclude_none=True).items()}
        resp = await self.call("POST", "/txns", params=params, body=digests, content_type=OCTET_STREAM)
        return self._parsed(resp, "prepare", lambda r: PreparedVersion.model_validate_json(r.body))

    async def rpc_prepare_versions(self, items: list[tuple[VersionPrepare, bytes | memoryview]]
                                   ) -> list[PreparedVersion | RingFSError]:
        """Phase 2 for several txns in one request (``POST /txns/batch``): per item, in order, its result
        or the error its own ``POST /txns`` would have raised."""
        resp = await self.call("POST", "/txns/batch", body=encode_version_sections(items), content_type=OCTET_STREAM)
        return self._parsed(resp, "batch prepare", lambda r: self._per_txn(
            r, [p.txn_id for p, _ in items], PreparedVersion))

    async def rpc_commit_version(self, txn_id: str) -> VersionInfo:
        """Phase 4 (``POST /txns/{txn_id}/commit``): make the version visible."""
        resp = await self.call("POST", f"/txns/{txn_id}/commit")
        return self._parsed(resp, "commit", lambda r: VersionInfo.model_validate_json(r.body))

    async def rpc_commit_versions(self, txn_ids: list[str]) -> list[VersionInfo | RingFSError]:
        """Phase 4 for several txns in one request (``POST /txns/batch-commit``): per txn, in order."""
        resp = await self.call("POST", "/txns/batch-commit", body=orjson.dumps({"txn_ids": txn_ids}), content_type=JSON)
        return self._parsed(resp, "batch commit", lambda r: self._per_txn(r, txn_ids, VersionInfo))

    def _per_txn(self, resp: RpcResponse, txn_ids: list[str], model) -> list:
        results = resp.json()["results"]
        out = []
        for txn_id in txn_ids:
            entry = results[txn_id]
            if "error" in entry and "status" in entry:
                err = BatchError.model_validate(entry)
                out.append(error_for_status(err.status, err.error, self.peer))
            else:
                out.append(model.model_validate(entry))
        return out

    async def rpc_abort_version(self, txn_id: str) -> None:
        """Drop the pending version of ``txn_id``."""
        await self.call("POST", f"/txns/{txn_id}/abort")

    # ------------------------------------------------------------ reads

    async def rpc_manifest(self, path: str, version: int | None = None) -> Manifest:
        """``GET /manifest``: the latest (or a given) committed version of ``path`` and its chunk list."""
        params: dict[str, Any] = {"path": path} if version is None else {"path": path, "version": version}
        resp = await self.call("GET", "/manifest", params=params)
        return self._parsed(resp, "manifest", lambda r: decode_manifest(r.body))

    async def rpc_manifest_leased(self, path: str, holder: str) -> tuple[Manifest, float]:
        """``GET /manifest`` of the latest version of ``path``, asking for a read lease as ``holder``
        (``<holder id> <callback URL>``, leader/read_leases.py): the manifest and the lease's seconds (0:
        none granted, or a leader that grants none)."""
        resp = await self.call("GET", "/manifest", params={"path": path}, headers={LEASE_HOLDER_HEADER: holder})
        view = self._parsed(resp, "manifest", lambda r: decode_manifest(r.body))
        try:
            seconds = float(resp.headers.get(LEASE_HEADER, "0"))
        except ValueError:
            seconds = 0.0
        return view, seconds if 0 < seconds <= MAX_LEASE_SECONDS else 0.0

    async def rpc_manifests(self, paths: list[str], version: int | None = None,
                            max_size: int | None = None) -> list[Manifest | RingFSError]:
        """``POST /manifests``: per path, in order, its manifest or the error the leader answered for it
        (``PayloadTooLarge`` for a file over ``max_size`` bytes, or past the answer's chunk budget)."""
        if not paths:
            return []
        body = orjson.dumps({"paths": paths, "version": version, "max_size": max_size})
        resp = await self.call("POST", "/manifests", body=body, content_type=JSON)
        entries = self._parsed(resp, "manifests", lambda r: decode_manifests(r.body))
        if len(entries) != len(paths):
            raise UpstreamError(f"{self.peer} answered {len(entries)} manifests for {len(paths)} paths")
        return [error_for_status(e.status, e.error, self.peer) if isinstance(e, BatchError) else e for e in entries]

    async def rpc_stat(self, path: str, version: int | None = None) -> VersionInfo:
        params: dict[str, Any] = {"path": path} if version is None else {"path": path, "version": version}
        return self._parsed(await self.call("GET", "/stat", params=params), "stat",
                            lambda r: VersionInfo.model_validate_json(r.body))

    async def rpc_versions(self, path: str) -> list[VersionInfo]:
        resp = await self.call("GET", "/versions", params={"path": path})
        return self._parsed(resp, "versions", lambda r: [VersionInfo.model_validate(v) for v in r.json()["versions"]])

    async def rpc_undelete(self, path: str, deleted_at: float | None = None) -> VersionInfo:
        """``POST /undelete``: restore the delete of ``path`` at ``deleted_at`` (UNIX seconds, as a listing
        gave it), or its most recent one; the newest restored version. Raises :class:`NotFound` (no such
        delete in the trash), :class:`Conflict` (a live version the restored ones would replace)."""
        body = orjson.dumps({"path": path, "deleted_at": deleted_at})
        resp = await self.call("POST", "/undelete", body=body, content_type=JSON)
        return self._parsed(resp, "undelete", lambda r: VersionInfo.model_validate(r.json()["stat"]))

    async def rpc_delete(self, path: str, if_match: str | None = None) -> dict:
        """``DELETE /files``: every committed version of ``path`` to the trash; with ``if_match`` (the
        leader's form, ``shared.protocol.rules.if_match_allows``) only if the live version matches.
        ``{"path", "deleted_versions", "deleted_at"}``; raises :class:`NotFound` when nothing of it is
        live, :class:`PreconditionFailed` when ``if_match`` does not match."""
        params = {"path": path} if if_match is None else {"path": path, "if_match": if_match}
        return self._parsed(await self.call("DELETE", "/files", params=params), "delete", lambda r: r.json())

    async def rpc_delete_version(self, path: str, version: int) -> str:
        """``DELETE /versions``: remove version ``version`` of ``path`` for good (S3's DeleteObject of a
        version id); the state it had. Raises :class:`NotFound` when there is no such version."""
        resp = await self.call("DELETE", "/versions", params={"path": path, "version": version})
        return self._parsed(resp, "delete version", lambda r: r.json()["state"])

    async def rpc_json(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                       json: Any = None, timeout: float | None = None) -> Any:
        """A namespace call whose JSON answer the user app passes on as it is (list, rename, delete, trash,
        fsck)."""
        body = orjson.dumps(json) if json is not None else None
        resp = await self.call(method, path, params=params, body=body, content_type=JSON if body else None,
                               timeout=timeout)
        return self._parsed(resp, path, lambda r: r.json())

    # ------------------------------------------------------------ folders, key scans, copies (the S3 API)

    async def rpc_create_folder(self, path: str) -> dict:
        """``POST /folders``: make ``path`` an explicit folder. ``{"path", "created_at", "created"}``
        (``created`` False when it was explicit already). Raises :class:`Conflict` when a live file is at
        ``path`` or above it, :class:`BadRequest` for a bad path."""
        resp = await self.call("POST", "/folders", body=orjson.dumps({"path": path}), content_type=JSON)
        return self._parsed(resp, "folder", lambda r: r.json())

    async def rpc_folder(self, path: str) -> dict:
        """``GET /folders``: ``{"path", "explicit", "created_at" (None unless explicit), "empty"}``
        (``empty``: no live file and no explicit folder below it). Raises :class:`NotFound` when the folder
        is neither explicit nor implied by something live below it."""
        resp = await self.call("GET", "/folders", params={"path": path})
        return self._parsed(resp, "folder", lambda r: r.json())

    async def rpc_delete_folder(self, path: str, only_if_empty: bool = True) -> None:
        """``DELETE /folders``: drop the explicit record of folder ``path``. Raises :class:`NotFound` when it
        is not explicit, and with ``only_if_empty`` :class:`Conflict` when something lives below it."""
        await self.call("DELETE", "/folders", params={"path": path, "only_if_empty": _query_value(only_if_empty)})

    async def rpc_scan(self, prefix: str = "", after: str | None = None, start: str | None = None,
                       limit: int = MAX_SCAN_LIMIT, delimiter: str | None = None,
                       readable: list[str] | None = None, history: bool = False) -> dict:
        """``GET /scan`` (``leader/scan.py``): the keys (a live file's path; an explicit folder's path
        + ``"/"``; with ``history``, every path with committed or tombstoned versions) that start with ``prefix``, sort after ``after`` and at or after ``start``, in UTF-8
        byte order, at most ``limit`` (1-1000) results; with ``readable``, only keys under one of those
        prefixes. With ``delimiter``, the keys whose rest after ``prefix`` holds it are rolled up into
        common prefixes (each one result, answered once; one that does not sort after ``after`` is not
        answered).

        Answer ``{"items": [...], "truncated": bool, "next": str | None}``, ``items`` in key order, each
        ``{"key", "path", "size", "version", "created_at", "committed_at", "sha256", "etag",
        "content_type"}`` (a file), ``{"key", "path", "folder": True, "created_at"}`` (an explicit
        folder) or ``{"key", "prefix": True}`` (a common prefix); with ``history`` a path is
        ``{"key", "path", "versions": [{"version", "state", "size", "sha256", "etag", "content_type",
        "created_at", "committed_at", "deleted_at"}]}`` (oldest first); ``next`` is the last item's key (the
        next page's ``after``), None without items. Raises :class:`BadRequest` for a bad ``limit``,
        ``delimiter`` (over 16 bytes) or bound."""
        params: dict[str, Any] = {"prefix": prefix, "limit": limit}
        for name, value in (("after", after), ("start", start), ("delimiter", delimiter)):
            if value is not None:
                params[name] = value
        if readable is not None:
            params["readable"] = list(readable)
        if history:
            params["history"] = "true"
        resp = await self.call("GET", "/scan", params=params)
        return self._parsed(resp, "scan", lambda r: r.json())

    async def rpc_copy(self, src: str, dst: str, *, src_version: int | None = None, create_only: bool = False,
                       if_match: str | None = None, metadata: str = "copy", content_type: str | None = None,
                       user_metadata: str | None = None, object_headers: str | None = None) -> VersionInfo:
        """``POST /copy`` (S3 CopyObject): a new committed version of ``dst`` sharing the chunks of ``src``
        (its latest version, or ``src_version``); no data moves. ``metadata``: ``"copy"`` keeps the
        source's ``content_type``, ``user_metadata`` and ``object_headers`` (JSON text), ``"replace"`` sets
        the given ones (the checksum entries stay the source's).
        ``create_only`` / ``if_match`` as on a write. Raises :class:`NotFound` (no such source version),
        :class:`Conflict` (file/folder), :class:`PreconditionFailed`, :class:`BadRequest`."""
        # Sent as it is: the leader validates it (shared.protocol.models.CopyRequest), so a bad value is a
        # BadRequest with the leader's message, as for every other call.
        body = {"src": src, "dst": dst, "src_version": src_version, "create_only": create_only,
                "if_match": if_match, "metadata": metadata, "content_type": content_type,
                "user_metadata": user_metadata, "object_headers": object_headers}
        resp = await self.call("POST", "/copy", body=orjson.dumps(body), content_type=JSON)
        return self._parsed(resp, "copy", lambda r: VersionInfo.model_validate_json(r.body))

    # ------------------------------------------------------------ multipart uploads (the S3 API)

    def _upload_url(self, upload_id: str, tail: str = "") -> str:
        """``/multipart/{upload_id}{tail}``. Raises :class:`NotFound` without a call for an id that cannot
        name an upload (``rules.UPLOAD_ID_PATTERN``): a client's garbage is a NoSuchUpload, not a request."""
        if not isinstance(upload_id, str) or not UPLOAD_ID_RE.fullmatch(upload_id):
            raise NotFound(f"no such upload: {str(upload_id)[:80]!r}")
        return f"/multipart/{upload_id}{tail}"

    async def rpc_create_upload(self, path: str, content_type: str | None = None,
                                user_metadata: str | None = None, object_headers: str | None = None) -> dict:
        """``POST /multipart`` (S3 CreateMultipartUpload): a new upload that will write ``path``, whose
        version will get ``content_type``, ``user_metadata`` and ``object_headers`` (JSON text; with the
        checksum algorithm and type chosen). ``{"upload_id", "path" (normalized), "created_at"}``. Raises
        :class:`BadRequest` for a bad path or metadata."""
        body = orjson.dumps({"path": path, "content_type": content_type, "user_metadata": user_metadata,
                             "object_headers": object_headers})
        resp = await self.call("POST", "/multipart", body=body, content_type=JSON)
        return self._parsed(resp, "upload", lambda r: UploadSummary.model_validate_json(r.body).model_dump())

    async def rpc_upload(self, upload_id: str) -> dict:
        """``GET /multipart/{upload_id}``: ``{"upload_id", "path", "created_at", "content_type",
        "user_metadata", "object_headers"}`` (the last two dicts, or None). Raises :class:`NotFound` when there is no
        such upload (never made, aborted, expired or completed)."""
        resp = await self.call("GET", self._upload_url(upload_id))
        return self._parsed(resp, "upload", lambda r: UploadInfo.model_validate_json(r.body).model_dump())

    async def rpc_abort_upload(self, upload_id: str) -> None:
        """``DELETE /multipart/{upload_id}``: the upload and all its parts are dropped. Raises
        :class:`NotFound` when there is no such upload."""
        await self.call("DELETE", self._upload_url(upload_id))

    async def rpc_list_uploads(self, prefix: str, key_marker: str | None = None, upload_id_marker: str | None = None,
                               limit: int = MAX_SCAN_LIMIT) -> dict:
        """``GET /multipart`` (S3 ListMultipartUploads): ``{"uploads": [{"upload_id", "path",
        "created_at"}], "truncated": bool}``, the uploads whose path starts with ``prefix`` in ``(path,
        created_at, upload_id)`` order, at most ``limit`` (1-1000), after ``key_marker`` (and, of that
        path, after ``upload_id_marker``) as S3 defines the markers. Raises :class:`BadRequest`."""
        params: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if key_marker is not None:
            params["key_marker"] = key_marker
        if upload_id_marker is not None:
            params["upload_id_marker"] = upload_id_marker
        resp = await self.call("GET", "/multipart", params=params)
        return self._parsed(resp, "uploads", lambda r: UploadListing.model_validate_json(r.body).model_dump())

    async def rpc_list_parts(self, upload_id: str, part_number_marker: int = 0, limit: int = MAX_SCAN_LIMIT) -> dict:
        """``GET /multipart/{upload_id}/parts`` (S3 ListParts): ``{"parts": [{"part_number", "size", "etag",
        "committed_at"}], "truncated": bool}``, the parts above ``part_number_marker``, ascending, at most
        ``limit`` (1-1000). Raises :class:`NotFound` for an unknown upload."""
        resp = await self.call("GET", self._upload_url(upload_id, "/parts"),
                               params={"part_number_marker": part_number_marker, "limit": limit})
        return self._parsed(resp, "parts", lambda r: PartListing.model_validate_json(r.body).model_dump())

    async def rpc_assemble_upload(self, upload_id: str, parts: list[tuple[int, str]]) -> dict:
        """``POST /multipart/{upload_id}/assemble``: what completing the upload with ``parts``
        (``[(part_number, etag)]``) would make. ``{"problem": {"code", "message"}}`` when S3 would refuse
        it, else ``{"problem": None, "size", "chunk_size", "replication", "aligned", "etag",
        "digests_sha256", "parts": [{"part_number", "size", "chunk_size", "etag", "digests" (base64),
        "object_headers"}]}``
        (``shared.protocol.models.AssemblyPlan``). Raises :class:`NotFound` for an unknown upload."""
        body = orjson.dumps({"parts": [[n, etag] for n, etag in parts]})
        resp = await self.call("POST", self._upload_url(upload_id, "/assemble"), body=body, content_type=JSON)
        return self._parsed(resp, "assemble", _plan_or_problem)

    async def rpc_complete_upload(self, upload_id: str, parts: list[tuple[int, str]], *, sha256: str,
                                  digests_sha256: str, create_only: bool = False,
                                  if_match: str | None = None, object_headers: str | None = None) -> VersionInfo:
        """``POST /multipart/{upload_id}/complete``: the new committed version of the upload's path, the
        parts' chunk lists joined (the plan must be ``aligned``), with ``sha256`` (the object's content),
        the multipart ETag and ``object_headers`` (JSON text; None: the upload's); the upload is gone after. ``digests_sha256``: as the assemble answered.
        Raises :class:`NotFound` (no such upload, or gone meanwhile), :class:`BadRequest` (a problem,
        ``"<S3 code>: ..."``, or unaligned parts), :class:`Conflict` (the parts changed since assemble,
        or file/folder), :class:`PreconditionFailed` (``create_only`` / ``if_match``)."""
        body = orjson.dumps({"parts": [[n, etag] for n, etag in parts], "sha256": sha256,
                             "digests_sha256": digests_sha256, "create_only": create_only, "if_match": if_match,
                             "object_headers": object_headers})
        resp = await self.call("POST", self._upload_url(upload_id, "/complete"), body=body, content_type=JSON)
        return self._parsed(resp, "complete", lambda r: VersionInfo.model_validate_json(r.body))

    # ------------------------------------------------------------ access keys

    async def rpc_key(self, access_key: str) -> AccessKeySecret:
        """``GET /keys/{access_key}``: the key with its secret (to check a request signed with it).
        Raises :class:`NotFound` for an unknown key."""
        resp = await self.call("GET", f"/keys/{quote(access_key, safe='')}")
        return self._parsed(resp, "key", lambda r: AccessKeySecret.model_validate_json(r.body))

    async def rpc_keys(self) -> list[AccessKeyInfo]:
        resp = await self.call("GET", "/keys")
        return self._parsed(resp, "keys", lambda r: [AccessKeyInfo.model_validate(k) for k in r.json()["keys"]])

    async def rpc_create_key(self, new: NewAccessKey) -> AccessKeySecret:
        resp = await self.call("POST", "/keys", body=new.model_dump_json().encode(), content_type=JSON)
        return self._parsed(resp, "key", lambda r: AccessKeySecret.model_validate_json(r.body))

    async def rpc_delete_key(self, access_key: str) -> None:
        await self.call("DELETE", f"/keys/{quote(access_key, safe='')}")

    # ------------------------------------------------------------ garbage collection

    async def rpc_gc_unreferenced(self, digests: list[bytes]) -> list[bytes]:
        """``POST /gc/unreferenced``: those of ``digests`` no version references. Raises
        :class:`UpstreamError` if the leader names a digest that was not asked about."""
        resp = await self.call("POST", "/gc/unreferenced", body=pack_digests(digests), content_type=OCTET_STREAM)
        unreferenced = self._parsed(resp, "gc", lambda r: unpack_digests(r.body))
        asked = set(digests)
        if any(d not in asked for d in unreferenced):
            raise UpstreamError(f"{self.peer} answered /gc/unreferenced with digests that were not asked about")
        return unreferenced


def _plan_or_problem(resp: RpcResponse) -> dict:
    """An assemble answer as a dict: ``{"problem": {...}}`` alone, or the whole validated plan."""
    doc = resp.json()
    if isinstance(doc, dict) and doc.get("problem") is not None:
        return {"problem": UploadProblem.model_validate(doc["problem"]).model_dump()}
    return AssemblyPlan.model_validate(doc).model_dump()
