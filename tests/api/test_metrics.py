"""`GET /metrics`: Prometheus text with request counts and latency by route template; open by
default, only to `Authorization: Bearer <METRICS_TOKEN>` when that is set."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import pytest

from app.main import create_app
from tests.api.conftest import Headers
from tests.conftest import make_settings
from tests.support import assert_problem


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition, 0 when absent."""
    for match in re.finditer(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(2))
    return 0.0


class TestMetrics:
    async def test_prometheus_text_format(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE http_requests_total counter" in response.text
        assert "# TYPE http_request_duration_seconds histogram" in response.text

    async def test_counts_by_route_template_method_and_status(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        template = "/api/v1/tasks/{task_id}"
        before = (await client.get("/metrics")).text
        created = await client.post("/api/v1/tasks", json={"title": "a"}, headers=alice_h)
        task_id = created.json()["id"]
        for _ in range(3):
            await client.get(f"/api/v1/tasks/{task_id}", headers=alice_h)
        await client.get("/api/v1/tasks/999999", headers=alice_h)
        after = (await client.get("/metrics")).text

        def delta(**labels: str) -> float:
            name = "http_requests_total"
            return sample(after, name, **labels) - sample(before, name, **labels)

        assert delta(route=template, method="GET", status="200") == 3
        assert delta(route=template, method="GET", status="404") == 1
        assert delta(route="/api/v1/tasks", method="POST", status="201") == 1
        assert f"/api/v1/tasks/{task_id}" not in after  # ids never become labels
        assert (
            sample(
                after,
                "http_request_duration_seconds_count",
                route=template,
                method="GET",
                status="200",
            )
            >= 3
        )

    async def test_unknown_paths_share_one_label(self, client: httpx.AsyncClient) -> None:
        for path in ("/nope", "/random/a1", "/random/b2"):
            await client.get(path)
        text = (await client.get("/metrics")).text
        assert "/random/" not in text
        assert sample(text, "http_requests_total", route="<unmatched>", status="404") >= 3

    async def test_pool_gauges(self, client: httpx.AsyncClient) -> None:
        text = (await client.get("/metrics")).text
        for gauge in ("db_pool_size", "db_pool_checked_out", "db_pool_checked_in"):
            assert re.search(rf"^{gauge} \d", text, re.M), gauge


METRICS_TOKEN = "metrics-scrape-" + "k3y" * 8


@pytest.fixture
async def protected(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app with METRICS_TOKEN set (and rate limits on: wrong tokens are counted)."""
    app = create_app(
        make_settings(
            database_url,
            metrics_token=METRICS_TOKEN,
            rate_limit_enabled=True,
            rate_limit_key_prefix=f"metrics-{uuid.uuid4().hex[:8]}",
            rate_limit_anonymous_ip="3/minute",
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            yield client


@contextmanager
def logged_text() -> Iterator[list[str]]:
    """Everything the service logs while the block runs, as text (after the app set up
    logging, which replaces the root logger's handlers)."""
    lines: list[str] = []
    formatter = logging.Formatter()

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name.partition(".")[0] in {"httpx", "httpcore"}:
                return  # the test's own HTTP client, not the service
            lines.append(f"{formatter.format(record)} {record.msg!r} {record.args!r}")

    handler = Recorder(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)


class TestMetricsToken:
    @pytest.mark.parametrize(
        "authorization",
        [
            None,
            "Bearer not-the-metrics-token",
            f"Bearer {METRICS_TOKEN}x",
            f"Bearer {METRICS_TOKEN[:-1]}",
            f"Basic {METRICS_TOKEN}",
            METRICS_TOKEN,
            "Bearer",
        ],
        ids=["none", "wrong", "longer", "shorter", "basic", "no-scheme", "empty"],
    )
    async def test_without_the_token_a_401_problem_and_no_metrics(
        self, protected: httpx.AsyncClient, authorization: str | None
    ) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        response = await protected.get("/metrics", headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "http_requests_total" not in response.text
        assert METRICS_TOKEN not in response.text

    async def test_the_token_twice_is_refused(self, protected: httpx.AsyncClient) -> None:
        """One request, one reading (decision 0010), as on every other route."""
        token = ("Authorization", f"Bearer {METRICS_TOKEN}")
        response = await protected.get("/metrics", headers=[token, token])
        assert_problem(response, 401)
        assert "http_requests_total" not in response.text

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
    async def test_with_the_token_the_metrics(
        self, protected: httpx.AsyncClient, scheme: str
    ) -> None:
        response = await protected.get(
            "/metrics", headers={"Authorization": f"{scheme} {METRICS_TOKEN}"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE http_requests_total counter" in response.text

    async def test_wrong_tokens_are_limited_per_address_the_right_one_is_not(
        self, protected: httpx.AsyncClient
    ) -> None:
        wrong = {"Authorization": "Bearer guess"}
        right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        guesses = [await protected.get("/metrics", headers=wrong) for _ in range(5)]
        scrapes = [await protected.get("/metrics", headers=right) for _ in range(5)]
        assert [r.status_code for r in guesses] == [401, 401, 401, 429, 429]
        assert_problem(guesses[-1], 429)
        assert [r.status_code for r in scrapes] == [200] * 5

    async def test_the_token_is_never_logged_nor_shown(self, protected: httpx.AsyncClient) -> None:
        with logged_text() as lines:
            await protected.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            await protected.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
            await protected.get(f"/metrics?token={METRICS_TOKEN}")
        assert lines  # the requests were logged
        assert not [line for line in lines if METRICS_TOKEN in line]
        settings = make_settings("sqlite://", metrics_token=METRICS_TOKEN)
        assert METRICS_TOKEN not in repr(settings)
        assert METRICS_TOKEN not in str(settings.model_dump())
