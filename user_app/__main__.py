"""``python -m user_app``: serve the user web API on ``HOST:PORT`` with ``WORKERS`` processes."""

from __future__ import annotations

import uvicorn

from shared.config import UserAppSettings
from shared.logs import setup_logging


def main() -> None:
    settings = UserAppSettings()
    setup_logging("user_app", settings.log_level, settings.log_format)
    uvicorn.run("user_app.app:create_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
