"""Reads of committed versions: :func:`lookup` (``GET /manifest``, ``GET /stat``), :func:`lookup_many`
(``POST /manifests``) and :func:`list_versions` (``GET /versions``).

Lookups go through the manifest cache (``leader/manifest_cache.py``): a hit costs no SQL and no
encoding; a miss is one indexed Core query whose row then fills the cache, unless a mutation of the path
happened meanwhile (the generation taken before the query says so).
"""

from __future__ import annotations

from sqlalchemy.engine import Row

from leader import version_sql as sql
from leader.manifest_cache import CachedVersion
from leader.store import Store
from shared.errors import NotFound, PayloadTooLarge, RingFSError
from shared.protocol.manifests import encode_manifest
from shared.protocol.models import VersionInfo

# Paths per SQL query of lookup_many (bounds the IN list's bind parameters).
PATHS_PER_QUERY = 512


def _cached(row: Row) -> CachedVersion:
    """A row of :data:`version_sql.INFO_COLUMNS` plus ``chunk_digests`` as a cache entry."""
    info = sql.version_info(row)
    return CachedVersion(info, encode_manifest(info, bytes(row.chunk_digests)))


def _no_such_file(path: str, version: int | None) -> NotFound:
    what = f"version {version} of {path!r}" if version is not None else repr(path)
    return NotFound(f"no such file: {what}")


async def lookup(store: Store, path: str, version: int | None) -> CachedVersion:
    """The committed version ``version`` (its latest when None) of ``path`` (normalized) as a
    :class:`CachedVersion`: its :class:`VersionInfo` and its encoded manifest. Raises :class:`NotFound`
    (404), or :class:`Unavailable` (503) when SQL fails."""
    cache = store.cache
    entry = cache.get(path, version)
    if entry is not None:
        return entry
    generation = cache.generation()  # before the query: a mutation meanwhile makes the fill stale
    async with store.read_conn() as conn:
        if version is None:
            row = (await conn.execute(sql.LATEST, {"path": path})).first()
        else:
            row = (await conn.execute(sql.EXACT, {"path": path, "version": version})).first()
    if row is None:
        raise _no_such_file(path, version)
    entry = _cached(row)
    cache.put(path, version, entry, generation)
    return entry


async def lookup_many(store: Store, paths: list[str], version: int | None, max_size: int | None = None,
                      max_chunks: int | None = None) -> list[CachedVersion | RingFSError]:
    """:func:`lookup` of each of ``paths`` (normalized; repeats allowed) at ``version`` (latest when None):
    per path, in order, its :class:`CachedVersion` or the :class:`NotFound` that lookup() would raise.

    Bounded, so that a small request cannot make the leader load or send much (``POST /manifests``): a
    version larger than ``max_size`` bytes, or one whose chunks would take the answer past ``max_chunks``
    chunks in all (counted in request order, a repeat each time it is answered), is a
    :class:`PayloadTooLarge` (413) whose chunk list is never read. Cache hits cost no SQL; the misses are resolved together (their
    sizes first, then the chunk lists of those that fit, :data:`PATHS_PER_QUERY` at a time), and fill the
    cache under the same generation rule as lookup(). SQL failures raise :class:`Unavailable`."""
    cache = store.cache
    found: dict[str, CachedVersion] = {}
    misses: dict[str, None] = {}  # distinct, in request order
    for path in paths:
        if path not in found and path not in misses:
            entry = cache.get(path, version)
            if entry is not None:
                found[path] = entry
            else:
                misses[path] = None
    infos: dict[str, tuple[VersionInfo, int]] = {}  # path -> (info, row id) of a miss that exists
    if misses:
        generation = cache.generation()  # before the queries, as in lookup()
        async with store.read_conn() as conn:
            statement = sql.LATEST_MANY_INFO if version is None else sql.EXACT_MANY_INFO
            for group in _groups(list(misses)):
                params = {"paths": group} if version is None else {"paths": group, "version": version}
                for row in (await conn.execute(statement, params)).all():
                    infos[row.path] = (sql.version_info(row), row.id)
            refused = _over_limits(paths, found, infos, max_size, max_chunks)
            accepted = {path for path, refusal in zip(paths, refused) if refusal is None}
            wanted = [row_id for path, (_, row_id) in infos.items() if path in accepted]
            digests: dict[int, bytes] = {}
            for group in _groups(wanted):
                digests.update((r.id, bytes(r.chunk_digests)) for r in (await conn.execute(sql.DIGESTS_OF, {"ids": group})).all())
        for path, (info, row_id) in infos.items():
            if row_id in digests:
                entry = CachedVersion(info, encode_manifest(info, digests[row_id]))
                found[path] = entry
                cache.put(path, version, entry, generation)
    else:
        refused = _over_limits(paths, found, infos, max_size, max_chunks)
    return [refusal or found.get(path) or _no_such_file(path, version) for path, refusal in zip(paths, refused)]


def _groups(items: list) -> list[list]:
    return [items[i : i + PATHS_PER_QUERY] for i in range(0, len(items), PATHS_PER_QUERY)]


def _over_limits(paths: list[str], found: dict[str, CachedVersion], infos: dict[str, tuple[VersionInfo, int]],
                 max_size: int | None, max_chunks: int | None) -> list[RingFSError | None]:
    """Per path of :func:`lookup_many`, in order, the 413 that its size and chunk budgets refuse it with,
    or None. A repeated path is looked up once but answered each time, so each repeat spends its chunks
    of the budget again: the answer, not only the lookups, stays within ``max_chunks`` chunks."""
    refused: list[RingFSError | None] = []
    budget = max_chunks
    for path in paths:
        info = found[path].info if path in found else infos[path][0] if path in infos else None
        refusal = None
        if info is None:
            pass
        elif max_size is not None and info.size > max_size:
            refusal = PayloadTooLarge(f"{path} is {info.size} bytes, over the batch read limit of {max_size} "
                                      f"bytes: stream it with GET /files/{path}")
        elif budget is not None:
            if info.chunks > budget:
                refusal = PayloadTooLarge(f"{path} does not fit in this batch: one batch may name at most "
                                          f"{max_chunks} chunks in all; ask for fewer files at a time")
            else:
                budget -= info.chunks
        refused.append(refusal)
    return refused


async def list_versions(store: Store, path: str) -> list[VersionInfo]:
    """The committed versions of ``path``, oldest first. Raises :class:`NotFound` (404) when there are
    none."""
    async with store.read_conn() as conn:
        rows = (await conn.execute(sql.COMMITTED_VERSIONS, {"path": path})).all()
    if not rows:
        raise NotFound(f"no such file: {path!r}")
    return [sql.version_info(row) for row in rows]
