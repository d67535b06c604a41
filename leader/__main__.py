"""``python -m leader``: check the cluster secret, migrate the metadata store to ``head``, then serve the
leader API."""

from __future__ import annotations

from leader.app import create_app
from leader.migrations import run_migrations
from shared.config import LeaderSettings
from shared.logs import setup_logging
from shared.serve import cluster_auth_or_exit, serve


def main() -> None:
    settings = LeaderSettings()
    setup_logging("leader", settings.log_level, settings.log_format)
    auth = cluster_auth_or_exit(settings, "leader")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.database_url)
    serve(create_app(settings, auth), settings)


if __name__ == "__main__":
    main()
