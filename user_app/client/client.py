"""A small synchronous Python client for the user web API; the ``ringfs`` CLI is built on it.

>>> from user_app.client import Client
>>> c = Client("http://127.0.0.1:8010")
>>> c.put("docs/a.txt", b"hello")["version"]
1
>>> c.get("docs/a.txt")
b'hello'
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import IO, Any, Iterator
from urllib.parse import quote

import httpx

from user_app.client import credentials as creds_lookup

DEFAULT_URL = "http://127.0.0.1:8010"
STREAM_BLOCK = 1024 * 1024  # bytes per read when streaming a local file up or a download down


class ClientError(Exception):
    """The user app answered with an error (``status`` and its ``{"error"}`` message) or was unreachable
    (``status`` 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.status = status
        self.message = message


def _check(resp: httpx.Response, has_credentials: bool = True) -> httpx.Response:
    if resp.status_code >= 400:
        if resp.is_stream_consumed is False:
            resp.read()
        try:
            message = resp.json().get("error", resp.text)
        except ValueError:
            message = resp.text or resp.reason_phrase
        if resp.status_code == 401 and not has_credentials:
            message = f"no RingFS credentials found: {creds_lookup.WHERE}"
        raise ClientError(resp.status_code, message)
    return resp


def _verify(ca_file: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def default_ca_file() -> str | None:
    """``RINGFS_CA_FILE``, else the private CA of a ``ringfs up --tls`` in ``./ringfs-data``, if any."""
    env = os.environ.get("RINGFS_CA_FILE")
    if env:
        return env
    local = creds_lookup.DEFAULT_DATA_DIR / "tls" / "ca.pem"
    return str(local) if local.exists() else None


def _file_blocks(f: IO[bytes], progress=None) -> Iterator[bytes]:
    while block := f.read(STREAM_BLOCK):
        if progress:
            progress(len(block))
        yield block


def _exactly(blocks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of ``blocks``: the ``Content-Length`` announced. A file that grew while it
    was read is sent as it was when the upload began (what was appended is not); one that shrank raises
    :class:`ClientError`, and the request is cut off before its last byte, so the user app aborts the
    write and keeps nothing of it."""
    sent = 0
    for block in blocks:
        if sent + len(block) >= size:
            yield block[: size - sent]
            return
        sent += len(block)
        yield block
    if sent != size:
        raise ClientError(0, f"the file shrank while it was uploaded ({sent} of {size} bytes); nothing was stored")


def _remaining_size(f: IO[bytes]) -> int | None:
    """Bytes left to read in ``f`` when it is a regular file, else ``None`` (a pipe or a socket)."""
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return st.st_size - f.tell()
    except (OSError, AttributeError, ValueError):
        return None


class Client:
    """Talks to one user app over a keep-alive connection pool; safe to share between threads.

    Credentials: ``access_key`` / ``secret_key``, else ``RINGFS_ACCESS_KEY`` / ``RINGFS_SECRET_KEY``, else
    the ``credentials`` file (default ``./ringfs-data/credentials``; ``user_app/client/credentials.py``),
    sent as HTTP Basic. ``ca_file``: a private CA to trust for ``https://`` (default ``RINGFS_CA_FILE``,
    else ``./ringfs-data/tls/ca.pem`` when it exists)."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0, *, access_key: str | None = None,
                 secret_key: str | None = None, credentials: str | os.PathLike | None = None,
                 ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        found = creds_lookup.resolve(access_key, secret_key, credentials)
        self.access_key = found.access_key if found else None
        self.http = httpx.Client(base_url=self.url, timeout=timeout,
                                 auth=httpx.BasicAuth(found.access_key, found.secret_key) if found else None,
                                 verify=_verify(ca_file or default_ca_file()),
                                 limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            return _check(self.http.request(method, url, **kw), self.access_key is not None)
        except httpx.HTTPError as exc:
            raise ClientError(0, f"cannot reach RingFS at {self.url}: {exc}") from exc

    @staticmethod
    def _q(path: str) -> str:
        return quote(path.lstrip("/"), safe="/")

    # ------------------------------------------------------------ files

    def put(self, path: str, data: bytes | IO[bytes] | Iterator[bytes], *, create_only: bool = False,
            chunk_size: int | None = None, progress=None) -> dict:
        """Store ``data`` (bytes, a binary file object or an iterator of bytes, streamed) as the next version
        of ``path``. A regular file is sent with its ``Content-Length``. Returns ``{"path","version","size",
        "sha256","chunks"}``; a file that grows meanwhile is stored as it was when the upload began. Raises
        :class:`ClientError` (412 when ``create_only`` and the path exists; status 0 when a file shrank while
        it was read, and then nothing is stored)."""
        headers = {"If-None-Match": "*"} if create_only else {}
        params = {"chunk_size": chunk_size} if chunk_size else None
        content = _file_blocks(data, progress) if hasattr(data, "read") else data
        size = _remaining_size(data) if hasattr(data, "read") else None
        if size is not None:  # the chunk-size policy picks the chunk size from it (README "Chunk size")
            headers["Content-Length"] = str(size)
            content = _exactly(content, size)
        return self._request("PUT", f"/files/{self._q(path)}", content=content, headers=headers,
                             params=params).json()

    def put_file(self, local: str | os.PathLike, path: str, **kw: Any) -> dict:
        with open(local, "rb") as f:
            return self.put(path, f, **kw)

    def get(self, path: str, *, version: int | None = None, byte_range: tuple[int, int | None] | None = None) -> bytes:
        """The whole content (or ``byte_range`` inclusive) of the latest or a given version."""
        headers = {}
        if byte_range is not None:
            a, b = byte_range
            headers["Range"] = f"bytes={a}-{'' if b is None else b}"
        params = {"version": version} if version else None
        return self._request("GET", f"/files/{self._q(path)}", params=params, headers=headers).content

    def iter_bytes(self, path: str, *, version: int | None = None) -> Iterator[bytes]:
        """Stream the content in blocks without holding it whole."""
        params = {"version": version} if version else None
        try:
            with self.http.stream("GET", f"/files/{self._q(path)}", params=params) as resp:
                _check(resp, self.access_key is not None)
                yield from resp.iter_bytes(STREAM_BLOCK)
        except httpx.HTTPError as exc:
            raise ClientError(0, f"download of {path} failed: {exc}") from exc

    def get_file(self, path: str, local: str | os.PathLike, *, version: int | None = None, progress=None) -> int:
        """Download to ``local`` atomically (temp file + rename). Returns the byte count."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.ringfs-part")
        n = 0
        try:
            with open(tmp, "wb") as f:
                for block in self.iter_bytes(path, version=version):
                    f.write(block)
                    n += len(block)
                    if progress:
                        progress(len(block))
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
        return n

    def put_many(self, files: list[tuple[str, bytes]], *, create_only: bool = False,
                 chunk_size: int | None = None) -> list[dict]:
        """Store many small files in one request (``POST /batch/write``: at most 1024 files, 16 MiB). Returns,
        per file in order, ``{"path","version","size","sha256","chunks"}`` or ``{"path","error","status"}``:
        each file is its own write, one failing does not affect the others. Raises :class:`ClientError`
        when the whole request fails."""
        from shared.protocol.batches import encode_batch_files  # imported here: it pulls in pydantic and FastAPI

        params: dict[str, Any] = {"create_only": str(create_only).lower()}
        if chunk_size:
            params["chunk_size"] = chunk_size
        body = encode_batch_files((p.lstrip("/"), d) for p, d in files)
        return self._request("POST", "/batch/write", params=params, content=body,
                             headers={"Content-Type": "application/octet-stream"}).json()["results"]

    def get_many(self, paths: list[str]) -> list[tuple[str, int, bytes]]:
        """Read many small files (at most 4 MiB each) in one request (``POST /batch/read``: at most 1024
        paths). Returns, per path in order, ``(path, status, content)``; for a status other than 200 the
        bytes are the JSON ``{"error"}`` (404, 400, 413 for a file to stream with :meth:`get_file`)."""
        from shared.errors import BadRequest  # imported here: they pull in pydantic and FastAPI
        from shared.protocol.batches import iter_batch_entries

        resp = self._request("POST", "/batch/read", json={"paths": [p.lstrip("/") for p in paths]})
        try:
            out = [(p, status, bytes(data)) for p, status, data in iter_batch_entries(resp.content)]
        except BadRequest as exc:
            raise ClientError(0, f"malformed batch read answer from {self.url}: {exc}") from None
        if len(out) != len(paths):
            raise ClientError(0, f"batch read answered {len(out)} files for {len(paths)} paths")
        return out

    def stat(self, path: str, *, version: int | None = None) -> dict:
        params = {"version": version} if version else None
        return self._request("GET", f"/stat/{self._q(path)}", params=params).json()

    def versions(self, path: str) -> list[dict]:
        return self._request("GET", f"/versions/{self._q(path)}").json()["versions"]

    def ls(self, folder: str = "", *, recursive: bool = False) -> list[dict]:
        folder = self._q(folder.strip("/"))
        return self._request("GET", f"/list/{folder}", params={"recursive": str(recursive).lower()}).json()["entries"]

    def rm(self, path: str) -> None:
        self._request("DELETE", f"/files/{self._q(path)}")

    def mv(self, src: str, dst: str) -> dict:
        return self._request("POST", "/rename", json={"src": src, "dst": dst}).json()

    def locations(self, path: str) -> dict:
        return self._request("GET", f"/locations/{self._q(path)}").json()

    def cluster(self) -> dict:
        return self._request("GET", "/cluster").json()

    # ------------------------------------------------------------ access keys (admin keys only)

    def create_key(self, name: str, grants: list[dict], admin: bool = False) -> dict:
        """A new key: ``{"access_key","secret_key","name","grants","admin","created_at"}``, the only time
        its secret is shown. ``grants``: ``[{"prefix","access": "read"|"write"}]``."""
        return self._request("POST", "/admin/keys", json={"name": name, "grants": grants, "admin": admin}).json()

    def keys(self) -> list[dict]:
        """Every key, without secrets."""
        return self._request("GET", "/admin/keys").json()["keys"]

    def delete_key(self, access_key: str) -> None:
        self._request("DELETE", f"/admin/keys/{quote(access_key, safe='')}")

    # ------------------------------------------------------------ trash and integrity

    def undelete(self, path: str) -> dict:
        """Restore the most recent delete of ``path``; returns its stat. Raises :class:`ClientError` (404
        nothing in the trash, 409 the path exists again)."""
        return self._request("POST", "/undelete", json={"path": path}).json()

    def trash(self) -> list[dict]:
        """Deleted paths still restorable: ``[{"path","size","versions","deleted_at","expires_at"}]``."""
        return self._request("GET", "/trash").json()["entries"]

    def fsck(self, timeout: float | None = None) -> dict:
        """The cluster's replication report (``{"ok","files","chunks","under_replicated","lost",
        "misplaced","replication_factor","problems"}``). ``timeout`` in seconds, default none."""
        return self._request("GET", "/fsck", timeout=timeout).json()
