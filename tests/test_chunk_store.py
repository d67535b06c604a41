"""Unit tests of the chunk store's two-phase commit (chunk_server/store/), on a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

import pytest

from chunk_server.store import ChunkStore
from chunk_server.store.schema import PAGE_SIZE, key_of
from shared.protocol.frames import ChunkPresence, sha256
from tests.utils.chunk_files import corrupt_chunk


def run(coro):
    return asyncio.run(coro)


def chunk(n: int = 1024) -> tuple[bytes, bytes]:
    data = os.urandom(n)
    return sha256(data), data


@pytest.fixture
def store(tmp_path):
    s = ChunkStore(tmp_path)
    yield s
    s.close()


def test_prepare_is_invisible_until_commit(store):
    chunks = [chunk() for _ in range(10)]
    digests = [d for d, _ in chunks]
    res = run(store.prepare("t1", chunks))
    assert (res.stored, res.already_committed) == (10, 0)
    assert run(store.read_many(digests)) == [None] * 10
    assert run(store.presence_many(digests)) == bytes([ChunkPresence.PENDING]) * 10
    st = run(store.stats())
    assert (st["chunks"], st["pending_chunks"], st["pending_txns"]) == (0, 10, 1)

    assert run(store.commit(["t1"])) == {"t1": 10}
    assert run(store.read_many(digests)) == [data for _, data in chunks]
    assert run(store.presence_many(digests)) == bytes([ChunkPresence.COMMITTED]) * 10
    st = run(store.stats())
    assert (st["chunks"], st["bytes"], st["pending_chunks"], st["pending_txns"]) == (10, 10 * 1024, 0, 0)
    assert st["disk_bytes"] > 10 * 1024
    assert run(store.commit(["t1"])) == {"t1": 0}  # idempotent


def test_abort_drops_pending(store):
    chunks = [chunk() for _ in range(5)]
    run(store.prepare("t1", chunks))
    assert run(store.abort(["t1", "unknown"])) == {"t1": 5, "unknown": 0}
    assert run(store.presence_many([d for d, _ in chunks])) == bytes(5)
    assert run(store.commit(["t1"])) == {"t1": 0}
    assert run(store.read_many([d for d, _ in chunks])) == [None] * 5


def test_committed_chunk_is_deduplicated_and_never_lost(store):
    d, data = chunk()
    run(store.prepare("t1", [(d, data)]))
    run(store.commit(["t1"]))
    other_d, other = chunk()
    res = run(store.prepare("t2", [(d, data), (other_d, other)]))
    assert (res.stored, res.already_committed) == (1, 1)
    # The committed chunk is only pinned by t2: aborting t2 keeps it.
    assert run(store.abort(["t2"])) == {"t2": 1}
    assert run(store.read_many([d, other_d])) == [data, None]
    st = run(store.stats())
    assert (st["chunks"], st["bytes"]) == (1, 1024)


def test_pending_write_never_replaces_committed_data(store):
    d, data = chunk()
    run(store.prepare("t1", [(d, data)]))
    run(store.commit(["t1"]))
    run(store.prepare("t2", [(d, b"garbage that a buggy caller sent")]))
    run(store.commit(["t2"]))
    assert run(store.read_many([d])) == [data]


def test_shared_pending_digest_abort_one_commit_other(store):
    shared, own = chunk(), chunk()
    run(store.prepare("a", [shared, own]))
    res = run(store.prepare("b", [shared]))
    assert (res.stored, res.already_committed) == (1, 0)
    with sqlite3.connect(store.path) as conn:  # stored once, referenced twice
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 2
    assert run(store.abort(["a"])) == {"a": 2}
    assert run(store.presence_many([shared[0], own[0]])) == bytes([ChunkPresence.PENDING, ChunkPresence.ABSENT])
    assert run(store.commit(["b"])) == {"b": 1}
    assert run(store.read_many([shared[0]])) == [shared[1]]


def test_commit_one_then_abort_other_keeps_shared_chunk(store):
    shared = chunk()
    run(store.prepare("a", [shared]))
    run(store.prepare("b", [shared]))
    assert run(store.commit(["a"])) == {"a": 1}
    assert run(store.abort(["b"])) == {"b": 1}
    assert run(store.read_many([shared[0]])) == [shared[1]]


def test_duplicate_digest_in_one_batch(store):
    c = chunk()
    res = run(store.prepare("t", [c, c]))
    assert res.already_committed == 0
    assert run(store.commit(["t"])) == {"t": 1}
    assert run(store.stats())["chunks"] == 1


def test_sweep_aborts_old_txns_only(store):
    old, fresh = chunk(), chunk()
    run(store.prepare("old", [old]))
    time.sleep(1.0)
    run(store.prepare("fresh", [fresh]))
    assert run(store.sweep(0.5)) == ["old"]  # 0.5 s of slack for a loaded machine between the two calls
    assert run(store.presence_many([old[0], fresh[0]])) == bytes([ChunkPresence.ABSENT, ChunkPresence.PENDING])
    assert run(store.commit(["fresh"])) == {"fresh": 1}


def test_data_survives_reopening(tmp_path):
    chunks = [chunk(n) for n in (1, 1024, 100_000)]
    s = ChunkStore(tmp_path)
    run(s.prepare("t", chunks))
    run(s.prepare("p", [chunk()]))
    run(s.commit(["t"]))
    s.close()
    s = ChunkStore(tmp_path)
    try:
        assert run(s.read_many([d for d, _ in chunks])) == [data for _, data in chunks]
        st = run(s.stats())
        assert (st["chunks"], st["pending_txns"]) == (3, 1)
        with sqlite3.connect(s.path) as conn:
            assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    finally:
        s.close()


def test_read_many_large_batch(store):
    chunks = [chunk(64) for _ in range(5000)]
    run(store.prepare("t", chunks))
    run(store.commit(["t"]))
    digests = [d for d, _ in chunks] + [b"\0" * 32]
    assert run(store.read_many(digests)) == [data for _, data in chunks] + [None]


# ------------------------------------------------------------ pins, touch times, GC (failure-handling.md)


def touched_at(store, digest: bytes) -> float:
    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT touched_at FROM chunks WHERE key = ? AND tail = ?",
                            (key_of(digest), digest[8:])).fetchone()[0]


def test_dedup_hit_pins_and_touches_committed_chunk(store):
    c = chunk()
    run(store.prepare("t1", [c]))
    assert run(store.commit(["t1"])) == {"t1": 1}
    first = touched_at(store, c[0])
    time.sleep(0.01)
    res = run(store.prepare("t2", [c, chunk()]))
    assert (res.stored, res.already_committed) == (1, 1)
    assert touched_at(store, c[0]) > first
    assert run(store.stats())["pinned_chunks"] == 1
    t_pin = touched_at(store, c[0])
    # A pinned chunk is never a GC candidate nor deleted, whatever its touch time.
    assert run(store.gc_candidates(time.time() + 10, 100)) == []
    assert run(store.gc_delete([c[0]], time.time() + 10)).count == 0
    time.sleep(0.01)
    assert run(store.commit(["t2"])) == {"t2": 1}  # pins do not count; >= the stored count
    assert touched_at(store, c[0]) > t_pin  # unpinning touches
    assert run(store.stats())["pinned_chunks"] == 0


def test_gc_delete_race_rule(store):
    old, touched, pinned = chunk(), chunk(), chunk()
    run(store.prepare("t", [old, touched, pinned]))
    run(store.commit(["t"]))
    t0 = time.time() + 0.001
    candidates = [d for _, d in run(store.gc_candidates(t0, 100))]
    assert sorted(candidates) == sorted([old[0], touched[0], pinned[0]])
    time.sleep(0.01)
    run(store.prepare("late", [touched]))  # touched after t0 ...
    run(store.commit(["late"]))
    run(store.prepare("open", [pinned]))  # ... and pinned by an open txn
    removed = run(store.gc_delete(candidates, t0))
    assert removed.digests == [old[0]] and removed.bytes == 1024
    assert run(store.read_many([old[0], touched[0], pinned[0]])) == [None, touched[1], pinned[1]]
    assert run(store.stats())["chunks"] == 2
    assert run(store.commit(["open"])) == {"open": 0}


def test_gc_never_deletes_pending(store):
    c = chunk()
    run(store.prepare("t", [c]))
    assert run(store.gc_delete([c[0]], time.time() + 10)).count == 0
    assert run(store.presence_many([c[0]])) == bytes([ChunkPresence.PENDING])


def test_replicate_stores_committed_and_promotes_pending(store):
    a, b = chunk(), chunk()
    run(store.prepare("t", [b]))
    assert run(store.replicate([a, b, a])) == 2
    assert run(store.read_many([a[0], b[0]])) == [a[1], b[1]]
    assert run(store.replicate([a])) == 0
    assert run(store.commit(["t"])) == {"t": 1}
    st = run(store.stats())
    assert (st["chunks"], st["bytes"], st["pending_txns"]) == (2, 2048, 0)
    rows = run(store.iter_committed(0, 10))
    assert [d for _, d, _ in rows] == [b[0], a[0]] and rows[0][2] is None  # rowid order: b was first
    assert run(store.iter_committed(rows[0][0], 10, with_data=True))[0][1:] == (a[0], a[1])


def test_quarantine_moves_only_corrupt_rows(store):
    good, bad = chunk(), chunk()
    run(store.replicate([good, bad]))
    corrupt_chunk(store.data_dir, bad[0])
    removed = run(store.quarantine([good[0], bad[0]]))
    assert removed.digests == [bad[0]]
    assert run(store.read_many([good[0], bad[0]])) == [good[1], None]
    assert run(store.quarantined()) == [bad[0]]
    st = run(store.stats())
    assert (st["chunks"], st["quarantined"]) == (1, 1)
    assert run(store.replicate([bad])) == 1  # the repair
    assert run(store.read_many([bad[0]])) == [bad[1]]


def test_delete_if_replicated_skips_pinned(store):
    a, b = chunk(), chunk()
    run(store.replicate([a, b]))
    run(store.prepare("t", [b]))
    assert run(store.delete_if_replicated([a[0], b[0]])).digests == [a[0]]


def test_meta_set_and_add(store):
    run(store.set_meta({"ae.cursor": 5}, add={"ae.pushed": 3}))
    run(store.set_meta(add={"ae.pushed": 4}))
    assert run(store.get_meta(["ae.cursor", "ae.pushed", "nope"])) == {"ae.cursor": 5, "ae.pushed": 7}


def test_a_replicated_copy_does_not_restart_gc_grace(store):
    """Anti-entropy's and repair's copies are stored as old as can be, so garbage one replica lacked is
    not kept alive by being pushed back and forth; a prepare still touches them."""
    pushed = chunk()
    assert run(store.replicate([pushed])) == 1
    assert touched_at(store, pushed[0]) == 0
    grace_start = time.time() - 3600  # a GC round with a grace of an hour still sees it
    assert [d for _, d in run(store.gc_candidates(grace_start, 10))] == [pushed[0]]
    run(store.prepare("t", [pushed]))  # a dedup hit touches and pins it
    assert touched_at(store, pushed[0]) > 0
    assert run(store.gc_candidates(grace_start, 10)) == []
