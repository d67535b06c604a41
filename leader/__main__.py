"""``python -m leader``: check the cluster secret, refuse a second leader on one SQLite database, migrate
the metadata store to ``head``, then serve the leader API."""

from __future__ import annotations

import sys

from leader.app import LeaderLockError, create_app, hold_sqlite_leader_lock
from leader.db import is_sqlite
from leader.migrations import run_migrations
from shared.config import LeaderSettings
from shared.logs import setup_logging
from shared.serve import cluster_auth_or_exit, serve


def main() -> None:
    settings = LeaderSettings()
    setup_logging("leader", settings.log_level, settings.log_format)
    auth = cluster_auth_or_exit(settings, "leader")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = None
    if is_sqlite(settings.database_url):
        try:
            lock = hold_sqlite_leader_lock(settings.database_url)
        except LeaderLockError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    run_migrations(settings.database_url)
    serve(create_app(settings, auth, sqlite_lock=lock), settings)


if __name__ == "__main__":
    main()
