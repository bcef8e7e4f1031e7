"""Prometheus metrics: requests and latency by route template, method and status; DB pool;
background work (jobs by kind and state, the age of the newest worker heartbeat, webhook
attempts and mail by status), read from the database at scrape time.

Each app has its own registry (tests build many apps in one process). `GET /metrics`
serves it in the Prometheus text format, to anyone unless `METRICS_TOKEN` is set: then only
to `Authorization: Bearer <METRICS_TOKEN>` (the token is compared in constant time and never
logged; a wrong one is a 401 problem, counted against the address's anonymous limit).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Scope

from app.api.deps import RateLimiterDep
from app.api.openapi import documented
from app.api.routing import api_router
from app.core.errors import AppError, Unauthorized
from app.db.access import Db
from app.services.operations import JobReport, job_report

# Unmatched paths share one label value, so a scan of random URLs cannot grow the series.
UNMATCHED = "<unmatched>"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestMetrics:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request to the end of the response, by route template, method, status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(app))
        self.registry.register(_JobCollector(app))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        # The labelled children are looked up once per label set (labels() takes a lock and
        # builds a tuple on every call): every request passes here.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    @staticmethod
    def of(scope: Scope) -> RequestMetrics:
        """The metrics of the app serving `scope`."""
        metrics: RequestMetrics = scope["app"].state.metrics
        return metrics

    @staticmethod
    def route_label(scope: Scope) -> str:
        """The template of the route that answered (`/api/v1/tasks/{task_id}`), never a raw
        path: labels stay few however many URLs are requested."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else UNMATCHED


class _PoolCollector(Collector):
    """Connection-pool gauges, read at scrape time from the engine's pool."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = getattr(self.app.state, "engine", None)
        pool = engine.pool if engine is not None else None
        for name, help_text, reading in (
            ("db_pool_size", "Connections the pool keeps.", "size"),
            ("db_pool_checked_out", "Connections in use by requests.", "checkedout"),
            ("db_pool_checked_in", "Idle connections in the pool.", "checkedin"),
            ("db_pool_overflow", "Connections beyond the pool size.", "overflow"),
        ):
            reader = getattr(pool, reading, None)
            if callable(reader):
                yield GaugeMetricFamily(name, help_text, value=float(reader()))


class _JobCollector(Collector):
    """Background-work gauges, from the report the scrape read just before (`metrics`)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report: JobReport | None = getattr(self.app.state, "job_report", None)
        if report is None:
            return
        jobs = GaugeMetricFamily(
            "jobs", "Jobs in the engine's queue, by job and state.", labels=["job", "state"]
        )
        for name, state, count in report.queue:
            jobs.add_metric([name, state], float(count))
        yield jobs
        for metric, help_text, counts in (
            ("webhook_deliveries", "Webhook attempts, by status.", report.deliveries),
            ("notification_mail", "Mail owed for notifications, by status.", report.mail),
        ):
            family = GaugeMetricFamily(metric, help_text, labels=["status"])
            for status, count in sorted(counts.items()):
                family.add_metric([status], float(count))
            yield family
        runtime = getattr(self.app.state, "job_runtime", None)
        newest = report.newest_heartbeat(getattr(runtime, "last_beat", None))
        if newest is not None:
            yield GaugeMetricFamily(
                "job_worker_heartbeat_age_seconds",
                "Seconds since the newest heartbeat of any job worker.",
                value=max(0.0, (datetime.now(UTC) - newest).total_seconds()),
            )


router = api_router("", "operations")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Open unless `METRICS_TOKEN` is set; then only with "
    "`Authorization: Bearer <METRICS_TOKEN>` (401 otherwise).",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **documented(401, 429),
    },
)
async def metrics(request: Request, limiter: RateLimiterDep, response: Response) -> Response:
    token = request.app.state.settings.metrics_token
    if token is not None and not _bearer_matches(request, token.get_secret_value()):
        # A wrong guess is counted like any request without a valid credential.
        response.headers.update(await limiter.hit_anonymous(request))
        raise Unauthorized("The metrics token is missing or wrong.")
    try:
        async with Db.transaction_for(request.app.state.sessionmaker) as db:
            request.app.state.job_report = await job_report(db)
    except AppError:
        # The database is away (a 503 for any request that needs it): the process's own
        # metrics are still served, without the background work's.
        request.app.state.job_report = None
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _bearer_matches(request: Request, expected: str) -> bool:
    """Whether the request's `Authorization: Bearer` token is `expected`, compared in
    constant time (digests of equal length, so not even the length is told). Two
    `Authorization` headers never match (one request, one reading: decision 0010)."""
    headers = request.headers.getlist("authorization")
    if len(headers) != 1:
        return False
    scheme, _, credentials = headers[0].partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = hashlib.sha256(credentials.strip().encode("utf-8", "surrogatepass")).digest()
    wanted = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(given, wanted)
