"""CORS with `CORS_ORIGINS` set: a browser on an allowed origin may call the API and read
its headers; a preflight refused (another origin, a method or header not allowed) is a 400
problem like every other error (contract section 1: problem+json on every non-2xx), where
Starlette answered it in plain text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from tests.conftest import make_settings
from tests.support import assert_problem

ALLOWED = "https://app.example.com"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'cors.db'}", cors_origins=[ALLOWED]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def preflight(origin: str, method: str = "POST", headers: str | None = None) -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return asked


async def test_a_preflight_from_an_allowed_origin_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/v1/tasks", headers=preflight(ALLOWED, "PATCH", "Authorization, If-Match")
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "PATCH" in response.headers["access-control-allow-methods"]


@pytest.mark.parametrize(
    ("asked", "refused"),
    [
        (preflight("https://evil.example"), "origin"),
        (preflight(ALLOWED, "PUT"), "method"),
        (preflight(ALLOWED, "POST", "Authorization, X-Evil"), "headers"),
        (preflight("https://evil.example", "PUT", "X-Evil"), "origin, method, headers"),
    ],
)
async def test_a_refused_preflight_is_a_400_problem(
    client: httpx.AsyncClient, asked: dict[str, str], refused: str
) -> None:
    response = await client.options("/api/v1/tasks", headers=asked)
    body = assert_problem(response, 400, absent=["evil", "X-Evil"])
    assert body["detail"] == f"This cross-origin request is not allowed (its {refused})."
    assert "access-control-allow-origin" not in response.headers


async def test_a_request_from_an_allowed_origin_may_read_the_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/tasks", headers={"Origin": ALLOWED})
    assert_problem(response, 401)
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    other = await client.get("/api/v1/tasks", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
