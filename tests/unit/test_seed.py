"""`python -m app.cli seed` and app/services/seed.py against a fresh migrated database.

Each backend gets its own new database (as in test_cli.py): seeding commits for real, so the
tables are emptied after every test. The CLI reads DATABASE_URL from the environment and runs
in a worker thread, since it drives its own event loop.
"""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import get_settings
from app.core.roles import ProjectRole
from app.core.security import hash_rounds, verify_password
from app.db.session import create_engine_for, create_sessionmaker
from app.db.statements.events import AUDITED
from app.main import create_app
from app.models.event import Event
from app.models.label import Label, TaskLabel
from app.models.project import Project, ProjectMember
from app.models.task import Task, TaskAssignee
from app.models.user import User
from app.services.seed import (
    DEFAULT_PASSWORD,
    SeededTask,
    SeedOptions,
    build_text_pools,
    datetime_stamp,
    generate_links,
    generate_task_rows,
    label_names,
    newest_events,
    plan_projects,
    seed_database,
    sqlite_stamp,
    task_history,
)
from tests.conftest import (
    BCRYPT_TEST_ROUNDS,
    create_database,
    drop_database,
    make_settings,
    run_alembic,
)
from tests.unit.test_cli import run_cli

# Characters a tqdm bar is drawn with (carriage return, percent and bar, ASCII or Unicode).
BAR_MARKS = ("\r", "%|", "|#", "█", "seeding")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def seed_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    url = await create_database(request.param, Path(tmp_path_factory.mktemp("seed")))
    try:
        run_alembic(url)
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def seed_env(seed_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The environment an operator would set, and no cached settings from before."""
    monkeypatch.setenv("DATABASE_URL", seed_db_url)
    monkeypatch.setenv("BCRYPT_ROUNDS", str(BCRYPT_TEST_ROUNDS))
    get_settings.cache_clear()
    yield seed_db_url
    get_settings.cache_clear()


@pytest.fixture
async def db(seed_env: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the seeded database; the tables are emptied afterwards."""
    engine = create_engine_for(make_settings(seed_env))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await empty_tables(conn)
        await engine.dispose()


# Every table the seed (or the API after it) writes, children before parents.
TABLES = (
    "events",
    "task_labels",
    "task_assignees",
    "comments",
    "labels",
    "tasks",
    "invitations",
    "project_members",
    "projects",
    "refresh_tokens",
    "users",
)


async def empty_tables(conn: AsyncConnection) -> None:
    for table in TABLES:
        await conn.execute(text(f"DELETE FROM {table}"))


async def all_users(engine: AsyncEngine) -> list[User]:
    async with create_sessionmaker(engine)() as session:
        return list((await session.scalars(select(User).order_by(User.id))).all())


async def all_tasks(engine: AsyncEngine) -> list[Task]:
    async with create_sessionmaker(engine)() as session:
        return list((await session.scalars(select(Task).order_by(Task.id))).all())


async def tasks_per_owner(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(User.email, func.count(Task.id))
            .outerjoin(Project, Project.inbox_user_id == User.id)
            .outerjoin(Task, Task.project_id == Project.id)
            .group_by(User.email)
        )
        return dict(result.all())


async def inbox_ids(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as conn:
        result = await conn.scalars(select(Project.id).where(Project.inbox_user_id.is_not(None)))
        return set(result.all())


async def inbox_memberships(engine: AsyncEngine) -> dict[str, list[tuple[object, ...]]]:
    """Per account: (project name, version, trashed, role) of each project it belongs to."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(
                User.email,
                Project.name,
                Project.version,
                Project.deleted_at.is_not(None),
                ProjectMember.role,
                Project.inbox_user_id == User.id,
            )
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .join(Project, Project.id == ProjectMember.project_id)
            .order_by(User.email)
        )
        found: dict[str, list[tuple[object, ...]]] = {}
        for email, *row in result.all():
            found.setdefault(email, []).append(tuple(row))
        return found


# What app.services.user.create_user makes: an Inbox, version 1, the account its owner.
AN_INBOX = [("Inbox", 1, False, ProjectRole.OWNER.value, True)]


# Two users, one shared project: the arguments the refusals below add to.
ONE_PROJECT = ("--users", "2", "--tasks-per-user", "1", "--projects", "1")


class TestSeed:
    async def test_users_and_a_realistic_spread_of_tasks(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "seed", "--users", "3", "--tasks-per-user", "300")
        assert result.code == 0, result.err
        assert "3 created, 0 reused" in result.out
        assert "inserted 900 task(s)" in result.out
        assert "rows/s" in result.out
        assert len(result.out.strip().splitlines()) == 1
        assert DEFAULT_PASSWORD not in result.out + result.err

        users = await all_users(db)
        assert [u.email for u in users] == [f"seed-user-{i}@example.com" for i in (1, 2, 3)]
        assert {(u.role, u.is_active, u.token_version) for u in users} == {("user", True, 1)}
        assert await tasks_per_owner(db) == {u.email: 300 for u in users}
        assert await inbox_memberships(db) == {u.email: AN_INBOX for u in users}
        assert {t.project_id for t in await all_tasks(db)} == await inbox_ids(db)

        tasks = await all_tasks(db)
        now = datetime.now(UTC)
        assert {t.status for t in tasks} == {"todo", "in_progress", "done"}
        assert {t.priority for t in tasks} == {1, 2, 3, 4}
        dues = [t.due_at for t in tasks]
        assert None in dues
        assert any(d is not None and d < now for d in dues)  # overdue ones
        assert any(d is not None and d > now for d in dues)
        assert any(t.description is None for t in tasks)
        assert any(t.description for t in tasks)
        assert len({t.title for t in tasks}) > 300
        trashed = sum(t.deleted_at is not None for t in tasks)
        assert 0 < trashed < len(tasks) * 0.1
        for task in tasks:
            assert (task.completed_at is not None) == (task.status == "done")
            assert task.created_at <= task.updated_at <= now
            assert task.created_at > now - timedelta(days=735)
            assert task.version >= 1
            assert task.created_at.tzinfo is not None
            assert task.created_at.microsecond % 1000 == 0
            assert 0 < len(task.title) <= 200
            if task.deleted_at is not None:
                assert task.deleted_at == task.updated_at
        assert max(t.created_at for t in tasks) - min(t.created_at for t in tasks) > timedelta(
            days=365
        )

    async def test_rerun_reuses_users_and_tops_each_up_to_m_tasks(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # An account that exists already, in another letter case, is reused as it is.
        now = datetime.now(UTC)
        async with db.begin() as conn:
            await conn.execute(
                insert(User).values(
                    email="SEED-USER-1@Example.COM",
                    password_hash="x",
                    role="user",
                    is_active=True,
                    token_version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        first = await run_cli(capsys, "seed", "--users", "2", "--tasks-per-user", "40")
        assert first.code == 0, first.err
        assert "1 created, 1 reused" in first.out
        assert "inserted 80 task(s)" in first.out
        users = await all_users(db)
        assert len(users) == 2
        assert users[0].password_hash == "x"  # an existing account's password is kept

        again = await run_cli(capsys, "seed", "--users", "2", "--tasks-per-user", "40")
        assert again.code == 0, again.err
        assert "0 created, 2 reused" in again.out
        assert "inserted 0 task(s)" in again.out
        assert [u.id for u in await all_users(db)] == [u.id for u in users]
        assert sorted((await tasks_per_owner(db)).values()) == [40, 40]

        # Trashed tasks count towards M; a larger M adds only the difference.
        async with db.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE tasks SET deleted_at = updated_at WHERE project_id = "
                    "(SELECT id FROM projects WHERE inbox_user_id = :id)"
                ),
                {"id": users[1].id},
            )
        more = await run_cli(capsys, "seed", "--users", "3", "--tasks-per-user", "50")
        assert more.code == 0, more.err
        assert "1 created, 2 reused" in more.out
        assert "inserted 70 task(s)" in more.out
        assert sorted((await tasks_per_owner(db)).values()) == [50, 50, 50]
        titles = [t.title for t in await all_tasks(db)]
        assert len(titles) == 150
        # The account inserted by hand got its Inbox too, once, like the seeded ones.
        assert await inbox_memberships(db) == {u.email: AN_INBOX for u in await all_users(db)}

    async def test_new_users_share_one_password_that_logs_in(
        self, db: AsyncEngine, seed_env: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "seed", "--users", "3", "--tasks-per-user", "25")
        assert result.code == 0, result.err
        users = await all_users(db)
        assert len({u.password_hash for u in users}) == 1  # hashed once
        assert verify_password(DEFAULT_PASSWORD, users[0].password_hash)
        assert hash_rounds(users[0].password_hash) == BCRYPT_TEST_ROUNDS

        app = create_app(make_settings(seed_env))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://seed") as http:
                login = await http.post(
                    "/api/v1/auth/token",
                    data={"username": "seed-user-2@example.com", "password": DEFAULT_PASSWORD},
                )
                assert login.status_code == 200, login.text
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                for sort in ("-due_at", "updated_at", "-priority"):
                    listed = await http.get(
                        "/api/v1/tasks", params={"sort": sort, "limit": 100}, headers=headers
                    )
                    assert listed.status_code == 200, listed.text
                    items = listed.json()["items"]
                    assert 0 < len(items) <= 25
                    assert all(item["deleted_at"] is None for item in items)

    async def test_a_chosen_password_and_prefix(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        password = "another seeded passphrase"
        result = await run_cli(
            capsys,
            "seed",
            "--users",
            "1",
            "--tasks-per-user",
            "5",
            "--email-prefix",
            "seed-big",
            "--password",
            password,
        )
        assert result.code == 0, result.err
        assert password not in result.out + result.err
        [user] = await all_users(db)
        assert user.email == "seed-big-1@example.com"
        assert verify_password(password, user.password_hash)

    @pytest.mark.parametrize(
        "argv",
        [
            ("--users", "0", "--tasks-per-user", "5"),
            ("--users", "1", "--tasks-per-user", "-1"),
            ("--users", "1", "--tasks-per-user", "5", "--password", "password1234567!"),
            ("--users", "1", "--tasks-per-user", "5", "--email-prefix", "not an address@"),
            ("--users", "2", "--tasks-per-user", "1", "--projects", "-1"),
            (
                "--users",
                "2",
                "--tasks-per-user",
                "1",
                "--projects",
                "1",
                "--members-per-project",
                "0",
            ),
            (
                "--users",
                "2",
                "--tasks-per-user",
                "1",
                "--projects",
                "1",
                "--members-per-project",
                "3",
            ),
            (
                "--users",
                "2",
                "--tasks-per-user",
                "1",
                "--projects",
                "1",
                "--tasks-per-project",
                "-5",
            ),
            (
                "--users",
                "2",
                "--tasks-per-user",
                "1",
                "--projects",
                "1",
                "--labels-per-project",
                "-1",
            ),
        ],
        ids=[
            "no-users",
            "negative-tasks",
            "weak-password",
            "bad-prefix",
            "negative-projects",
            "no-members",
            "more-members-than-users",
            "negative-project-tasks",
            "negative-labels",
        ],
    )
    async def test_refuses_bad_arguments(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
    ) -> None:
        result = await run_cli(capsys, "seed", *argv)
        assert result.code == 2
        assert result.err.startswith("error:")
        assert "password1234567!" not in result.err
        assert "Traceback" not in result.err
        assert await all_users(db) == []

    async def test_the_id_sequence_survives_the_bulk_insert(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "seed", "--users", "2", "--tasks-per-user", "30")
        assert result.code == 0, result.err
        seeded = await all_tasks(db)
        inbox = seeded[0].project_id
        now = datetime.now(UTC)
        async with create_sessionmaker(db)() as session, session.begin():
            task = Task(project_id=inbox, title="after seeding", created_at=now, updated_at=now)
            session.add(task)
            await session.flush()
            new_id = task.id
        assert new_id > max(t.id for t in seeded)
        assert len({t.id for t in seeded} | {new_id}) == 61

    async def test_statistics_are_fresh_on_postgresql(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        if db.dialect.name != "postgresql":
            pytest.skip("ANALYZE runs on PostgreSQL only")
        result = await run_cli(capsys, "seed", "--users", "1", "--tasks-per-user", "10")
        assert result.code == 0, result.err
        async with db.connect() as conn:
            analyzed = await conn.scalar(
                text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'tasks'")
            )
        assert analyzed is not None

    async def test_no_progress_bar_when_stderr_is_not_a_terminal(
        self, db: AsyncEngine, capfd: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capfd, "seed", "--users", "2", "--tasks-per-user", "20")
        assert result.code == 0, result.err
        assert result.err == ""
        assert result.out.startswith("Seeded 2 user(s)")
        assert not any(mark in result.out for mark in BAR_MARKS)
        assert len(await all_tasks(db)) == 40

    async def test_a_progress_bar_on_a_terminal(self, db: AsyncEngine, seed_env: str) -> None:
        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        terminal = Terminal()
        result = await seed_database(
            make_settings(seed_env), SeedOptions(users=1, tasks_per_user=20), progress_file=terminal
        )
        assert result.tasks_inserted == 20
        assert "20/20" in terminal.getvalue()
        assert "\r" in terminal.getvalue()
        assert len(await all_tasks(db)) == 20

    async def test_same_seed_same_rows(self, db: AsyncEngine, seed_env: str) -> None:
        settings = make_settings(seed_env)
        now = datetime(2026, 6, 1, 12, tzinfo=UTC)

        async def rows() -> list[tuple[str, str | None, str, int, datetime | None, datetime]]:
            await seed_database(settings, SeedOptions(users=2, tasks_per_user=15, seed=3), now=now)
            snapshot = [
                (t.title, t.description, t.status, t.priority, t.due_at, t.created_at)
                for t in await all_tasks(db)
            ]
            async with db.begin() as conn:
                await empty_tables(conn)
            return snapshot

        first, second = await rows(), await rows()
        assert first == second
        assert len(first) == 30
        assert max(t[5] for t in first) <= datetime(2026, 6, 1, tzinfo=UTC)  # day-anchored


SHARED = (
    "--users", "6", "--tasks-per-user", "2", "--projects", "3", "--members-per-project", "4",
    "--tasks-per-project", "60", "--labels-per-project", "3",
)  # fmt: skip


@dataclass
class SharedProject:
    id: int
    version: int
    roles: dict[str, int]  # by member email
    member_ids: set[int]
    labels: dict[int, tuple[str, str]]  # id: (name, colour)
    tasks: set[int]
    assignees: list[tuple[int, int]]  # (task id, user id)
    task_labels: list[tuple[int, int]]  # (task id, label id)


async def shared_projects(engine: AsyncEngine) -> dict[str, SharedProject]:
    """Each non-Inbox project by name: its members, labels, tasks and their links."""
    async with engine.connect() as conn:
        projects = await conn.execute(
            select(Project.id, Project.name, Project.version).where(Project.inbox_user_id.is_(None))
        )
        found: dict[str, SharedProject] = {}
        for project_id, name, version in projects.all():
            members = await conn.execute(
                select(User.email, User.id, ProjectMember.role)
                .join(ProjectMember, ProjectMember.user_id == User.id)
                .where(ProjectMember.project_id == project_id)
            )
            member_rows = members.all()
            labels = await conn.execute(
                select(Label.id, Label.name, Label.color).where(Label.project_id == project_id)
            )
            tasks = await conn.scalars(select(Task.id).where(Task.project_id == project_id))
            assignees = await conn.execute(
                select(TaskAssignee.task_id, TaskAssignee.user_id)
                .join(Task, Task.id == TaskAssignee.task_id)
                .where(Task.project_id == project_id)
            )
            task_labels = await conn.execute(
                select(TaskLabel.task_id, TaskLabel.label_id)
                .join(Task, Task.id == TaskLabel.task_id)
                .where(Task.project_id == project_id)
            )
            found[name] = SharedProject(
                id=project_id,
                version=version,
                roles={email: role for email, _, role in member_rows},
                member_ids={user_id for _, user_id, _ in member_rows},
                labels={label_id: (n, c) for label_id, n, c in labels.all()},
                tasks=set(tasks.all()),
                assignees=list(assignees.all()),
                task_labels=list(task_labels.all()),
            )
        return found


class TestSharedProjects:
    async def test_projects_members_labels_assignees(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "seed", *SHARED)
        assert result.code == 0, result.err
        assert "6 created, 0 reused" in result.out
        assert "inserted 192 task(s)" in result.out  # 6 Inboxes x 2 + 3 projects x 60
        assert "3 shared project(s) (3 created, 0 reused)" in result.out
        assert len(result.out.strip().splitlines()) == 1

        projects = await shared_projects(db)
        assert sorted(projects) == [f"seed-user project {p}" for p in (1, 2, 3)]
        roles: set[int] = set()
        for project in projects.values():
            assert len(project.roles) == 4
            assert "seed-user-1@example.com" in project.roles  # the big member, in every one
            assert ProjectRole.OWNER.value in project.roles.values()
            roles |= set(project.roles.values())
            assert project.version == 1
            assert len(project.labels) == 3
            assert len({name.lower() for name, _ in project.labels.values()}) == 3
            assert all(re.fullmatch("#[0-9a-f]{6}", c) for _, c in project.labels.values())
            assert len(project.tasks) == 60
            # Links only within the project: its members as assignees, its own labels.
            assert {user_id for _, user_id in project.assignees} <= project.member_ids
            assert {label_id for _, label_id in project.task_labels} <= set(project.labels)
            per_task = Counter(task_id for task_id, _ in project.assignees)
            assert 0 < len(per_task) < len(project.tasks)  # some tasks have nobody assigned
            assert set(per_task.values()) == {1, 2}
            labelled = Counter(task_id for task_id, _ in project.task_labels)
            assert 0 < len(labelled) < len(project.tasks)
            assert max(labelled.values()) <= 3
        assert len(roles) >= 4  # mixed roles
        # The big member's role differs from project to project; they own the first.
        big = [p.roles["seed-user-1@example.com"] for p in projects.values()]
        assert projects["seed-user project 1"].roles["seed-user-1@example.com"] == 5
        assert len(set(big)) > 1
        # Every account still has its Inbox with its own tasks (2 each), and only those.
        assert sorted((await tasks_per_owner(db)).values()) == [2] * 6
        memberships = await inbox_memberships(db)
        assert all(AN_INBOX[0] in rows for rows in memberships.values())
        assert sum(len(rows) for rows in memberships.values()) == 6 + 3 * 4

    async def test_a_rerun_adds_nothing_and_keeps_roles(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        first = await run_cli(capsys, "seed", *SHARED)
        assert first.code == 0, first.err
        before = await shared_projects(db)
        # A role changed since (through the API) is kept by the rerun.
        demoted = before["seed-user project 1"].id
        async with db.begin() as conn:
            await conn.execute(
                update(ProjectMember)
                .where(ProjectMember.project_id == demoted, ProjectMember.role != 5)
                .values(role=ProjectRole.VIEWER.value)
            )
        changed = await shared_projects(db)

        again = await run_cli(capsys, "seed", *SHARED)
        assert again.code == 0, again.err
        assert "inserted 0 task(s)" in again.out
        assert "(0 created, 3 reused) with 0 new membership(s), 0 label(s), 0 assignee(s)" in (
            again.out
        )
        assert await shared_projects(db) == changed

        # A larger T adds only the difference, with its own assignees and labels.
        more = await run_cli(
            capsys, "seed", *SHARED[:-4], "--tasks-per-project", "70", "--labels-per-project", "3"
        )
        assert more.code == 0, more.err
        assert "inserted 30 task(s)" in more.out
        after = await shared_projects(db)
        for name, project in after.items():
            assert len(project.tasks) == 70
            assert project.tasks > before[name].tasks
            assert project.labels == before[name].labels

    async def test_a_new_task_after_seeding_gets_a_new_id(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "seed", *SHARED)
        assert result.code == 0, result.err
        seeded = await all_tasks(db)
        assert len({t.id for t in seeded}) == 192
        now = datetime.now(UTC)
        async with create_sessionmaker(db)() as session, session.begin():
            task = Task(
                project_id=seeded[-1].project_id, title="after", created_at=now, updated_at=now
            )
            session.add(task)
            await session.flush()
            assert task.id > max(t.id for t in seeded)

    async def test_one_member_owns_every_project(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ("--users", "1", "--tasks-per-user", "0", "--projects", "2", "--tasks-per-project")
        result = await run_cli(capsys, "seed", *argv, "5")
        assert result.code == 0, result.err
        projects = await shared_projects(db)
        assert [p.roles for p in projects.values()] == [
            {"seed-user-1@example.com": ProjectRole.OWNER.value}
        ] * 2
        assert [len(p.tasks) for p in projects.values()] == [5, 5]


async def all_events(engine: AsyncEngine) -> list[Event]:
    async with create_sessionmaker(engine)() as session:
        return list((await session.scalars(select(Event).order_by(Event.id))).all())


def when(value: object) -> datetime | None:
    """A timestamp of `changes` (ISO text) as a datetime."""
    assert value is None or isinstance(value, str)
    return None if value is None else datetime.fromisoformat(value)


class TestSeededEvents:
    async def test_each_project_gets_the_newest_events_of_its_tasks(
        self, db: AsyncEngine, seed_env: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "seed", *SHARED, "--events-per-project", "80")
        assert result.code == 0, result.err
        assert ", 240 event(s) in " in result.out
        projects = {p.id: p for p in (await shared_projects(db)).values()}
        tasks = {t.id: t for t in await all_tasks(db)}
        events = await all_events(db)
        assert Counter(e.project_id for e in events) == dict.fromkeys(projects, 80)
        editors: dict[int, set[int]] = {}
        async with db.connect() as conn:
            members = await conn.execute(
                select(ProjectMember.project_id, ProjectMember.user_id).where(
                    ProjectMember.role >= ProjectRole.EDITOR
                )
            )
            for project_id, user_id in members.all():
                editors.setdefault(project_id, set()).add(user_id)
        # The log's order is time's; on PostgreSQL one transaction wrote it all.
        assert [e.at for e in events] == sorted(e.at for e in events)
        assert len({e.xid for e in events}) == 1
        by_task: dict[int, list[Event]] = {}
        for event in events:
            task = tasks[event.task_id or 0]
            assert task.project_id == event.project_id
            assert (event.entity, event.entity_id, event.from_project_id) == ("task", task.id, None)
            assert event.actor_id in editors[event.project_id]
            assert set(event.changes) <= set(AUDITED["task"])
            assert all(len(pair) == 2 for pair in event.changes.values())
            assert task.created_at <= event.at <= task.updated_at
            by_task.setdefault(task.id, []).append(event)
        assert {e.action for e in events} >= {"created", "updated"}
        for task_id, history in by_task.items():
            task = tasks[task_id]
            assert len(history) <= task.version  # one event per version at most
            last = history[-1]
            assert last.at == task.updated_at  # the newest event made the task what it is
            for event in history:
                if event.action == "created":
                    assert event is history[0]
                    assert event.changes["title"] == [None, task.title]
                    assert event.changes["status"][0] is None
                elif event.action == "deleted":
                    assert event is last
                    assert when(event.changes["deleted_at"][1]) == task.deleted_at
            statuses = [e.changes["status"][1] for e in history if "status" in e.changes]
            if statuses:
                assert statuses[-1] == task.status
            priorities = [e.changes["priority"][1] for e in history if "priority" in e.changes]
            if priorities:
                assert priorities[-1] == task.priority
            if task.status == "done" and any("status" in e.changes for e in history):
                completed = next(e for e in reversed(history) if "completed_at" in e.changes)
                assert when(completed.changes["completed_at"][1]) == task.completed_at
        assert any(len(history) > 1 for history in by_task.values())

        # The feed serves them to the big member, in their order, each with its task.
        app = create_app(make_settings(seed_env))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://seed") as http:
                login = await http.post(
                    "/api/v1/auth/token",
                    data={"username": "seed-user-1@example.com", "password": DEFAULT_PASSWORD},
                )
                assert login.status_code == 200, login.text
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                feed = await http.get("/api/v2/changes", params={"limit": 1000}, headers=headers)
                assert feed.status_code == 200, feed.text
                page = feed.json()
        assert [item["id"] for item in page["items"]] == [e.id for e in events]
        assert page["has_more"] is False
        for item in page["items"]:
            task = tasks[item["entity_id"]]
            assert item["object"] is None if task.deleted_at else item["object"]["id"] == task.id
            assert item["actor"]["full_name"].startswith("Seed Seed User")

        # A rerun adds none; nor does a larger E to a log that has its events.
        again = await run_cli(capsys, "seed", *SHARED, "--events-per-project", "90")
        assert again.code == 0, again.err
        assert "event(s)" not in again.out
        assert [e.id for e in await all_events(db)] == [e.id for e in events]

    async def test_no_events_unless_asked(
        self, db: AsyncEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = await run_cli(capsys, "seed", *SHARED)
        assert result.code == 0, result.err
        assert "event(s)" not in result.out
        assert await all_events(db) == []
        refused = await run_cli(capsys, "seed", *SHARED, "--events-per-project", "-1")
        assert refused.code == 2
        assert "--events-per-project must be at least 0" in refused.err


class TestRowGeneration:
    """The pure generator, without a database."""

    def test_deterministic_per_seed(self) -> None:
        text_pools = build_text_pools(1)

        def rows(seed: str) -> list[object]:
            return list(
                generate_task_rows(
                    random.Random(seed),
                    7,
                    200,
                    now_ms=1_790_000_000_000,
                    text=text_pools,
                    stamp=datetime_stamp,
                )
            )

        assert rows("a") == rows("a")
        assert rows("a") != rows("b")

    def test_sqlite_stamps_match_sqlalchemy_storage_format(self) -> None:
        stamp = sqlite_stamp()
        for ms in (0, 1_790_000_000_123, 1_790_006_399_999, 1_700_000_059_001, 951_782_400_000):
            expected = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            assert stamp(ms) == expected
            assert datetime_stamp(ms) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
                milliseconds=ms
            )

    def test_the_benchmarks_team(self) -> None:
        """--users 50 --projects 20 --members-per-project 10: the big member in all 20."""
        users = list(range(101, 151))
        plans = plan_projects(
            users, SeedOptions(users=50, tasks_per_user=0, projects=20, members_per_project=10)
        )
        assert len(plans) == len({plan.name for plan in plans}) == 20
        for plan in plans:
            members = dict(plan.members)
            assert len(members) == 10  # nobody twice
            assert 101 in members
            assert ProjectRole.OWNER in members.values()
        big_roles = {dict(plan.members)[101] for plan in plans}
        assert big_roles == set(ProjectRole)  # the big member at every role somewhere
        # Everyone else takes turns: each is in a few projects, none left out.
        turns = Counter(user for plan in plans for user, _ in plan.members if user != 101)
        assert set(turns) == set(users[1:])
        assert max(turns.values()) - min(turns.values()) <= 1

    def test_links_stay_within_the_project(self) -> None:
        members, labels = (7, 8, 9), tuple(range(40, 48))
        assignees, tagged = generate_links(random.Random(1), range(1, 2001), members, labels)
        assert {user for _, user in assignees} == set(members)
        assert {label for _, label in tagged} == set(labels)
        per_task = Counter(task for task, _ in assignees)
        assert 0.5 * 2000 < len(per_task) < 0.8 * 2000  # about a third have nobody
        assert len(assignees) == len(set(assignees))
        assert len(tagged) == len(set(tagged))
        uses = Counter(label for _, label in tagged)
        assert uses[40] > 2 * uses[47]  # the first labels are used most
        assert generate_links(random.Random(1), [5], (), ()) == ([], [])

    def test_a_task_history_ends_as_the_task_is(self) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        done = SeededTask(
            7, "Plan", None, "done", 3, None, start, start + timedelta(days=3),
            start + timedelta(days=3), None, 5,
        )  # fmt: skip
        history = task_history(random.Random(1), 2, done, (11, 12))
        assert [e.action for e in history] == ["created"] + ["updated"] * 4
        assert history[0].changes == {
            "title": [None, "Plan"],
            "status": [None, "todo"],
            "priority": [None, history[0].changes["priority"][1]],
        }
        assert history[-1].changes == {
            "status": [history[-1].changes["status"][0], "done"],
            "completed_at": [None, done.completed_at.isoformat()],  # type: ignore[union-attr]
        }
        assert [e.at for e in history] == sorted(e.at for e in history)
        assert (history[0].at, history[-1].at) == (done.created_at, done.updated_at)
        assert {e.actor_id for e in history} <= {11, 12}
        trashed = done._replace(status="todo", version=2, deleted_at=done.updated_at)
        history = task_history(random.Random(1), 2, trashed, (11,))
        assert [e.action for e in history] == ["created", "deleted"]
        assert history[0].changes["status"] == [None, "todo"]

    def test_the_newest_events_of_all_histories(self) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        tasks = [
            SeededTask(
                i, f"T{i}", None, "todo", 2, None, start + timedelta(hours=i),
                start + timedelta(hours=i, minutes=30), None, None, 1 + i % 4,
            )
            for i in range(1, 200)
        ]  # fmt: skip
        every = newest_events(random.Random(3), 1, tasks, (5,), 10_000)
        assert len(every) == sum(t.version for t in tasks)
        newest = newest_events(random.Random(3), 1, tasks, (5,), 100)
        assert len(newest) == 100
        assert [e.at for e in newest] == sorted(e.at for e in every)[-100:]
        assert newest_events(random.Random(3), 1, tasks, (5,), 0) == []

    def test_label_names_are_unique_in_any_case(self) -> None:
        names = [name.lower() for name, _ in label_names(40)]
        assert len(set(names)) == 40
        assert all(1 <= len(name) <= 50 for name in names)

    def test_text_has_common_and_rare_words(self) -> None:
        pools = build_text_pools(0)
        sentences = pools.sentences
        common = sum("team" in s.split() for s in sentences)
        rare = sum("quokka" in s.split() for s in sentences)
        assert common > len(sentences) * 0.2
        assert 0 < rare < len(sentences) * 0.02
