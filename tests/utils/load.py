"""Load generators for the fault tests: threads writing (and reading) small files while a fault is injected."""

from __future__ import annotations

import os
import threading
import time

import httpx

from tests.utils.auth import authed_client
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


class MixedLoad:
    """A thread alternating a small write and a read of one seed file through the user API until the
    block ends (the leader-failover tests): ``acked`` maps each path whose PUT answered 201 to its bytes,
    ``events`` records every outcome with its time (status, or -1 for no answer)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: dict[str, bytes] = {}
        self.events: list[tuple[float, str, int]] = []  # (monotonic, "write"/"read", status or -1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "MixedLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with authed_client(base_url=self.url, timeout=30) as http:
            http.put("/files/ha/seed.txt", content=b"seed").raise_for_status()
            n = 0
            while not self._stop.is_set():
                n += 1
                path, body = f"ha/f-{n:05d}.txt", os.urandom(200)
                self._record(lambda: http.put(f"/files/{path}", content=body), "write",
                             lambda: self.acked.__setitem__(path, body))
                self._record(lambda: http.get("/files/ha/seed.txt"), "read")
                time.sleep(0.02)

    def _record(self, call, kind: str, on_ok=None) -> None:
        try:
            status = call().status_code
        except httpx.HTTPError:
            status = -1
        if on_ok is not None and status == 201:
            on_ok()
        self.events.append((time.monotonic(), kind, status))

    def first_ok_after(self, kind: str, t: float) -> float | None:
        ok = 201 if kind == "write" else 200
        return next((at for at, k, status in self.events if k == kind and at > t and status == ok), None)

    def wait_ok_after(self, kind: str, t: float, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while (at := self.first_ok_after(kind, t)) is None:
            assert time.monotonic() < deadline, f"no {kind} succeeded after the failure: {self.summary(t)}"
            time.sleep(0.1)
        return at

    def summary(self, t: float) -> dict:
        out: dict = {}
        for at, kind, status in self.events:
            if at > t:
                out[(kind, status)] = out.get((kind, status), 0) + 1
        return out


def check_every_acked_write(url: str, acked: dict[str, bytes]) -> None:
    with authed_client(base_url=url, timeout=30) as http:
        for path, body in acked.items():
            r = http.get(f"/files/{path}")
            assert r.status_code == 200 and r.content == body, (path, r.status_code)
