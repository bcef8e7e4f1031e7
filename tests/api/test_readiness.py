"""`/readyz` is 200 only when the database answers and its schema is at the migration head
(otherwise every API call would 503), and production refuses to start on a SQLite path that
does not exist rather than create an empty database there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.api.health import schema_heads
from app.core.config import ConfigurationError, Environment, Settings
from app.db.session import check_database_exists, create_engine_for
from app.main import create_app
from tests.conftest import make_settings, run_alembic
from tests.support import assert_problem

OLDER_REVISION = "0003_listing_indexes"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def assert_not_migrated(response: httpx.Response) -> None:
    body = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    assert "migrations" in body["detail"]


class TestSchemaVersion:
    async def test_no_schema_is_503(self, fresh_url: str) -> None:
        async with serving(make_settings(fresh_url)) as http:
            assert_not_migrated(await http.get("/readyz"))
            assert (await http.get("/healthz")).status_code == 200

    async def test_an_older_schema_is_503_until_migrated(self, fresh_url: str) -> None:
        run_alembic(fresh_url, OLDER_REVISION)
        async with serving(make_settings(fresh_url)) as http:
            assert_not_migrated(await http.get("/readyz"))
            # Checked on every probe: migrating makes the running service ready.
            run_alembic(fresh_url)
            response = await http.get("/readyz")
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "ready", "database": "ok"}

    async def test_an_unknown_revision_is_503(self, fresh_url: str) -> None:
        run_alembic(fresh_url)
        engine = create_engine_for(make_settings(fresh_url))
        try:
            async with engine.begin() as connection:
                await connection.execute(text("UPDATE alembic_version SET version_num = 'other'"))
        finally:
            await engine.dispose()
        async with serving(make_settings(fresh_url)) as http:
            assert_not_migrated(await http.get("/readyz"))

    def test_the_head_is_the_newest_migration(self) -> None:
        heads = schema_heads()
        assert len(heads) == 1
        assert OLDER_REVISION not in heads


class TestProductionSqlitePath:
    def settings(self, path: Path, environment: Environment) -> Settings:
        return make_settings(f"sqlite:///{path}", environment=environment)

    async def test_production_refuses_a_path_that_does_not_exist(self, tmp_path: Path) -> None:
        path = tmp_path / "mistyped" / "tasks.db"
        settings = self.settings(path, Environment.PRODUCTION)
        with pytest.raises(ConfigurationError, match="does not exist") as refused:
            check_database_exists(settings)
        assert str(path) in str(refused.value)
        # The service does not start (refused by create_app or by its startup) ...
        with pytest.raises((SystemExit, ConfigurationError)):
            async with serving(settings):
                pass
        # ... and leaves nothing behind: no empty database, no folder.
        assert not path.exists()
        assert not path.parent.exists()

    async def test_production_serves_a_database_that_exists(self, tmp_path: Path) -> None:
        path = tmp_path / "tasks.db"
        run_alembic(f"sqlite:///{path}")  # how an operator creates it
        async with serving(self.settings(path, Environment.PRODUCTION)) as http:
            assert (await http.get("/readyz")).status_code == 200

    async def test_development_still_creates_its_database(self, tmp_path: Path) -> None:
        # `make run` on a fresh checkout: the folder and the file are made, then migrated.
        path = tmp_path / "data" / "tasks.db"
        async with serving(self.settings(path, Environment.DEVELOPMENT)) as http:
            assert (await http.get("/readyz")).status_code == 200
        assert path.is_file()
