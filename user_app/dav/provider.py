"""The WsgiDAV provider of RingFS (RFC 4918 over the namespace): a DAV collection is a RingFS folder, a
DAV resource a file's latest version. Every call goes through the user app's own services: reads stream
from the chunk reader, PUTs stream into the 2PC writer, and namespace changes are leader calls, checked
against the caller's key (authenticated before the request reached WsgiDAV, ``user_app/dav/app.py``).

* PUT: a new version of the file (the old ones stay, as with every write); DELETE: to the trash; MKCOL:
  an explicit folder; COPY of a file shares its chunks (no data moves); MOVE is the leader's rename
  (a folder moves with everything below it in one transaction).
* What the key may not read is not listed and reads as absent (404); what it may not write is 403.
* Names RingFS paths cannot hold (control characters, ``.``/``..`` segments) are 400 on creation.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from shared.errors import BadRequest, NotFound, RingFSError
from shared.paths import normalize_path
from shared.protocol.models import VersionInfo
from user_app.auth.audit import audited
from user_app.auth.principal import Principal
from user_app.dav.bridge import LoopBridge, ReadStream, WriteStream
from user_app.routes import delete_tree, folder_listing
from user_app.services import Services

SCOPE_SERVICES = "ringfs.services"
SCOPE_BRIDGE = "ringfs.bridge"


class Caller:
    """Who asks and with what: the principal the user app's authentication put in the ASGI scope, the
    services and the bridge to their event loop (``user_app/dav/app.py`` puts both there)."""

    def __init__(self, environ: dict) -> None:
        scope = environ["asgi.scope"]
        self.principal: Principal = scope["state"]["principal"]
        self.services: Services = scope[SCOPE_SERVICES]
        self.bridge: LoopBridge = scope[SCOPE_BRIDGE]

    def run(self, coro):
        """Await ``coro`` on the services' loop; a RingFS error becomes the DAV error of its status (404,
        403, 409, 400, 412, 503, ...)."""
        try:
            return self.bridge.run(coro)
        except RingFSError as exc:
            raise as_dav_error(exc) from None

    def run_or_none(self, coro):
        """:meth:`run`, with None for a :class:`NotFound` (something already gone, or never there)."""
        try:
            return self.bridge.run(coro)
        except NotFound:
            return None
        except RingFSError as exc:
            raise as_dav_error(exc) from None

    def check_write(self, path: str) -> None:
        if not self.principal.may_write(path):
            raise DAVError(HTTP_FORBIDDEN, f"access key {self.principal.access_key} may not write {path!r}")


def as_dav_error(exc: RingFSError) -> DAVError:
    """The WebDAV error answer of a RingFS error: its status, its message."""
    return DAVError(exc.status, exc.message)


class DavWriteStream(WriteStream):
    """A PUT's :class:`WriteStream` whose failures are DAV errors (a 503 when too few chunk servers can
    take the data, not a 500)."""

    def write(self, data: bytes) -> int:
        try:
            return super().write(data)
        except RingFSError as exc:
            raise as_dav_error(exc) from None

    def close(self) -> None:
        try:
            super().close()
        except RingFSError as exc:
            raise as_dav_error(exc) from None


def ringfs_path(dav_path: str) -> str:
    """The RingFS path of a DAV path below the share (``/a/b`` → ``a/b``, ``/`` → ``""``). Raises
    ``DAVError`` 400 for a name RingFS cannot hold."""
    stripped = dav_path.strip("/")
    if not stripped:
        return ""
    try:
        return normalize_path(stripped)
    except BadRequest as exc:
        raise DAVError(HTTP_BAD_REQUEST, exc.message) from None


@dataclass(frozen=True)
class FileFacts:
    """What a PROPFIND shows of a file's latest version: ``size`` (bytes), ``sha256`` (its ETag, as the
    user API's), ``version`` and its times (UNIX seconds); from a stat or a folder listing's entry."""

    size: int
    sha256: str
    version: int
    created_at: float
    modified_at: float

    @classmethod
    def of(cls, info: VersionInfo) -> "FileFacts":
        return cls(info.size, info.sha256, info.version, info.created_at, info.committed_at or info.created_at)

    @classmethod
    def of_entry(cls, entry: dict) -> "FileFacts":
        created = entry.get("created_at") or 0.0
        return cls(entry["size"], entry.get("sha256") or "", entry["version"], created,
                   entry.get("committed_at") or created)


class WriteGuard:
    """What WsgiDAV lets any reader do unless told: setting dead properties (PROPPATCH) and locking
    (LOCK). Both need a write grant on the resource (``write_target``), so a read-only key can neither
    change a file's properties nor lock writers out of it."""

    caller: Caller

    @property
    def write_target(self) -> str:
        raise NotImplementedError

    def set_property_value(self, name, value, *, dry_run=False):
        self.caller.check_write(self.write_target)
        return super().set_property_value(name, value, dry_run=dry_run)

    def prevent_locking(self) -> bool:
        return not self.caller.principal.may_write(self.write_target)


class FileResource(WriteGuard, DAVNonCollection):
    """A file: its latest committed version (``info``; None for one about to be written)."""

    def __init__(self, dav_path: str, environ: dict, info: FileFacts | None) -> None:
        super().__init__(dav_path, environ)
        self.caller = Caller(environ)
        self.rpath = ringfs_path(dav_path)
        self.info = info
        self._stream: WriteStream | None = None

    @property
    def write_target(self) -> str:
        return self.rpath

    # ---------------------------------------------------------------- live properties
    def get_content_length(self) -> int:
        return self.info.size if self.info else 0

    def get_content_type(self) -> str:
        return mimetypes.guess_type(self.rpath)[0] or "application/octet-stream"

    def get_creation_date(self) -> float | None:
        return self.info.created_at if self.info else None

    def get_last_modified(self) -> float | None:
        return self.info.modified_at if self.info else None

    def get_etag(self) -> str | None:
        return (self.info.sha256 or None) if self.info else None

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    # ---------------------------------------------------------------- content
    def get_content(self) -> ReadStream:
        services = self.caller.services
        view = self.caller.run(services.reader.open(self.rpath, self.info.version if self.info else None))

        def open_at(offset: int):
            return services.reader.stream(view, offset) if offset < view.size else _empty()

        return ReadStream(self.caller.bridge, open_at)

    def begin_write(self, *, content_type=None) -> WriteStream:
        self.caller.check_write(self.rpath)
        writer = self.caller.services.writer
        self._stream = DavWriteStream(self.caller.bridge, lambda blocks: writer.write(self.rpath, blocks))
        return self._stream

    def end_write(self, *, with_errors: bool) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if with_errors:
            stream.abort()
            return
        with audited(self.caller.principal, "dav put", self.rpath):
            stream.close()

    # ---------------------------------------------------------------- namespace
    def delete(self) -> None:
        self.caller.check_write(self.rpath)
        with audited(self.caller.principal, "dav delete", self.rpath):
            self.caller.run(self.caller.services.leader.rpc_delete(self.rpath))
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        dst = ringfs_path(dest_path)
        self.caller.check_write(dst)
        if is_move:
            self.caller.check_write(self.rpath)
        leader = self.caller.services.leader
        with audited(self.caller.principal, "dav move" if is_move else "dav copy", f"{self.rpath} -> {dst}"):
            if is_move:
                self.caller.run(leader.rpc_json("POST", "/rename", json={"src": self.rpath, "dst": dst}))
            else:  # shares the source's chunks: no data moves
                self.caller.run(leader.rpc_copy(self.rpath, dst))
        if not is_move:  # a rename moves the dead properties itself (leader/namespace.py)
            _copy_dead_properties(self, dest_path, is_move)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        self.copy_move_single(dest_path, is_move=True)


async def _empty():
    return
    yield b""


class FolderResource(WriteGuard, DAVCollection):
    """A folder (``""`` the root): explicit, or implied by something below it."""

    def __init__(self, dav_path: str, environ: dict, created_at: float | None = None) -> None:
        super().__init__(dav_path, environ)
        self.caller = Caller(environ)
        self.rpath = ringfs_path(dav_path)
        self.created_at = created_at

    @property
    def write_target(self) -> str:
        """What the folder's writers may write: what is in it (a grant of ``a/`` covers folder ``a``)."""
        return self.rpath + "/" if self.rpath else ""

    def get_creation_date(self) -> float:
        return self.created_at or 0.0

    def get_last_modified(self) -> float:
        """When the explicit folder was made; 0 (1970) for the root and implied folders, which have no
        time of their own (davfs2 refuses a collection without one)."""
        return self.created_at or 0.0

    def get_display_name(self) -> str:
        return self.name

    def _entries(self) -> list[dict]:
        principal = self.caller.principal
        if not principal.reads_anything_under(self.rpath):
            return []
        answer = self.caller.run_or_none(folder_listing(self.caller.services, principal, self.rpath))
        return [] if answer is None else answer["entries"]

    def get_member_names(self) -> list[str]:
        return [e["name"] for e in self._entries()]

    def get_member_list(self) -> list:
        """The members, made from one folder listing (no stat per member), with their dead properties
        fetched in one more call: a PROPFIND of depth 1 costs two leader calls whatever the folder holds."""
        entries = self._entries()
        manager = self.provider.prop_manager
        if manager is not None and entries:
            manager.prefetch(self.rpath, [e["path"] for e in entries], self.environ)
        members = []
        for e in entries:
            dav_path = util.join_uri(self.path, e["name"])
            if e["type"] == "file":
                members.append(FileResource(dav_path, self.environ, FileFacts.of_entry(e)))
            else:
                members.append(FolderResource(dav_path, self.environ, e.get("created_at")))
        return members

    def get_member(self, name: str):
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def create_empty_resource(self, name: str) -> FileResource:
        """The member ``name`` to be written. A PUT writes it (one version, not an empty one first); a LOCK
        of an unmapped URL makes it an empty file now, as RFC 4918 §7.3 asks."""
        dav_path = util.join_uri(self.path, name)
        path = ringfs_path(dav_path)
        self.caller.check_write(path)
        if self.environ.get("REQUEST_METHOD") != "LOCK":
            return FileResource(dav_path, self.environ, None)
        with audited(self.caller.principal, "dav lock (new empty file)", path):
            self.caller.run(self.caller.services.writer.write(path, _empty(), size_hint=0))
        return self.provider.get_resource_inst(dav_path, self.environ)

    def create_collection(self, name: str) -> None:
        path = ringfs_path(util.join_uri(self.path, name))
        self.caller.check_write(path)
        with audited(self.caller.principal, "dav mkcol", path):
            self.caller.run(self.caller.services.leader.rpc_create_folder(path))

    def support_recursive_delete(self) -> bool:
        return True

    def delete(self) -> None:
        """The folder and everything below it: every file to the trash, then the explicit folders, the
        deepest first (as ``ringfs rm -r``)."""
        if not self.rpath:
            raise DAVError(HTTP_FORBIDDEN, "the root cannot be deleted")
        principal = self.caller.principal
        if not principal.may_write_tree(self.rpath):
            raise DAVError(HTTP_FORBIDDEN, f"access key {principal.access_key} may not write {self.rpath!r} "
                           "and everything below it")
        with audited(principal, "dav delete folder", self.rpath):
            self.caller.run(delete_tree(self.caller.services, principal, self.rpath))
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        """One level of a collection COPY (WsgiDAV walks the tree): the destination folder."""
        dst = ringfs_path(dest_path)
        self.caller.check_write(dst)
        if self.provider.get_resource_inst(dest_path, self.environ) is None:
            with audited(self.caller.principal, "dav mkcol", dst):
                self.caller.run(self.caller.services.leader.rpc_create_folder(dst))
        _copy_dead_properties(self, dest_path, is_move)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        """The leader's rename: the folder with everything below it, in one transaction."""
        dst = ringfs_path(dest_path)
        principal = self.caller.principal
        for side in (self.rpath, dst):
            if not principal.may_write_tree(side):
                raise DAVError(HTTP_FORBIDDEN, f"access key {principal.access_key} may not write {side!r} and "
                               "everything below it")
        with audited(principal, "dav move", f"{self.rpath} -> {dst}"):
            # the rename moves the dead properties below the folder too, in its transaction
            self.caller.run(self.caller.services.leader.rpc_json("POST", "/rename",
                                                                 json={"src": self.rpath, "dst": dst}))


def _copy_dead_properties(resource, dest_path: str, is_move: bool) -> None:
    """Carry ``resource``'s dead properties (PROPPATCH) to what now is at ``dest_path``."""
    manager = resource.provider.prop_manager
    if not manager:
        return
    dest = resource.provider.get_resource_inst(dest_path, resource.environ)
    if dest is None:
        return
    if is_move:
        manager.move_properties(resource.get_ref_url(), dest.get_ref_url(), with_children=False,
                                environ=resource.environ)
    else:
        manager.copy_properties(resource.get_ref_url(), dest.get_ref_url(), resource.environ)


class RingFSProvider(DAVProvider):
    """The provider of the ``/dav`` share: resolves a DAV path to a file, a folder, or nothing."""

    def get_resource_inst(self, path: str, environ: dict):
        self._count_get_resource_inst += 1
        caller = Caller(environ)
        rpath = ringfs_path(path)
        if rpath == "":
            return FolderResource("/", environ)
        principal = caller.principal
        leader = caller.services.leader
        if principal.may_read(rpath):
            info = caller.run_or_none(leader.rpc_stat(rpath))
            if info is not None:
                return FileResource(path, environ, FileFacts.of(info))
        if not principal.reads_anything_under(rpath) and not principal.may_write(rpath + "/"):
            return None
        folder = caller.run_or_none(leader.rpc_folder(rpath))
        return None if folder is None else FolderResource(path, environ, folder.get("created_at"))
