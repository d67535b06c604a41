"""``python -m leader``: migrate the metadata store to ``head``, then serve the leader API."""

from __future__ import annotations

import uvicorn

from leader.app import create_app
from leader.migrations import run_migrations
from shared.config import LeaderSettings
from shared.http import SERVER_KEEP_ALIVE
from shared.logs import setup_logging


def main() -> None:
    settings = LeaderSettings()
    setup_logging("leader", settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.database_url)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                access_log=False, timeout_keep_alive=SERVER_KEEP_ALIVE)


if __name__ == "__main__":
    main()
