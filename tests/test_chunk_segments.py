"""The chunk store's segment files (docs/chunk-store.md): contiguous batches, coalesced reads, recovery of
orphaned and torn tails, compaction and its crash safety (``kill -9`` of a real process), and the
migration of a store of the one-database layout."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chunk_server.store import ChunkStore
from chunk_server.store.connections import INDEX_FILE
from chunk_server.store.migrate import OLD_FILE
from chunk_server.store.recovery import CLEAN_FILE, MARK_FILE
from chunk_server.store.segments import HEADER_SIZE, segment_name
from shared.protocol.frames import ChunkPresence, sha256
from tests.utils.chunk_files import record_of
from user_app.client.local_cluster import wait_until

ROOT = Path(__file__).resolve().parent.parent


def run(coro):
    return asyncio.run(coro)


def chunk(n: int = 1024) -> tuple[bytes, bytes]:
    data = os.urandom(n)
    return sha256(data), data


def check_accounting(data_dir: Path) -> None:
    """Every segment's ``live_bytes`` is exactly the record bytes its rows point to, and no segment the
    index names is shorter than its committed end."""
    with sqlite3.connect(data_dir / INDEX_FILE) as conn:
        live = dict(conn.execute("SELECT segment, sum(size + ?) FROM chunks GROUP BY segment", (HEADER_SIZE,)))
        segments = conn.execute("SELECT id, live_bytes, total_bytes FROM segments").fetchall()
        counted = conn.execute("SELECT committed_chunks, committed_bytes FROM counters").fetchone()
        actual = conn.execute("SELECT count(*), total(size) FROM chunks WHERE state = 2").fetchone()
    conn.close()
    assert {sid: n for sid, n, _ in segments if n} == live
    for sid, _, total in segments:
        assert (data_dir / "segments" / segment_name(sid)).stat().st_size >= total
    assert counted == (actual[0], int(actual[1]))


def test_a_prepare_batch_is_contiguous_and_read_with_one_pread(tmp_path):
    store = ChunkStore(tmp_path)
    try:
        chunks = [chunk(1024) for _ in range(10)]
        run(store.prepare("t", chunks))
        run(store.commit(["t"]))
        records = [record_of(tmp_path, d) for d, _ in chunks]
        assert len({path for _, path, _, _ in records}) == 1
        for (_, _, a, size), (_, _, b, _) in zip(records, records[1:]):
            assert b == a + size + HEADER_SIZE  # back to back
        calls = []
        read = store.log.read
        store.log.read = lambda *args: calls.append(args) or read(*args)
        assert run(store.read_many([d for d, _ in chunks])) == [data for _, data in chunks]
        assert len(calls) == 1
        # out of order and with a gap: one read per run of neighbours
        calls.clear()
        order = [chunks[i][0] for i in (0, 1, 2, 5, 6, 3)]
        assert run(store.read_many(order)) == [chunks[i][1] for i in (0, 1, 2, 5, 6, 3)]
        assert len(calls) == 3
    finally:
        store.close()
    check_accounting(tmp_path)


def test_orphaned_tail_is_cut_off_on_open(tmp_path):
    store = ChunkStore(tmp_path)
    kept = [chunk() for _ in range(3)]
    run(store.replicate(kept))
    segment = store.log.path(store.log.active)
    store.close()
    end = segment.stat().st_size
    with open(segment, "ab") as f:  # a batch whose index transaction never committed
        f.write(b"\x00\x00\x04\x00" + os.urandom(700))
    (tmp_path / "segments" / CLEAN_FILE).unlink()
    store = ChunkStore(tmp_path)
    try:
        assert segment.stat().st_size == end
        more = [chunk() for _ in range(3)]
        run(store.replicate(more))
        assert run(store.read_many([d for d, _ in kept + more])) == [data for _, data in kept + more]
    finally:
        store.close()
    check_accounting(tmp_path)


def _write_then_crash(data_dir: Path, script: str) -> str:
    """Run ``script`` (with ``store``, ``run``, ``chunk`` defined) in a child process that ends with
    ``os._exit`` (no close, as after a crash); its stdout."""
    code = textwrap.dedent(f"""
        import asyncio, os, sys
        import chunk_server.store.connections as connections
        connections.CHECKPOINT_INTERVAL = 3600  # no durable mark but the one of a clean close
        from chunk_server.store import ChunkStore
        from shared.protocol.frames import sha256
        def run(c): return asyncio.run(c)
        def chunk(n=1024):
            d = os.urandom(n); return sha256(d), d
        store = ChunkStore({str(data_dir)!r})
    """) + textwrap.dedent(script) + "\nsys.stdout.flush()\nos._exit(0)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_torn_record_after_the_durable_mark_is_never_served(tmp_path):
    before = [chunk() for _ in range(4)]
    store = ChunkStore(tmp_path)
    run(store.replicate(before))
    store.close()  # clean: the durable mark is at the end of these
    out = _write_then_crash(tmp_path, """
        after = [chunk() for _ in range(3)]
        run(store.prepare("t", after))
        run(store.commit(["t"]))
        print(" ".join(d.hex() for d, _ in after))
    """)
    after = [bytes.fromhex(h) for h in out.split()]
    assert not (tmp_path / "segments" / CLEAN_FILE).exists()
    # the power went out before the second of them reached the disk
    _, path, offset, _ = record_of(tmp_path, after[1])
    with open(path, "r+b") as f:
        f.seek(offset + 10)
        f.write(b"\xff\xfe\xfd")
    store = ChunkStore(tmp_path)
    try:
        assert run(store.presence_many(after)) == bytes([ChunkPresence.COMMITTED, 0, 0])
        assert run(store.read_many([d for d, _ in before])) == [data for _, data in before]
        assert path.stat().st_size == offset - HEADER_SIZE  # the torn part is cut off
        assert run(store.stats())["chunks"] == len(before) + 1
        again = chunk()
        run(store.replicate([again]))  # and the segment takes writes again
        assert run(store.read_many([again[0]])) == [again[1]]
    finally:
        store.close()
    check_accounting(tmp_path)


def test_crash_without_damage_keeps_everything(tmp_path):
    out = _write_then_crash(tmp_path, """
        for i in range(5):
            batch = [chunk(n) for n in (1, 1024, 70_000)]
            run(store.prepare(f"t{i}", batch))
            run(store.commit([f"t{i}"]))
            print(" ".join(d.hex() for d, _ in batch))
        run(store.prepare("open", [chunk()]))
    """)
    digests = [bytes.fromhex(h) for h in out.split()]
    store = ChunkStore(tmp_path)
    try:
        assert run(store.presence_many(digests)) == bytes([ChunkPresence.COMMITTED]) * len(digests)
        assert all(sha256(data) == d for d, data in zip(digests, run(store.read_many(digests))))
        assert run(store.stats())["pending_txns"] == 1
    finally:
        store.close()
    check_accounting(tmp_path)


def _fill(store: ChunkStore, txns: int, per_txn: int, size: int = 4096) -> list[tuple[bytes, bytes]]:
    chunks = []
    for i in range(txns):
        batch = [chunk(size) for _ in range(per_txn)]
        run(store.prepare(f"fill{i}", batch))
        run(store.commit([f"fill{i}"]))
        chunks.extend(batch)
    return chunks


def test_compaction_reclaims_dead_records_and_keeps_live_ones(tmp_path):
    store = ChunkStore(tmp_path, segment_bytes=64 * 1024)
    try:
        chunks = _fill(store, 40, 4)  # 16 KiB per txn: a new segment every 4 txns
        pending = chunk(4096)
        run(store.prepare("open", [pending]))  # a pending chunk moves with its txn untouched
        rng = random.Random(7)
        dead = [d for d, _ in rng.sample(chunks, 120)]
        assert run(store.gc_delete(dead, time.time() + 1)).count == 120
        live = [(d, data) for d, data in chunks if d not in set(dead)]
        before = run(store.stats())
        assert before["dead_bytes"] >= 120 * 4096
        candidates = run(store.compaction_candidates(0.5))
        assert candidates
        freed = 0
        for segment in candidates:
            done = run(store.compact_segment(segment))
            assert done.freed_bytes > 0
            freed += done.freed_bytes
            assert not store.log.path(segment).exists()
        after = run(store.stats())
        assert after["disk_bytes"] < before["disk_bytes"] and after["dead_bytes"] < before["dead_bytes"]
        assert run(store.read_many([d for d, _ in live])) == [data for _, data in live]
        assert run(store.presence_many([pending[0]])) == bytes([ChunkPresence.PENDING])
        assert run(store.commit(["open"])) == {"open": 1}
        assert run(store.read_many([pending[0]])) == [pending[1]]
        assert run(store.compaction_candidates(0.5)) == []
    finally:
        store.close()
    check_accounting(tmp_path)


COMPACT_FOREVER = """
import asyncio, sys
from chunk_server.store import ChunkStore
async def main():
    store = ChunkStore(sys.argv[1], segment_bytes=64 * 1024)
    print("ready", flush=True)
    while True:
        for segment in await store.compaction_candidates(0.99):
            await store.compact_segment(segment)
asyncio.run(main())
"""


def test_kill_9_during_compaction_loses_nothing(tmp_path):
    store = ChunkStore(tmp_path, segment_bytes=64 * 1024)
    chunks = _fill(store, 60, 4)
    dead = {d for d, _ in random.Random(3).sample(chunks, 100)}
    run(store.gc_delete(list(dead), time.time() + 1))
    store.close()
    live = [(d, data) for d, data in chunks if d not in dead]
    rng = random.Random(11)
    for _ in range(6):  # compaction killed at random points, then the store reopened and checked
        proc = subprocess.Popen([sys.executable, "-c", COMPACT_FOREVER, str(tmp_path)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        check_accounting(tmp_path)
        store = ChunkStore(tmp_path, segment_bytes=64 * 1024)
        try:
            assert run(store.read_many([d for d, _ in live])) == [data for _, data in live]
            assert run(store.stats())["chunks"] == len(live)
        finally:
            store.close()
    store = ChunkStore(tmp_path, segment_bytes=64 * 1024)
    try:
        for segment in run(store.compaction_candidates(0.5)):
            run(store.compact_segment(segment))
        assert run(store.read_many([d for d, _ in live])) == [data for _, data in live]
        assert run(store.stats())["dead_bytes"] < 0.5 * len(live) * 4096
    finally:
        store.close()
    check_accounting(tmp_path)


# The one-database layout this version migrates from (chunks.db before docs/chunk-store.md).
OLD_SCHEMA = """
CREATE TABLE chunks(id INTEGER PRIMARY KEY AUTOINCREMENT, digest BLOB NOT NULL UNIQUE, data BLOB NOT NULL);
CREATE TABLE chunk_state(id INTEGER PRIMARY KEY, state INTEGER NOT NULL, size INTEGER NOT NULL,
                         created_at REAL NOT NULL, touched_at REAL NOT NULL);
CREATE TABLE txn_chunks(txn_id TEXT NOT NULL, chunk_id INTEGER NOT NULL, created_at REAL NOT NULL,
                        pin INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(txn_id, chunk_id)) WITHOUT ROWID;
CREATE TABLE counters(id INTEGER PRIMARY KEY CHECK (id = 1), committed_chunks INTEGER NOT NULL,
                      committed_bytes INTEGER NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE quarantine(id INTEGER PRIMARY KEY, digest BLOB NOT NULL, data BLOB NOT NULL, size INTEGER NOT NULL,
                        quarantined_at REAL NOT NULL);
"""


def _old_store(path: Path, committed, pending, pinned_txn=None) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    now = time.time()
    rows = [(d, data, 2) for d, data in committed] + [(d, data, 1) for d, data in pending]
    for i, (d, data, state) in enumerate(rows, start=1):
        conn.execute("INSERT INTO chunks(id, digest, data) VALUES (?, ?, ?)", (i, d, data))
        conn.execute("INSERT INTO chunk_state VALUES (?, ?, ?, ?, ?)", (i, state, len(data), now, now))
        if state == 1:
            conn.execute("INSERT INTO txn_chunks VALUES ('open', ?, ?, 0)", (i, now))
    conn.execute("INSERT INTO counters VALUES (1, ?, ?)", (len(committed), sum(len(x) for _, x in committed)))
    conn.execute("INSERT INTO meta VALUES ('scrub.cursor', 2)")
    conn.execute("INSERT INTO quarantine(digest, data, size, quarantined_at) VALUES (?, ?, 3, ?)",
                 (b"q" * 32, b"bad", now))
    conn.commit()
    conn.close()


def test_old_layout_is_migrated_on_open(tmp_path):
    committed = [chunk(n) for n in (1, 1024, 50_000, 1024)]
    pending = [chunk()]
    _old_store(tmp_path / OLD_FILE, committed, pending)
    store = ChunkStore(tmp_path)
    try:
        assert not (tmp_path / OLD_FILE).exists()
        assert run(store.read_many([d for d, _ in committed])) == [data for _, data in committed]
        assert run(store.presence_many([pending[0][0]])) == bytes([ChunkPresence.PENDING])
        assert run(store.commit(["open"])) == {"open": 1}
        assert run(store.read_many([pending[0][0]])) == [pending[0][1]]
        assert [d for _, d, _ in run(store.iter_committed(0, 10))] == [d for d, _ in committed + pending]
        assert run(store.get_meta(["scrub.cursor"])) == {"scrub.cursor": 2}
        assert run(store.quarantined()) == [b"q" * 32]
        st = run(store.stats())
        assert (st["chunks"], st["bytes"]) == (5, sum(len(x) for _, x in committed + pending))
        new = chunk()
        run(store.replicate([new]))  # ids continue after the old ones
        assert run(store.iter_committed(5, 10))[0][1] == new[0]
    finally:
        store.close()
    check_accounting(tmp_path)


def test_a_migration_stopped_half_way_starts_again(tmp_path):
    committed = [chunk() for _ in range(10)]
    _old_store(tmp_path / OLD_FILE, committed, [])
    # a first attempt that died after creating the index and a segment
    code = textwrap.dedent(f"""
        import os
        import chunk_server.store.migrate as migrate
        real = migrate.recovery.sync_segments
        def die(*a):
            os._exit(9)
        migrate.recovery.sync_segments = die
        from chunk_server.store import ChunkStore
        ChunkStore({str(tmp_path)!r})
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 9
    assert (tmp_path / OLD_FILE).exists() and (tmp_path / INDEX_FILE).exists()
    store = ChunkStore(tmp_path)
    try:
        assert not (tmp_path / OLD_FILE).exists()
        assert run(store.read_many([d for d, _ in committed])) == [data for _, data in committed]
        assert run(store.stats())["chunks"] == 10
    finally:
        store.close()
    check_accounting(tmp_path)


def test_pre_issue_4_layout_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / OLD_FILE)
    conn.execute("CREATE TABLE chunks(id INTEGER PRIMARY KEY, digest BLOB, data BLOB, state INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="pre-issue-4"):
        ChunkStore(tmp_path)
    assert (tmp_path / OLD_FILE).exists()


def test_durable_mark_follows_the_writes(tmp_path):
    store = ChunkStore(tmp_path)
    try:
        run(store.replicate([chunk() for _ in range(8)]))
        end = store.log.end
        mark = tmp_path / "segments" / MARK_FILE
        wait_until(lambda: mark.exists() and mark.read_text().split() == [str(store.log.active), str(end)],
                   timeout=10, interval=0.1, what="the durable mark to reach the end of the writes")
    finally:
        store.close()
