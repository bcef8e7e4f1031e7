"""Alembic migrations on a new database of each backend: up, model parity, down, up again."""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import SchemaItem

import app.models  # noqa: F401 - registers every table on Base.metadata
from app.db.base import Base, utcnow
from app.db.session import create_engine_for
from app.models.user import User
from tests.conftest import create_database, drop_database, make_settings, run_alembic

APP_TABLES = {"users", "tasks", "refresh_tokens", "idempotency_keys"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database (not the shared test database)."""
    url = await create_database(request.param, tmp_path)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def engine(fresh_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine_for(make_settings(fresh_url))
    try:
        yield engine
    finally:
        await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names)


def _include_object(dialect: str) -> Any:
    """Mirror migrations/env.py: an index the models create only on another dialect is not
    missing here."""

    def include(
        obj: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        if type_ == "index" and not reflected and ddl_if is not None and ddl_if.dialect:
            return bool(ddl_if.dialect == dialect)
        return True

    return include


def _schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_object": _include_object(connection.dialect.name),
        },
    )
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes such as lower(email); SQLAlchemy says so
        # with a warning and Alembic then leaves that index out of the comparison.
        warnings.filterwarnings("ignore", message=r".*expression-based index.*")
        diff: list[Any] = compare_metadata(context, Base.metadata)
    return diff


def user_row(email: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "email": email,
        "password_hash": "x",
        "role": "user",
        "is_active": True,
        "token_version": 1,
        "created_at": now,
        "updated_at": now,
    }


class TestMigrations:
    async def test_upgrade_head_creates_tables(self, fresh_url: str, engine: AsyncEngine) -> None:
        assert await table_names(engine) == set()
        run_alembic(fresh_url)
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}
        async with engine.connect() as connection:
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == "0003_listing_indexes"

    async def test_email_unique_without_regard_to_case(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            await connection.execute(insert(User).values(user_row("Mixed@Example.com")))
            await connection.commit()
            with pytest.raises(IntegrityError):
                await connection.execute(insert(User).values(user_row("mixed@EXAMPLE.com")))
            await connection.rollback()
            await connection.execute(insert(User).values(user_row("other@example.com")))
            await connection.commit()
            count = await connection.scalar(text("SELECT count(*) FROM users"))
        assert count == 2

    async def test_email_index_exists(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                sql = await connection.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'uq_users_email_lower'")
                )
            else:
                sql = await connection.scalar(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_users_email_lower'")
                )
        assert sql is not None
        assert "UNIQUE" in sql.upper()
        assert "loweremail" in re.sub(r"[()\s]|::text", "", sql.lower())

    async def test_models_match_migrated_schema(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            diff = await connection.run_sync(_schema_diff)
        assert diff == []

    async def test_comparison_sees_differences(self, engine: AsyncEngine) -> None:
        # The parity check below is not vacuous: against an empty database it reports every
        # table as missing.
        async with engine.connect() as connection:
            diff = await connection.run_sync(_schema_diff)
        added = {item[1].name for item in diff if item[0] == "add_table"}
        assert added == APP_TABLES

    async def test_downgrade_to_base_and_upgrade_again(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            await connection.execute(insert(User).values(user_row("keep@example.com")))
            await connection.commit()

        run_alembic(fresh_url, "base", down=True)
        assert await table_names(engine) <= {"alembic_version"}
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                leftover_indexes = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'"
                    )
                )
            else:
                leftover_indexes = await connection.scalar(
                    text(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name <> 'alembic_version'"
                    )
                )
        assert leftover_indexes == 0

        run_alembic(fresh_url)
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM users")) == 0
            diff = await connection.run_sync(_schema_diff)
        assert diff == []

    async def test_upgrade_head_twice_is_a_no_op(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        run_alembic(fresh_url)
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}

    async def test_postgres_only_index(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            indexes = await connection.run_sync(
                lambda sync: {index["name"] for index in inspect(sync).get_indexes("tasks")}
            )
            dialect = connection.dialect.name
        walks = {
            f"ix_tasks_{view}_{walk}"
            for view in ("live", "trash")
            for walk in ("created", "updated", "priority", "due")
        }
        postgres_only = {
            "ix_tasks_live_due_desc",
            "ix_tasks_trash_due_desc",
            "ix_tasks_title_trgm",
            "ix_tasks_description_trgm",
        }
        assert walks <= indexes
        assert indexes & postgres_only == (postgres_only if dialect == "postgresql" else set())
