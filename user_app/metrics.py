"""The user app's own Prometheus metrics (the per-route HTTP metrics live in ``shared/metrics.py``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BYTES_IN = Counter("ringfs_user_bytes_in_total", "File bytes received from clients and stored")
BYTES_OUT = Counter("ringfs_user_bytes_out_total", "File bytes sent to clients")
WRITES = Counter("ringfs_user_writes_total", "Two-phase-commit writes by outcome", ["outcome"])
UNDER_REPLICATED_WRITES = Counter("ringfs_user_under_replicated_writes_total",
                                  "Writes committed with fewer than REPLICATION_FACTOR copies of some chunk "
                                  "(at least MIN_WRITE_REPLICAS); anti-entropy makes the missing copies")
CHUNK_FALLBACKS = Counter("ringfs_user_chunk_fallbacks_total",
                          "Chunks served by a later read candidate after a failure, miss or bad copy")
CORRUPT_COPIES = Counter("ringfs_user_corrupt_copies_total", "Chunk copies whose SHA-256 did not match")
COMMIT_REQUESTS = Counter("ringfs_user_chunk_commit_requests_total",
                          "Phase-3 commit requests sent to chunk servers (group commit coalesces them)")
CHUNK_CACHE_LOOKUPS = Counter("ringfs_user_chunk_cache_lookups_total",
                              "Chunk lookups in the user app's chunk cache, by result", ["result"])
CHUNK_CACHE_BYTES = Gauge("ringfs_user_chunk_cache_bytes", "Chunk bytes held in the user app's chunk cache")
PREPARE_REQUESTS = Counter("ringfs_user_prepare_requests_total",
                           "Phase-1 prepare requests sent to chunk servers, by endpoint (coalescing batches them)",
                           ["endpoint"])
PREPARE_SECTIONS = Counter("ringfs_user_prepare_sections_total",
                           "Phase-1 prepare calls (txn batches) carried by those requests, by endpoint", ["endpoint"])
LEADER_REQUESTS = Counter("ringfs_user_leader_requests_total",
                          "Version requests sent to the leader by kind (prepare, prepare_batch, commit, commit_batch); "
                          "coalescing carries concurrent uploads' calls in the *_batch kinds", ["kind"])
