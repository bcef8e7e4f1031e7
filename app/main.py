"""The application factory. `uvicorn app.main:app` serves what `create_app()` builds."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio.to_thread
import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy.engine import URL

from app.api import health, metrics
from app.api.deprecation import V1DeprecationMiddleware
from app.api.metrics import RequestMetrics
from app.api.middleware import (
    BodySizeLimitMiddleware,
    LastResortMiddleware,
    MetricsMiddleware,
    ProblemCORSMiddleware,
    QueryEncodingMiddleware,
    RequestIdMiddleware,
    RequestLogMiddleware,
)
from app.api.openapi import HEADERS as RESPONSE_HEADERS
from app.api.openapi import complete_document
from app.api.problems import install_problem_handlers
from app.api.rate_limit import RateLimiter
from app.api.routing import operation_id
from app.api.v1 import API_V1_PREFIX
from app.api.v1 import router as v1
from app.api.v2 import router as v2
from app.core.config import (
    PROJECT_ROOT,
    ConfigurationError,
    Environment,
    Settings,
    get_settings,
)
from app.core.logging import configure_logging
from app.db.session import check_database_exists, create_engine_for, create_sessionmaker
from app.jobs.engine import jobs_in_process

log = structlog.get_logger("app")


def upgrade_to_head(url: URL) -> None:
    """`alembic upgrade head` on `url`, from any working directory."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url.render_as_string(hide_password=False)
    command.upgrade(config, "head")


# Python's cyclic garbage collector runs every 700 net allocations of container objects by
# default, and each run of the oldest generation walks every object the process holds (the
# framework, the ORM, the schemas: several hundred thousand). With many requests in flight,
# the young objects of all of them survive into older generations, and under load the
# collector took 0.2 ms per request on average, in pauses of tens of milliseconds (measured
# in docs/performance.md). The objects that exist once the app has started live as long as
# the process: `gc.freeze()` takes them out of every collection, and a larger first threshold
# lets a request's short-lived cycles be collected in batches. Done once per process.
GC_GEN0_THRESHOLD = 5000
_gc_tuned = False


def tune_garbage_collector() -> None:
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


# Routes are matched in the order they are given, so the task routes, which carry most of the
# traffic, come first (each route tried before the right one costs a match). The OpenAPI
# document keeps its reading order: operations, then authentication, users, tasks.
_DOC_ORDER = ("operations", "auth", "users", "tasks")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, configured by `settings` (by default the environment's)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    try:
        settings.signing_key  # noqa: B018 - resolve now: refuse to start rather than fail later
        check_database_exists(settings)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - before logging is of use
        raise SystemExit(1) from None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine_for(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        if settings.environment is Environment.DEVELOPMENT and engine.dialect.name == "sqlite":
            # Zero-setup development: `uvicorn app.main:app --reload` works on a fresh
            # checkout. Production and PostgreSQL are migrated explicitly by the operator.
            await anyio.to_thread.run_sync(upgrade_to_head, settings.sqlalchemy_url)
        log.info(
            "startup",
            environment=settings.environment.value,
            database=settings.sqlalchemy_url.get_backend_name(),
        )
        tune_garbage_collector()
        try:
            async with AsyncExitStack() as stack:
                if settings.runs_jobs_in_api:
                    # SQLite (one host): this process runs the background jobs itself
                    # (app.jobs.engine; on PostgreSQL `python -m app.cli worker` does).
                    app.state.job_runtime = await stack.enter_async_context(
                        jobs_in_process(
                            settings,
                            app.state.sessionmaker if engine.dialect.name == "sqlite" else None,
                        )
                    )
                yield
        finally:
            await engine.dispose()

    app = FastAPI(
        # Every router's routes as they were declared, in matching order (see
        # app.api.routing.api_router for why they are not nested with include_router).
        routes=[
            route
            for router in (*v1.ROUTERS, *v2.ROUTERS, health.router, metrics.router)
            for route in router.routes
        ],
        generate_unique_id_function=operation_id,
        title="Tasks API",
        version="1.0.0",
        description="A task management API designed assuming clients will misbehave.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry bridge asks on every request whether a provider has
        # been configured (about 10 us, several environment lookups). The service's
        # observability is Prometheus /metrics and JSON logs (docs/decisions/0015), so it
        # is switched off rather than paid for per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # `/tasks/` is not `/tasks`: a 404 problem, not a redirect built from the Host header.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings)
    app.state.metrics = RequestMetrics(app)
    install_problem_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Idempotency-Key",
                "X-Request-ID",
            ],
            # Every header the service sends for clients to read (app/api/openapi.py).
            expose_headers=list(RESPONSE_HEADERS),
        )
    # Each add_middleware wraps what was added before: the last added is the outermost. So,
    # outermost first: the request id (on every response, errors included), the log line
    # and the metrics (which see the last resort's 500), the last resort, the query's
    # encoding, the body limit.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(QueryEncodingMiddleware)
    app.add_middleware(LastResortMiddleware)
    if settings.api_v1_deprecated_at is not None:
        # Retiring v1 (app/api/deprecation.py): inside the request id, the log line and the
        # metrics (a 410 is answered like any other), outside the last resort (its 500 is a
        # v1 response too). Not installed at all until the operator sets a deprecation.
        app.add_middleware(
            V1DeprecationMiddleware,
            deprecated_at=settings.api_v1_deprecated_at,
            sunset_at=settings.api_v1_sunset_at,
        )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestLogMiddleware, log_successes=not settings.is_production)
    app.add_middleware(RequestIdMiddleware)

    def openapi_document() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete_document(
                document,
                reading_order=_DOC_ORDER,
                deprecated_prefix=(
                    f"{API_V1_PREFIX}/" if settings.api_v1_deprecated_at is not None else None
                ),
                sunset=settings.api_v1_sunset_at is not None,
            )
        return app.openapi_schema

    app.openapi = openapi_document  # type: ignore[method-assign]
    return app


app = create_app()
