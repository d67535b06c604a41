"""Folder-tree operations (``ringfs put -r`` / ``get -r`` / ``rm -r``): plan the units of work, then run
them on threads. A plan knows its file count and total bytes up front (for the progress bar).

Files up to ``BATCH_FILE_LIMIT`` bytes travel ``BATCH_MAX_FILES`` / ``BATCH_MAX_BYTES`` at a time through
``POST /batch/write`` and ``/batch/read`` (one request per batch instead of one per file); larger files
stream one request each. Every file is its own write or read, so one failing file affects no other: its
error is reported as one line and the rest still copies.

``put -r`` follows symlinks: to files (their content is copied) and to folders, with loop detection. The
real folders of the tree are walked first; then each symlinked folder is followed unless its target was
already walked (a loop back to an ancestor, or a folder copied at its real place or through another
link): that one is skipped with one warning line. Broken symlinks and special files (FIFOs, sockets,
devices) are skipped with a warning each; an unreadable folder is an error.
"""

from __future__ import annotations

import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from user_app.client.client import Client, ClientError

BATCH_FILE_LIMIT = 1024 * 1024
BATCH_MAX_FILES = 256
BATCH_MAX_BYTES = 8 * 1024 * 1024
# Parallel transfers: enough to hide round trips, few enough not to swamp a 2-core box.
DEFAULT_JOBS = 8

# Files a unit of ``rm -r`` deletes (one request each, the units in parallel).
RM_UNIT_FILES = 16

Item = tuple[str, str, int]  # (source, destination, size in bytes)


@dataclass
class UnitResult:
    """What one unit of a copy did: files and bytes copied, and one line per file that failed."""

    files: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


Unit = Callable[[Client], UnitResult]


@dataclass
class Plan:
    """The units of one tree operation, how many files and bytes they hold, and what planning found:
    ``warnings`` (skipped symlinks and special files) and ``errors`` (folders it could not read)."""

    units: list[Unit]
    files: int
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def batches(items: list[Item]) -> list[list[Item]]:
    """Group items (in order) into batches of at most ``BATCH_MAX_FILES`` files and ``BATCH_MAX_BYTES``
    bytes."""
    out: list[list[Item]] = []
    cur: list[Item] = []
    cur_bytes = 0
    for item in items:
        if cur and (len(cur) >= BATCH_MAX_FILES or cur_bytes + item[2] > BATCH_MAX_BYTES):
            out.append(cur)
            cur, cur_bytes = [], 0
        cur.append(item)
        cur_bytes += item[2]
    if cur:
        out.append(cur)
    return out


def file_error(path: str, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}"
    return f"{path}: {exc}"


def write_atomic(local: Path, data: bytes) -> None:
    """Write ``data`` to ``local`` through a temp file and a rename, as ``Client.get_file`` does."""
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.ringfs-part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)


def run_units(plan: Plan, make_client: Callable[[], Client], jobs: int,
              on_result: Callable[[UnitResult], None]) -> UnitResult:
    """Run the plan's units on ``jobs`` threads sharing one client (``make_client()``); ``on_result`` sees
    each unit's result as it finishes. Returns the totals."""
    total = UnitResult()
    with make_client() as client, ThreadPoolExecutor(max_workers=jobs) as pool:
        for fut in as_completed([pool.submit(unit, client) for unit in plan.units]):
            result = fut.result()
            total.files += result.files
            total.bytes += result.bytes
            total.errors += result.errors
            on_result(result)
    return total


# ------------------------------------------------------------------ upload


@dataclass
class LocalTree:
    """What ``walk_local`` found: ``(path, relative path, size)`` of every file to copy, and why others
    were skipped."""

    files: list[tuple[Path, str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk_local(root: Path) -> LocalTree:
    """Every file under ``root``, following symlinks as the module docstring says, in a stable order."""
    tree = LocalTree()
    walked: dict[str, str] = {os.path.realpath(root): str(root)}  # real folder -> where it is copied from
    queue: deque[tuple[Path, str]] = deque([(root, "")])
    links: deque[tuple[Path, str]] = deque()  # symlinked folders, followed once the real tree is walked
    while queue or links:
        if not queue:
            link, rel = links.popleft()
            real = os.path.realpath(link)
            if real in walked:
                why = ("it loops back to " if _inside(os.path.realpath(link.parent), real) else "already copied from ")
                tree.warnings.append(f"skipped symlink {link} -> {real}: {why}{walked[real]}")
                continue
            walked[real] = str(link)
            queue.append((link, rel))
            continue
        folder, rel = queue.popleft()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            tree.errors.append(f"{folder}: {exc.strerror or exc}")
            continue
        for e in entries:
            e_rel = f"{rel}/{e.name}" if rel else e.name
            path = Path(e.path)
            try:
                if e.is_dir():  # follows a symlink
                    if e.is_symlink():
                        links.append((path, e_rel))
                    else:
                        walked.setdefault(os.path.realpath(path), str(path))
                        queue.append((path, e_rel))
                elif e.is_file():
                    tree.files.append((path, e_rel, e.stat().st_size))
                elif e.is_symlink() and not path.exists():
                    tree.warnings.append(f"skipped broken symlink {path} -> {os.readlink(path)}")
                else:
                    tree.warnings.append(f"skipped {path}: not a regular file")
            except OSError as exc:
                tree.warnings.append(f"skipped {path}: {exc.strerror or exc}")
    return tree


def plan_upload(local: Path, remote: str, *, create_only: bool, chunk_size: int | None) -> Plan:
    """The units that copy the folder ``local`` to the RingFS folder ``remote``."""
    base = remote.strip("/")
    tree = walk_local(local)
    small: list[Item] = []
    units: list[Unit] = []
    for p, rel, size in tree.files:
        dst = f"{base}/{rel}" if base else rel
        if size <= BATCH_FILE_LIMIT:
            small.append((str(p), dst, size))
        else:
            units.append(_put_one(str(p), dst, create_only, chunk_size))
    units += [_put_batch(b, create_only, chunk_size) for b in batches(small)]
    return Plan(units, len(tree.files), sum(size for _, _, size in tree.files), tree.warnings, tree.errors)


def _put_one(src: str, dst: str, create_only: bool, chunk_size: int | None) -> Unit:
    def unit(client: Client) -> UnitResult:
        try:
            return UnitResult(1, client.put_file(src, dst, create_only=create_only, chunk_size=chunk_size)["size"])
        except (ClientError, OSError) as exc:
            return UnitResult(errors=[file_error(src, exc)])
    return unit


def _put_batch(items: list[Item], create_only: bool, chunk_size: int | None) -> Unit:
    def unit(client: Client) -> UnitResult:
        result = UnitResult()
        srcs: list[str] = []
        files: list[tuple[str, bytes]] = []
        for src, dst, _ in items:
            try:
                files.append((dst, Path(src).read_bytes()))
                srcs.append(src)
            except OSError as exc:
                result.errors.append(file_error(src, exc))
        if not files:
            return result
        try:
            answers = client.put_many(files, create_only=create_only, chunk_size=chunk_size)
        except ClientError as exc:
            result.errors += [file_error(src, exc) for src in srcs]
            return result
        for src, r in zip(srcs, answers):
            if "error" in r:
                result.errors.append(f"{src}: {r['error']} (HTTP {r['status']})")
            else:
                result.bytes += r["size"]
                result.files += 1
        return result
    return unit


# ------------------------------------------------------------------ download


def plan_download(client: Client, remote: str, local: Path) -> Plan:
    """The units that copy the RingFS folder ``remote`` into the local folder ``local`` (one listing)."""
    base = remote.strip("/")
    entries = client.ls(base, recursive=True)
    small: list[Item] = []
    units: list[Unit] = []
    for e in entries:
        rel = e["path"][len(base) + 1:] if base else e["path"]
        if e.get("size", BATCH_FILE_LIMIT + 1) <= BATCH_FILE_LIMIT:
            small.append((e["path"], str(local / rel), e["size"]))
        else:
            units.append(_get_one(e["path"], str(local / rel)))
    units += [_get_batch(b) for b in batches(small)]
    return Plan(units, len(entries), sum(e.get("size") or 0 for e in entries))


def _get_one(src: str, dst: str) -> Unit:
    def unit(client: Client) -> UnitResult:
        try:
            return UnitResult(1, client.get_file(src, dst))
        except (ClientError, OSError) as exc:
            return UnitResult(errors=[file_error(src, exc)])
    return unit


def _get_batch(items: list[Item]) -> Unit:
    def unit(client: Client) -> UnitResult:
        result = UnitResult()
        try:
            got = client.get_many([src for src, _, _ in items])
        except ClientError as exc:
            result.errors += [file_error(src, exc) for src, _, _ in items]
            return result
        for (src, dst, _), (_, status, data) in zip(items, got):
            try:
                if status == 413:  # grew past the batch limit since the listing: stream it
                    result.bytes += client.get_file(src, dst)
                elif status != 200:
                    try:
                        message = json.loads(data).get("error", "")
                    except ValueError:
                        message = data[:200].decode(errors="replace")
                    result.errors.append(f"{src}: {message} (HTTP {status})")
                    continue
                else:
                    write_atomic(Path(dst), data)
                    result.bytes += len(data)
                result.files += 1
            except (ClientError, OSError) as exc:
                result.errors.append(file_error(src, exc))
        return result
    return unit


# ------------------------------------------------------------------ remove


def plan_remove(client: Client, remote: str) -> Plan:
    """The units that delete (to the trash) every file under the RingFS folder ``remote``, file by file
    (``DELETE /files/{path}`` for each path ``GET /list/{folder}?recursive=true`` gives)."""
    entries = client.ls(remote.strip("/"), recursive=True)
    items = [(e["path"], e.get("size") or 0) for e in entries if e.get("type", "file") == "file"]
    units = [_rm_some(items[i:i + RM_UNIT_FILES]) for i in range(0, len(items), RM_UNIT_FILES)]
    return Plan(units, len(items), sum(size for _, size in items))


def _rm_some(items: list[tuple[str, int]]) -> Unit:
    def unit(client: Client) -> UnitResult:
        result = UnitResult()
        for path, size in items:
            try:
                client.rm(path)
            except ClientError as exc:
                if exc.status != 404:  # 404: deleted by someone else since the listing
                    result.errors.append(file_error(path, exc))
                continue
            result.files += 1
            result.bytes += size
        return result
    return unit
