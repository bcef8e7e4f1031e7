"""The PostgreSQL pool serves waiting requests first come, first served (app/db/pool.py).

A pool of one connection, held; requests queue for it; each that gets it holds it a moment
and gives it back. They must be served in the order they asked, also when newcomers keep
arriving just as the connection comes back (with SQLAlchemy's own queue, a newcomer took it
and the woken waiter went to the back of the line). A waiter that times out or is cancelled
leaves nothing checked out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.db.pool import FairAsyncQueuePool
from app.db.session import create_engine_for
from tests.conftest import make_settings


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[AsyncEngine]:
    if settings.sqlalchemy_url.get_backend_name() != "postgresql":
        pytest.skip(
            "PostgreSQL's pool settings (a SQLite file's one connection: test_sqlite_turns.py)"
        )
    engine = create_engine_for(
        make_settings(
            str(settings.database_url),
            db_pool_size=1,
            db_max_overflow=0,
            db_pool_timeout_seconds=2,
        )
    )
    try:
        yield engine
    finally:
        await engine.dispose()


def checked_out(engine: AsyncEngine) -> int:
    return int(engine.pool.checkedout())  # type: ignore[attr-defined]


async def test_the_engine_uses_the_fair_pool(one_connection: AsyncEngine) -> None:
    assert isinstance(one_connection.pool, FairAsyncQueuePool)


async def test_waiters_are_served_in_the_order_they_asked(one_connection: AsyncEngine) -> None:
    engine = one_connection
    served: list[str] = []
    holder = await engine.raw_connection()

    async def request(name: str) -> None:
        connection = await engine.raw_connection()
        served.append(name)
        await asyncio.sleep(0.01)
        connection.close()

    first_wave = [asyncio.create_task(request(f"waiter {n}")) for n in range(5)]
    await asyncio.sleep(0.05)  # all five are waiting, in order
    holder.close()  # hands the connection to waiter 0...
    # ...and newcomers arrive in the very same turn of the loop, before waiter 0 runs.
    newcomers = [asyncio.create_task(request(f"newcomer {n}")) for n in range(3)]
    await asyncio.gather(*first_wave, *newcomers)
    assert served == [*(f"waiter {n}" for n in range(5)), *(f"newcomer {n}" for n in range(3))]
    assert checked_out(engine) == 0


async def test_a_waiter_that_times_out_gets_the_pool_timeout(
    one_connection: AsyncEngine,
) -> None:
    engine = one_connection
    holder = await engine.raw_connection()
    with pytest.raises(sa_exc.TimeoutError):  # answered 503 by app/api/problems.py
        await engine.raw_connection()
    holder.close()
    again = await engine.raw_connection()  # nothing was lost: the connection is there
    again.close()
    assert checked_out(engine) == 0


async def test_a_cancelled_waiter_leaves_nothing_behind(one_connection: AsyncEngine) -> None:
    engine = one_connection
    holder = await engine.raw_connection()
    gave_up = asyncio.create_task(engine.raw_connection())
    patient = asyncio.create_task(engine.raw_connection())
    await asyncio.sleep(0.05)
    gave_up.cancel()
    holder.close()  # goes to the patient waiter, not the one that left
    connection = await asyncio.wait_for(patient, timeout=2)
    connection.close()
    assert gave_up.cancelled()
    assert checked_out(engine) == 0


async def test_a_waiter_cancelled_after_the_handover_passes_the_connection_on(
    one_connection: AsyncEngine,
) -> None:
    engine = one_connection
    holder = await engine.raw_connection()
    first = asyncio.create_task(engine.raw_connection())
    second = asyncio.create_task(engine.raw_connection())
    await asyncio.sleep(0.05)
    holder.close()  # handed to `first`, which has not run yet...
    first.cancel()  # ...and is cancelled before it does
    connection = await asyncio.wait_for(second, timeout=2)
    connection.close()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert checked_out(engine) == 0
