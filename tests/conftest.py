"""Test harness: every database test runs on SQLite and on PostgreSQL.

Each backend gets a freshly created database, migrated with `alembic upgrade head` (which
tests the migrations too). Each test then runs inside a transaction that is rolled back, with
the app's sessions bound to that transaction as savepoints, so the request code still commits
and rolls back as in production.

PostgreSQL comes from TEST_DATABASE_URL (a server URL; a new database is created on it) or
the local server. When it cannot be reached the PostgreSQL half is skipped, loudly, except
with CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ["ENVIRONMENT"] = "test"
os.environ.setdefault("BCRYPT_ROUNDS", "4")
os.environ.setdefault("RATE_LIMIT_ENABLED", "false")
# The tests run the background jobs themselves, when and where they choose.
os.environ.setdefault("JOBS_IN_API", "false")

import httpx  # noqa: E402
import pytest  # noqa: E402
from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from sqlalchemy import make_url, text  # noqa: E402
from sqlalchemy.ext.asyncio import (  # noqa: E402
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from app.core.config import Environment, Settings  # noqa: E402
from app.core.security import create_access_token  # noqa: E402
from app.db.access import Db  # noqa: E402
from app.main import create_app  # noqa: E402
from app.models.user import Role, User  # noqa: E402
from app.schemas.user import UserCreate  # noqa: E402
from app.services import user as user_service  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_PASSWORD = "correct horse battery staple"
BCRYPT_TEST_ROUNDS = 4

POSTGRES_UNREACHABLE = "PostgreSQL unreachable"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# What a skip says when part of the suite could not run for want of something on this machine
# (CI=true makes each a failure instead), and the banner that says so at the very end of the
# run: its title, and what was left out or how to run it.
REDIS_UNREACHABLE = "REDIS UNREACHABLE"
BROWSER_MISSING = "Chromium not found"
_LOUD_SKIPS = (
    (
        POSTGRES_UNREACHABLE,
        "POSTGRESQL TESTS SKIPPED",
        "Only SQLite was tested: set TEST_DATABASE_URL or start PostgreSQL on 127.0.0.1:5432 "
        "to run both.",
    ),
    (REDIS_UNREACHABLE, "REDIS TESTS SKIPPED", ""),  # the reason says what and how
    (
        BROWSER_MISSING,
        "BROWSER TEST OF THE CLIENT SKIPPED",
        "Install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH; CI does.",
    ),
)


def _skip_reasons(terminalreporter: Any, marker: str) -> list[str]:
    """Why tests were skipped for want of what `marker` names, read from the skip reports:
    under pytest-xdist the skips happen in worker processes and only their reports reach
    this one."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        if marker in str(reason):
            reasons.append(str(reason).removeprefix("Skipped: "))
    return reasons


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Any:
    """After everything else the summary prints (the slowest tests, the list of skips), so
    that a run which left part of the suite out says so last, loudly."""
    result = yield
    for marker, title, remedy in _LOUD_SKIPS:
        reasons = _skip_reasons(terminalreporter, marker)
        if reasons:
            terminalreporter.write_sep("!", title, red=True, bold=True)
            line = f"{len(reasons)} skipped: {reasons[0]} {remedy}"
            terminalreporter.write_line(line.rstrip(), red=True)
    return result


def run_alembic(url: str, revision: str = "head", *, down: bool = False) -> None:
    """Run Alembic in a thread: its env.py drives its own event loop."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    action = command.downgrade if down else command.upgrade
    with ThreadPoolExecutor(1) as pool:
        pool.submit(action, config, revision).result()


def postgres_server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_SERVER


async def _pg_admin(sql: str) -> None:
    import asyncpg

    url = make_url(postgres_server_url())
    connection = await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database or "postgres",
        timeout=5,
    )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def create_database(backend: str, tmp_dir: Path) -> str:
    """A new, empty database of `backend`; returns its URL."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_dir / f'tasks-{uuid.uuid4().hex[:8]}.db'}"
    name = f"tasks_test_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # any failure to create it means the server is not usable
        reason = f"{type(exc).__name__} at {make_url(postgres_server_url()).host}"
        if running_in_ci():
            pytest.fail(f"CI=true but PostgreSQL is unreachable: {reason}", pytrace=False)
        pytest.skip(f"{POSTGRES_UNREACHABLE} ({reason}).")
    return make_url(postgres_server_url()).set(database=name).render_as_string(False)


async def drop_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    # Only ever a database this harness created (its name says so).
    assert parsed.database
    assert parsed.database.startswith("tasks_test_")
    await _pg_admin(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    url = await create_database(request.param, tmp_path_factory.mktemp("db"))
    try:
        run_alembic(url)
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new database of the test's own, with no schema at all (not the shared one)."""
    url = await create_database(request.param, tmp_path)
    try:
        yield url
    finally:
        await drop_database(url)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "database_url": database_url,
        "secret_key": "test-secret-key-" + "x" * 40,
        "bcrypt_rounds": BCRYPT_TEST_ROUNDS,
        "rate_limit_enabled": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def engine(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = app.state.engine
    return engine


@pytest.fixture
def backend(engine: AsyncEngine) -> str:
    return engine.dialect.name


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


def _bound_sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )


# For apps a test builds with settings of its own (tests.support.client_of_app).
bound_sessionmaker = _bound_sessionmaker


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    async with _bound_sessionmaker(connection)() as db_session:
        yield db_session


@pytest.fixture
async def client(app: FastAPI, connection: AsyncConnection) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the ASGI app whose requests share the test's rolled-back transaction."""
    original = app.state.sessionmaker
    app.state.sessionmaker = _bound_sessionmaker(connection)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        app.state.sessionmaker = original


@pytest.fixture
async def committing_client(app: FastAPI, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests really commit, on separate connections (for races).

    The tables are emptied afterwards, so the other tests' isolation holds.
    """
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        async with engine.begin() as conn:
            for table in ("events", "event_retention", "tasks", "refresh_tokens", "users"):
                await conn.execute(text(f"DELETE FROM {table}"))


UserFactory = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(session: AsyncSession) -> UserFactory:
    """Create a user directly in the database (no HTTP), committed to the test transaction."""
    counter = iter(range(1, 1_000_000))

    async def factory(
        *,
        email: str | None = None,
        password: str = TEST_PASSWORD,
        role: Role = Role.USER,
        is_active: bool = True,
        full_name: str | None = None,
    ) -> User:
        user = await user_service.create_user(
            Db.in_session(session),
            UserCreate(
                email=email or f"user{next(counter)}-{uuid.uuid4().hex[:6]}@example.com",
                password=password,
                full_name=full_name,
            ),
            rounds=BCRYPT_TEST_ROUNDS,
            role=role,
        )
        user.is_active = is_active
        await session.commit()
        return user

    return factory


@pytest.fixture
def auth_headers(settings: Settings) -> Callable[[User], dict[str, str]]:
    def headers(user: User) -> dict[str, str]:
        token, _ = create_access_token(
            user_id=user.id,
            token_version=user.token_version,
            key=settings.signing_key,
            expire_minutes=15,
        )
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


# Where tests marked `isolated_network` may live: scripts/run-isolated-tests.sh runs these
# folders (in a network namespace), and the main run deselects the mark everywhere.
ISOLATED_TEST_DIRS = ("tests/unit", "tests/e2e", "tests/jobs")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("isolated_network") is None:
            continue
        where = Path(str(item.path)).relative_to(PROJECT_ROOT).as_posix()
        if not where.startswith(ISOLATED_TEST_DIRS):
            raise pytest.UsageError(
                f"{where}: isolated_network tests must live in {', '.join(ISOLATED_TEST_DIRS)} "
                "(scripts/run-isolated-tests.sh runs only those)"
            )
