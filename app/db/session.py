"""Engine and session factory: PostgreSQL through asyncpg, SQLite through aiosqlite.

The engine is built by `create_engine_for` (called from the app's lifespan, the CLI and the
migrations), never at import. SQLite is tuned for a server: WAL, foreign keys, a busy timeout,
and every transaction (reads too) starts with `BEGIN IMMEDIATE`: a deferred transaction that
reads and then writes fails at once with "database is locked" when another writer committed
in between, while immediate ones wait for the lock for up to the busy timeout. A file's
engine has one connection, handed out in turn, so that a process's transactions queue in
order rather than poll for the lock (decision 0038). The price is that requests on SQLite are
serialised; PostgreSQL is the database for concurrency.
Statement parameters are never rendered into error messages (`hide_parameters`), so an
unexpected database error cannot log an email, a hash or a task's text.

In production the configured database must exist: a SQLite path that names no file is a
`ConfigurationError` (`check_database_exists`), not a new empty database that would answer
every request with a 503. Development creates `./data/tasks.db` (and its folder) on first use,
and an explicit URL is opened as given: that is how the migrations create a database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy import event, exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import ConfigurationError, Settings
from app.db.pool import FairAsyncQueuePool
from app.db.text_search import SQLITE_LOWER_FUNCTION, sqlite_unicode_lower

SQLITE_BUSY_TIMEOUT_MS = 5000


def check_database_exists(settings: Settings) -> None:
    """In production, refuse a configured SQLite database whose file does not exist (a
    mistyped path, a volume not mounted): ConfigurationError, saying what to do."""
    url = settings.sqlalchemy_url
    if not settings.is_production or url.get_backend_name() != "sqlite":
        return
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigurationError(
            f"DATABASE_URL names a SQLite database that does not exist: {path}. In production "
            "the service does not create one: correct the path, or create the database with "
            "`alembic upgrade head` first."
        )


def create_engine_for(
    settings: Settings, url: URL | None = None, *, idle_in_transaction_seconds: float | None = None
) -> AsyncEngine:
    """The engine of `url`, by default the configured database (`settings.sqlalchemy_url`),
    which in production must exist (`check_database_exists`). PostgreSQL ends a session of
    it left idle in a transaction for `idle_in_transaction_seconds` (when given: the
    workers', which connect to the server itself, not through a pooler)."""
    if url is None:
        check_database_exists(settings)
        url = settings.sqlalchemy_url
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    engine = create_async_engine(
        url,
        # No pool_pre_ping: on asyncpg it costs three round trips (BEGIN, a ping, ROLLBACK)
        # per checkout. `_discard_closed_connections` below is the free equivalent.
        #
        # DB_MAX_OVERFLOW connections beyond DB_POOL_SIZE are opened when load needs them
        # and then kept, like the others (until pool_recycle). SQLAlchemy's own overflow
        # closes such a connection as soon as it comes back to a pool holding DB_POOL_SIZE
        # idle ones, so a load hovering around the pool size opened and closed a connection
        # (TCP, TLS, authentication, a new server process, re-preparing every statement)
        # every few requests: a third of the CPU per request, and 503s when connecting took
        # longer than DB_CONNECT_TIMEOUT_SECONDS under load (docs/performance.md, Profile).
        # The maximum stays DB_POOL_SIZE + DB_MAX_OVERFLOW per process.
        pool_size=settings.db_pool_size + settings.db_max_overflow,
        max_overflow=0,
        # Waiting requests are served first come, first served (app/db/pool.py): with
        # SQLAlchemy's own queue a waiter could lose its turn to newcomers dozens of times.
        poolclass=FairAsyncQueuePool,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args=_asyncpg_connect_args(settings, idle_in_transaction_seconds)
        if url.drivername.endswith("asyncpg")
        else {},
    )
    event.listen(engine.sync_engine.pool, "checkout", _discard_closed_connections)
    return engine


def _discard_closed_connections(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Replace a pooled connection that the server has closed, before anyone uses it.

    When PostgreSQL restarts or ends a session, it closes the socket; the event loop sees
    that at once and asyncpg marks the connection closed, even while it sits idle in the
    pool. Raising DisconnectionError here makes the pool drop it and hand out another (or
    a new) connection: what pool_pre_ping achieves, without a round trip. A connection cut
    off without the server closing it (a network partition) fails on first use instead,
    which the error handlers answer with a 503, and the pool then drops it.
    """
    driver = record.driver_connection
    is_closed = getattr(driver, "is_closed", None)
    if is_closed is not None and is_closed():
        raise exc.DisconnectionError("the server closed this connection")


# Every session's settings (startup parameters PgBouncer passes on). TimeZone: timestamps the
# statements turn into text (an event's `changes`) are written in UTC, whatever the server's
# default: in another zone the edges of the accepted range read as years 10000 or "BC", which
# Python cannot parse, and the event could not be shown (a 500 on every page holding it).
_SESSION_SETTINGS = {"application_name": "tasks-api", "TimeZone": "UTC"}


def idle_in_transaction_setting(seconds: float) -> dict[str, str]:
    """The server setting that ends a session left idle in a transaction for `seconds`."""
    return {"idle_in_transaction_session_timeout": str(round(seconds * 1000))}


def _asyncpg_connect_args(
    settings: Settings, idle_in_transaction_seconds: float | None
) -> dict[str, Any]:
    if settings.db_transaction_pooling:
        # Behind a pooler in transaction mode each transaction may meet another server
        # session (decision 0034): no statement is kept prepared across transactions, the
        # names of those prepared within one are unique (two clients' sessions may share a
        # server session), and `jit` is not sent: PgBouncer refuses unknown startup
        # parameters, so the database itself is configured with jit off. A statement sent
        # on its own needs nothing more: asyncpg parses the unnamed statement ending with a
        # Flush, not a Sync, so the pooler keeps the session until its execution's Sync.
        return {
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": 30,
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
            "server_settings": _SESSION_SETTINGS,
        }
    idle = (
        {}
        if idle_in_transaction_seconds is None
        else idle_in_transaction_setting(idle_in_transaction_seconds)
    )
    return {
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": 30,
        # JIT compilation costs more than it saves for short OLTP queries.
        "server_settings": {"jit": "off", **_SESSION_SETTINGS, **idle},
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4().hex}__"


def _sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database, or a `file:` URI (which says
    itself whether it may be created: `mode=rw` or `rwc`)."""
    if not url.database or url.database == ":memory:" or url.query.get("uri"):
        return None
    return Path(url.database).expanduser()


def _sqlite_engine(url: URL) -> AsyncEngine:
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # A file takes one writer at a time, and every transaction here writes or may (BEGIN
    # IMMEDIATE). With several connections each waiting for the file's lock in SQLite's busy
    # handler, which sleeps and polls, a transaction could lose the lock to newcomers for
    # seconds under a steady stream of them, and its request ended as a 503 with nothing
    # done. One connection, handed out first come first served (`FairAsyncQueuePool`), makes
    # the process's transactions queue in order instead (docs/decisions/0038).
    one_at_a_time: dict[str, Any] = (
        {}
        # In memory (or a `file:` URI, which may be), SQLAlchemy's own pool, which keeps the
        # one database.
        if path is None
        else {
            "poolclass": FairAsyncQueuePool,
            "pool_size": 1,
            "max_overflow": 0,
            "pool_timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        }
    )
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        hide_parameters=True,
        **one_at_a_time,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        dbapi_connection.create_function(
            SQLITE_LOWER_FUNCTION, 1, sqlite_unicode_lower, deterministic=True
        )

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_sessionmaker(bind: Any) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)
