"""`Db`: how services reach the database. One type, in the mode the route chooses.

- **Autocommit** (`Db.autocommit`, the routes' `AutocommitDb`): each statement is its own unit
  of work. A pooled connection is checked out for it and given back right after it, committed:
  a request holds a connection only while the database works for it, and has nothing to clean
  up when it ends. On PostgreSQL the statement goes straight to asyncpg, outside any
  transaction, which PostgreSQL runs as a transaction of its own: one round trip, no BEGIN or
  COMMIT (docs/decisions/0017). For routes whose work is one statement, or reads that need not
  agree with each other; `transaction()` groups a few statements where they must share one
  (a `SET LOCAL`).
- **Transaction** (`Db.transaction_for`, the routes' `TransactionDb`): every statement of the
  request in one transaction, committed when the route's work is done and rolled back on any
  error (an `AppError` may ask to keep its writes: `commit_transaction`). Its ORM session is
  `db.session`. For work of several writes that stand or fall together.

Services never commit (the route's mode does); the two sanctioned exceptions say so where they
are (`end_read_transaction`, `new_transaction`).

A `Statement` is written once in SQLAlchemy Core with named bind parameters; for asyncpg it
is compiled once into PostgreSQL's SQL (`$1`, `$2`, ...) and run on the driver connection with
no SQLAlchemy execution per request. Elsewhere (SQLite, or inside a transaction) it runs
through Core as usual. The driver's own errors do not pass through SQLAlchemy on the direct
path, so they are classified here as SQLAlchemy's would be (`app.db.errors`): a lost or
refused connection is dropped from the pool and answered as a 503, an integrity violation is
an IntegrityError (409), anything else stays an error (500).

When the sessionmaker is bound to one connection inside an outer transaction (as the tests
bind it), each autocommit statement runs in a savepoint of it, and a transaction is one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable
from sqlalchemy.util import await_only as await_
from sqlalchemy.util import greenlet_spawn

from app.core.errors import AppError, ConcurrentUpdate, ServiceUnavailable
from app.db.errors import DatabaseErrorKind, classify, sqlstate_of

log = structlog.get_logger("app.db")

Row = Sequence[Any]  # an asyncpg Record or a SQLAlchemy Row: values in column order
Sessions = async_sessionmaker[AsyncSession]


class Statement:
    """A Core statement with named bind parameters, compiled once per driver."""

    __slots__ = ("statement", "_postgresql")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._postgresql: tuple[str, tuple[str, ...], dict[str, Any]] | None = None

    def for_asyncpg(self, dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """(SQL, parameter names in `$n` order, values of the literals the statement holds)."""
        if self._postgresql is None:
            compiled = cast(ClauseElement, self.statement).compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            names = tuple(compiled.positiontup or ())
            # Values the statement carries itself (literals); the caller gives the rest.
            literals = {
                name: bind.value
                for name, bind in compiled.binds.items()
                if not bind.required and bind.callable is None
            }
            self._postgresql = (str(compiled), names, literals)
        return self._postgresql

    def driver_arguments(self, dialect: Dialect, params: dict[str, Any]) -> tuple[str, list[Any]]:
        sql, names, literals = self.for_asyncpg(dialect)
        return sql, [params[name] if name in params else literals[name] for name in names]


class Db:
    """The database of one request (or command), in autocommit or transaction mode."""

    __slots__ = ("_sessions", "_session", "_held")

    def __init__(self, sessions: Sessions, *, session: AsyncSession | None = None) -> None:
        self._sessions = sessions
        self._session = session  # transaction mode
        self._held: AsyncConnection | None = None  # inside `transaction()` in autocommit mode

    # --- the two modes -------------------------------------------------------------------------

    @classmethod
    def autocommit(cls, sessions: Sessions) -> Db:
        return cls(sessions)

    @classmethod
    @asynccontextmanager
    async def transaction_for(cls, sessions: Sessions) -> AsyncIterator[Db]:
        """One transaction: committed when the block ends, rolled back if it raises (unless
        the error is an `AppError` whose writes must stand, `commit_transaction`)."""
        async with sessions() as session:
            try:
                yield cls(sessions, session=session)
            except AppError as error:
                if error.commit_transaction:
                    await session.commit()
                else:
                    await session.rollback()
                raise
            except BaseException:
                await session.rollback()
                raise
            else:
                await session.commit()

    @classmethod
    def in_session(cls, session: AsyncSession) -> Db:
        """Statements inside a session someone else opened and commits (commands, tests)."""
        sessions: Sessions = async_sessionmaker(bind=session.bind)
        return cls(sessions, session=session)

    @property
    def session(self) -> AsyncSession:
        """The ORM session of the transaction (transaction mode only)."""
        if self._session is None:
            raise RuntimeError("the ORM session needs a transaction: declare TransactionDb")
        return self._session

    @property
    def dialect(self) -> Dialect:
        if self._session is not None:
            return self._session.get_bind().dialect
        bind: AsyncEngine | AsyncConnection = self._sessions.kw["bind"]
        return bind.dialect

    # --- statements ------------------------------------------------------------------------

    async def rows(self, statement: Statement, params: dict[str, Any]) -> Sequence[Row]:
        if self._session is not None:
            connection = await self._session.connection()
            return (await connection.execute(statement.statement, params)).all()
        if self._held is not None:
            return (await self._held.execute(statement.statement, params)).all()
        bind = self._sessions.kw["bind"]
        if isinstance(bind, AsyncEngine):
            if bind.dialect.driver == "asyncpg":
                return await _pooled_fetch(bind, statement, params)
            return await _engine_rows(bind, statement, params)
        return await _savepoint_rows(bind, statement, params)

    async def first(self, statement: Statement, params: dict[str, Any]) -> Row | None:
        found = await self.rows(statement, params)
        return found[0] if found else None

    async def execute(self, statement: Executable) -> None:
        """A statement whose result is not wanted (`SET LOCAL` inside `transaction()`)."""
        if self._session is not None:
            await self._session.execute(statement)
        elif self._held is not None:
            await self._held.execute(statement)
        else:
            raise RuntimeError("execute() runs inside transaction() or a transaction")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the block's statements in one transaction (e.g. after a `SET LOCAL`); in
        transaction mode they are in one already. Its statements go through SQLAlchemy."""
        if self._session is not None or self._held is not None:
            yield
            return
        bind = self._sessions.kw["bind"]
        if isinstance(bind, AsyncConnection):
            async with bind.begin_nested():
                self._held = bind
                try:
                    yield
                finally:
                    self._held = None
            return
        async with bind.connect() as connection, connection.begin():
            self._held = connection
            try:
                yield
            finally:
                self._held = None

    @asynccontextmanager
    async def one_turn(self) -> AsyncIterator[None]:
        """Run the block's reads on one connection where the database serves one transaction
        at a time (a SQLite file, decision 0038): each autocommit statement would queue for
        the connection anew, and a page read in several statements waited behind every
        request that arrived meanwhile, once per statement. Elsewhere the block's statements
        run as they would without it (PostgreSQL's direct path, each on its own)."""
        if self.dialect.name != "sqlite":
            yield
            return
        async with self.transaction():
            yield

    # --- the sanctioned exceptions to "services never commit" -----------------------------

    async def end_read_transaction(self) -> None:
        """Give the connection back before slow CPU work (bcrypt), when nothing was written.

        Only where the transaction so far has only read, so that no pooled connection (and,
        on SQLite, no write lock) is held while a password hash is computed. It refuses
        pending ORM changes; statements already executed are the caller's responsibility.
        The next statement opens a new transaction.
        """
        session = self.session
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("end_read_transaction called with pending changes")
        await session.commit()

    def new_transaction(self) -> AbstractAsyncContextManager[Db]:
        """A transaction of its own (beside the request's, in transaction mode), committed
        when its block ends: for a claim that other requests must see at once (an
        idempotency key), or a few writes of an autocommit route that stand together."""
        return Db.transaction_for(self._sessions)


async def _engine_rows(
    engine: AsyncEngine, statement: Statement, params: dict[str, Any]
) -> Sequence[Row]:
    """One statement on its own connection through Core, committed (SQLite's BEGIN IMMEDIATE
    opens its transaction; closing the connection rolls back whatever an error left)."""
    async with engine.connect() as connection:
        rows = (await connection.execute(statement.statement, params)).all()
        if connection.in_transaction():
            await connection.commit()
        return rows


async def _savepoint_rows(
    connection: AsyncConnection, statement: Statement, params: dict[str, Any]
) -> Sequence[Row]:
    """One statement in a savepoint of a connection the sessions are bound to (the tests):
    as its own unit of work, it stands or falls alone. On asyncpg it goes to the driver, as it
    would outside the tests (SAVEPOINT opened the driver's transaction, so it is inside)."""
    async with connection.begin_nested():
        if connection.dialect.driver != "asyncpg":
            return (await connection.execute(statement.statement, params)).all()
        raw = await connection.get_raw_connection()
        sql, values = statement.driver_arguments(connection.dialect, params)
        try:
            records: Sequence[Row] = await raw.driver_connection.fetch(sql, *values)  # type: ignore[union-attr]
        except Exception as error:
            answer, lost = _driver_error(error)
            if lost and connection.sync_connection is not None:
                await greenlet_spawn(_invalidate, connection.sync_connection.invalidate)
            raise answer from error
        return records


async def _pooled_fetch(
    engine: AsyncEngine, statement: Statement, params: dict[str, Any]
) -> Sequence[Row]:
    """The statement on a connection of the pool, with no `Connection` around it.

    The pool's own checkout (with its checkout check) and check-in (with its reset), minus
    SQLAlchemy's `Connection` and `AsyncConnection` (their construction and three greenlet
    switches were a sixth of a read's CPU). The pool is synchronous code that awaits the
    driver through a greenlet: checkout, statement and check-in share one, started once
    (each start costs as much as the pool's own work).
    """
    sql, values = statement.driver_arguments(engine.dialect, params)
    return await greenlet_spawn(_fetch_on_pooled_connection, engine, sql, values)


def _fetch_on_pooled_connection(engine: AsyncEngine, sql: str, values: list[Any]) -> Sequence[Row]:
    """`_pooled_fetch`'s work, inside SQLAlchemy's greenlet (the driver awaited by `await_`)."""
    sync_engine = engine.sync_engine
    try:
        pooled = sync_engine.raw_connection()
    except sync_engine.dialect.loaded_dbapi.Error as error:
        # As SQLAlchemy's Connection reports a failed connect (a refused or lost server is an
        # OperationalError, answered with a 503 by app/api/problems.py).
        raise sa_exc.DBAPIError.instance(
            None, None, error, sync_engine.dialect.loaded_dbapi.Error, dialect=engine.dialect
        ) from error
    try:
        try:
            records: Sequence[Row] = await_(pooled.driver_connection.fetch(sql, *values))  # type: ignore[union-attr]
        except Exception as error:
            answer, lost = _driver_error(error)
            if lost:
                _invalidate(pooled.invalidate)
            raise answer from error
        return records
    finally:
        pooled.close()  # back to the pool, or dropped if invalidated


def _invalidate(invalidate: Callable[[], Any]) -> None:
    try:
        invalidate()
    except Exception:  # already gone: nothing left to drop
        log.debug("invalidate_failed")


def _driver_error(error: Exception) -> tuple[Exception, bool]:
    """What SQLAlchemy would make of an error the driver raised (see the module docstring),
    and whether the connection it came from must be dropped."""
    kind = classify(error)
    if kind is DatabaseErrorKind.INTEGRITY:
        return sa_exc.IntegrityError(None, None, error), False
    if kind is DatabaseErrorKind.CONCURRENT:
        log.warning("concurrent_update_refused", sqlstate=sqlstate_of(error))
        return ConcurrentUpdate(), False  # the transaction is over; the connection is fine
    if kind is not DatabaseErrorKind.UNAVAILABLE or isinstance(error, ValueError):
        return error, False  # a bug (a bad argument, a statement the server refused): a 500
    log.warning("database_unavailable", error_class=type(error).__name__)
    # Lost, refused, timed out, or ended by the server (an admin shutdown can arrive before
    # the socket is seen closed, with the driver still mid-operation): this connection is
    # never reused, or the next request on it would fail too.
    return ServiceUnavailable("The database is unavailable; retry later."), True
