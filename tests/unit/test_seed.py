"""`python -m app.cli seed` and app/services/seed.py against a fresh migrated database.

Each backend gets its own new database (as in test_cli.py): seeding commits for real, so the
tables are emptied after every test. The CLI reads DATABASE_URL from the environment and runs
in a worker thread, since it drives its own event loop.
"""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import get_settings
from app.core.security import hash_rounds, verify_password
from app.db.session import create_engine_for, create_sessionmaker
from app.main import create_app
from app.models.task import Task
from app.models.user import User
from app.services.seed import (
    DEFAULT_PASSWORD,
    SeedOptions,
    build_text_pools,
    datetime_stamp,
    generate_task_rows,
    seed_database,
    sqlite_stamp,
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
            for table in ("tasks", "refresh_tokens", "users"):
                await conn.execute(text(f"DELETE FROM {table}"))
        await engine.dispose()


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
            .outerjoin(Task, Task.owner_id == User.id)
            .group_by(User.email)
        )
        return dict(result.all())


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
                text("UPDATE tasks SET deleted_at = updated_at WHERE owner_id = :id"),
                {"id": users[1].id},
            )
        more = await run_cli(capsys, "seed", "--users", "3", "--tasks-per-user", "50")
        assert more.code == 0, more.err
        assert "1 created, 2 reused" in more.out
        assert "inserted 70 task(s)" in more.out
        assert sorted((await tasks_per_owner(db)).values()) == [50, 50, 50]
        titles = [t.title for t in await all_tasks(db)]
        assert len(titles) == 150

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
        ],
        ids=["no-users", "negative-tasks", "weak-password", "bad-prefix"],
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
        owner = (await all_users(db))[0]
        now = datetime.now(UTC)
        async with create_sessionmaker(db)() as session, session.begin():
            task = Task(owner_id=owner.id, title="after seeding", created_at=now, updated_at=now)
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

        async def rows() -> list[tuple[object, ...]]:
            await seed_database(settings, SeedOptions(users=2, tasks_per_user=15, seed=3), now=now)
            snapshot = [
                (t.title, t.description, t.status, t.priority, t.due_at, t.created_at)
                for t in await all_tasks(db)
            ]
            async with db.begin() as conn:
                await conn.execute(text("DELETE FROM tasks"))
                await conn.execute(text("DELETE FROM users"))
            return snapshot

        first, second = await rows(), await rows()
        assert first == second
        assert len(first) == 30
        assert max(t[5] for t in first) <= datetime(2026, 6, 1, tzinfo=UTC)  # day-anchored


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

    def test_text_has_common_and_rare_words(self) -> None:
        pools = build_text_pools(0)
        sentences = pools.sentences
        common = sum("team" in s.split() for s in sentences)
        rare = sum("quokka" in s.split() for s in sentences)
        assert common > len(sentences) * 0.2
        assert 0 < rare < len(sentences) * 0.02
