"""The chunk store: content-addressed chunks in one SQLite database with two-phase commit.

Reference design: "User transmits data to the chunk servers in 'pending' mode" (phase 1, ``prepare``) and
"Finalize writes on chunk servers" (phase 3, ``commit``); what is never finalized is aborted or swept
after ``PENDING_TTL``. GFS §4.4 garbage-collects lazily the same way; docs/failure-handling.md adds
touch times and pins for GC, quarantine for scrub, and the cursors of anti-entropy.

Layout (``DATA_DIR/chunks.db``, WAL mode, ``auto_vacuum=INCREMENTAL``): chunks of 1 KiB must not each
become a file (an inode and a 4 KiB block per KiB, a directory entry, a rename), so every chunk is a row::

    chunks(id INTEGER PRIMARY KEY, digest BLOB UNIQUE, data)     -- written once, never updated
    chunk_state(id INTEGER PRIMARY KEY, state 1 pending | 2 committed, size, created_at, touched_at)
    txn_chunks(txn_id, digest, created_at, pin)  -- open txns: pin 0 = pending data, 1 = dedup hit
    counters(committed_chunks, committed_bytes)  -- one row, kept exact inside each write transaction
    meta(key, value)                             -- anti-entropy / scrub cursors and job counters
    quarantine(id, digest, data, size, quarantined_at)  -- corrupt rows, kept for forensics, never served

Why two tables per chunk: a commit flips ``state`` and sets ``touched_at``. With those columns inside the
1 KiB data row, a commit rewrote every data page of the txn into the WAL (and the checkpoint then wrote
it to the database again); in the ~30-byte ``chunk_state`` rows a commit of 1024 chunks dirties a few
pages. Measured with ``python -m benchmarks.chunk_store --rounds 3`` (100 txns of 1024 random 1 KiB
chunks, prepare then commit each, best of 3; old layout via ``--store`` on ``git show HEAD:...``; SQLite
3.40.1; a shared, loaded machine, so the absolute rates vary ~2x between runs, the ratios do not)::

    one table with state            prepare 13-36 ms  commit  7-22 ms   1.112 bytes on disk per byte
    data + chunk_state (kept)       prepare 18-31 ms  commit 2.6-8 ms   1.145 bytes on disk per byte

Commit is 2.5-3x cheaper; prepare pays one small extra insert per chunk; together prepare+commit is equal
to ~30 % faster. The 3 % more bytes are the chunk_state rows and auto-vacuum's pointer-map pages.

A digest pending under two txns is stored once and referenced twice; a committed chunk is never written
again by a prepare (dedup): the txn *pins* it with a ``txn_chunks`` row with ``pin = 1`` and no data, so
GC cannot delete it before the txn commits or aborts. Abort deletes only pending chunks no other open
txn references.

Page size, measured as bytes on disk (db + wal after a checkpoint) per byte of chunk data stored, for
50 000 random 1 KiB chunks inserted 1 000 per transaction with ``executemany`` into a fresh WAL database,
then ``PRAGMA wal_checkpoint(TRUNCATE)`` and the sizes of the files summed (SQLite 3.40.1)::

    rowid table + UNIQUE(digest)   4096: 1.380   8192: 1.189   16384: 1.111  <- kept
    WITHOUT ROWID, digest PK       4096: 4.580   8192: 1.358   16384: 1.230

A 16 KiB page holds ~15 rows of 1 KiB and wastes less to the page tail; WITHOUT ROWID tables spill
1 KiB rows to overflow pages at small page sizes and were also 4x slower to insert. The remaining 11 %
is the digest index (~4 %), the row headers and page fill.

Threads: sqlite3 blocks, so no call runs on the event loop. One writer thread owns the write connection
(SQLite admits one writer anyway); a few reader threads own one connection each and, thanks to WAL, read
committed data beside the writer.

Durability: ``synchronous=NORMAL`` acknowledges once the WAL write is in the operating system, which
survives ``kill -9`` of the process; ``fsync=True`` selects ``synchronous=FULL`` (survives power loss).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from shared.protocol import ChunkPresence

T = TypeVar("T")

PAGE_SIZE = 16384  # measured above: 1.11 bytes on disk per byte stored for 1 KiB chunks
READER_THREADS = 4  # reads are short index probes; a few threads keep the loop free without GIL churn
# Bound parameters per ``IN (...)`` query; SQLite allows 32766, smaller batches keep one statement cached.
IN_BATCH = 2048
CACHE_KIB = 16384  # page cache per connection (5 connections): the digest index's hot pages; 64 MiB each put a chunk server at ~400 MiB resident
BUSY_TIMEOUT_MS = 10_000  # a reader may briefly wait for a checkpoint
# Checkpoints (copying the WAL into the database, with an fsync) run in their own thread so the writer never
# pays for them; measured, they were half of the time of a prepare's COMMIT. The writer's own
# auto-checkpoint stays as a safety net should the background thread fall far behind.
CHECKPOINT_INTERVAL = 0.5  # seconds
CHECKPOINT_MIN_WAL = 4 * 1024 * 1024  # bytes of WAL worth a checkpoint
# Under steady writes a PASSIVE checkpoint never catches up with the end of the WAL, so the WAL would never
# restart from its beginning and would grow; past this size the checkpointer briefly holds off the writer
# (RESTART) to finish the little that is left.
WAL_RESTART_BYTES = 32 * 1024 * 1024
WRITER_AUTOCHECKPOINT_PAGES = 8192  # 128 MiB of 16 KiB pages
WAL_SIZE_LIMIT = WAL_RESTART_BYTES  # the WAL file is truncated back to this after a restart

PENDING, COMMITTED = 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: txn_chunks and cursors name chunks by id
    digest BLOB NOT NULL UNIQUE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_state(
    id INTEGER PRIMARY KEY,  -- = chunks.id
    state INTEGER NOT NULL,  -- 1 pending, 2 committed
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    touched_at REAL NOT NULL  -- last prepare / commit / replicate: GC's race guard
);
CREATE TABLE IF NOT EXISTS txn_chunks(
    txn_id TEXT NOT NULL,
    chunk_id INTEGER NOT NULL,  -- = chunks.id
    created_at REAL NOT NULL,
    pin INTEGER NOT NULL DEFAULT 0,  -- 1: a dedup hit on a committed chunk, held until commit / abort
    PRIMARY KEY(txn_id, chunk_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    committed_chunks INTEGER NOT NULL,
    committed_bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters(id, committed_chunks, committed_bytes) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY,
    digest BLOB NOT NULL,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    quarantined_at REAL NOT NULL
);
"""

_STATE_OF = "SELECT c.digest, c.id, s.state FROM chunks c JOIN chunk_state s ON s.id = c.id WHERE c.digest IN ({})"
_IDS_OF = "SELECT digest, id FROM chunks WHERE digest IN ({})"
# A digest already stored (pending or committed) is not written again; rowcount = rows really inserted.
_INSERT_DATA = "INSERT INTO chunks(id, digest, data) VALUES (?, ?, ?) ON CONFLICT(digest) DO NOTHING"
_INSERT_STATE = "INSERT INTO chunk_state(id, state, size, created_at, touched_at) VALUES (?, ?, ?, ?, ?)"
_TOUCH = "UPDATE chunk_state SET touched_at = ? WHERE id = ?"
_INSERT_TXN_CHUNK = "INSERT INTO txn_chunks(txn_id, chunk_id, created_at, pin) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
_OF_TXN = "SELECT chunk_id FROM txn_chunks WHERE txn_id = ?1"
_TXN_PENDING = f"SELECT count(*), total(size) FROM chunk_state WHERE state = 1 AND id IN ({_OF_TXN})"
# One statement: pending chunks become committed, and every chunk the txn referenced (pins too) is touched.
_COMMIT_TXN = f"UPDATE chunk_state SET state = 2, touched_at = ?2 WHERE id IN ({_OF_TXN})"
_TOUCH_TXN = f"UPDATE chunk_state SET touched_at = ?2 WHERE state = 2 AND id IN ({_OF_TXN})"
_TXN_PENDING_COUNT = "SELECT count(*) FROM txn_chunks WHERE txn_id = ?1 AND pin = 0"
_DROP_TXN = "DELETE FROM txn_chunks WHERE txn_id = ?1"
# Pending chunks of this txn that no other open txn references (txn_chunks only holds open txns: small).
_ABORTABLE = (
    "SELECT id FROM chunk_state WHERE state = 1 AND id IN "
    "(SELECT chunk_id FROM txn_chunks WHERE txn_id = ?1 EXCEPT SELECT chunk_id FROM txn_chunks WHERE txn_id <> ?1)"
)
_UNPINNED = "s.id NOT IN (SELECT chunk_id FROM txn_chunks)"


@dataclass(frozen=True)
class PrepareResult:
    """Phase 1 outcome: ``stored`` distinct chunks newly pending for the txn (what its commit will
    count), ``already_committed`` distinct chunks deduplicated against committed copies (and pinned)."""

    stored: int
    already_committed: int


@dataclass(frozen=True)
class Removed:
    """Outcome of a delete (GC, handoff, quarantine): ``digests`` removed, ``bytes`` of chunk data."""

    digests: list[bytes]
    bytes: int

    @property
    def count(self) -> int:
        return len(self.digests)


def _connect(path: Path, fsync: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=256)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new database
    # Only takes effect before the first table is created; lets GC give pages back to the file system.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


class ChunkStore:
    """Chunks of one chunk server. Every public method is a coroutine that runs its SQL off the event loop;
    each write method is one SQL transaction."""

    def __init__(self, data_dir: Path, fsync: bool = False, readers: int = READER_THREADS) -> None:
        self.path = Path(data_dir) / "chunks.db"
        self.fsync = fsync
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-writer")
        self._reader_pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="chunk-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = self._writer_pool.submit(self._open_writer).result()
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="chunk-checkpointer", daemon=True)
        self._checkpointer.start()

    # ------------------------------------------------------------ plumbing

    def _open_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, self.fsync)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
        if "state" in columns:
            raise RuntimeError(f"{self.path} has the pre-issue-4 layout (state inside chunks); "
                               "move it away or migrate it before starting this version")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        return conn

    def _checkpoint_loop(self) -> None:
        conn = _connect(self.path, self.fsync)
        wal = self.path.parent / (self.path.name + "-wal")
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL):
                try:
                    size = wal.stat().st_size
                    if size >= WAL_RESTART_BYTES:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the bulk, beside the writer
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")  # the tail, writer held off
                    elif size >= CHECKPOINT_MIN_WAL:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except (OSError, sqlite3.Error):
                    pass  # the next round retries; the writer's auto-checkpoint is the safety net
        finally:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path, self.fsync)
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, lambda: fn(self._reader()))

    def close(self) -> None:
        """Wait for queued work, then close every connection (checkpointing the WAL on the last close)."""
        self._stop.set()
        self._checkpointer.join()
        self._reader_pool.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._writer_pool.submit(self._writer.close).result()
        self._writer_pool.shutdown(wait=True)

    # ------------------------------------------------------------ two-phase commit

    async def prepare(self, txn_id: str, chunks: Sequence[tuple[bytes, bytes | memoryview]]) -> PrepareResult:
        """Phase 1: store ``(digest, data)`` pairs as pending under ``txn_id``. The caller has verified
        every digest. A chunk already committed is not written again: it is touched and pinned."""
        return (await self.prepare_many([(txn_id, chunks)]))[0]

    async def prepare_many(self, sections: Sequence[tuple[str, Sequence[tuple[bytes, bytes | memoryview]]]]
                           ) -> list[PrepareResult]:
        """Phase 1 for several txns in ONE write transaction (``/chunks/prepare-many``): each
        ``(txn_id, chunks)`` section is prepared as :meth:`prepare` would, in order, and gets its own
        result. A txn id may appear in several sections; its pieces accumulate, and a chunk already
        pending for it from an earlier section does not count again in ``stored``."""
        sections = list(sections)
        if not sections:
            return []
        now = time.time()
        return await self._write(lambda conn: [_prepare_txn(conn, txn_id, chunks, now) for txn_id, chunks in sections])

    async def commit(self, txn_ids: Iterable[str]) -> dict[str, int]:
        """Phase 3: make each txn's pending chunks committed (readable), touch every chunk it referenced
        and drop its pins. Returns, per txn, how many chunks were pending for it (pins do not count; 0 for
        an unknown or already committed txn: commit is idempotent)."""
        txn_ids = list(dict.fromkeys(txn_ids))
        now = time.time()

        def tx(conn: sqlite3.Connection) -> dict[str, int]:
            result, new_chunks, new_bytes = {}, 0, 0
            for txn_id in txn_ids:
                count, size = conn.execute(_TXN_PENDING, (txn_id,)).fetchone()
                conn.execute(_COMMIT_TXN, (txn_id, now))
                result[txn_id] = conn.execute(_TXN_PENDING_COUNT, (txn_id,)).fetchone()[0]
                conn.execute(_DROP_TXN, (txn_id,))
                new_chunks, new_bytes = new_chunks + count, new_bytes + int(size)
            _add_counters(conn, new_chunks, new_bytes)
            return result

        return await self._write(tx)

    async def abort(self, txn_ids: Iterable[str]) -> dict[str, int]:
        """Drop each txn: its pins, its references, and its pending chunks no other open txn references.
        Returns, per txn, how many chunks were pending for it. Committed chunks are never deleted."""
        txn_ids = list(dict.fromkeys(txn_ids))
        return await self._write(lambda conn: _abort(conn, txn_ids))

    async def sweep(self, ttl: float) -> list[str]:
        """Abort every txn with pending data older than ``ttl`` seconds (reference design: pending writes
        not finalized within 10 minutes are deleted). Returns the aborted txn ids."""

        def tx(conn: sqlite3.Connection) -> list[str]:
            # A scan, not an index: txn_chunks only holds open txns, and an index on created_at cost
            # ~15 % of prepare time (measured) to speed up a query that runs once a minute.
            rows = conn.execute(
                "SELECT txn_id FROM txn_chunks GROUP BY txn_id HAVING min(created_at) < ?",
                (time.time() - ttl,)).fetchall()
            txn_ids = [r[0] for r in rows]
            _abort(conn, txn_ids)
            return txn_ids

        return await self._write(tx)

    # ------------------------------------------------------------ repair, handoff, scrub, GC

    async def replicate(self, chunks: Sequence[tuple[bytes, bytes | memoryview]]) -> int:
        """Store ``(digest, data)`` pairs committed at once (anti-entropy push, repair). The caller has
        verified every digest. A pending copy becomes committed; a committed one is only touched.
        Returns how many chunks became newly committed here."""
        now = time.time()

        def tx(conn: sqlite3.Connection) -> int:
            known = {d: (cid, st) for d, cid, st in _select_rows(conn, _STATE_OF, [d for d, _ in chunks])}
            next_id = _next_id(conn)
            data_rows, state_rows, promote, new_bytes = [], [], [], 0
            for digest, data in chunks:
                hit = known.get(digest)
                if hit is None:
                    data_rows.append((next_id, digest, data))
                    state_rows.append((next_id, COMMITTED, len(data), now, now))
                    known[digest] = (next_id, COMMITTED)
                    next_id += 1
                    new_bytes += len(data)
                elif hit[1] == PENDING:
                    promote.append((now, hit[0]))
                    known[digest] = (hit[0], COMMITTED)
                    new_bytes += len(data)
                else:
                    continue
            conn.executemany(_INSERT_DATA, data_rows)
            conn.executemany(_INSERT_STATE, state_rows)
            conn.executemany("UPDATE chunk_state SET state = 2, touched_at = ? WHERE id = ?", promote)
            _add_counters(conn, len(data_rows) + len(promote), new_bytes)
            return len(data_rows) + len(promote)

        return await self._write(tx)

    async def iter_committed(self, after_rowid: int, limit: int,
                             with_data: bool = False) -> list[tuple[int, bytes, bytes | None]]:
        """Up to ``limit`` committed chunks with ``rowid > after_rowid`` in rowid order, as
        ``(rowid, digest, data or None)``: the walk of anti-entropy and scrub."""
        col = "c.data" if with_data else "NULL"
        return await self._read(lambda conn: conn.execute(
            f"SELECT s.id, c.digest, {col} FROM chunk_state s JOIN chunks c ON c.id = s.id "
            "WHERE s.id > ? AND s.state = 2 ORDER BY s.id LIMIT ?", (after_rowid, limit)).fetchall())

    async def quarantine(self, digests: Sequence[bytes], verify: bool = True) -> Removed:
        """Move committed chunks to the ``quarantine`` table (kept for forensics, never served). With
        ``verify`` only the rows whose data does not hash to their digest move, checked inside the write
        transaction (GFS §5.2; Garage ``block/manager.rs``)."""
        now = time.time()

        def tx(conn: sqlite3.Connection) -> Removed:
            rows = _select_rows(conn, "SELECT c.id, c.digest, c.data, s.size FROM chunks c JOIN chunk_state s "
                                      "ON s.id = c.id WHERE s.state = 2 AND c.digest IN ({})", digests)
            bad = [r for r in rows if not verify or hashlib.sha256(r[2]).digest() != r[1]]
            conn.executemany("INSERT INTO quarantine(digest, data, size, quarantined_at) VALUES (?, ?, ?, ?)",
                             [(d, data, size, now) for _, d, data, size in bad])
            return _delete_committed(conn, [(cid, d, size) for cid, d, _, size in bad])

        return await self._write(tx)

    async def quarantined(self) -> list[bytes]:
        """Digests in the quarantine table, oldest first."""
        return await self._read(lambda conn: [r[0] for r in conn.execute(
            "SELECT digest FROM quarantine ORDER BY id")])

    async def gc_candidates(self, older_than: float, limit: int, after_rowid: int = 0) -> list[tuple[int, bytes]]:
        """Up to ``limit`` committed, unpinned chunks with ``touched_at < older_than`` (UNIX seconds) and
        ``rowid > after_rowid``, as ``(rowid, digest)`` in rowid order (failure-handling.md GC step 1)."""
        return await self._read(lambda conn: conn.execute(
            "SELECT s.id, c.digest FROM chunk_state s JOIN chunks c ON c.id = s.id WHERE s.id > ? "
            f"AND s.state = 2 AND s.touched_at < ? AND {_UNPINNED} ORDER BY s.id LIMIT ?",
            (after_rowid, older_than, limit)).fetchall())

    async def gc_delete(self, digests: Sequence[bytes], t0: float) -> Removed:
        """GC step 3, one write transaction: delete those of ``digests`` that are committed, still have
        no pin and were not touched since ``t0``; then give the freed pages back to the file system."""

        def tx(conn: sqlite3.Connection) -> Removed:
            rows = _select_rows(conn, "SELECT c.id, c.digest, s.size FROM chunks c JOIN chunk_state s "
                                      f"ON s.id = c.id WHERE s.state = 2 AND s.touched_at < {float(t0)!r} "
                                      f"AND {_UNPINNED} AND c.digest IN ({{}})", digests)
            return _delete_committed(conn, rows)

        removed = await self._write(tx)
        if removed.count:
            await self.vacuum()
        return removed

    async def delete_if_replicated(self, digests: Sequence[bytes]) -> Removed:
        """Handoff: delete committed, unpinned copies the caller has confirmed on every preference-list
        server (failure-handling.md, anti-entropy step 3)."""

        def tx(conn: sqlite3.Connection) -> Removed:
            rows = _select_rows(conn, "SELECT c.id, c.digest, s.size FROM chunks c JOIN chunk_state s "
                                      f"ON s.id = c.id WHERE s.state = 2 AND {_UNPINNED} AND c.digest IN ({{}})",
                                digests)
            return _delete_committed(conn, rows)

        removed = await self._write(tx)
        if removed.count:
            await self.vacuum()
        return removed

    async def vacuum(self) -> None:
        """``PRAGMA incremental_vacuum``: truncate the free pages off the end of the file (the WAL carries
        the change; the file shrinks at the next checkpoint)."""

        def run() -> None:
            # executescript steps the pragma to completion; execute() would free a single page.
            self._writer.executescript("PRAGMA incremental_vacuum")

        await asyncio.get_running_loop().run_in_executor(self._writer_pool, run)

    # ------------------------------------------------------------ meta: cursors and counters

    async def get_meta(self, keys: Iterable[str] | None = None) -> dict[str, object]:
        """``{key: value}`` of the ``meta`` table (all keys, or those asked for that exist)."""

        def query(conn: sqlite3.Connection) -> dict[str, object]:
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            return rows if keys is None else {k: rows[k] for k in keys if k in rows}

        return await self._read(query)

    async def set_meta(self, values: dict[str, object] | None = None, add: dict[str, int | float] | None = None) -> None:
        """Set ``values`` and add ``add`` to numeric keys (missing keys count from 0), in one txn."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                             "value = excluded.value", (values or {}).items())
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                             "value = value + excluded.value", (add or {}).items())

        await self._write(tx)

    # ------------------------------------------------------------ reads

    async def read_many(self, digests: Sequence[bytes]) -> list[bytes | None]:
        """The data of each committed chunk, ``None`` where the chunk is absent or only pending."""
        found = await self._read(lambda conn: dict(_select_rows(
            conn, "SELECT c.digest, c.data FROM chunks c JOIN chunk_state s ON s.id = c.id "
                  "WHERE s.state = 2 AND c.digest IN ({})", digests)))
        return [found.get(d) for d in digests]

    async def presence_many(self, digests: Sequence[bytes]) -> bytes:
        """One :class:`ChunkPresence` byte per digest."""
        states = await self._read(lambda conn: {d: st for d, _, st in _select_rows(conn, _STATE_OF, digests)})
        absent = ChunkPresence.ABSENT
        return bytes(states.get(d, absent) for d in digests)

    async def stats(self) -> dict[str, int]:
        """``chunks`` / ``bytes`` committed, ``pending_chunks``, ``pending_txns``, ``pinned_chunks``,
        ``quarantined`` and ``disk_bytes`` (the database and its WAL)."""

        def query(conn: sqlite3.Connection) -> dict[str, int]:
            conn.execute("BEGIN")  # one snapshot for every query
            try:
                chunks, size = conn.execute(
                    "SELECT committed_chunks, committed_bytes FROM counters WHERE id = 1").fetchone()
                pending_txns = conn.execute("SELECT count(DISTINCT txn_id) FROM txn_chunks").fetchone()[0]
                pending_chunks, pinned = conn.execute(
                    "SELECT count(DISTINCT CASE WHEN s.state = 1 THEN t.chunk_id END), "
                    "count(DISTINCT CASE WHEN s.state = 2 THEN t.chunk_id END) FROM txn_chunks t "
                    "JOIN chunk_state s ON s.id = t.chunk_id").fetchone()
                quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
            finally:
                conn.execute("COMMIT")
            return {"chunks": chunks, "bytes": size, "pending_chunks": pending_chunks,
                    "pending_txns": pending_txns, "pinned_chunks": pinned, "quarantined": quarantined,
                    "disk_bytes": self.disk_bytes()}

        return await self._read(query)

    def disk_bytes(self) -> int:
        """Bytes of ``chunks.db`` plus its ``-wal`` file."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += (self.path.parent / (self.path.name + suffix)).stat().st_size
            except FileNotFoundError:
                pass
        return total


def _next_id(conn: sqlite3.Connection) -> int:
    """The next chunk rowid: assigned here (there is one writer) so that both rows of a chunk are inserted
    in bulk with ``executemany``. New chunks sort after every existing one, so cursor walks see them."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
    return (row[0] if row else 0) + 1


def _prepare_txn(conn: sqlite3.Connection, txn_id: str, chunks: Sequence[tuple[bytes, bytes | memoryview]],
                 now: float) -> PrepareResult:
    """The body of one txn's prepare, inside the caller's write transaction."""
    first = _next_id(conn)
    fresh = {}  # digest -> (id, data): a duplicate digest in the batch is stored once
    for digest, data in chunks:
        if digest not in fresh:
            fresh[digest] = (first + len(fresh), data)
    inserted = conn.executemany(_INSERT_DATA, [(cid, d, data) for d, (cid, data) in fresh.items()]).rowcount
    known: dict[bytes, tuple[int, int]] = {}
    if inserted < len(fresh):  # some were stored already: find out which, and in which state
        known = {d: (cid, st) for d, cid, st in _select_rows(conn, _STATE_OF, list(fresh))
                 if cid != fresh[d][0]}
    conn.executemany(_INSERT_STATE, [(cid, PENDING, len(data), now, now)
                                     for d, (cid, data) in fresh.items() if d not in known])
    committed = [cid for cid, st in known.values() if st == COMMITTED]
    conn.executemany(_TOUCH, [(now, cid) for cid in committed])
    pending_rows, pin_rows = [], []
    for d, (cid, _) in fresh.items():
        cid, state = known.get(d, (cid, PENDING))
        # a committed hit is a pin (pin = 1): it keeps GC away until the txn ends
        (pin_rows if state == COMMITTED else pending_rows).append((txn_id, cid, now, int(state == COMMITTED)))
    # ``stored`` counts the txn's distinct pending chunks this call added, exactly what commit will
    # count: a digest repeated within the batch, or sent again in a later batch (or section) of the same
    # txn, is counted once.
    stored = conn.executemany(_INSERT_TXN_CHUNK, pending_rows).rowcount if pending_rows else 0
    if pin_rows:
        conn.executemany(_INSERT_TXN_CHUNK, pin_rows)
    return PrepareResult(stored=stored, already_committed=len(pin_rows))


def _add_counters(conn: sqlite3.Connection, chunks: int, size: int) -> None:
    if chunks:
        conn.execute("UPDATE counters SET committed_chunks = committed_chunks + ?, "
                     "committed_bytes = committed_bytes + ? WHERE id = 1", (chunks, size))


def _delete_committed(conn: sqlite3.Connection, rows: Sequence[tuple[int, bytes, int]]) -> Removed:
    """Delete committed chunks given as ``(id, digest, size)`` and keep the counters exact."""
    ids = [(cid,) for cid, _, _ in rows]
    conn.executemany("DELETE FROM chunks WHERE id = ?", ids)
    conn.executemany("DELETE FROM chunk_state WHERE id = ?", ids)
    # Pins on these rows (only quarantine removes pinned chunks) stay: the txn's counts do not change,
    # and its commit or abort drops them.
    size = sum(r[2] for r in rows)
    _add_counters(conn, -len(rows), -size)
    return Removed([d for _, d, _ in rows], size)


def _abort(conn: sqlite3.Connection, txn_ids: list[str]) -> dict[str, int]:
    result, now = {}, time.time()
    for txn_id in txn_ids:
        ids = conn.execute(_ABORTABLE, (txn_id,)).fetchall()
        conn.executemany("DELETE FROM chunks WHERE id = ?", ids)
        conn.executemany("DELETE FROM chunk_state WHERE id = ?", ids)
        # Unpinning touches, like a commit: GC's race rule needs every unpin after t0 to be seen.
        conn.execute(_TOUCH_TXN, (txn_id, now))
        result[txn_id] = conn.execute(_TXN_PENDING_COUNT, (txn_id,)).fetchone()[0]
        conn.execute(_DROP_TXN, (txn_id,))
    return result


def _select_rows(conn: sqlite3.Connection, sql: str, digests: Sequence[bytes]) -> list[tuple]:
    """Run ``sql`` (with one ``{}`` for the placeholders) over ``digests`` in batches of ``IN_BATCH``;
    every row found."""
    found: list[tuple] = []
    for start in range(0, len(digests), IN_BATCH):
        batch = digests[start : start + IN_BATCH]
        found.extend(conn.execute(sql.format(",".join("?" * len(batch))), batch).fetchall())
    return found
