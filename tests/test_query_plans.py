"""The leader's namespace checks walk a path range, not every committed row: SQLite's plans for the
statements that run on every prepare, commit and folder listing (the leader's real schema, from its
migrations). Without statistics SQLite preferred ``state = 'committed'`` on
``ix_file_versions_state_created_at``, which made each check O(files) (``version_sql.unindexed``).

The key scan (``leader/scan.py``) must walk both path indexes in order and stop at its ``LIMIT``: no
sort step (``USE TEMP B-TREE FOR ORDER BY``), which would read the whole range first."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event

from leader import version_sql as sql
from leader.migrations import run_migrations
from leader.namespace import under
from leader.version_sql import COMMITTED, unindexed
from leader.models import FileVersion


@pytest.fixture
def plans(tmp_path):
    """``run(stmt, params) -> [plan lines of every statement executed]`` on a migrated SQLite file."""
    path = tmp_path / "leader.db"
    run_migrations(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def explain(conn, cursor, statement, params, context, executemany):
        seen.extend(row[-1] for row in cursor.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall())

    def run(stmt, params):
        seen.clear()
        with engine.begin() as conn:
            conn.execute(stmt, params)
        return list(seen)

    yield run
    engine.dispose()


def _walks_paths(lines: list[str]) -> bool:
    return (any("ix_file_versions_path_state_version" in line for line in lines)
            and not any("ix_file_versions_state_created_at" in line for line in lines))


FOLDERS_KEY = "sqlite_autoindex_folders_1"  # the index of folders' primary key (path)


def _probes_folders(lines: list[str]) -> bool:
    """Every read of ``folders`` (``explicit`` is its alias in the file-or-folder checks) is a primary-key
    search, never a scan."""
    reads = [line for line in lines if " folders" in line or " explicit" in line]
    return bool(reads) and all(line.startswith("SEARCH") and FOLDERS_KEY in line for line in reads)


def test_prepare_and_commit_checks_use_the_path_index(plans):
    for stmt, params in ((sql.folders_among(2), {"asked_0": "a/b", "asked_1": "c"}),
                         (sql.COMMIT_IDS, {"ids": [1, 2], "now": 1.0}), (sql.IS_FOLDER, {"path": "a/b"})):
        lines = plans(stmt, params)
        assert _walks_paths(lines) and _probes_folders(lines), lines
    assert _walks_paths(plans(sql.LIVE_BELOW, {"path": "a/b"}))


def test_scan_walks_the_path_indexes_in_order(plans):
    from leader import folders, scan

    for inclusive in (True, False):
        for bounded in (True, False):
            lines = plans(scan._files_statement(inclusive, bounded), {"lo": "a/", "hi": "a0", "k": 9})
            assert _walks_paths(lines) and not any("TEMP B-TREE" in line for line in lines), lines
            assert lines[0].startswith("SEARCH file_versions USING INDEX ix_file_versions_path_state_version"), lines
    for bounded in (True, False):
        lines = plans(scan._folders_statement(bounded), {"lo": "a/", "hi": "a0", "k": 9})
        assert _probes_folders(lines) and not any("TEMP B-TREE" in line for line in lines), lines
    assert _probes_folders(plans(scan.FOLDERS_NAMED, {"paths": ["a", "a b"]}))
    assert _probes_folders(plans(folders.EXPLICIT_BELOW, {"path": "a"}))


def test_folder_listing_uses_the_path_index(plans):
    from sqlalchemy import select

    stmt = select(FileVersion.path).where(unindexed(FileVersion.state) == COMMITTED, under("a/b"))
    assert _walks_paths(plans(stmt, {}))
