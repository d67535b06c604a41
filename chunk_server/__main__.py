"""``python -m chunk_server``: read settings from the environment, check the cluster secret, and serve."""

from __future__ import annotations

from chunk_server.app import create_app
from shared.config import ChunkServerSettings
from shared.logs import setup_logging
from shared.serve import cluster_auth_or_exit, serve


def main() -> None:
    settings = ChunkServerSettings()
    setup_logging("chunk_server", settings.log_level, settings.log_format)
    auth = cluster_auth_or_exit(settings, "chunk server")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    serve(create_app(settings, auth), settings)


if __name__ == "__main__":
    main()
