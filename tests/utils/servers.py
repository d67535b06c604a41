"""Start single services for tests that talk to one of them directly."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from tests.utils.auth import AUTH_ENV
from user_app.client.local_cluster import Service, free_port


@contextlib.contextmanager
def lone_chunk_server(tmp_path: Path, **env: str) -> Iterator[Service]:
    """A chunk server whose leader URL points at a closed port: it serves its API but never joins a
    ring. ``env`` adds settings (e.g. ``PENDING_TTL="1"``)."""
    base = {"DATA_DIR": str(tmp_path / "data"), "LEADER_URL": f"http://127.0.0.1:{free_port()}", **AUTH_ENV}
    svc = Service("chunk_server", "cs", free_port(), {**base, **env}, tmp_path / "cs.log").start()
    try:
        yield svc
    finally:
        svc.stop()
