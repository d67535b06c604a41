"""The chunk server's Prometheus metrics: what the store holds (gauges) and what the background jobs
did (counters). The job counters are persisted in the store's ``meta`` table, so they are exposed with a
custom collector as counters that survive restarts; values are read from the store when ``/metrics``
is scraped."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from chunk_server.routes import STATS_COUNTERS

_GAUGES = {
    "chunks": ("ringfs_chunk_committed_chunks", "Committed chunks stored"),
    "bytes": ("ringfs_chunk_committed_bytes", "Bytes of committed chunk data stored"),
    "pending_chunks": ("ringfs_chunk_pending_chunks", "Chunks written pending, not yet committed or aborted"),
    "pending_txns": ("ringfs_chunk_pending_txns", "Open two-phase-commit transactions"),
    "quarantined": ("ringfs_chunk_quarantined_chunks", "Corrupt copies kept in quarantine"),
    "disk_bytes": ("ringfs_chunk_disk_bytes", "Bytes on disk used by the chunk store (index, its WAL, segments)"),
    "segments": ("ringfs_chunk_segments", "Segment files of the chunk store"),
    "dead_bytes": ("ringfs_chunk_dead_bytes", "Bytes of segment records no chunk points to (compaction reclaims them)"),
}
_COUNTERS = {
    "scrubbed": "Chunks re-hashed by the scrubber",
    "corrupt": "Corrupt copies found (scrub, verify, read repair)",
    "repaired": "Corrupt copies replaced by a good copy from another replica",
    "gc_deleted": "Unreferenced chunks deleted by garbage collection",
    "gc_bytes": "Bytes reclaimed by garbage collection",
    "gc_rounds": "Garbage collection rounds run",
    "compacted_segments": "Segments rewritten and deleted by compaction",
    "compacted_bytes": "Segment file bytes freed by compaction",
    "compaction_moved_bytes": "Live record bytes copied by compaction",
}
_AE = {"checked": "Chunks compared with their preference list by anti-entropy",
       "pushed": "Chunk copies pushed to preference-list servers by anti-entropy",
       "dropped": "Misplaced copies dropped after handoff"}


class ChunkServerCollector:
    """Yields the last snapshot taken by :meth:`refresh` (called before each scrape)."""

    def __init__(self) -> None:
        self.snapshot: dict = {}

    async def refresh(self, app) -> None:
        store = app.state.store
        stats = await store.stats()
        counters = await store.get_meta(STATS_COUNTERS)
        progress = await app.state.anti_entropy.progress()
        self.snapshot = {**stats, **{k: counters.get(k, 0) for k in STATS_COUNTERS},
                         **{f"ae_{k}": progress.get(k, 0) for k in _AE}}

    def collect(self):
        snap = self.snapshot
        for key, (name, doc) in _GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=snap.get(key, 0))
        for key, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"ringfs_chunk_{key}", doc, value=snap.get(key, 0))
        for key, doc in _AE.items():
            yield CounterMetricFamily(f"ringfs_chunk_anti_entropy_{key}", doc, value=snap.get(f"ae_{key}", 0))


COLLECTOR = ChunkServerCollector()
REGISTRY.register(COLLECTOR)


def refresh_from(app):
    """A ``refresh`` callback for ``shared.metrics.install_metrics``."""
    return lambda: COLLECTOR.refresh(app)
