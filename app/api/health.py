"""Liveness and readiness probes (outside the versioned API); HEAD too, as for every GET."""

from __future__ import annotations

import asyncio
from functools import cache

import anyio.to_thread
import structlog
from fastapi import Request
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.openapi import documented
from app.api.routing import api_router
from app.core.config import PROJECT_ROOT
from app.core.errors import ServiceUnavailable

router = api_router("", "operations")
log = structlog.get_logger("app.health")

READINESS_TIMEOUT_SECONDS = 3.0

_NOT_ANSWERING = "The database does not answer."
_NOT_MIGRATED = "The database is not migrated for this version of the service; run the migrations."


@cache
def schema_heads() -> frozenset[str]:
    """The head revisions of migrations/: what `alembic_version` holds once the database is
    migrated for this code. Read from the scripts once per process (it imports every one)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(Config(str(PROJECT_ROOT / "alembic.ini")))
    return frozenset(scripts.get_heads())


class _NotMigrated(Exception):
    pass


def _no_such_table(exc: sa_exc.DBAPIError) -> bool:
    """PostgreSQL's undefined_table (42P01), SQLite's "no such table"."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "42P01")
    return "no such table" in str(exc.orig)


async def _check_schema(engine: AsyncEngine, heads: frozenset[str]) -> None:
    """One round trip: the revisions the database is at (none without a schema)."""
    async with engine.connect() as connection:
        try:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
        except sa_exc.DBAPIError as exc:
            if _no_such_table(exc):  # nothing was ever migrated here
                raise _NotMigrated from exc
            raise
        if frozenset(result.scalars()) != heads:
            raise _NotMigrated


@router.get("/healthz", summary="Liveness: 200 while the process runs", responses=documented())
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: 200 when the database answers and its schema is migrated",
    description=(
        "503 while the database does not answer, and while its schema is not at the head "
        "of this version's migrations (never migrated, not yet, or by another version)."
    ),
    responses=documented(503),
)
async def readyz(request: Request) -> dict[str, str]:
    try:
        expected = await _expected_heads()
    except Exception as exc:  # the scripts cannot be read: the schema cannot be vouched for
        log.error("readiness_unknown_schema", error_class=type(exc).__name__)
        raise ServiceUnavailable(_NOT_MIGRATED) from exc
    try:
        await asyncio.wait_for(
            _check_schema(request.app.state.engine, expected), timeout=READINESS_TIMEOUT_SECONDS
        )
    except _NotMigrated as exc:
        raise ServiceUnavailable(_NOT_MIGRATED) from exc
    except Exception as exc:  # any failure to answer means "not ready", never a 500
        raise ServiceUnavailable(_NOT_ANSWERING) from exc
    return {"status": "ready", "database": "ok"}


async def _expected_heads() -> frozenset[str]:
    if schema_heads.cache_info().currsize:
        return schema_heads()
    # The first probe reads the scripts in a thread: the event loop keeps serving.
    return await anyio.to_thread.run_sync(schema_heads)
