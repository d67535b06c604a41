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
from shared.errors import NotFound, RingFSError
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


async def lookup_many(store: Store, paths: list[str], version: int | None) -> list[CachedVersion | RingFSError]:
    """:func:`lookup` of each of ``paths`` (normalized; repeats allowed) at ``version`` (latest when None):
    per path, in order, its :class:`CachedVersion` or the :class:`NotFound` that lookup() would raise.
    Cache hits cost no SQL; the misses are resolved together, one indexed query per
    :data:`PATHS_PER_QUERY` distinct paths, and fill the cache under the same generation rule as
    lookup(). SQL failures raise :class:`Unavailable` for the whole call."""
    cache = store.cache
    found: dict[str, CachedVersion] = {}
    missed: dict[str, None] = {}  # distinct misses, in request order
    for path in paths:
        if path in found or path in missed:
            continue
        entry = cache.get(path, version)
        if entry is not None:
            found[path] = entry
        else:
            missed[path] = None
    misses = list(missed)
    if misses:
        generation = cache.generation()  # before the queries, as in lookup()
        rows: list[Row] = []
        async with store.read_conn() as conn:
            for start in range(0, len(misses), PATHS_PER_QUERY):
                group = misses[start : start + PATHS_PER_QUERY]
                if version is None:
                    result = await conn.execute(sql.LATEST_MANY, {"paths": group})
                else:
                    result = await conn.execute(sql.EXACT_MANY, {"paths": group, "version": version})
                rows.extend(result.all())
        for row in rows:
            entry = _cached(row)
            found[entry.info.path] = entry
            cache.put(entry.info.path, version, entry, generation)
    return [found.get(path) or _no_such_file(path, version) for path in paths]


async def list_versions(store: Store, path: str) -> list[VersionInfo]:
    """The committed versions of ``path``, oldest first. Raises :class:`NotFound` (404) when there are
    none."""
    async with store.read_conn() as conn:
        rows = (await conn.execute(sql.COMMITTED_VERSIONS, {"path": path})).all()
    if not rows:
        raise NotFound(f"no such file: {path!r}")
    return [sql.version_info(row) for row in rows]
