"""`app.db.errors.unreachable`: which database errors say it could not be reached (a request
that met one was not served, and gives back its rate-limit counts) and which say it was busy
(the request may be part of the load, and stays counted)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from app.db.errors import DatabaseErrorKind, classify, unreachable


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(), True),
        (sa_exc.OperationalError("SELECT 1", {}, ConnectionResetError()), True),
        (asyncpg.AdminShutdownError("terminating connection"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (sa_exc.TimeoutError("QueuePool limit reached"), False),
        (TimeoutError(), False),
        (sa_exc.OperationalError("SELECT 1", {}, TimeoutError()), False),
        (asyncpg.TooManyConnectionsError("too many clients"), False),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), False),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, bool) else str(value),
)
def test_unreachable_or_busy(error: BaseException, expected: bool) -> None:
    assert classify(error) is DatabaseErrorKind.UNAVAILABLE
    assert unreachable(error) is expected
