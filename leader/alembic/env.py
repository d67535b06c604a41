"""Alembic environment: async engine, the URL from ``config.attributes["database_url"]`` (set by
``leader.migrations.run_migrations``) or else ``DATABASE_URL`` / ``LeaderSettings`` (CLI use)."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from leader.models import Base

config = context.config
if config.config_file_name and "database_url" not in config.attributes:
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        from shared.config import LeaderSettings

        url = LeaderSettings().database_url
    return url


def _configure(database: str, **kw) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=database.startswith("sqlite"),
        **kw,
    )


def run_migrations_offline() -> None:
    url = database_url()
    _configure(url, url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection, url: str) -> None:
    _configure(url, connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    url = database_url()
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync, url)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
