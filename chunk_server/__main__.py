"""``python -m chunk_server``: read settings from the environment and serve."""

from __future__ import annotations

import uvicorn

from chunk_server.app import create_app
from shared.config import ChunkServerSettings
from shared.http import SERVER_KEEP_ALIVE
from shared.logs import setup_logging


def main() -> None:
    settings = ChunkServerSettings()
    setup_logging("chunk_server", settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                access_log=False, timeout_keep_alive=SERVER_KEEP_ALIVE)


if __name__ == "__main__":
    main()
