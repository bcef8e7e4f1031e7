"""The application factory. `uvicorn app.main:app` serves what `create_app()` builds."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import structlog
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from sqlalchemy.engine import URL

from app.api import health, metrics
from app.api.deps import reject_unknown_query_params, require_json_body
from app.api.metrics import RequestMetrics
from app.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.api.problems import install_problem_handlers, problem_component_schemas
from app.api.rate_limit import RateLimiter
from app.api.v1.router import api_router
from app.core.config import (
    PROJECT_ROOT,
    ConfigurationError,
    Environment,
    Settings,
    get_settings,
)
from app.core.logging import configure_logging
from app.db.session import create_engine_for, create_sessionmaker

log = structlog.get_logger("app")


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def upgrade_to_head(url: URL) -> None:
    """`alembic upgrade head` on `url`, from any working directory."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = url.render_as_string(hide_password=False)
    command.upgrade(config, "head")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    try:
        settings.signing_key  # noqa: B018 - resolve now: refuse to start rather than fail later
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
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        generate_unique_id_function=_operation_id,
        title="Tasks API",
        version="1.0.0",
        description="A task management API designed assuming clients will misbehave.",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query_params), Depends(require_json_body)],
    )
    # `/tasks/` is not `/tasks`: a 404 problem, not a redirect built from the Host header.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings)
    app.state.metrics = RequestMetrics(app)
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(api_router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
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
            expose_headers=[
                "ETag",
                "Location",
                "Link",
                "X-Request-ID",
                "Retry-After",
                "RateLimit",
                "RateLimit-Policy",
                "Idempotent-Replayed",
            ],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so it is the outermost of ours: every response, errors included, gets
    # the request id.
    app.add_middleware(RequestContextMiddleware)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                problem_component_schemas()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app


app = create_app()
