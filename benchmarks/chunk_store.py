"""Micro-benchmark of the chunk store: prepare + commit of 1024 x 1 KiB chunks per txn, and bytes on disk
per byte stored. ``python -m benchmarks.chunk_store [--txns 100] [--rounds 3] [--store PATH]``
(``--store`` loads another version of the store to compare layouts on the same machine: a single-file
``store.py`` from before the package split, e.g. ``git show REV:chunk_server/store.py > /tmp/store.py``, or
a ``store/`` package directory, e.g. ``git archive REV chunk_server/store | tar -x -C /tmp/old`` then
``--store /tmp/old/chunk_server/store``; the best round is reported because other work adds noise)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sqlite3
import sys
import tempfile
import time
import types
from pathlib import Path

from shared.protocol.frames import sha256

CHUNKS_PER_TXN = 1024
CHUNK_SIZE = 1024  # bytes; --chunk-size changes it


def load_store(path: str | None) -> types.ModuleType:
    """The store to benchmark, a module with a ``ChunkStore``: the package ``chunk_server.store`` when
    ``path`` is None; else the package directory ``path`` (its modules import each other relatively, so
    they load from there) or the single-file store ``path``. Raises ``ImportError`` / ``OSError`` if it
    cannot be loaded."""
    if path is None:
        return importlib.import_module("chunk_server.store")
    location, name = Path(path), "bench_store_module"
    if location.is_dir():
        spec = importlib.util.spec_from_file_location(name, location / "__init__.py",
                                                      submodule_search_locations=[str(location)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        # Single-file stores predate the shared.protocol package: what they imported from the flat
        # module (ChunkPresence, sha256) now lives in shared.protocol.frames.
        source = location.read_text().replace("from shared.protocol import ", "from shared.protocol.frames import ")
        module = types.ModuleType(name)
        module.__file__ = str(location)
        sys.modules[name] = module
        exec(compile(source, str(location), "exec"), module.__dict__)
    return module


async def one_round(module, txns: int) -> tuple[float, float, float, float]:
    """``(chunks/s, prepare ms per txn, commit ms per txn, bytes on disk per byte)``."""
    batches = [[(sha256(x), x) for x in (os.urandom(CHUNK_SIZE) for _ in range(CHUNKS_PER_TXN))]
               for _ in range(txns)]
    with tempfile.TemporaryDirectory() as tmp:
        store = module.ChunkStore(Path(tmp))
        prep = comm = 0.0
        for i, batch in enumerate(batches):
            a = time.perf_counter()
            await store.prepare(f"t{i}", batch)
            b = time.perf_counter()
            await store.commit([f"t{i}"])
            prep, comm = prep + b - a, comm + time.perf_counter() - b
        store.close()
        for db in Path(tmp).glob("*.db"):  # the index (or, for old layouts, the one database)
            with sqlite3.connect(db) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    n = txns * CHUNKS_PER_TXN
    return n / (prep + comm), prep / txns * 1000, comm / txns * 1000, disk / (n * CHUNK_SIZE)


def main() -> None:
    global CHUNK_SIZE
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--txns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", default=None)
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="bytes per chunk (default 1024)")
    args = parser.parse_args()
    CHUNK_SIZE = args.chunk_size
    module = load_store(args.store)
    results = [asyncio.run(one_round(module, args.txns)) for _ in range(args.rounds)]
    rate, prep, comm, ratio = max(results)
    print(f"{args.store or 'chunk_server/store/'}: {rate:,.0f} chunks/s prepare+commit "
          f"(prepare {prep:.1f} ms, commit {comm:.1f} ms per {CHUNKS_PER_TXN}-chunk txn), "
          f"{ratio:.3f} bytes on disk per byte")


if __name__ == "__main__":
    main()
