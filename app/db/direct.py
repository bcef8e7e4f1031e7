"""Single statements on the hot paths, run as directly as the driver allows.

The task routes send one statement per request (authentication folded in, see
docs/decisions/0017-authenticated-read-round-trips.md). Going through the ORM, or even
SQLAlchemy Core's execution machinery, costs several times what the database itself spends
on such a statement, so:

- A `Statement` is written once in SQLAlchemy Core, with named bind parameters. For
  PostgreSQL it is compiled once into asyncpg's SQL (`$1`, `$2`, ...) and run on the
  asyncpg connection underneath the pooled connection: no compilation, execution context or
  result processing per request. Elsewhere (SQLite) it runs through Core as usual.
- A `Db` runs each statement as its own unit of work: a pooled connection is checked out
  for it and given back right after it (on PostgreSQL straight from SQLAlchemy's pool, with
  no `Connection` around it). A statement sent straight to asyncpg outside any
  transaction is its own transaction (PostgreSQL's autocommit): no BEGIN, no COMMIT, one
  round trip. That is only right for requests that write at most once, which is all this
  module is for; several writes that must stand or fall together use the request's session
  (`SessionDep`), or `Db.transaction()`. When the sessionmaker is bound to one connection
  inside an outer transaction (as the tests bind it), each statement runs in a savepoint of
  it; `Db.joining(session)` runs statements inside that session's transaction.
- asyncpg's own errors do not pass through SQLAlchemy here, so `_database_error` does what
  SQLAlchemy would: a lost or refused connection is dropped from the pool and answered as a
  503, an integrity violation is an IntegrityError (409), anything else stays an error (500).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable
from sqlalchemy.util import greenlet_spawn

from app.core.errors import ServiceUnavailable

log = structlog.get_logger("app.db")

Row = Sequence[Any]  # an asyncpg Record or a SQLAlchemy Row: values in column order

# SQLSTATE classes of a server that cannot take the work now (as in app/api/problems.py).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "57014")


class Statement:
    """A Core statement with named bind parameters, compiled once per driver."""

    __slots__ = ("statement", "_postgresql")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._postgresql: tuple[str, tuple[str, ...], dict[str, Any]] | None = None

    def for_asyncpg(self, dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """(SQL, parameter names in `$n` order, values of the literals the statement holds)."""
        if self._postgresql is None:
            compiled = self.statement.compile(dialect=dialect)
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


class Db:
    """One request's database work, for routes that send one statement (or a few reads).

    Each statement is its own unit of work: where the request holds the connection alone it
    is checked out for the statement and given back right after it, committed (PostgreSQL's
    autocommit; SQLite commits its transaction), so a request holds a pooled connection
    only while the database works for it, as a bare asyncpg pool would, and there is nothing
    to clean up when the request ends. `transaction()` groups statements instead. Rows come
    back as values in column order (asyncpg Records or SQLAlchemy Rows).
    """

    __slots__ = ("_sessions", "_session", "_held", "_driver")

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        *,
        session: AsyncSession | None = None,
    ) -> None:
        self._sessions = sessions
        self._session = session
        self._held: AsyncConnection | None = None  # inside `transaction()`
        self._driver: Any = None  # the asyncpg connection of the current statement

    @classmethod
    def joining(cls, session: AsyncSession) -> Db:
        """Statements inside `session`'s transaction (which then commits or rolls them back)."""
        return cls(session=session)

    @property
    def dialect(self) -> Dialect:
        if self._session is not None:
            return self._session.get_bind().dialect
        assert self._sessions is not None
        bind: AsyncEngine | AsyncConnection = self._sessions.kw["bind"]
        return bind.dialect

    @asynccontextmanager
    async def _unit(self, *, direct: bool) -> AsyncIterator[AsyncConnection]:
        """A connection for one statement, committed after it, rolled back if it fails.

        `direct`: the statement may go straight to asyncpg (`self._driver` is then set).
        """
        if self._held is not None:  # inside transaction(): its connection, its commit
            yield self._held
            return
        if self._session is not None:  # the session's transaction: Core, after its BEGIN
            yield await self._session.connection()
            return
        assert self._sessions is not None
        bind = self._sessions.kw["bind"]
        if isinstance(bind, AsyncConnection):
            # The sessions share one connection inside an outer transaction: a savepoint of
            # it, as their sessions would use. SAVEPOINT opens the driver's transaction, so
            # a statement sent to the driver is inside it too.
            async with bind.begin_nested():
                if direct and bind.dialect.driver == "asyncpg":
                    self._driver = (await bind.get_raw_connection()).driver_connection
                try:
                    yield bind
                finally:
                    self._driver = None
            return
        # On an engine, a direct statement for asyncpg never gets here (`_pooled_fetch`).
        connection = await bind.connect().start()
        try:
            if connection.dialect.driver == "asyncpg":
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
            if connection.in_transaction():
                await connection.commit()  # SQLite's BEGIN IMMEDIATE; a no-op in autocommit
        finally:
            self._driver = None
            await connection.close()  # rolls back whatever is left (SQLite, after an error)

    async def rows(self, statement: Statement, params: dict[str, Any]) -> Sequence[Row]:
        if self._held is None and self._session is None:
            assert self._sessions is not None
            bind = self._sessions.kw["bind"]
            if isinstance(bind, AsyncEngine) and bind.dialect.driver == "asyncpg":
                return await self._pooled_fetch(bind, statement, params)
        async with self._unit(direct=True) as connection:
            if self._driver is not None:
                sql, names, literals = statement.for_asyncpg(connection.dialect)
                values = [params[name] if name in params else literals[name] for name in names]
                try:
                    records: Sequence[Row] = await self._driver.fetch(sql, *values)
                except Exception as error:
                    raise await self._database_error(connection.invalidate, error) from error
                return records
            result = await connection.execute(statement.statement, params)  # type: ignore[call-overload]
            core_rows: Sequence[Row] = result.all()
            return core_rows

    async def _pooled_fetch(
        self, engine: AsyncEngine, statement: Statement, params: dict[str, Any]
    ) -> Sequence[Row]:
        """The statement on a connection of the pool, with no `Connection` around it.

        What `_unit` does for a direct statement, minus SQLAlchemy's `Connection` and
        `AsyncConnection` (their construction and three greenlet switches were a sixth of a
        read's CPU): the pool's own checkout (with its checkout check) and check-in (with
        its reset), each in the greenlet that SQLAlchemy needs to await the driver in.
        """
        sql, names, literals = statement.for_asyncpg(engine.dialect)
        values = [params[name] if name in params else literals[name] for name in names]
        try:
            pooled = await engine.raw_connection()
        except engine.dialect.loaded_dbapi.Error as error:
            # As SQLAlchemy's Connection reports a failed connect (a refused or lost server
            # is an OperationalError, answered with a 503 by app/api/problems.py).
            raise sa_exc.DBAPIError.instance(
                None, None, error, engine.dialect.loaded_dbapi.Error, dialect=engine.dialect
            ) from error
        try:
            self._driver = pooled.driver_connection
            try:
                records: Sequence[Row] = await self._driver.fetch(sql, *values)
            except Exception as error:
                raise await self._database_error(
                    partial(greenlet_spawn, pooled.invalidate), error
                ) from error
            return records
        finally:
            self._driver = None
            await greenlet_spawn(pooled.close)  # back to the pool, or dropped if invalidated

    async def first(self, statement: Statement, params: dict[str, Any]) -> Row | None:
        found = await self.rows(statement, params)
        return found[0] if found else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the statements of the block in one transaction (e.g. after a `SET LOCAL`).

        Its statements go through SQLAlchemy, whose first one opens the transaction.
        """
        if self._held is not None or self._session is not None:
            yield  # already inside one
            return
        assert self._sessions is not None
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

    async def execute(self, statement: Executable) -> None:
        """A statement whose result is not wanted (`SET LOCAL` inside `transaction()`)."""
        async with self._unit(direct=False) as connection:
            await connection.execute(statement)

    async def _database_error(
        self, invalidate: Callable[[], Awaitable[Any]], error: Exception
    ) -> Exception:
        """What SQLAlchemy would make of an error the driver raised (see the module doc)."""
        sqlstate = str(getattr(error, "sqlstate", None) or "")
        if sqlstate.startswith("23"):
            return sa_exc.IntegrityError(None, None, error)
        server_error = sqlstate != "" and not sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        if server_error or isinstance(error, ValueError):  # ValueError: a bad argument, a bug
            return error
        if not isinstance(error, _unavailable_errors()):
            return error
        log.warning("database_unavailable", error_class=type(error).__name__)
        # Lost, refused, timed out, or ended by the server (an admin shutdown can arrive
        # before the socket is seen closed, with the driver still mid-operation): this
        # connection is never reused, or the next request on it would fail too.
        try:
            await invalidate()
        except Exception:  # already gone: nothing left to drop
            log.debug("invalidate_failed")
        return ServiceUnavailable("The database is unavailable; retry later.")


def _unavailable_errors() -> tuple[type[Exception], ...]:
    """asyncpg's errors (server or connection) and the socket and timeout errors it lets out.

    InternalClientError: the driver's protocol state out of step with its connection ("another
    operation is in progress"), seen on a connection a server restart cut mid-statement.
    """
    import asyncpg

    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    )
