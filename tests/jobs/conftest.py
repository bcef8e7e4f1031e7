"""A deployment of the service's own for each jobs test: a fresh database (SQLite and
PostgreSQL), migrated by Alembic, the API on it (requests really commit), and a job runtime
whose sweeps the test runs when it chooses, as a worker would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.db.access import Db
from app.jobs.runtime import JobRuntime, open_runtime
from app.main import create_app
from tests.conftest import TEST_PASSWORD, make_settings, run_alembic


@dataclass
class Deployment:
    settings: Settings
    http: httpx.AsyncClient
    runtime: JobRuntime
    backend: str

    async def user(self, email: str, full_name: str | None = None) -> dict[str, Any]:
        """Register an account; its id and headers."""
        created = await self.http.post(
            "/api/v1/users",
            json={"email": email, "password": TEST_PASSWORD, "full_name": full_name},
        )
        assert created.status_code == 201, created.text
        token = await self.http.post(
            "/api/v1/auth/token", data={"username": email, "password": TEST_PASSWORD}
        )
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return {"id": created.json()["id"], "headers": headers, "email": email}

    async def project_with(
        self, owner: dict[str, Any], *members: tuple[dict[str, Any], str]
    ) -> int:
        """A project of `owner` with each (user, role) a member (invited and accepted)."""
        project = await self.http.post(
            "/api/v2/projects", json={"name": "Team"}, headers=owner["headers"]
        )
        assert project.status_code == 201, project.text
        project_id = int(project.json()["id"])
        for member, role in members:
            invited = await self.http.post(
                f"/api/v2/projects/{project_id}/invitations",
                json={"email": member["email"], "role": role},
                headers=owner["headers"],
            )
            assert invited.status_code == 201, invited.text
            accepted = await self.http.post(
                f"/api/v2/invitations/{invited.json()['id']}/accept", headers=member["headers"]
            )
            assert accepted.status_code == 200, accepted.text
        return project_id

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.runtime.transaction() as db:
            return (await db.session.execute(text(sql), params)).scalar()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.runtime.transaction() as db:
            return list((await db.session.execute(text(sql), params)).all())

    def db(self) -> Db:
        return self.runtime.autocommit()


@pytest.fixture
async def deployment(fresh_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    overrides = getattr(request, "param", {})
    run_alembic(fresh_url)
    settings = make_settings(
        fresh_url,
        webhook_allowed_networks=["127.0.0.0/8"],
        webhook_retry_schedule=[1, 1, 2],
        **overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            async with open_runtime(settings) as runtime:
                yield Deployment(
                    settings, http, runtime, settings.sqlalchemy_url.get_backend_name()
                )
