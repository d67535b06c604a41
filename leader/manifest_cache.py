"""An in-process cache of committed versions for ``GET /manifest`` and ``GET /stat``.

The leader is the only writer of the metadata store and runs as one process, so a cache kept here is
coherent as long as every mutation that changes which committed version a lookup returns invalidates it
once its transaction has ended: commit (the path), delete (the path), undelete (the path), rename (every
entry). Pending versions, aborts, the pending sweep and the trash purge never change what is visible, so
they leave it alone.

Entries are keyed ``(path, None)`` for "latest committed version of path" and ``(path, version)`` for a
given version; each holds the version's :class:`VersionInfo` and its encoded manifest
(``encode_manifest(info, digests)``), so a hit costs no SQL and no encoding. The cache is an LRU bounded
by bytes.

Two races are closed:

* Stale fill: a reader that ran its SQL before a mutation committed must not insert its (now stale) row
  after the mutation's invalidation. Readers take :meth:`ManifestCache.generation` *before* their query
  and :meth:`ManifestCache.put` drops the row when any invalidation happened since (every invalidation
  bumps the generation, after the mutation's transaction has ended).
* Stale hit while committing: between the moment a mutation's SQL ``COMMIT`` makes it visible and the
  moment its invalidation runs, a cached entry would disagree with SQL. So a writer calls
  :meth:`ManifestCache.begin_write` *before* its transaction commits (once it knows the path) and
  :meth:`ManifestCache.end_write` after it ended, whatever the outcome; meanwhile lookups of that path
  miss (go to SQL) and fills of it are refused. :meth:`begin_write_all` / :meth:`end_write_all` do the
  same for every path (rename).
"""

from __future__ import annotations

import os
from collections import OrderedDict

from shared.protocol.models import VersionInfo

# Default bound: bytes of encoded manifests (plus a fixed per-entry overhead) kept.
DEFAULT_MAX_BYTES = int(os.environ.get("LEADER_MANIFEST_CACHE_BYTES", str(64 * 1024 * 1024)))
# Rough Python overhead of one entry (model, tuple, key, OrderedDict node), counted against the bound.
ENTRY_OVERHEAD = 600


class CachedVersion:
    """One cached committed version: its :class:`VersionInfo` (never mutate it) and its encoded manifest
    (what ``GET /manifest`` answers). ``cost`` is what it counts against the cache's bound, in bytes."""

    __slots__ = ("info", "manifest", "cost")

    def __init__(self, info: VersionInfo, manifest: bytes) -> None:
        self.info = info
        self.manifest = manifest
        self.cost = len(manifest) + ENTRY_OVERHEAD


class ManifestCache:
    """``(path, version | None) -> CachedVersion``, LRU by bytes, invalidated by the writers."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int | None], CachedVersion] = OrderedDict()
        self._by_path: dict[str, set[tuple[str, int | None]]] = {}
        self._bytes = 0
        self._generation = 0
        self._busy: dict[str, int] = {}  # path -> mutations of it in flight
        self._busy_all = 0  # mutations of unknown / many paths in flight
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def generation(self) -> int:
        """Take this before querying SQL for a row to :meth:`put`."""
        return self._generation

    def get(self, path: str, version: int | None) -> CachedVersion | None:
        key = (path, version)
        entry = self._entries.get(key)
        if entry is None or self._busy_all or path in self._busy:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def is_busy(self, path: str) -> bool:
        """Whether a mutation of ``path`` (or of every path) is in flight: between :meth:`begin_write`
        and :meth:`end_write`. No read lease may start then (``leader/read_leases.py``)."""
        return self._busy_all > 0 or path in self._busy

    def put(self, path: str, version: int | None, entry: CachedVersion, generation: int) -> bool:
        """Insert ``entry`` for ``(path, version)`` unless an invalidation happened since ``generation``
        was taken (the row may be stale) or it alone exceeds the bound. Returns whether it was kept."""
        if (generation != self._generation or entry.cost > self.max_bytes or self._busy_all
                or path in self._busy):
            return False
        key = (path, version)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.cost
        self._entries[key] = entry
        self._by_path.setdefault(path, set()).add(key)
        self._bytes += entry.cost
        while self._bytes > self.max_bytes:
            (p, v), evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.cost
            self._forget_key(p, (p, v))
        return True

    def _forget_key(self, path: str, key: tuple[str, int | None]) -> None:
        keys = self._by_path.get(path)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_path[path]

    def begin_write(self, path: str) -> None:
        """A mutation of ``path`` is about to become visible: from now until :meth:`end_write`, lookups
        of the path miss and fills of it are refused. Call before the transaction commits."""
        self._busy[path] = self._busy.get(path, 0) + 1
        self.invalidate(path)

    def end_write(self, path: str) -> None:
        """The mutation begun by :meth:`begin_write` ended (committed or not): invalidate ``path``."""
        n = self._busy.get(path, 0) - 1
        if n > 0:
            self._busy[path] = n
        else:
            self._busy.pop(path, None)
        self.invalidate(path)

    def begin_write_all(self) -> None:
        """:meth:`begin_write` for every path (a mutation whose paths are not known in advance)."""
        self._busy_all += 1
        self.clear()

    def end_write_all(self) -> None:
        self._busy_all = max(0, self._busy_all - 1)
        self.clear()

    def invalidate(self, path: str) -> None:
        """Drop every entry of ``path``; call after a mutation of ``path`` ended (committed or not)."""
        self._generation += 1
        for key in self._by_path.pop(path, ()):
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry.cost

    def clear(self) -> None:
        """Drop everything (rename, or a mutation whose paths are unknown)."""
        self._generation += 1
        self._entries.clear()
        self._by_path.clear()
        self._bytes = 0
