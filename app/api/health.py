"""Liveness and readiness probes (outside the versioned API); GET and HEAD, as probes use both."""

from __future__ import annotations

import asyncio

from fastapi import Request
from sqlalchemy import text

from app.api.problems import problem_responses
from app.api.routing import api_router
from app.core.errors import ServiceUnavailable

router = api_router("", "operations")

READINESS_TIMEOUT_SECONDS = 3.0


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> dict[str, str]:
    async def ping() -> None:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), timeout=READINESS_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to answer means "not ready", never a 500
        raise ServiceUnavailable("The database does not answer.") from exc
    return {"status": "ready", "database": "ok"}


for _method in ("GET", "HEAD"):
    router.add_api_route(
        "/healthz",
        healthz,
        methods=[_method],
        name=f"healthz_{_method.lower()}",
        summary="Liveness: 200 while the process runs",
        responses=problem_responses(),
    )
    router.add_api_route(
        "/readyz",
        readyz,
        methods=[_method],
        name=f"readyz_{_method.lower()}",
        summary="Readiness: 200 when the database answers",
        responses=problem_responses(503),
    )
