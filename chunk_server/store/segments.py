"""The chunk store's segment files: chunk bytes appended to large files, never rewritten in place.

Haystack (OSDI 2010, §3.4: needles appended to a physical volume file), Bitcask and SeaweedFS volumes
do the same: a file per ~``SEGMENT_BYTES`` instead of a file or a database row per chunk. The index
(``schema.py``, in SQLite) says where each chunk's record is; this module only moves bytes.

Layout: ``DATA_DIR/segments/<id, 8 digits>.seg``, each a run of records::

    length (u32 BE) | crc32 of the data (u32 BE) | data (length bytes)

A batch (the chunks of one prepare, one replicate, one compaction step) is written with one
``pwritev`` at the end of the active segment, so the chunks of one file are contiguous and a read of
them is one ``pread`` (:meth:`SegmentLog.read`). The CRC lets a segment be checked without its index
(recovery of a torn tail, ``recovery.py``); the SHA-256 digest in the index stays the check of record.

Thread safety: appends come from the store's single writer thread; reads from any thread (``pread`` has
no shared file position). A removed segment's descriptor is closed only ``RETIRE_SECONDS`` later, so a
read that looked the segment up just before compaction removed it still completes on the old file.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Sequence

RECORD_HEADER = struct.Struct(">II")  # length, crc32(data)
HEADER_SIZE = RECORD_HEADER.size  # 8 bytes per record: 0.8 % of a 1 KiB chunk
SEGMENT_BYTES = 256 * 1024 * 1024  # a segment is sealed once it reaches this size (a batch is never split)
SUFFIX = ".seg"
RETIRE_SECONDS = 60.0  # how long a removed segment's descriptor stays open for reads already under way
IOV_MAX = 1024  # buffers per pwritev call (Linux's limit)


def segment_name(segment: int) -> str:
    return f"{segment:08d}{SUFFIX}"


def record_size(size: int) -> int:
    """Bytes one record of ``size`` bytes of data takes in a segment (header included)."""
    return HEADER_SIZE + size


class SegmentLog:
    """The segment files under ``directory``. ``fsync=True`` makes :meth:`append` return only once the
    bytes are on disk (``fdatasync``); otherwise they are in the operating system (survives ``kill -9``).

    The store tells it which segment is active and where its committed end is (:meth:`open_active`);
    everything else about segments (live bytes, sealing) is kept in the index, in the same transactions
    as the chunk rows."""

    def __init__(self, directory: Path, fsync: bool, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._fds: dict[int, int] = {}
        self._retired: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self.active = 0
        self.end = 0  # bytes of the active segment written so far (committed or not)
        self.dirty: set[int] = set()  # segments appended to since the last sync_dirty()
        self.mark_written: tuple[int, int] | None = None  # the durable position last recorded (recovery.py)

    def path(self, segment: int) -> Path:
        return self.directory / segment_name(segment)

    def on_disk(self) -> dict[int, int]:
        """``{segment id: file size in bytes}`` of every segment file present."""
        found = {}
        for entry in os.scandir(self.directory):
            if entry.name.endswith(SUFFIX) and entry.name[: -len(SUFFIX)].isdigit():
                found[int(entry.name[: -len(SUFFIX)])] = entry.stat().st_size
        return found

    def fd(self, segment: int) -> int:
        """An open descriptor of ``segment`` (opened once, shared). Raises ``FileNotFoundError`` if the
        segment no longer exists (compaction removed it)."""
        fd = self._fds.get(segment)
        if fd is None:
            with self._lock:
                fd = self._fds.get(segment)
                if fd is None:
                    fd = self._fds[segment] = os.open(self.path(segment), os.O_RDWR)
        return fd

    def open_active(self, segment: int, committed_end: int) -> None:
        """Make ``segment`` the one appended to, cut back to ``committed_end`` bytes: whatever lies beyond
        was written by a batch whose index transaction never committed (a torn or orphaned tail)."""
        path = self.path(segment)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(fd).st_size != committed_end:
            os.ftruncate(fd, committed_end)
            if self.fsync:
                os.fsync(fd)
        with self._lock:
            old = self._fds.pop(segment, None)
            self._fds[segment] = fd
            self.active, self.end = segment, committed_end
        if old is not None:
            os.close(old)

    def needs_new_segment(self) -> bool:
        return self.end >= self.segment_bytes

    def append(self, datas: Sequence[bytes | memoryview]) -> list[int]:
        """Append one record per data to the active segment, contiguously, with as few ``pwritev`` calls
        as the kernel allows; the offset of each record. Raises ``OSError`` (e.g. ``ENOSPC``); the bytes
        written before the error are an orphaned tail that no index row points to."""
        fd = self.fd(self.active)
        offsets, parts, position = [], [], self.end
        crc = zlib.crc32
        for data in datas:
            offsets.append(position)
            parts.append(RECORD_HEADER.pack(len(data), crc(data)))
            parts.append(data)
            position += HEADER_SIZE + len(data)
        _pwritev_all(fd, parts, self.end)
        if self.fsync:
            os.fdatasync(fd)
        with self._lock:
            # only now: a failed write leaves orphaned bytes the next append overwrites, and a sync
            # never vouches for bytes not yet written
            self.end = position
            self.dirty.add(self.active)
        return offsets

    def sync_dirty(self) -> tuple[int, int]:
        """Make every byte appended so far durable (``fdatasync`` of each segment written since the last
        call); returns ``(segment, offset)``: everything before that position, in every segment up to
        it, is now on disk. Raises ``OSError``."""
        with self._lock:
            position, dirty, self.dirty = (self.active, self.end), self.dirty, set()
        try:
            for segment in sorted(dirty):
                try:
                    os.fdatasync(self.fd(segment))
                except FileNotFoundError:
                    pass  # removed by compaction since: nothing in it is needed
        except OSError:
            with self._lock:
                self.dirty |= dirty
            raise
        return position

    def read(self, segment: int, offset: int, length: int) -> bytes:
        """``length`` bytes of ``segment`` from ``offset``. Raises ``FileNotFoundError`` if the segment
        is gone and ``OSError`` on an I/O error or a short file."""
        fd = self.fd(segment)
        data = os.pread(fd, length, offset)
        if len(data) < length:  # a regular file returns short only at its end
            raise OSError(f"segment {segment} ends before {offset + length}")
        return data

    def sync(self, segment: int) -> None:
        os.fdatasync(self.fd(segment))

    def create(self, segment: int) -> None:
        """Start an empty segment and make it the active one."""
        self.open_active(segment, 0)
        if self.fsync:
            _fsync_dir(self.directory)

    def remove(self, segment: int) -> None:
        """Delete ``segment``'s file (no index row points into it any more); its descriptor is retired."""
        with self._lock:
            fd = self._fds.pop(segment, None)
            if fd is not None:
                self._retired.append((time.monotonic(), fd))
        try:
            os.unlink(self.path(segment))
        except FileNotFoundError:
            pass
        self.close_retired()

    def close_retired(self, older_than: float = RETIRE_SECONDS) -> None:
        now = time.monotonic()
        with self._lock:
            keep = [(t, fd) for t, fd in self._retired if now - t < older_than]
            done = [fd for t, fd in self._retired if now - t >= older_than]
            self._retired = keep
        for fd in done:
            os.close(fd)

    def disk_bytes(self) -> int:
        return sum(self.on_disk().values())

    def close(self) -> None:
        self.close_retired(older_than=-1.0)
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)


def _pwritev_all(fd: int, parts: list, offset: int) -> None:
    """Write every buffer of ``parts`` at ``offset`` onwards, however the kernel splits the writes."""
    index = 0
    while index < len(parts):
        batch = parts[index : index + IOV_MAX]
        written = os.pwritev(fd, batch, offset)
        offset += written
        for part in batch:  # drop the buffers written whole; keep the rest of a partly written one
            size = len(part)
            if written >= size:
                written -= size
                index += 1
            else:
                parts[index] = memoryview(part)[written:]
                break


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
