"""Opening the segments after a stop or a crash, and the marks that bound what a crash can have torn.

What a crash can leave (docs/chunk-store.md, "Recovery"):

* **Bytes past a segment's committed end**: a batch appended whose index transaction never committed
  (killed between the ``pwritev`` and the ``COMMIT``, or a failed transaction). No row points to them;
  they are cut off (``ftruncate``) on open.
* **A torn record under a committed row**: only after the operating system itself stopped (power loss)
  with ``FSYNC=false``, when SQLite's WAL reached the disk and the segment's pages did not. To find them
  without reading everything, the checkpointer thread ``fdatasync``s the segments written since its
  last round every ``CHECKPOINT_INTERVAL`` and then records the position up to which every segment is
  durable in ``segments/durable``. A clean ``close()`` leaves ``segments/clean``. An open without it
  re-checks each record from the durable mark to the end (length and CRC-32); at the first bad record
  the rest of that segment is dropped from the index (pending chunks are forgotten, committed ones are
  gone from this server, and anti-entropy copies them back from their other replicas). Nothing torn is
  ever served.
* **A segment file no index row names**: compaction stopped between committing the move and deleting the
  file, or a migration stopped half-way. It is deleted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import zlib

from .schema import COMMITTED, ROW, Row, add_counters, delete_rows
from .segments import HEADER_SIZE, RECORD_HEADER, SegmentLog, _fsync_dir

log = logging.getLogger("ringfs.chunk_server.store")

MARK_FILE = "durable"  # "<segment> <offset>": every byte before that position is on disk
CLEAN_FILE = "clean"  # present only between a clean close() and the next open
SCAN_PIECE = 8 * 1024 * 1024  # bytes read at a time while re-checking a tail


def open_segments(conn: sqlite3.Connection, segments: SegmentLog) -> None:
    """On open, on the writer's connection (outside any transaction): delete orphaned segment files, re-check
    the tails a crash may have torn, cut every file back to its committed end and open (or create) the
    active segment. Raises ``RuntimeError`` when a segment the index needs is missing."""
    rows = {sid: (live, total, sealed) for sid, live, total, sealed in
            conn.execute("SELECT id, live_bytes, total_bytes, sealed FROM segments")}
    files = segments.on_disk()
    for sid in sorted(set(files) - set(rows)):
        log.warning("deleting segment %d: no index row names it (compaction or migration stopped half-way)", sid)
        segments.remove(sid)
    missing = [sid for sid, (live, _, _) in rows.items() if sid not in files and live]
    if missing:
        raise RuntimeError(f"segment files {missing} under {segments.directory} are missing but the index "
                           "still points into them; restore them, or move the data directory away and let "
                           "anti-entropy refill this server")
    clean = segments.directory / CLEAN_FILE
    if clean.exists():
        clean.unlink()
        _fsync_dir(segments.directory)  # a crash from now on must not look like a clean stop
    else:
        _recheck_tails(conn, segments, rows)
        rows = {sid: (live, total, sealed) for sid, live, total, sealed in
                conn.execute("SELECT id, live_bytes, total_bytes, sealed FROM segments")}
    for sid, (_, total, sealed) in rows.items():
        if sealed and files.get(sid, 0) > total:
            os.truncate(segments.path(sid), total)
    active = [sid for sid, (_, _, sealed) in rows.items() if not sealed]
    if active:
        segments.open_active(max(active), rows[max(active)][1])
    else:
        sid = max(rows, default=0) + 1
        conn.execute("INSERT INTO segments(id, live_bytes, total_bytes, sealed) VALUES (?, 0, 0, 0)", (sid,))
        segments.create(sid)
    segments.mark_written = read_mark(segments)


def reopen_active(conn: sqlite3.Connection, segments: SegmentLog) -> None:
    """After a rolled-back write transaction: point the log back at the active segment the index names,
    at its committed end (a rollover or an append of the failed transaction is undone)."""
    sid, total = conn.execute("SELECT id, total_bytes FROM segments WHERE sealed = 0 ORDER BY id DESC LIMIT 1").fetchone()
    segments.open_active(sid, total)


def read_mark(segments: SegmentLog) -> tuple[int, int]:
    """The durable position ``(segment, offset)`` last recorded, ``(0, 0)`` if none."""
    try:
        seg, off = (segments.directory / MARK_FILE).read_text().split()
        return int(seg), int(off)
    except (FileNotFoundError, ValueError):
        return 0, 0


def sync_segments(segments: SegmentLog) -> None:
    """The checkpointer's round: make the segments written since the last round durable, then record the
    durable position (written to a temporary file and renamed over the mark). Raises ``OSError``."""
    position = segments.sync_dirty()
    if position != segments.mark_written:
        tmp = segments.directory / (MARK_FILE + ".tmp")
        tmp.write_text(f"{position[0]} {position[1]}\n")
        os.replace(tmp, segments.directory / MARK_FILE)
        segments.mark_written = position


def mark_clean(segments: SegmentLog) -> None:
    """Everything durable, the mark written and ``clean`` left behind: the next open need not re-check
    any tail. Raises ``OSError``."""
    sync_segments(segments)
    (segments.directory / CLEAN_FILE).write_bytes(b"")
    _fsync_dir(segments.directory)


def close_cleanly(segments: SegmentLog) -> None:
    """After the writer's last transaction: :func:`mark_clean`, then close the segment files."""
    try:
        mark_clean(segments)
    except OSError as exc:  # the next open re-checks the tail instead
        log.warning("chunk store not closed cleanly: %s", exc)
    segments.close()


def _recheck_tails(conn: sqlite3.Connection, segments: SegmentLog, rows: dict[int, tuple[int, int, int]]) -> None:
    mark_seg, mark_off = read_mark(segments)
    for sid in sorted(s for s in rows if s >= mark_seg):
        start, total = (mark_off if sid == mark_seg else 0), rows[sid][1]
        if start >= total:
            continue
        bad = _first_bad_record(segments, sid, start, total)
        if bad is None:
            continue
        _drop_from(conn, segments, sid, bad)
        log.warning("segment %d torn at offset %d (crash before its bytes reached the disk): the index "
                    "rows past it are dropped; anti-entropy restores the committed ones", sid, bad)


def _first_bad_record(segments: SegmentLog, sid: int, start: int, end: int) -> int | None:
    """The offset of the first record in ``[start, end)`` with a bad length or CRC, or None."""
    fd = os.open(segments.path(sid), os.O_RDONLY)
    try:
        offset = start
        while offset < end:
            header = os.pread(fd, HEADER_SIZE, offset)
            if len(header) < HEADER_SIZE:
                return offset
            length, crc = RECORD_HEADER.unpack(header)
            if offset + HEADER_SIZE + length > end:
                return offset
            data = b"".join(_pread_pieces(fd, offset + HEADER_SIZE, length))
            if len(data) < length or zlib.crc32(data) != crc:
                return offset
            offset += HEADER_SIZE + length
        return None
    finally:
        os.close(fd)


def _pread_pieces(fd: int, offset: int, length: int):
    while length > 0:
        piece = os.pread(fd, min(length, SCAN_PIECE), offset)
        if not piece:
            return
        yield piece
        offset, length = offset + len(piece), length - len(piece)


def _drop_from(conn: sqlite3.Connection, segments: SegmentLog, sid: int, offset: int) -> None:
    """Forget every chunk whose record starts at or after ``offset`` in segment ``sid`` (a scan of the
    index: this runs only after a torn tail was found) and make ``offset`` the segment's end."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = [Row(*r) for r in conn.execute(f"SELECT {ROW} FROM chunks WHERE segment = ? AND offset >= ?",
                                               (sid, offset))]
        committed = [r for r in rows if r.state == COMMITTED]
        conn.executemany("DELETE FROM txn_chunks WHERE chunk_id = ?", [(r.id,) for r in rows])
        delete_rows(conn, rows)
        add_counters(conn, -len(committed), -sum(r.size for r in committed))
        conn.execute("UPDATE segments SET total_bytes = ? WHERE id = ?", (offset, sid))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    os.truncate(segments.path(sid), offset)
