"""The Alembic migrations against the models, through the real ``alembic`` command line.

``alembic upgrade head`` on an empty database, then ``alembic check``: it fails if ``leader.models``
declares anything the migrations do not create (a model changed without a new revision), the way CI
catches schema drift. Runs on SQLite always and on PostgreSQL too when ``RINGFS_TEST_POSTGRES`` is set
(a fresh database per test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_ENV, create_postgres_database

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


def _backends() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    params.append(pytest.param("postgresql", id="postgresql",
                               marks=pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} not set")))
    return params


@pytest.fixture(params=_backends())
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'leader.db'}"
    return create_postgres_database("ringfs_migrations")


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess:
    """``alembic -c alembic.ini <args>`` from the repository root with ``DATABASE_URL`` set."""
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def run_ok(database_url: str, *args: str) -> str:
    proc = alembic(database_url, *args)
    assert proc.returncode == 0, f"alembic {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_upgrade_head_then_no_drift(database_url):
    run_ok(database_url, "upgrade", "head")
    out = run_ok(database_url, "check")
    assert "No new upgrade operations detected" in out
    heads = run_ok(database_url, "heads")
    assert heads.count("(head)") == 1, f"more than one migration head:\n{heads}"
    current = run_ok(database_url, "current")
    assert "(head)" in current


def test_downgrade_to_base_and_back(database_url):
    run_ok(database_url, "upgrade", "head")
    run_ok(database_url, "downgrade", "base")
    assert "(head)" not in run_ok(database_url, "current")
    run_ok(database_url, "upgrade", "head")
    run_ok(database_url, "check")


def test_leader_start_migrates_an_empty_database(database_url):
    """What ``python -m leader`` runs at start (``leader.migrations.run_migrations``) leaves no drift."""
    code = "import sys; from leader.migrations import run_migrations; run_migrations(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, database_url], cwd=ROOT, capture_output=True,
                          text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    run_ok(database_url, "check")
