"""``ringfs up`` as a supervisor: start a ``LocalCluster`` service by service, keep it running, stop it cleanly.

- SIGINT, SIGTERM and SIGHUP only ever add to a stop count that nothing else writes, so no signal is lost,
  whatever state the children are in (starting, running, dead, waiting for a restart, frozen). The first
  stops everything (SIGCONT, SIGTERM, SIGKILL after ``STOP_TIMEOUT``); a second one kills at once.
- A child that exits is restarted after a backoff (``Backoff``: 1 s doubling to 30 s, back to 1 s once a
  child has stayed up ``STABLE_AFTER`` s). Each restart is one line: the service, how it exited, its new PID
  and its log file.
- Every port is checked before its service starts; a port in use is one line naming the port, the service
  that wanted it and the option that sets it.
- ``ringfs server add`` adds a chunk server to the running cluster through a request file
  (``up_control``); the answer comes once the new server is healthy on the ring, and the supervisor
  supervises it like the others.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from user_app.client import up_control
from user_app.client.up_control import describe_exit, last_log_line, port_problem
from user_app.client.local_cluster import READY_TIMEOUT, LocalCluster, Service

TICK = 0.2  # seconds between two looks at the children and the requests
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STABLE_AFTER = 60.0  # seconds up after which a child's next crash waits BACKOFF_FIRST again
STOP_TIMEOUT = 10.0  # seconds the children get after SIGTERM before SIGKILL
ADD_TIMEOUT = 2 * READY_TIMEOUT  # seconds an added chunk server gets to be healthy on the ring


class StartError(Exception):
    """The cluster could not start (one line, for ``error: ...``)."""


class Stopped(Exception):
    """A stop signal came while the cluster was starting."""


class Backoff:
    """Restart delays of one child: ``first`` s, doubling up to ``cap`` s; ``stable_after`` s of uptime
    resets it."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX, stable_after: float = STABLE_AFTER):
        self.first, self.cap, self.stable_after = first, cap, stable_after
        self.failures = 0

    def next_delay(self, up_for: float) -> float:
        """Seconds to wait before restarting a child that has just exited after ``up_for`` s up."""
        if up_for >= self.stable_after:
            self.failures = 0
        delay = min(self.first * 2 ** self.failures, self.cap)
        self.failures += 1
        return delay


@dataclass
class Child:
    """One supervised service."""

    svc: Service
    option: str  # the ``ringfs up`` option that sets its port, for the port-in-use error
    started: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    restart_at: float | None = None  # while it is down: when to start it again
    down_since: float = 0.0
    exit_desc: str = ""


@dataclass
class PendingAdd:
    """A ``ringfs server add`` request being served: the new server is started, not yet healthy."""

    request_id: str
    child: Child
    deadline: float


class Supervisor:
    """Runs ``cluster`` until a stop signal. ``say`` prints a line of information, ``warn`` a warning;
    ``on_ready`` is called once every service is up (to print where to talk to it)."""

    def __init__(self, cluster: LocalCluster, say: Callable[[str], None], warn: Callable[[str], None],
                 on_ready: Callable[[], None] = lambda: None) -> None:
        self.cluster = cluster
        self.say, self.warn, self.on_ready = say, warn, on_ready
        self.stop_signals = 0  # only the signal handler writes it, and only upwards
        self.children: list[Child] = []
        self.pending: list[PendingAdd] = []
        self.data_dir = Path(cluster.data_dir).resolve()

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum, frame) -> None:
        self.stop_signals += 1

    @property
    def stopping(self) -> bool:
        return self.stop_signals > 0

    def _sleep(self, seconds: float) -> None:
        """Sleep, then raise ``Stopped`` if a stop signal came (while starting)."""
        time.sleep(seconds)
        if self.stopping:
            raise Stopped()

    # ------------------------------------------------------------------ run

    def run(self) -> None:
        """Start, supervise until SIGINT/SIGTERM, stop. Raises ``StartError`` when the cluster cannot start
        (everything started so far is stopped)."""
        # A shell starts background jobs with SIGINT ignored; Ctrl-C or `kill -INT` must still stop us.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
            signal.signal(sig, self._on_signal)
        claimed = False
        try:
            reason = up_control.claim(self.data_dir)
            if reason:
                raise StartError(reason)
            claimed = True
            self._start()
            self.on_ready()
            self._loop()
        except Stopped:
            pass
        finally:
            self._shutdown()
            if claimed:
                up_control.release(self.data_dir)

    # ------------------------------------------------------------------ start

    def _check_port(self, name: str, port: int, option: str) -> None:
        problem = port_problem(self.cluster.host, port)
        if problem:
            raise StartError(f"port {port} {problem}: {name} wants it on {self.cluster.host} "
                             f"(free it, or choose another with {option})")

    def _launch(self, svc: Service, option: str) -> Child:
        """Check the port, start ``svc`` without waiting, print its PID and log; supervised from now on."""
        self._check_port(svc.name, svc.port, option)
        svc.start(wait=False)
        child = Child(svc, option, started=time.monotonic())
        self.children.append(child)
        self.say(f"  {svc.name:15} {svc.url:24} pid {svc.pid:<7} log {svc.log_path}")
        return child

    def _wait_ready(self, services: list[Service], timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(services)
        while waiting:
            for svc in list(waiting):
                if not svc.alive:
                    self._raise_died_before_ready(svc)
                if svc.is_ready():
                    waiting.remove(svc)
            if waiting and time.monotonic() > deadline:
                raise StartError(f"{waiting[0].name} did not answer on {waiting[0].url} within {timeout:.0f} s; "
                                 f"see {waiting[0].log_path}")
            if waiting:
                self._sleep(0.1)

    @staticmethod
    def _died_before_ready(svc: Service) -> str:
        last = last_log_line(svc.log_path)
        return (f"{svc.name} exited ({describe_exit(svc.proc.returncode)}) before it was ready"
                + (f": {last}" if last else "") + f"; see {svc.log_path}")

    def _raise_died_before_ready(self, svc: Service) -> None:
        """A child exited while starting: ``StartError`` saying how, or ``Stopped`` when a stop signal came.
        (Ctrl-C signals the whole foreground process group, and a child being spawned at that instant is
        still in it until its ``setsid``: it dies of the SIGINT meant for us, which is no error.)"""
        if self.stopping:
            raise Stopped()
        raise StartError(self._died_before_ready(svc))

    def _healthy_urls(self) -> set[str] | None:
        try:
            ring = self.cluster.ring()
        except (httpx.HTTPError, ValueError):
            return None
        return {s["url"] for s in ring.get("servers", []) if s.get("state") == "healthy"}

    def _start(self) -> None:
        c = self.cluster
        c.prepare()
        n = c.chunk_servers
        # Check every port first: a taken one fails before anything has started.
        self._check_port("the leader", c.leader_port, "--leader-port")
        for i in range(n if c.chunk_server_base_port else 0):
            self._check_port(f"chunk_server_{i + 1}", c.chunk_server_base_port + i,
                             f"--chunk-server-port (the first of {n} consecutive ports)")
        self._check_port("the user app", c.user_app_port, "--port")
        if c.s3_port:
            self._check_port("the user app's S3 API", c.s3_port, "--s3-port")
        c.leader = c.new_leader()
        self._launch(c.leader, "--leader-port")
        self._wait_ready([c.leader])
        for number in range(2, c.leaders + 1):  # standbys on the same PostgreSQL (leader/election.py)
            standby = c.new_leader(number)
            c.standbys.append(standby)
            self._launch(standby, "--leaders")
        self._wait_ready(c.standbys)
        for _ in range(n):
            svc = c.new_chunk_server()
            c.servers.append(svc)  # before it starts, so a stop always finds it
            self._launch(svc, "--chunk-server-port")
        self._wait_ready(c.servers)
        deadline = time.monotonic() + READY_TIMEOUT
        while len((self._healthy_urls() or set()) & {s.url for s in c.servers}) < n:
            for svc in c.servers:
                if not svc.alive:
                    self._raise_died_before_ready(svc)
            if time.monotonic() > deadline:
                raise StartError(f"the leader did not see {n} healthy chunk servers within {READY_TIMEOUT:.0f} s; "
                                 f"see {c.data_dir / 'logs'}")
            self._sleep(0.1)
        app = c.new_user_app(port=c.user_app_port)
        c.apps.append(app)
        self._launch(app, "--port")
        self._wait_ready([app])

    # ------------------------------------------------------------------ supervise

    def _loop(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            self._serve_pending(now)
            pending = {id(p.child) for p in self.pending}
            for child in self.children:
                if id(child) in pending:
                    continue
                if child.restart_at is None and not child.svc.alive:
                    child.exit_desc = describe_exit(child.svc.proc.returncode)
                    child.down_since = now
                    child.restart_at = now + child.backoff.next_delay(now - child.started)
                elif child.restart_at is not None and now >= child.restart_at:
                    self._restart(child, now)
            self._serve_requests()
            time.sleep(TICK)

    def _restart(self, child: Child, now: float) -> None:
        svc = child.svc
        waited = now - child.down_since
        problem = port_problem(self.cluster.host, svc.port)
        if problem:
            child.restart_at = now + child.backoff.next_delay(0)
            self.warn(f"{svc.name} {child.exit_desc}; port {svc.port} {problem}, so it is not restarted: "
                      f"next try in {child.restart_at - now:.0f} s")
            return
        last = last_log_line(svc.log_path) if child.exit_desc.startswith("exit") else ""
        up_for = child.down_since - child.started
        try:
            svc.start(wait=False)
        except OSError as exc:
            child.restart_at = now + child.backoff.next_delay(0)
            self.warn(f"{svc.name} {child.exit_desc} and did not start again ({exc}): "
                      f"next try in {child.restart_at - now:.0f} s")
            return
        child.started, child.restart_at = now, None
        self.warn(f"{svc.name} {child.exit_desc} after {up_for:.0f} s up" + (f" ({last})" if last else "")
                  + f"; restarted {waited:.1f} s later: pid {svc.pid}, log {svc.log_path}")

    # ------------------------------------------------------------------ ringfs server add

    def _serve_requests(self) -> None:
        for request_id, body in up_control.take_requests(self.data_dir):
            if body.get("kind") != "add_chunk_server":
                self._answer(request_id, error=f"unknown request {body.get('kind')!r}")
                continue
            svc = self.cluster.new_chunk_server(port=int(body.get("port") or 0))
            try:
                child = self._launch(svc, "ringfs server add --port")
            except (StartError, OSError) as exc:
                self._answer(request_id, error=f"{svc.name} did not start: {exc}")
                continue
            self.cluster.servers.append(svc)
            self.pending.append(PendingAdd(request_id, child, time.monotonic() + ADD_TIMEOUT))

    def _serve_pending(self, now: float) -> None:
        for p in list(self.pending):
            svc = p.child.svc
            error = None
            if not svc.alive:
                error = self._died_before_ready(svc)
            elif now > p.deadline:
                error = f"{svc.name} was not healthy on the ring within {ADD_TIMEOUT:.0f} s; see {svc.log_path}"
            elif svc.is_ready() and svc.url in (healthy := self._healthy_urls() or set()):
                self.pending.remove(p)
                self.say(f"added {svc.name} {svc.url}: pid {svc.pid}, log {svc.log_path}")
                self._answer(p.request_id, name=svc.name, url=svc.url, pid=svc.pid, log=str(svc.log_path),
                             healthy=len(healthy))
                continue
            else:
                continue
            self.pending.remove(p)
            self.children.remove(p.child)  # not supervised; it stays in cluster.servers so no name repeats
            svc.stop(timeout=2)
            self.warn(f"adding {svc.name} failed: {error}")
            self._answer(p.request_id, error=error)

    def _answer(self, request_id: str, error: str | None = None, **result) -> None:
        up_control.answer(self.data_dir, request_id, {"ok": False, "error": error} if error else {"ok": True, **result})

    # ------------------------------------------------------------------ stop

    def _shutdown(self) -> None:
        c = self.cluster
        if c.leader is None or c.leader.proc is None:
            return  # nothing started
        self.say("stopping RingFS ...")
        # User apps and chunk servers first, then the leader they report to.
        for group in ([*c.apps, *c.servers], c.all_leaders()):
            for svc in group:
                svc.signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
                svc.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT
            while any(s.alive for s in group) and time.monotonic() < deadline and self.stop_signals < 2:
                time.sleep(0.05)
            for svc in group:
                svc.kill()  # only those still running: after STOP_TIMEOUT, or at a second Ctrl-C
