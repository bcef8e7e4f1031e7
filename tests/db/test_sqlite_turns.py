"""On a SQLite file, a process's transactions take the one writer's lock in the order they
asked for it (app/db/session.py, decision 0038).

Every SQLite transaction here begins with `BEGIN IMMEDIATE`. When each waited on a connection
of its own in SQLite's busy handler (sleep, then try again), a transaction that had waited a
while slept in longer steps, and newcomers arriving as the lock came free took it first: under
a steady stream of them one could wait out the whole busy timeout and its request was a 503.
These tests hold the lock, queue a transaction, free the lock with newcomers arriving at that
very moment, and look at who went first. They use a file of their own, whatever database the
run is configured for.

A read of several statements (a page of the change feed) takes one turn for all of them: each
statement queuing anew waited behind every request that arrived meanwhile, once per statement
(a black-box run saw feed pages take 5 to 8 s with a dozen clients writing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.security import AccessClaims
from app.db.access import Db
from app.db.errors import DatabaseErrorKind, classify
from app.db.session import create_engine_for, create_sessionmaker
from app.schemas.user import UserCreate
from app.services import history, user
from tests.conftest import BCRYPT_TEST_ROUNDS, make_settings, run_alembic


@pytest.fixture
async def sqlite_file(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"
    run_alembic(url)  # the service's tables, for the reads of several statements
    engine = create_engine_for(make_settings(url))
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE written (id INTEGER PRIMARY KEY, by TEXT)"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def _write(engine: AsyncEngine, name: str, order: list[str]) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO written (by) VALUES (:by)"), {"by": name})
        order.append(name)


async def _holding_the_lock(engine: AsyncEngine) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A transaction that has written (so holds the file's lock) until the event is set."""
    release = asyncio.Event()

    async def holder() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO written (by) VALUES ('holder')"))
            await release.wait()

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.05)
    return holding, release


async def test_a_waiting_transaction_goes_before_newcomers(sqlite_file: AsyncEngine) -> None:
    engine = sqlite_file
    order: list[str] = []
    holding, release = await _holding_the_lock(engine)
    waiters = [asyncio.create_task(_write(engine, f"waiter {n}", order)) for n in range(3)]
    await asyncio.sleep(0.3)  # the three wait for the lock, in order
    release.set()
    newcomers = [asyncio.create_task(_write(engine, f"newcomer {n}", order)) for n in range(5)]
    await asyncio.gather(holding, *waiters, *newcomers)

    assert order == [*(f"waiter {n}" for n in range(3)), *(f"newcomer {n}" for n in range(5))]
    async with engine.connect() as connection:
        written = (await connection.execute(text("SELECT count(*) FROM written"))).scalar()
    assert written == 9


async def test_a_transaction_that_waits_out_the_timeout_is_unavailable_and_writes_nothing(
    sqlite_file: AsyncEngine,
) -> None:
    engine = sqlite_file
    holding, release = await _holding_the_lock(engine)
    with pytest.raises(sa_exc.SQLAlchemyError) as waited:
        await _write(engine, "too late", [])
    assert classify(waited.value) is DatabaseErrorKind.UNAVAILABLE  # a 503, with Retry-After
    release.set()
    await holding
    order: list[str] = []
    await _write(engine, "after", order)  # the connection came back: the next one writes
    async with engine.connect() as connection:
        written = (await connection.execute(text("SELECT by FROM written ORDER BY id"))).all()
    assert [row.by for row in written] == ["holder", "after"]


async def test_a_feed_page_takes_one_turn_for_all_its_reads(sqlite_file: AsyncEngine) -> None:
    engine = sqlite_file
    sessions = create_sessionmaker(engine)
    async with Db.transaction_for(sessions) as db:
        reader = await user.create_user(
            db,
            UserCreate(email="reader@example.com", password="a long enough password"),
            rounds=BCRYPT_TEST_ROUNDS,
        )
    caller = AccessClaims(reader.id, reader.token_version, 0, 2**31)
    order: list[str] = []

    async def read_the_feed() -> None:
        # The page reads the horizon, the events (of the Inbox the account got) and
        # the entities they are about.
        page = await history.changes(
            Db.autocommit(sessions), caller, limit=10, cursor=None, key=b"k" * 32
        )
        assert [event.entity for event, _entity in page.items] == ["project", "member"]
        order.append("feed")

    holding, release = await _holding_the_lock(engine)
    feed = asyncio.create_task(read_the_feed())
    await asyncio.sleep(0.3)  # the feed waits for the lock
    release.set()
    newcomers = [asyncio.create_task(_write(engine, f"newcomer {n}", order)) for n in range(5)]
    await asyncio.gather(holding, feed, *newcomers)

    assert order == ["feed", *(f"newcomer {n}" for n in range(5))]
