"""The chunk store's files, connections and threads: the base class every concern of the store builds on.

Files: ``DATA_DIR/chunk_index.db`` (the index, schema.py) and ``DATA_DIR/segments/`` (the chunk bytes,
segments.py). A store in the one-database layout of before (``chunks.db`` with the bytes in rows) is
migrated on open (migrate.py).

Threads: sqlite3 and file I/O block, so large writes and large reads never run on the event loop. One
writer thread runs the write transactions and appends to the segments (SQLite admits one writer anyway); a few
reader threads own one connection each and, thanks to WAL, read committed data beside the writer. A
checkpointer thread copies the WAL into the database in the background and, every
``CHECKPOINT_INTERVAL``, makes the segments written since its last round durable (recovery.py: how far a
crash can have torn them).

Small write transactions (``_write(small=True)``, FSYNC off, writer idle) run on the event loop on the
writer connection, under the lock the writer thread also takes (docs/chunk-store.md, "Threads").
Small reads (at most ``INLINE_READ_DIGESTS`` digests: the lookups of one small file) run on the event
loop with its own connection instead: handing a call to a thread and back costs about 100 µs of CPU, the
lookup itself about 4 µs (``python -m benchmarks.rpc_cost``). That connection gives up after
``INLINE_BUSY_TIMEOUT_MS`` when the database is busy, and the read then goes to a reader thread, so the
loop is never held for long.

Durability: a write transaction appends its records to a segment first and commits the index rows that
point to them after, so an index row never points to bytes not yet written. ``synchronous=NORMAL``
acknowledges once both are in the operating system, which survives ``kill -9`` of the process;
``fsync=True`` also ``fdatasync``s the segment before the commit and selects ``synchronous=FULL``
(survives power loss).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from . import migrate, recovery
from .schema import PAGE_SIZE, SCHEMA
from .segments import SEGMENT_BYTES, SegmentLog

INDEX_FILE = "chunk_index.db"
SEGMENTS_DIR = "segments"

T = TypeVar("T")

READER_THREADS = 4  # reads are short index probes; a few threads keep the loop free without GIL churn
CACHE_KIB = 16384  # page cache per connection (5 connections): the index's hot pages; 64 MiB each put a chunk server at ~400 MiB resident
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
INLINE_READ_DIGESTS = 16  # reads of up to this many digests run on the event loop (module docstring)
INLINE_BUSY_TIMEOUT_MS = 5  # ... and wait at most this long for a busy database before using a thread
# A write transaction this small may run on the event loop (``_write(small=True)``): one prepare piece of
# the user app (1 MiB), the commit of a few txns.
SMALL_WRITE_BYTES = 2 * 1024 * 1024
SMALL_WRITE_CHUNKS = 1024
SMALL_WRITE_TXNS = 64


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


def _finish_transaction(conn: sqlite3.Connection, log: SegmentLog, fn: Callable[[sqlite3.Connection], T]) -> T:
    """The body of :meth:`Connections._write` once ``BEGIN IMMEDIATE`` succeeded: ``fn``, then ``COMMIT``;
    on any error ``ROLLBACK`` and the segment log put back at the committed end."""
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        recovery.reopen_active(conn, log)  # undo what the log did for this transaction
        raise
    return result


class Connections:
    """The index ``data_dir/chunk_index.db`` (created with its schema if missing) and the segments under
    ``data_dir/segments/`` (``segment_bytes`` each before one is sealed), the writer thread, ``readers``
    reader threads and the checkpointer thread. Subclasses run their SQL with :meth:`_write` and
    :meth:`_read`, never on the event loop, and reach the segment files through ``self.log``.

    Opening recovers from a crash (recovery.py) and migrates a store of the old one-database layout
    (migrate.py). Raises ``RuntimeError`` if the store has the pre-issue-4 layout (``state`` inside
    ``chunks``), and ``sqlite3.Error`` or ``OSError`` if it cannot be created or opened."""

    def __init__(self, data_dir: Path, fsync: bool = False, readers: int = READER_THREADS,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / INDEX_FILE
        self.fsync = fsync
        self.log = SegmentLog(self.data_dir / SEGMENTS_DIR, fsync, segment_bytes)
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-writer")
        self._writer_lock = threading.Lock()  # whoever runs a transaction on the writer connection holds it
        self._reader_pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="chunk-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._loop_conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._writer = self._writer_pool.submit(self._open_writer).result()
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="chunk-checkpointer", daemon=True)
        self._checkpointer.start()

    def _open_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        conn = _connect(self.path, self.fsync)
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        if migrate.old_store(self.data_dir) is not None:
            migrate.migrate(self.data_dir, conn, self.log, fresh)
        recovery.open_segments(conn, self.log)
        return conn

    def _checkpoint_loop(self) -> None:
        conn = _connect(self.path, self.fsync)
        wal = self.path.parent / (self.path.name + "-wal")
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL):
                try:
                    recovery.sync_segments(self.log)
                    self.log.close_retired()
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

    async def _write(self, fn: Callable[[sqlite3.Connection], T], small: bool = False) -> T:
        """``fn(conn)`` inside one ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the writer connection; whatever
        ``fn`` (or the commit) raises rolls the transaction back, puts the segment log back at the
        committed end, and is raised here.

        It runs on the writer thread, or on the event loop itself when the caller says the transaction is
        ``small`` (a few milliseconds at most: one prepare piece, a commit), ``FSYNC`` is off (so nothing
        in it waits for the disk) and the writer is idle. Measured, a hand-over to the thread and back
        cost more CPU than such a transaction (docs/chunk-store.md, "Threads")."""

        if small and not self.fsync and self._writer_lock.acquire(blocking=False):
            try:
                conn = self._writer
                conn.execute(f"PRAGMA busy_timeout = {INLINE_BUSY_TIMEOUT_MS}")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    begun = True
                except sqlite3.OperationalError:  # a checkpoint holds the database: wait on the thread
                    begun = False
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if begun:
                    return _finish_transaction(conn, self.log, fn)
            finally:
                self._writer_lock.release()

        def run() -> T:
            with self._writer_lock:
                self._writer.execute("BEGIN IMMEDIATE")
                return _finish_transaction(self._writer, self.log, fn)

        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, run)

    def _incremental_vacuum(self) -> None:
        """``PRAGMA incremental_vacuum`` on the writer connection (on the writer thread): the index's free
        pages back to the file system (executescript steps the pragma to the end)."""
        with self._writer_lock:
            self._writer.executescript("PRAGMA incremental_vacuum")

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` on a reader thread, with that thread's own connection (autocommit: each statement
        sees the last committed data unless ``fn`` opens a transaction itself)."""
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, lambda: fn(self._reader()))

    async def _read_small(self, fn: Callable[[sqlite3.Connection], T], digests: int) -> T:
        """:meth:`_read` for a read of ``digests`` digests: on the event loop when it is small (module
        docstring), falling back to a reader thread when the database is busy."""
        if digests <= INLINE_READ_DIGESTS:
            if self._loop_conn is None:
                self._loop_conn = _connect(self.path, self.fsync)
                self._loop_conn.execute(f"PRAGMA busy_timeout = {INLINE_BUSY_TIMEOUT_MS}")
            try:
                return fn(self._loop_conn)
            except sqlite3.OperationalError:  # busy or locked: let a thread wait for it
                pass
        return await self._read(fn)

    def close(self) -> None:
        """Wait for queued work, then close every connection (checkpointing the WAL on the last close)."""
        self._stop.set()
        self._checkpointer.join()
        self._reader_pool.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        def close_writer() -> None:
            with self._writer_lock:
                self._writer.close()
            recovery.close_cleanly(self.log)

        self._writer_pool.submit(close_writer).result()
        self._writer_pool.shutdown(wait=True)
