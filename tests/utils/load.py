"""Load generators for the fault tests: a thread writing small files while a fault is injected."""

from __future__ import annotations

import threading

from tests.utils.data import random_bytes
from user_app.client import Client, ClientError


class WriteLoad:
    """A thread writing small files (``size`` + up to ``spread`` bytes) under ``prefix/`` until the block
    ends: ``acknowledged`` maps each path whose PUT succeeded to its bytes, ``errors`` holds the
    ``ClientError`` of each PUT that failed."""

    def __init__(self, url: str, prefix: str, size: int, spread: int, timeout: float = 30.0) -> None:
        self.url, self.prefix, self.size, self.spread, self.timeout = url, prefix, size, spread, timeout
        self.acknowledged: dict[str, bytes] = {}
        self.errors: list[ClientError] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        i = 0
        with Client(self.url, timeout=self.timeout) as c:
            while not self._stop.is_set():
                path, data = f"{self.prefix}/w{i:05d}.bin", random_bytes(self.size + i % self.spread)
                try:
                    c.put(path, data)
                    self.acknowledged[path] = data
                except ClientError as exc:
                    self.errors.append(exc)
                i += 1

    def __enter__(self) -> "WriteLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
