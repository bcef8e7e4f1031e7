"""Alembic environment: migrates the database named by the app's settings, asynchronously.

The same async drivers as the service (asyncpg, aiosqlite) run the migrations, so a machine
that can serve can migrate. SQLite ALTERs go through batch mode.
"""

from __future__ import annotations

import asyncio
import warnings
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.schema import SchemaItem

import app.models  # noqa: F401 - registers every table on Base.metadata
from app.core.config import get_settings, to_async_url
from app.db.base import Base
from app.db.session import create_engine_for

config = context.config
target_metadata = Base.metadata

# SQLite's batch mode reflects the tables a table refers to; SQLAlchemy cannot reflect the
# expression index on users' lower(email), says so, and leaves it as it is, which is right
# (tests/migrations keeps it): the warning only alarms whoever runs `make run` the first time.
warnings.filterwarnings(
    "ignore",
    message="Skipped unsupported reflection of expression-based index",
    category=sa_exc.SAWarning,
)

if config.config_file_name and "database_url" not in config.attributes:
    # Run from the `alembic` command line: use alembic.ini's logging. When the app or the
    # tests run migrations they pass the URL and keep their own logging.
    fileConfig(config.config_file_name)


def _url() -> Any:
    # Tests pass the URL explicitly; everyone else gets DATABASE_URL via the settings.
    explicit = config.attributes.get("database_url")
    return to_async_url(explicit) if explicit else get_settings().sqlalchemy_url


def _include_object(
    obj: SchemaItem,
    name: str | None,  # noqa: ARG001 - Alembic's hook signature
    type_: str,
    reflected: bool,
    compare_to: Any,  # noqa: ARG001
) -> bool:
    # An index the models only create on another dialect is not "missing" here.
    ddl_if = getattr(obj, "_ddl_if", None)
    if type_ == "index" and not reflected and ddl_if is not None and ddl_if.dialect:
        return bool(context.get_context().dialect.name == ddl_if.dialect)
    return True


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=_include_object,
    )


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine_for(get_settings(), _url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_url().render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(_run_async())
