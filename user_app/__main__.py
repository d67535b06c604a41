"""``python -m user_app``: serve the user web API on ``HOST:PORT`` with ``WORKERS`` processes."""

from __future__ import annotations

import os
import tempfile

import uvicorn

from shared.config import UserAppSettings
from shared.http import SERVER_KEEP_ALIVE
from shared.logs import setup_logging


def main() -> None:
    settings = UserAppSettings()
    setup_logging("user_app", settings.log_level, settings.log_format)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # each worker is its own process: let /metrics aggregate them (shared/metrics.py)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ringfs-metrics-")
    uvicorn.run("user_app.app:create_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level="warning", access_log=False,
                timeout_keep_alive=SERVER_KEEP_ALIVE)


if __name__ == "__main__":
    main()
