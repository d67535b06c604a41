"""The leader's Prometheus gauges, refreshed when ``/metrics`` is scraped.

``ringfs_under_replicated_chunks`` and ``ringfs_lost_chunks`` come from the most recent fsck (run on
demand by ``GET /fsck`` or ``ringfs fsck``); ``ringfs_fsck_last_run_timestamp`` says how old they are.
"""

from __future__ import annotations

import orjson
from sqlalchemy import func, select

from leader.models import FileVersion
from shared.metrics import gauge
from shared.ring import ServerState

SERVERS = gauge("ringfs_chunk_servers", "Chunk servers by state", ("state",))
EPOCH = gauge("ringfs_ring_epoch", "Ring epoch (increments on every membership change)")
FILES = gauge("ringfs_files", "Paths with a live (committed) version")
VERSIONS = gauge("ringfs_versions", "File versions by state", ("state",))
UNDER_REPLICATED = gauge("ringfs_under_replicated_chunks", "Chunks with fewer copies than the replication factor (last fsck)")
LOST = gauge("ringfs_lost_chunks", "Chunks with no reachable copy (last fsck)")
FSCK_LAST_RUN = gauge("ringfs_fsck_last_run_timestamp", "UNIX time of the last fsck")


def record_fsck(report: dict) -> None:
    """Remember an fsck report's totals for the gauges."""
    UNDER_REPLICATED.set(report.get("under_replicated", 0))
    LOST.set(report.get("lost", 0))
    FSCK_LAST_RUN.set_to_current_time()


def refresh_from(app):
    """A ``refresh`` callback for ``install_metrics``: reads membership and counts versions in SQL."""

    async def refresh() -> None:
        membership, store = app.state.membership, getattr(app.state, "store", None)
        if membership is None or store is None:
            return
        EPOCH.set(membership.epoch)
        states = {s.value: 0 for s in ServerState}
        for server in orjson.loads(membership.servers_json):  # every server, removed ones too
            states[server["state"]] = states.get(server["state"], 0) + 1
        for state, n in states.items():
            SERVERS.labels(state).set(n)
        async with store.read() as session:
            rows = (await session.execute(
                select(FileVersion.state, func.count()).group_by(FileVersion.state))).all()
            live = (await session.execute(
                select(func.count(func.distinct(FileVersion.path))).where(FileVersion.state == "committed"))).scalar()
        for state in ("pending", "committed", "deleted", "part"):
            VERSIONS.labels(state).set(dict(rows).get(state, 0))
        FILES.set(live or 0)

    return refresh
