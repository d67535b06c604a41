"""Start a whole RingFS cluster as real processes on this machine.

Used by ``ringfs up``, the test fixtures and the benchmark, so all three run the same thing: a leader,
N chunk servers and M user apps, each a separate ``python -m <service>`` process on 127.0.0.1, each
waited for until ``GET /healthz`` answers 200. On its first start in a data dir the cluster makes its own
cluster secret and root access key there (``cluster_secret``, ``credentials``, mode 0600;
``user_app/client/credentials.py``) and hands them to its services. ``ManagedProcess`` (start with a log file, wait until ready,
stop) is the process wrapper behind ``Service``, shared with the benchmark's SeaweedFS services.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.auth.cluster_secret import new_secret_hex
from shared.auth.key_material import new_access_key, new_secret_key
from user_app.client.cluster_http import ClusterSigner
from user_app.client.tls_setup import ensure_local_tls
from user_app.client.credentials import (
    CREDENTIALS_FILE, SECRET_FILE, Credentials, read_credentials, write_credentials, write_private,
)

READY_TIMEOUT = 30.0  # seconds a service gets to answer /healthz after start


def _ephemeral_port_floor() -> int:
    """Lowest port the kernel hands out for outgoing connections (Linux ``ip_local_port_range``)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP socket can bind ``host:port`` right now (nobody listens there)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", count: int = 1) -> int:
    """The first of ``count`` consecutive TCP ports nobody listens on right now.

    Chosen at random below the kernel's ephemeral range: a port from ``bind(0)`` lies inside it, and an
    outgoing connection from any process can take it in the moment between this check and the server's
    own bind (seen in CI as ``[Errno 98] address already in use``). Below the range only listeners
    compete. Raises ``RuntimeError`` if no free block is found.
    """
    rng = random.SystemRandom()
    high = _ephemeral_port_floor() - count
    for _ in range(1000):
        first = rng.randrange(10000, high)
        if all(port_is_free(host, first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free TCP ports found in 10000-{high + count}")


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate()`` until it returns a truthy value; return it. Raises ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str, headers: dict[str, str] | None = None, ca_file: Path | None = None) -> bool:
    """Whether ``GET url`` answers 200 within a second (False on any HTTP or connection error); ``ca_file``
    is the CA to trust for ``https://``."""
    try:
        return httpx.get(url, timeout=1.0, headers=headers, verify=tls_verify(ca_file)).status_code == 200
    except httpx.HTTPError:
        return False


def tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else True


class ManagedProcess:
    """One local service process on 127.0.0.1, its output appended to a log file, in a session (and process
    group) of its own.

    A subclass provides the attributes ``name``, ``port``, ``log_path`` and ``proc`` (``None`` until started)
    and the methods ``command()`` (argv) and ``is_ready()``; it may override ``environment()`` (variables added
    to this process's environment), ``cwd()`` and the class settings below.
    """

    ready_timeout = READY_TIMEOUT  # seconds ``wait_ready`` waits by default
    ready_interval = 0.05  # seconds between two ``is_ready`` polls
    stop_timeout = 10.0  # seconds ``stop`` waits after SIGTERM before SIGKILL
    log_tail = 0  # characters of the log quoted when the process exits before it is ready

    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    def cwd(self) -> Path | None:
        return None

    def is_ready(self) -> bool:
        """Polled by ``wait_ready`` while the process runs."""
        raise NotImplementedError

    def start(self, wait: bool = True):
        """Start the process (again); with ``wait``, block until ``is_ready()`` (see ``wait_ready``)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cwd = self.cwd()
        if cwd is not None:
            cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=cwd, env={**os.environ, **self.environment()},
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll ``is_ready()``. Raises ``RuntimeError`` if the process exits first, ``TimeoutError`` after
        ``timeout`` seconds (default ``ready_timeout``)."""
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                msg = f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                if self.log_tail:
                    msg += ":\n" + self.log_path.read_text(errors="replace")[-self.log_tail:]
                raise RuntimeError(msg)
            return self.is_ready()

        wait_until(ready, self.ready_timeout if timeout is None else timeout, interval=self.ready_interval,
                   what=f"{self.name} on {self.url}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process is running."""
        if self.alive:
            self._send(sig)

    def kill(self) -> None:
        """``kill -9``: no chance to clean up, as a crashed container."""
        if self.alive:
            self._send(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM without waiting (to stop several processes at once, then ``stop`` each)."""
        self.signal(signal.SIGTERM)

    def stop(self, timeout: float | None = None) -> None:
        """SIGCONT (a frozen process cannot handle SIGTERM), SIGTERM, then SIGKILL after ``timeout`` seconds
        (default ``stop_timeout``)."""
        if not self.alive:
            return
        self.signal(signal.SIGCONT)
        self.terminate()
        try:
            self.proc.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Service(ManagedProcess):
    """One RingFS service process: ``python -m <kind>`` with ``HOST``/``PORT`` set, ready when ``/healthz``
    answers 200."""

    kind: str  # "leader", "chunk_server" or "user_app"
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("TLS_CERT_FILE") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.kind]

    def environment(self) -> dict[str, str]:
        return {"HOST": "127.0.0.1", **self.env, "PORT": str(self.port)}

    def is_ready(self) -> bool:
        ca = self.env.get("TLS_CA_FILE")
        return http_ok(self.url + "/healthz", ca_file=Path(ca) if ca else None)


@dataclass
class LocalCluster:
    """A leader, ``chunk_servers`` chunk servers and ``user_apps`` user apps under ``data_dir``.

    ``env`` is added to every service's environment (e.g. ``HEALTH_CHECK_INTERVAL=0.5`` in tests).
    """

    data_dir: Path
    chunk_servers: int = 3
    user_apps: int = 1
    replication: int = 3
    env: dict[str, str] = field(default_factory=dict)
    database_url: str = ""
    leader_port: int = 0
    user_app_port: int = 0
    s3_port: int = 0  # the first user app's S3 port (0: a free one); the others always get a free one
    chunk_server_base_port: int = 0
    host: str = "127.0.0.1"
    tls: bool = False  # a private CA and certificates in data_dir/tls, every service on https
    new_root: bool = False  # set by start() when it made the root key (the only time to show its secret)
    leaders: int = 1  # more than one: standby leaders, which need a PostgreSQL database_url
    leader: Service | None = None
    standbys: list[Service] = field(default_factory=list)  # the leaders after the first
    servers: list[Service] = field(default_factory=list)
    apps: list[Service] = field(default_factory=list)

    @property
    def leader_url(self) -> str:
        assert self.leader is not None
        return self.leader.url

    @property
    def leader_urls(self) -> str:
        """Every leader's URL, comma-separated (what services get as ``LEADER_URLS``)."""
        return ",".join(svc.url for svc in self.all_leaders())

    def all_leaders(self) -> list[Service]:
        return [*([self.leader] if self.leader else []), *self.standbys]

    def leader_health(self, svc: Service) -> dict | None:
        """A leader's ``/healthz`` (its role and term), or None when it does not answer."""
        try:
            return httpx.get(svc.url + "/healthz", timeout=2, verify=tls_verify(self.ca_file)).json()
        except (httpx.HTTPError, ValueError):
            return None

    def active_leader(self, timeout: float = READY_TIMEOUT) -> Service:
        """The leader whose ``/healthz`` says ``active`` (waiting for one up to ``timeout`` seconds)."""
        found: list[Service] = []

        def one_active() -> bool:
            found[:] = [svc for svc in self.all_leaders()
                        if svc.alive and (self.leader_health(svc) or {}).get("role") == "active"]
            return len(found) == 1

        wait_until(one_active, timeout, what="one active leader")
        return found[0]

    @property
    def url(self) -> str:
        """The first user app's URL: where clients talk."""
        return self.apps[0].url

    @property
    def insecure(self) -> bool:
        return self.env.get("INSECURE_NO_AUTH", "").lower() in ("1", "true", "yes")

    @property
    def secret_file(self) -> Path:
        return Path(self.data_dir).resolve() / SECRET_FILE

    @property
    def credentials_file(self) -> Path:
        return Path(self.data_dir).resolve() / CREDENTIALS_FILE

    def ensure_identity(self) -> Credentials | None:
        """The cluster secret and the root key of this data dir, made on first start (``env`` may give
        them instead: ``CLUSTER_SECRET``, ``ROOT_ACCESS_KEY``/``ROOT_SECRET_KEY``). None when insecure."""
        if self.insecure:
            return None
        if "CLUSTER_SECRET" not in self.env and not self.secret_file.exists():
            write_private(self.secret_file, new_secret_hex() + "\n")
        if "ROOT_ACCESS_KEY" in self.env:
            return Credentials(self.env["ROOT_ACCESS_KEY"], self.env["ROOT_SECRET_KEY"])
        creds = read_credentials(self.credentials_file)
        if creds is None:
            creds = Credentials(new_access_key(), new_secret_key())
            write_credentials(self.credentials_file, creds)
            self.new_root = True
        return creds

    @property
    def cluster_secret(self) -> str:
        """The cluster secret (hex) its services share."""
        return self.env.get("CLUSTER_SECRET") or self.secret_file.read_text().strip()

    def signer(self) -> ClusterSigner | None:
        """An httpx ``Auth`` signing requests to the leader and chunk servers (None when insecure)."""
        return None if self.insecure else ClusterSigner(self.cluster_secret)

    def prepare(self) -> None:
        """The first half of ``start``: the data dir, its identity and the environment every service shares
        (``ringfs up``'s supervisor calls it, then starts the services one by one with ``new_*``)."""
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.root = self.ensure_identity()
        env = {"REPLICATION_FACTOR": str(self.replication), **self.env}
        if self.root is not None and "CLUSTER_SECRET" not in self.env:
            env["CLUSTER_SECRET_FILE"] = str(self.secret_file)
        if self.host != "127.0.0.1":
            env["HOST"] = self.host
        if self.tls:
            files = ensure_local_tls(self.data_dir, [self.host])
            env.update(TLS_CERT_FILE=str(files.cert), TLS_KEY_FILE=str(files.key), TLS_CA_FILE=str(files.ca))
        self.env = env

    def start(self) -> "LocalCluster":
        self.prepare()
        self.leader = self.new_leader().start()
        if self.leaders > 1:
            self.active_leader()  # the first one takes the lock; the others start as standbys
            for i in range(2, self.leaders + 1):
                self.standbys.append(self.new_leader(i).start())
        for _ in range(self.chunk_servers):
            self.add_chunk_server(wait_registered=False)
        self.wait_registered(self.chunk_servers)
        for i in range(self.user_apps):
            self.add_user_app(port=self.user_app_port if i == 0 and self.user_app_port else 0)
        return self

    def new_leader(self, number: int = 1) -> Service:
        """Leader ``number``'s ``Service``, not started (after ``prepare``); the first is ``leader``, the
        others (standbys on one PostgreSQL) ``leader_<number>``."""
        name = "leader" if number == 1 else f"leader_{number}"
        port = self.leader_port if number == 1 and self.leader_port else free_port()
        scheme = "https" if self.tls else "http"
        leader_env = {**self.env, "DATA_DIR": str(self.data_dir / name), "ADVERTISE_URL": f"{scheme}://127.0.0.1:{port}"}
        if self.root is not None:
            leader_env.update(ROOT_ACCESS_KEY=self.root.access_key, ROOT_SECRET_KEY=self.root.secret_key)
        if self.database_url:
            leader_env["DATABASE_URL"] = self.database_url
        return Service("leader", name, port, leader_env, self.data_dir / "logs" / f"{name}.log")

    def leader_env(self) -> dict[str, str]:
        """How chunk servers and user apps find the leader: ``LEADER_URL``, plus ``LEADER_URLS`` with
        standbys."""
        env = {"LEADER_URL": self.leader_url}
        if self.standbys:
            env["LEADER_URLS"] = self.leader_urls
        return env

    def chunk_server_port(self) -> int:
        """The port the next chunk server gets: the next one after ``chunk_server_base_port``, else a free one."""
        return self.chunk_server_base_port + len(self.servers) if self.chunk_server_base_port else free_port()

    def new_chunk_server(self, env: dict[str, str] | None = None, port: int = 0) -> Service:
        """The next chunk server's ``Service`` (``chunk_server_<len(servers)+1>``), not started nor added."""
        i = len(self.servers) + 1
        port = port or self.chunk_server_port()
        scheme = "https" if self.tls else "http"
        svc_env = {**self.env, **self.leader_env(), "DATA_DIR": str(self.data_dir / f"chunk_server_{i}"),
                   "ADVERTISE_URL": f"{scheme}://127.0.0.1:{port}", **(env or {})}
        return Service("chunk_server", f"chunk_server_{i}", port, svc_env,
                       self.data_dir / "logs" / f"chunk_server_{i}.log")

    def add_chunk_server(self, wait_registered: bool = True, env: dict[str, str] | None = None,
                         port: int = 0) -> Service:
        """Start one more chunk server (scale-out) and, by default, wait until the leader has it. ``env``
        overrides its settings (e.g. an ``ADVERTISE_URL`` behind a proxy); ``port`` picks its port."""
        svc = self.new_chunk_server(env, port).start()
        self.servers.append(svc)
        if wait_registered:
            self.wait_registered(len([s for s in self.servers if s.alive]))
        return svc

    def new_user_app(self, port: int = 0, env: dict[str, str] | None = None) -> Service:
        """The next user app's ``Service``, not started nor added. Its S3 API listens on ``S3_PORT`` from
        ``env``, else on ``s3_port`` (the first app) or a free port."""
        i = len(self.apps) + 1
        port = port or free_port()
        scheme = "https" if self.tls else "http"
        # where the leader revokes its read leases (user_app/manifest_leases.py)
        svc_env = {**self.env, **self.leader_env(), "ADVERTISE_URL": f"{scheme}://127.0.0.1:{port}", **(env or {})}
        if "S3_PORT" not in svc_env:
            svc_env["S3_PORT"] = str(self.s3_port if i == 1 and self.s3_port else free_port())
        return Service("user_app", f"user_app_{i}", port, svc_env, self.data_dir / "logs" / f"user_app_{i}.log")

    def add_user_app(self, port: int = 0, env: dict[str, str] | None = None) -> Service:
        svc = self.new_user_app(port, env).start()
        self.apps.append(svc)
        return svc

    def s3_url(self, app: int = 0) -> str:
        """The S3 endpoint of user app ``app`` (the first by default), or "" when it serves none."""
        svc = self.apps[app]
        port = int(svc.env.get("S3_PORT") or 0)
        scheme = "https" if svc.env.get("TLS_CERT_FILE") else "http"
        return f"{scheme}://127.0.0.1:{port}" if port else ""

    @property
    def ca_file(self) -> Path | None:
        """The private CA's certificate when the cluster runs TLS."""
        ca = self.env.get("TLS_CA_FILE")
        return Path(ca) if ca else None

    def ring(self) -> dict:
        url = self.active_leader().url if self.standbys else self.leader_url
        return httpx.get(url + "/ring", timeout=5, auth=self.signer(), verify=tls_verify(self.ca_file)).json()

    def wait_registered(self, count: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until ``count`` chunk servers are healthy on the leader's ring."""
        def enough() -> bool:
            try:
                ring = self.ring()
            except httpx.HTTPError:
                return False
            return sum(1 for s in ring["servers"] if s["state"] == "healthy") >= count

        wait_until(enough, timeout, what=f"{count} healthy chunk servers")

    def services(self) -> list[Service]:
        return [*self.apps, *self.servers, *reversed(self.all_leaders())]

    def stop(self) -> None:
        for svc in self.services():
            svc.stop()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
