"""Start the benchmark's own cluster (exactly what ``ringfs up`` runs) and measure its processes."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import psutil

from user_app.client.local_cluster import LocalCluster, Service


def start_cluster(data_dir: Path, env: dict[str, str], chunk_servers: int = 3) -> LocalCluster:
    """Leader + ``chunk_servers`` chunk servers + 1 user app, replication 3, SQLite, data on disk under
    ``data_dir``."""
    cluster = LocalCluster(data_dir=data_dir, chunk_servers=chunk_servers, user_apps=1, replication=3, env=env)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    if cluster.root is not None:  # the workloads' clients (Conn, the CLI) authenticate with the root key
        os.environ["RINGFS_ACCESS_KEY"], os.environ["RINGFS_SECRET_KEY"] = cluster.root.access_key, cluster.root.secret_key
    return cluster


def service_tree(svc: Service) -> list[psutil.Process]:
    """The service's process and all its descendants (uvicorn worker children)."""
    if not svc.alive:
        return []
    try:
        root = psutil.Process(svc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of one process, KiB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def service_hwm_mib(svc: Service) -> tuple[float, float]:
    """(sum of VmHWM over the process tree, largest single process VmHWM), MiB."""
    values = [vm_hwm_kib(p.pid) for p in service_tree(svc)]
    return sum(values) / 1024, (max(values) if values else 0) / 1024


def service_cpu_seconds(svc: Service) -> float:
    """user+sys CPU seconds of the service's process tree, including reaped children."""
    total = 0.0
    for p in service_tree(svc):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
    return total


def client_cpu_seconds() -> float:
    """user+sys CPU seconds of this process plus its waited-for children (client worker processes and
    CLI subprocesses). Services are never waited for inside a phase, so they do not leak in."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def restart_user_app(cluster: LocalCluster) -> None:
    svc = cluster.apps[0]
    svc.stop()
    svc.start()


def drop_caches() -> str:
    """``sync`` then drop the page cache; returns "dropped" or "not permitted (<error>)"."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "dropped"
    except (PermissionError, OSError) as exc:
        return f"not permitted ({exc.__class__.__name__}: {exc.strerror or exc})"
