"""`GET /metrics`: Prometheus text with request counts and latency by route template."""

from __future__ import annotations

import re

import httpx

from tests.api.conftest import Headers


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
