"""What a database error means for a request: the one classification of database errors.

Both ways to the database end here: errors SQLAlchemy raised (the ORM, Core) and errors the
driver raised on a statement sent straight to it (`app.db.access`). `app.api.problems` turns
the classes into answers: unavailable (the server lost, refusing connections, overloaded) is
a 503 with `Retry-After`, an integrity violation a 409, a transaction the server rolled back
for a concurrent one a 409 with `Retry-After`, anything else a bug (500).
"""

from __future__ import annotations

import asyncio
import enum

from sqlalchemy import exc as sa_exc

# SQLSTATEs of a server that cannot take the work now: class 08 (connection exceptions),
# admin or crash shutdown and "cannot connect now" (starting up, shutting down), too many
# connections, and a statement cancelled (statement_timeout, or an operator cancelling it).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "57014")
INTEGRITY_SQLSTATE_CLASS = "23"
# SQLSTATEs of a transaction the server rolled back because of a concurrent one: a deadlock
# (two writers each waiting for a row the other holds; one of them is chosen) and a
# serialization failure. Nothing of it was written, and the same request sent again most
# likely goes through (docs/decisions/0036).
CONCURRENCY_SQLSTATES = ("40P01", "40001")
# SQLSTATEs with which a server turns a new connection away for what it is asked for: a
# database not accepting connections (55000: ALTER DATABASE ... ALLOW_CONNECTIONS false), one
# that is gone (3D000), a login or its CONNECT privilege refused (class 28, 42501). Only
# while connecting: in answer to a statement the same codes are a bug. (SQLAlchemy names no
# statement for a COMMIT's error either; no COMMIT here can raise these, with no deferred
# trigger or privilege check in the schema.)
REFUSED_CONNECTION_SQLSTATES = ("55000", "3D000", "28", "42501")


class DatabaseErrorKind(enum.Enum):
    UNAVAILABLE = "unavailable"  # retry later: lost, refused, overloaded, timed out
    INTEGRITY = "integrity"  # a constraint refused the write
    CONCURRENT = "concurrent"  # rolled back for a concurrent transaction: send it again
    OTHER = "other"  # a bug: a statement the database could not run


def sqlstate_of(error: BaseException) -> str:
    """The SQLSTATE of a driver's error, or of the one SQLAlchemy wraps ("" when none)."""
    if isinstance(error, sa_exc.DBAPIError):
        error = error.orig or error
    return str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or "")


def _connection_refused(error: BaseException, sqlstate: str) -> bool:
    """Whether `error` is the server turning a new connection away (SQLAlchemy names no
    statement for an error raised while connecting)."""
    return (
        isinstance(error, sa_exc.DBAPIError)
        and error.statement is None
        and sqlstate.startswith(REFUSED_CONNECTION_SQLSTATES)
    )


def _driver_unavailable_errors() -> tuple[type[BaseException], ...]:
    """asyncpg's own errors that mean the connection is unusable, not the statement wrong.

    InternalClientError: the driver's protocol state out of step with its connection
    ("another operation is in progress"), seen on a connection a server restart cut
    mid-statement. Imported lazily: asyncpg is only installed where PostgreSQL is used.
    """
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - always installed with the service
        return ()
    return (asyncpg.InterfaceError, asyncpg.InternalClientError)


def classify(error: BaseException) -> DatabaseErrorKind | None:
    """What `error` means, or None when it is not a database error at all."""
    if isinstance(error, sa_exc.IntegrityError):
        return DatabaseErrorKind.INTEGRITY
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return DatabaseErrorKind.UNAVAILABLE
    sqlstate = sqlstate_of(error)
    if sqlstate.startswith(INTEGRITY_SQLSTATE_CLASS):
        return DatabaseErrorKind.INTEGRITY
    if sqlstate in CONCURRENCY_SQLSTATES:
        return DatabaseErrorKind.CONCURRENT
    if sqlstate.startswith(UNAVAILABLE_SQLSTATES) or _connection_refused(error, sqlstate):
        return DatabaseErrorKind.UNAVAILABLE
    if sqlstate:
        return DatabaseErrorKind.OTHER  # the server refused the statement itself
    # Lost or refused connections (asyncpg raises plain OSErrors when it cannot connect,
    # sqlalchemy#11956), pool exhaustion (SQLAlchemy's TimeoutError), a hung connect.
    if isinstance(
        error,
        (
            sa_exc.OperationalError,
            sa_exc.InterfaceError,
            sa_exc.TimeoutError,
            OSError,
            asyncio.TimeoutError,
            TimeoutError,
            *_driver_unavailable_errors(),
        ),
    ):
        return DatabaseErrorKind.UNAVAILABLE
    if isinstance(error, sa_exc.DBAPIError):
        return DatabaseErrorKind.OTHER
    return None


# SQLSTATEs of a server that refused or ended the connection (not of one that is busy: too
# many connections, a statement cancelled for taking too long).
_UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def unreachable(error: BaseException) -> bool:
    """Whether `error`, an unavailable database's (`classify`), says it could not be reached
    at all (connections refused, lost, or ended by a shutdown), rather than that it was busy
    (the pool or a statement timed out, too many connections). A request that met the first
    was not served, whoever sent it; one that met the second may be part of the load."""
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig else error
    if isinstance(cause, (sa_exc.TimeoutError, TimeoutError)):
        return False
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = sqlstate_of(error)
    if sqlstate:
        return sqlstate.startswith(_UNREACHABLE_SQLSTATES) or _connection_refused(error, sqlstate)
    return isinstance(
        cause,
        (sa_exc.OperationalError, sa_exc.InterfaceError, OSError, *_driver_unavailable_errors()),
    )
