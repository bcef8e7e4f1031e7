"""Liveness and readiness probes (outside the versioned API); HEAD too, as for every GET."""

from __future__ import annotations

import asyncio

from fastapi import Request
from sqlalchemy import text

from app.api.openapi import documented
from app.api.routing import api_router
from app.core.errors import ServiceUnavailable

router = api_router("", "operations")

READINESS_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", summary="Liveness: 200 while the process runs", responses=documented())
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="Readiness: 200 when the database answers", responses=documented(503)
)
async def readyz(request: Request) -> dict[str, str]:
    async def ping() -> None:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), timeout=READINESS_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to answer means "not ready", never a 500
        raise ServiceUnavailable("The database does not answer.") from exc
    return {"status": "ready", "database": "ok"}
