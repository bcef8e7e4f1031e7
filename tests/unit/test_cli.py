"""`python -m app.cli`: create-admin and purge-trash against a fresh migrated database.

Each backend gets its own new database (SQLite file, PostgreSQL database when reachable),
migrated with Alembic. The CLI reads DATABASE_URL from the environment, as operators run it;
`main()` runs in a worker thread because it drives its own event loop (`asyncio.run`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cli import main
from app.core.config import get_settings
from app.core.roles import ProjectRole
from app.core.security import hash_rounds, verify_password
from app.db.access import Db
from app.db.base import utcnow
from app.db.session import create_engine_for, create_sessionmaker
from app.jobs.outbox import OUTBOX
from app.main import create_app
from app.models.event import Event, EventRetention
from app.models.job import OutboxCursor
from app.models.project import Project, ProjectMember
from app.models.task import Task
from app.models.user import User
from app.schemas.user import UserCreate
from app.services import user as user_service
from tests.conftest import (
    BCRYPT_TEST_ROUNDS,
    TEST_PASSWORD,
    create_database,
    drop_database,
    make_settings,
    run_alembic,
)
from tests.support import inbox_id

ADMIN_PASSWORD = "an admin passphrase for the cli"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def cli_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    url = await create_database(request.param, Path(tmp_path_factory.mktemp("cli")))
    try:
        run_alembic(url)
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def cli_env(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The environment an operator would set, and no cached settings from before."""
    monkeypatch.setenv("DATABASE_URL", cli_database)
    monkeypatch.setenv("BCRYPT_ROUNDS", str(BCRYPT_TEST_ROUNDS))
    monkeypatch.delenv("TRASH_RETENTION_DAYS", raising=False)
    get_settings.cache_clear()
    yield cli_database
    get_settings.cache_clear()


@pytest.fixture
async def db(cli_env: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the CLI's database; the tables are emptied afterwards."""
    engine = create_engine_for(make_settings(cli_env))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            for table in ("events", "event_retention", "tasks", "refresh_tokens", "users"):
                await conn.execute(text(f"DELETE FROM {table}"))
        await engine.dispose()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


async def users_named(engine: AsyncEngine, email: str) -> list[User]:
    async with create_sessionmaker(engine)() as session:
        result = await session.scalars(select(User).where(func.lower(User.email) == email.lower()))
        return list(result.all())


async def user_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(User)) or 0)


async def add_user(engine: AsyncEngine, email: str, password: str = TEST_PASSWORD) -> User:
    async with create_sessionmaker(engine)() as session, session.begin():
        return await user_service.create_user(
            Db.in_session(session),
            UserCreate(email=email, password=password),
            rounds=BCRYPT_TEST_ROUNDS,
        )


class TestCreateAdmin:
    async def test_creates_an_admin(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(
            capsys, "create-admin", "--email", "Root@Example.com", "--password", ADMIN_PASSWORD
        )
        assert result.code == 0, result.err
        assert "Created" in result.out
        assert "root@example.com" in result.out
        assert ADMIN_PASSWORD not in result.text
        [admin] = await users_named(db, "root@example.com")
        assert admin.email == "root@example.com"
        assert admin.role == "admin"
        assert admin.is_active is True
        assert verify_password(ADMIN_PASSWORD, admin.password_hash)
        assert hash_rounds(admin.password_hash) == BCRYPT_TEST_ROUNDS

    async def test_promotes_an_existing_user(
        self, db: AsyncEngine, cli_env: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        app = create_app(make_settings(cli_env))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://cli") as http:
                registered = await http.post(
                    "/api/v1/users", json={"email": "Ops@Example.com", "password": TEST_PASSWORD}
                )
                assert registered.status_code == 201, registered.text
                old = await self._login(http, "ops@example.com", TEST_PASSWORD)
                me = await http.get("/api/v1/users/me", headers=old)
                assert me.json()["role"] == "user"

                result = await run_cli(
                    capsys,
                    "create-admin",
                    "--email",
                    "OPS@EXAMPLE.COM",
                    "--password",
                    ADMIN_PASSWORD,
                )
                assert result.code == 0, result.err
                assert "Promoted" in result.out
                assert ADMIN_PASSWORD not in result.text

                # Tokens from before the promotion stop working; the new password is in force.
                stale = await http.get("/api/v1/users/me", headers=old)
                assert stale.status_code == 401
                refused = await http.post(
                    "/api/v1/auth/token",
                    data={"username": "ops@example.com", "password": TEST_PASSWORD},
                )
                assert refused.status_code == 401
                new = await self._login(http, "ops@example.com", ADMIN_PASSWORD)
                me = await http.get("/api/v1/users/me", headers=new)
                assert me.json()["role"] == "admin"
                assert (await http.get("/api/v1/users", headers=new)).status_code == 200
        assert len(await users_named(db, "ops@example.com")) == 1

    async def test_promotes_and_reactivates_a_deactivated_user(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        user = await add_user(db, "sleeper@example.com")
        async with db.begin() as conn:
            await conn.execute(
                text("UPDATE users SET is_active = :no WHERE id = :id"),
                {"no": False, "id": user.id},
            )
        result = await run_cli(
            capsys, "create-admin", "--email", user.email, "--password", ADMIN_PASSWORD
        )
        assert result.code == 0, result.err
        assert "Promoted" in result.out
        [after] = await users_named(db, user.email)
        assert (after.role, after.is_active) == ("admin", True)
        assert after.token_version > user.token_version

    async def test_running_twice_keeps_one_account(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ("create-admin", "--email", "twice@example.com", "--password", ADMIN_PASSWORD)
        first = await run_cli(capsys, *argv)
        second = await run_cli(capsys, *argv)
        assert (first.code, second.code) == (0, 0)
        assert "Created" in first.out
        assert "Promoted" in second.out
        assert len(await users_named(db, "twice@example.com")) == 1

    @pytest.mark.parametrize(
        "password",
        [
            "short",
            "fourteen-chars",
            "password1234567!",
            "QWERTYUIOP12345",
            "abcdefghijklmnop",
            "x" * 129,
        ],
        ids=["short", "14-chars", "padded-common", "listed", "sequence", "129-chars"],
    )
    async def test_refuses_a_bad_password(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str], password: str
    ) -> None:
        result = await run_cli(
            capsys, "create-admin", "--email", "weak@example.com", "--password", password
        )
        assert result.code == 2
        assert "password" in result.err.lower()
        assert password not in result.text
        assert "Traceback" not in result.err
        assert result.out == ""
        assert await user_count(db) == 0

    async def test_refusal_leaves_an_existing_user_alone(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        user = await add_user(db, "keep@example.com")
        result = await run_cli(
            capsys, "create-admin", "--email", user.email, "--password", "password1234567!"
        )
        assert result.code == 2
        assert "password1234567!" not in result.text
        [after] = await users_named(db, user.email)
        assert after.role == "user"
        assert after.password_hash == user.password_hash
        assert after.token_version == user.token_version

    @pytest.mark.parametrize("email", ["not an email", "a@b", "x" * 300 + "@example.com", ""])
    async def test_refuses_a_bad_email(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str], email: str
    ) -> None:
        result = await run_cli(
            capsys, "create-admin", "--email", email, "--password", ADMIN_PASSWORD
        )
        assert result.code == 2
        assert "email" in result.err.lower()
        assert ADMIN_PASSWORD not in result.text
        assert await user_count(db) == 0

    @staticmethod
    async def _login(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
        response = await http.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


class TestPurgeTrash:
    @pytest.fixture
    async def tasks(self, db: AsyncEngine) -> dict[str, int]:
        """Tasks named by how long they have been in the trash."""
        owner = await add_user(db, "owner@example.com")
        now = utcnow()
        trashed = {
            "live": None,
            "trashed-1d": now - timedelta(days=1),
            "trashed-29d": now - timedelta(days=29),
            "trashed-31d": now - timedelta(days=31),
            "trashed-400d": now - timedelta(days=400),
        }
        ids: dict[str, int] = {}
        async with create_sessionmaker(db)() as session, session.begin():
            for name, deleted_at in trashed.items():
                task = Task(
                    project_id=await inbox_id(session, owner),
                    title=name,
                    created_at=now - timedelta(days=500),
                    updated_at=now - timedelta(days=500),
                    deleted_at=deleted_at,
                )
                session.add(task)
                await session.flush()
                ids[name] = task.id
        return ids

    async def remaining(self, db: AsyncEngine) -> set[str]:
        async with db.connect() as conn:
            return set((await conn.scalars(select(Task.title))).all())

    @pytest.mark.usefixtures("tasks")
    async def test_deletes_only_tasks_trashed_before_the_cutoff(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "purge-trash", "--older-than-days", "30")
        assert result.code == 0, result.err
        assert "Purged 2 task(s)" in result.out
        assert await self.remaining(db) == {"live", "trashed-1d", "trashed-29d"}

    @pytest.mark.usefixtures("tasks")
    async def test_default_retention_is_the_setting(
        self,
        db: AsyncEngine,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("TRASH_RETENTION_DAYS", "2")
        get_settings.cache_clear()
        result = await run_cli(capsys, "purge-trash")
        assert result.code == 0, result.err
        assert "Purged 3 task(s)" in result.out
        assert await self.remaining(db) == {"live", "trashed-1d"}

    @pytest.mark.usefixtures("tasks")
    async def test_a_live_task_is_never_purged(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "purge-trash", "--older-than-days", "1")
        assert result.code == 0, result.err
        assert await self.remaining(db) == {"live"}
        again = await run_cli(capsys, "purge-trash", "--older-than-days", "1")
        assert "Purged 0 task(s)" in again.out

    async def test_each_purge_leaves_a_purged_event_by_the_system(
        self, db: AsyncEngine, tasks: dict[str, int], capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "purge-trash", "--older-than-days", "30")
        assert result.code == 0, result.err
        async with db.connect() as conn:
            found = (
                await conn.execute(
                    select(Event.entity_id, Event.action, Event.actor_id, Event.entity).where(
                        Event.entity == "task"
                    )
                )
            ).all()
        assert sorted(found) == sorted(
            (tasks[name], "purged", None, "task") for name in ("trashed-31d", "trashed-400d")
        )

    async def test_projects_trashed_before_the_cutoff_go_too(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # As the cleanup job does; the command purged only tasks (a black-box run).
        owner = await add_user(db, "project-owner@example.com")
        now = utcnow()
        async with create_sessionmaker(db)() as session, session.begin():
            for name, age in (("old", 40), ("recent", 5)):
                project = Project(
                    name=name,
                    created_at=now - timedelta(days=50),
                    updated_at=now - timedelta(days=age),
                    deleted_at=now - timedelta(days=age),
                    version=1,
                )
                session.add(project)
                await session.flush()
                session.add(
                    ProjectMember(
                        project_id=project.id,
                        user_id=owner.id,
                        role=ProjectRole.OWNER.value,
                        added_at=now - timedelta(days=50),
                    )
                )
        result = await run_cli(capsys, "purge-trash", "--older-than-days", "30")
        assert result.code == 0, result.err
        assert "Purged 0 task(s) and 1 project(s)" in result.out
        async with db.connect() as conn:
            names = set((await conn.scalars(select(Project.name))).all())
        assert "old" not in names
        assert "recent" in names

    async def test_zero_days_purges_everything_in_the_trash(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str], tasks: dict[str, int]
    ) -> None:
        result = await run_cli(capsys, "purge-trash", "--older-than-days", "0")
        assert result.code == 0, result.err
        assert f"Purged {len(tasks) - 1} task(s)" in result.out
        assert await self.remaining(db) == {"live"}

    async def test_refuses_a_negative_retention(
        self, db: AsyncEngine, tasks: dict[str, int], capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "purge-trash", "--older-than-days", "-1")
        assert result.code == 2, result.out
        assert "at least 0" in result.err
        assert await self.remaining(db) == set(tasks)


class TestExpireEvents:
    async def add_events(
        self, db: AsyncEngine, ages_in_days: list[int], *, fanned_out: bool = True
    ) -> None:
        """Events of these ages; `fanned_out`: the fan-out has passed them (as a worker
        does within a second), so that retention may remove them."""
        now = utcnow()
        async with create_sessionmaker(db)() as session, session.begin():
            for age in ages_in_days:
                session.add(
                    Event(
                        at=now - timedelta(days=age),
                        project_id=1,
                        entity="project",
                        entity_id=1,
                        action="updated",
                        changes={},
                    )
                )
        if fanned_out:
            async with create_sessionmaker(db)() as session, session.begin():
                await session.merge(OutboxCursor(name=OUTBOX, xid=2**62, id=2**62))

    async def test_the_fan_out_is_caught_up_first(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # No worker has passed them (on PostgreSQL without a worker, none ever would): the
        # command makes what they call for first, as a worker would, then removes them.
        # Before, it removed nothing, and a black-box run's old cursor stayed a 200.
        await self.add_events(db, [400, 0], fanned_out=False)
        result = await run_cli(capsys, "expire-events", "--older-than-days", "0")
        assert result.code == 0, result.err
        assert "Removed 2 event(s)" in result.out
        async with db.connect() as conn:
            assert (await conn.scalars(select(Event.id))).all() == []

    async def test_removes_events_older_than_the_retention_and_marks_how_far(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await self.add_events(db, [400, 100, 91, 10, 0])
        result = await run_cli(capsys, "expire-events")
        assert result.code == 0, result.err
        assert "Removed 3 event(s) older than 90 day(s)" in result.out
        async with db.connect() as conn:
            kept = (await conn.scalars(select(Event.id).order_by(Event.id))).all()
            mark = (await conn.execute(select(EventRetention.removed_through_id))).scalar_one()
        assert len(kept) == 2
        assert mark < min(kept)
        again = await run_cli(capsys, "expire-events", "--older-than-days", "5")
        assert "Removed 1 event(s)" in again.out

    async def test_nothing_kept_lies_before_what_was_removed(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # Logged in this order, the first younger than the second (a transaction that began
        # writing first and committed its older event later): removing the old one removes
        # what came before it in the log too, so no kept event lies behind the mark, where a
        # feed cursor to it would be taken for one from before the removal.
        await self.add_events(db, [10, 100, 0])
        result = await run_cli(capsys, "expire-events", "--older-than-days", "90")
        assert "Removed 2 event(s)" in result.out
        async with db.connect() as conn:
            kept = (await conn.scalars(select(Event.id))).all()
            mark = (await conn.execute(select(EventRetention.removed_through_id))).scalar_one()
        assert len(kept) == 1
        assert mark < kept[0]

    async def test_zero_days_removes_every_event(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await self.add_events(db, [400, 10, 0])
        result = await run_cli(capsys, "expire-events", "--older-than-days", "0")
        assert result.code == 0, result.err
        assert "Removed 3 event(s) older than 0 day(s)" in result.out
        async with db.connect() as conn:
            assert (await conn.scalars(select(Event.id))).all() == []

    async def test_refuses_a_negative_retention(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await self.add_events(db, [400])
        result = await run_cli(capsys, "expire-events", "--older-than-days", "-1")
        assert result.code == 2
        assert "at least 0" in result.err
        async with db.connect() as conn:
            assert len((await conn.scalars(select(Event.id))).all()) == 1


class TestConfiguration:
    @pytest.mark.parametrize(
        "command", [["purge-trash"], ["seed", "--users", "1", "--tasks-per-user", "1"]]
    )
    async def test_production_on_a_missing_sqlite_file_is_one_line_and_creates_nothing(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        command: list[str],
    ) -> None:
        path = tmp_path / "mistyped" / "tasks.db"
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
        monkeypatch.setenv("ENVIRONMENT", "production")
        get_settings.cache_clear()
        try:
            result = await run_cli(capsys, *command)
        finally:
            get_settings.cache_clear()
        assert result.code == 2
        assert result.err.startswith("error: ")
        assert result.err.count("\n") == 1
        assert "does not exist" in result.err
        assert "Traceback" not in result.text
        assert not path.parent.exists()
