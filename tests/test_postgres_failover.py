"""RingFS across a PostgreSQL failover: a primary with a synchronous streaming standby (``pg_basebackup -R``),
two leaders whose ``DATABASE_URL`` lists both hosts with ``target_session_attrs=read-write``; the primary is
stopped (immediate, as a crash), the standby promoted (``pg_ctl promote``), and the leaders reconnect to it.
No acknowledged write is lost: with synchronous replication every commit a leader acknowledged is on the
standby before the acknowledgement.

Runs the PostgreSQL server binaries itself (``initdb``, ``pg_ctl``, ``pg_basebackup``: Debian's
``postgresql-15``, which ``.ci/run`` installs), as the ``postgres`` user when run as root; skips without
them unless ``RINGFS_TEST_POSTGRES`` is set (CI's PostgreSQL run), where it fails instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_ENV, PG_ENV
from tests.test_standby_leaders import RESUME_S
from tests.utils.load import MixedLoad, check_every_acked_write
from user_app.client.local_cluster import LocalCluster, free_port, wait_until


def pg_bin() -> Path | None:
    for candidate in ["/usr/lib/postgresql/15/bin", *sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin"))]:
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_basebackup").exists():
            return Path(candidate)
    return None


BIN = pg_bin()
if BIN is None:
    if os.environ.get(PG_ENV):
        pytest.fail("PostgreSQL server binaries (initdb, pg_basebackup) not found", pytrace=False)
    pytest.skip("PostgreSQL server binaries not found", allow_module_level=True)


def as_postgres(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool, as the ``postgres`` user when we are root (initdb refuses root)."""
    argv = ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=120)


class Server:
    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port

    def start(self) -> None:
        as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def sql(self, statement: str) -> str:
        return as_postgres(str(BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "ringfs", "-d", "postgres",
                           "-Atc", statement).stdout.strip()


@pytest.fixture
def primary_and_standby():
    # not under pytest's tmp_path: its parents are private to root, and the servers run as postgres
    base = Path(tempfile.mkdtemp(prefix="ringfs-pg-failover-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    primary = Server(base / "primary", free_port())
    standby = Server(base / "standby", free_port())
    as_postgres(str(BIN / "initdb"), "-D", str(primary.data), "-A", "trust", "-U", "ringfs")
    with open(primary.data / "postgresql.conf", "a") as conf:
        conf.write(f"port = {primary.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                   "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nsynchronous_commit = on\n")
    primary.start()
    try:
        primary.sql("CREATE DATABASE ringfs")
        as_postgres(str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "ringfs",
                    "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast")
        with open(standby.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {standby.port}\n")
        standby.start()
        # synchronous from here on (set before the standby exists, every commit would wait for it)
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.sql("SELECT pg_reload_conf()")
        wait_until(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == "sync", 30,
                   what="a synchronous standby")
        yield primary, standby
    finally:
        standby.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def test_leaders_ride_out_a_postgres_failover_without_losing_a_write(primary_and_standby, tmp_path):
    primary, standby = primary_and_standby
    url = (f"postgresql+asyncpg://ringfs@/ringfs?host=127.0.0.1:{primary.port}&host=127.0.0.1:{standby.port}"
           "&target_session_attrs=read-write")
    with LocalCluster(data_dir=Path(os.environ.get("RINGFS_KEEP_CLUSTER", tmp_path / "cluster")), chunk_servers=3, replication=3, env=FAST_ENV, leaders=2,
                      database_url=url) as cluster:
        with MixedLoad(cluster.url) as load:
            load.wait_ok_after("write", 0)
            time.sleep(1.0)
            failed_at = time.monotonic()
            primary.stop("immediate")  # a crash: no shutdown checkpoint, clients cut off
            as_postgres(str(BIN / "pg_ctl"), "-D", str(standby.data), "-w", "promote")
            promoted_at = time.monotonic()
            write_at = load.wait_ok_after("write", promoted_at, timeout=90)
            read_at = load.wait_ok_after("read", promoted_at, timeout=90)
            time.sleep(0.5)
        print(f"\nPostgreSQL failover: promoted {promoted_at - failed_at:.1f} s after the crash; writes resumed "
              f"{write_at - failed_at:.1f} s, reads {read_at - failed_at:.1f} s after it; {load.summary(failed_at)}")
        assert write_at - promoted_at <= 3 * RESUME_S
        failed = {status for (_, status) in load.summary(failed_at) if status not in (200, 201)}
        assert failed <= {503}, f"the outage answered other than 503: {load.summary(failed_at)}"
        check_every_acked_write(cluster.url, load.acked)
        assert len(load.acked) > 0
        cluster.active_leader()
