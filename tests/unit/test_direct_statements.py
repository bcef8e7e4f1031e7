"""`Db`'s direct statements on PostgreSQL (app/db/access.py): a statement that was cancelled
or failed leaves its pooled connection fit for the next request, and nothing checked out.

(An outage error, by contrast, drops the connection: tests/e2e/test_database_outage.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Float, bindparam, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.core.config import Settings
from app.core.errors import ConcurrentUpdate
from app.db.access import Db, Statement, _driver_error
from app.db.session import create_engine_for
from tests.conftest import make_settings

SLEEP = Statement(select(func.pg_sleep(bindparam("seconds", type_=Float))))
ONE = Statement(select(literal(1).label("one")))


@pytest.fixture
async def one_connection_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds a single connection: the next statement gets that one."""
    if settings.sqlalchemy_url.get_backend_name() != "postgresql":
        pytest.skip("statements go straight to the driver on PostgreSQL only")
    engine = create_engine_for(
        make_settings(str(settings.database_url), db_pool_size=1, db_max_overflow=0)
    )
    try:
        yield engine
    finally:
        await engine.dispose()


def db_on(engine: AsyncEngine) -> Db:
    return Db(async_sessionmaker(bind=engine))


async def test_a_statement_cancelled_midway_does_not_poison_the_pool(
    one_connection_engine: AsyncEngine,
) -> None:
    engine = one_connection_engine
    assert [tuple(row) for row in await db_on(engine).rows(ONE, {})] == [(1,)]
    # A request cancelled while PostgreSQL is still working on its statement: asyncpg asks
    # the server to cancel it, and the connection goes back to the pool.
    slow = asyncio.create_task(db_on(engine).rows(SLEEP, {"seconds": 5}))
    await asyncio.sleep(0.5)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # The next request gets a working connection, not "another operation is in progress".
    assert [tuple(row) for row in await db_on(engine).rows(ONE, {})] == [(1,)]


async def test_a_failed_statement_leaves_its_connection_usable(
    one_connection_engine: AsyncEngine,
) -> None:
    engine = one_connection_engine
    broken = Statement(select(literal(1) / bindparam("zero", type_=Float)))
    with pytest.raises(Exception, match="division by zero"):
        await db_on(engine).rows(broken, {"zero": 0.0})
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert [tuple(row) for row in await db_on(engine).rows(ONE, {})] == [(1,)]


@pytest.mark.parametrize(
    "error_class",
    ["DeadlockDetectedError", "SerializationError"],
)
def test_a_transaction_rolled_back_for_a_concurrent_one_is_a_409_to_send_again(
    error_class: str,
) -> None:
    """A deadlock or a serialization failure raised by the driver on a direct statement is
    the client's 409 with `Retry-After` (as through SQLAlchemy: tests/api/v2/
    test_task_races.py::TestDeadlock), and its connection stays in the pool: it is fine."""
    import asyncpg

    answer, drop_connection = _driver_error(getattr(asyncpg.exceptions, error_class)("rolled back"))
    assert isinstance(answer, ConcurrentUpdate)
    assert answer.status == 409
    assert answer.headers == {"Retry-After": "1"}
    assert not drop_connection
