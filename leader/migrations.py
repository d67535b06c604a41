"""Run the Alembic migrations programmatically at leader start.

``python -m leader`` calls :func:`run_migrations` in the main thread before uvicorn starts, so the schema
is at ``head`` before the first request. The URL travels in ``Config.attributes["database_url"]``
(``leader/alembic/env.py`` reads it), not in an ini option, so no ``%`` escaping is needed.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).parent / "alembic"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for ``database_url`` that needs no ``alembic.ini`` (works when installed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["database_url"] = database_url
    return cfg


def run_migrations(database_url: str) -> None:
    """``alembic upgrade head`` on ``database_url``. Must not run inside a running event loop."""
    command.upgrade(alembic_config(database_url), "head")
