"""The change feed's horizon when the service is not a superuser (PostgreSQL).

The feed holds back what is newer than the oldest transaction still running in the database,
which it reads from `pg_stat_activity.backend_xid` (docs/decisions/0030). In production the
API and the workers connect as ordinary roles, perhaps not the same one; every other test
connects as the superuser. Here the API runs as one ordinary role and a "worker" writes an
event as another: the write that commits after a read must still come on the next read, not
be skipped because the reader could not see the writer's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.main import create_app
from app.services import history
from tests.api.v2.test_change_feed import new_project, new_task, read, walk
from tests.api.v2.test_project_races import register
from tests.conftest import _pg_admin, create_database, drop_database, make_settings, run_alembic

# What the roles may do in the test's database: what the service itself needs, no more.
_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


async def _as_admin_in(url: str, statements: list[str]) -> None:
    import asyncpg

    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
async def ordinary_roles(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A migrated database of the test's own, and the URLs of two ordinary roles (neither
    superuser nor pg_read_all_stats) that may use it: the API's and a worker's."""
    url = await create_database("postgresql", tmp_path)
    suffix = uuid.uuid4().hex[:8]
    roles = [f"tasks_test_api_{suffix}", f"tasks_test_worker_{suffix}"]
    try:
        run_alembic(url)
        for role in roles:
            await _pg_admin(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
        await _as_admin_in(
            url, [grant.format(role=f'"{role}"') for role in roles for grant in _GRANTS]
        )
        api_url, worker_url = (
            make_url(url).set(username=role).render_as_string(False) for role in roles
        )
        yield api_url, worker_url
    finally:
        await drop_database(url)
        for role in roles:
            await _pg_admin(f'DROP ROLE IF EXISTS "{role}"')


async def test_a_late_commit_by_another_role_is_not_skipped(
    ordinary_roles: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api_url, worker_url = ordinary_roles
    # The read meanwhile waits for the late transaction this long at most (the test commits
    # it only after the read).
    monkeypatch.setattr(history, "CATCH_UP_SECONDS", 0.1)
    app = create_app(make_settings(api_url))
    worker = create_async_engine(worker_url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            owner = await register(client, "owner")
            project_id = await new_project(client, owner)
            _, cursor = await walk(client, owner)
            async with worker.connect() as late:
                transaction = await late.begin()
                event: dict[str, Any] = {"actor": owner.id, "project": project_id}
                await late.execute(
                    text(
                        "INSERT INTO events (at, actor_id, project_id, entity, entity_id,"
                        " action, changes) VALUES (now(), :actor, :project, 'project',"
                        " :project, 'updated', '{}'::jsonb)"
                    ),
                    event,
                )
                early = await new_task(client, owner, project_id, "Committed first")
                meanwhile = await read(client, owner, cursor=cursor)
                # Held back: the worker's transaction, which the API's role cannot own, might
                # still commit below the task's event.
                assert meanwhile["items"] == []
                await transaction.commit()
            items, _ = await walk(client, owner, meanwhile["next_cursor"])
    finally:
        await worker.dispose()
    assert [(item["entity"], item["action"]) for item in items] == [
        ("project", "updated"),
        ("task", "created"),
    ]
    assert items[1]["entity_id"] == early["id"]
