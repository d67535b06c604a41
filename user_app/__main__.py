"""``python -m user_app``: check the cluster secret, then serve the user web API on ``HOST:PORT`` and the
S3-compatible API on ``HOST:S3_PORT`` (unless 0) with ``WORKERS`` processes."""

from __future__ import annotations

import os
import tempfile

from shared.config import UserAppSettings
from shared.logs import setup_logging
from shared.serve import cluster_auth_or_exit, serve


def main() -> None:
    settings = UserAppSettings()
    setup_logging("user_app", settings.log_level, settings.log_format)
    cluster_auth_or_exit(settings, "user app")  # fail here, once, rather than in every worker
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # each worker is its own process: let /metrics aggregate them (shared/metrics.py)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ringfs-metrics-")
    serve("user_app.app:create_server_app", settings, extra_ports=(settings.s3_port,) if settings.s3_port else (),
          factory=True, workers=settings.workers)


if __name__ == "__main__":
    main()
