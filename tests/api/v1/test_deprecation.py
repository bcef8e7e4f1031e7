"""Retiring v1 (spec api-v2 section 1): the deprecation headers on every v1 response once the
operator sets `API_V1_DEPRECATED_AT`, the sunset's date with `API_V1_SUNSET_AT`, and from the
sunset on a 410 for every v1 request, before anything else happens. Off by default; v2 never
carries any of it.

Each test builds an app with the settings it needs (tests.support.client_of_app), sharing the
test's rolled-back transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.api.deprecation import V1DeprecationMiddleware
from app.models.user import User
from tests.api.conftest import Headers
from tests.conftest import TEST_PASSWORD, UserFactory, make_settings
from tests.support import assert_problem, call_asgi, client_of_app

# 2026-01-01T00:00:00Z, and the far future.
DEPRECATED_AT = "2026-01-01T00:00:00Z"
DEPRECATION = "@1767225600"
SUNSET_LATER = "2099-01-01T02:00:00+02:00"  # not in UTC: the header says GMT
SUNSET_LATER_HEADER = "Thu, 01 Jan 2099 00:00:00 GMT"
SUNSET_PAST = "2026-06-01T12:30:00Z"
SUNSET_PAST_HEADER = "Mon, 01 Jun 2026 12:30:00 GMT"
SUCCESSOR = '</api/v2>; rel="successor-version"'
NOTICE_HEADERS = ("deprecation", "sunset")

AppClient = Callable[..., Any]


@pytest.fixture
def app_with(database_url: str, connection: AsyncConnection) -> AppClient:
    """`async with app_with(**settings) as (app, client)`: an app of those settings."""

    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        async with client_of_app(make_settings(database_url, **overrides), connection) as built:
            yield built

    return build


def links(response: httpx.Response) -> list[str]:
    """Every link of the response's `Link` field(s), as httpx joins them."""
    return [part.strip() for part in response.headers.get("link", "").split(",") if part]


def assert_notice(response: httpx.Response, *, sunset: str | None = None) -> None:
    assert response.headers["deprecation"] == DEPRECATION, dict(response.headers)
    assert SUCCESSOR in links(response)
    assert response.headers.get_list("deprecation") == [DEPRECATION]
    if sunset is None:
        assert "sunset" not in response.headers
    else:
        assert response.headers.get_list("sunset") == [sunset]


def assert_no_notice(response: httpx.Response) -> None:
    for name in NOTICE_HEADERS:
        assert name not in response.headers, (name, dict(response.headers))
    assert SUCCESSOR not in links(response)


async def add_tasks(client: httpx.AsyncClient, headers: Headers, count: int) -> None:
    for number in range(count):
        created = await client.post(
            "/api/v1/tasks", json={"title": f"task {number}"}, headers=headers
        )
        assert created.status_code == 201, created.text


class TestOffByDefault:
    async def test_no_headers_and_no_middleware(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        headers = auth_headers(await make_user())
        for path in ("/api/v1/users/me", "/api/v1/tasks", "/api/v1/nowhere", "/api/v2/roles"):
            assert_no_notice(await client.get(path, headers=headers))
            assert_no_notice(await client.get(path))
        # An unconfigured service does not even look at the path.
        installed: set[object] = {entry.cls for entry in app.user_middleware}
        assert V1DeprecationMiddleware not in installed


class TestDeprecated:
    async def test_every_v1_response_says_so(
        self,
        app_with: AppClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        headers = auth_headers(await make_user())
        async with app_with(api_v1_deprecated_at=DEPRECATED_AT) as (app, client):
            installed: set[object] = {entry.cls for entry in app.user_middleware}
            assert V1DeprecationMiddleware in installed
            await add_tasks(client, headers, 1)
            answers = [
                await client.get("/api/v1/users/me", headers=headers),
                await client.get("/api/v1/tasks", headers=headers),
                await client.post("/api/v1/tasks", json={"title": "x"}, headers=headers),
                await client.head("/api/v1/tasks", headers=headers),
            ]
            for response in answers:
                assert response.status_code < 300, response.text
                assert_notice(response)

    async def test_errors_too(
        self,
        app_with: AppClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        headers = auth_headers(await make_user())
        async with app_with(api_v1_deprecated_at=DEPRECATED_AT, max_body_bytes=1024) as (
            app,
            client,
        ):
            problems = [
                (401, await client.get("/api/v1/users/me")),
                (404, await client.get("/api/v1/tasks/987654321", headers=headers)),
                (404, await client.get("/api/v1/no/such/route")),
                (404, await client.get("/api/v1")),
                (405, await client.put("/api/v1/tasks", headers=headers)),
                (422, await client.get("/api/v1/tasks?limit=0", headers=headers)),
                (413, await client.post("/api/v1/users", content=b"x" * 2048)),
                (
                    401,
                    await client.post(
                        "/api/v1/auth/token", data={"username": "a", "password": "b"}
                    ),
                ),
            ]
            for status, response in problems:
                assert_problem(response, status)
                assert_notice(response)
            # A query that is not UTF-8 (no client library sends it): refused by middleware
            # further in, still with the notice.
            status, raw_headers, _ = await call_asgi(app, "GET", "/api/v1/tasks", query=b"q=\xff")
            assert status == 422
            assert raw_headers["deprecation"] == DEPRECATION

    async def test_the_successor_joins_a_next_page_link(
        self,
        app_with: AppClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        headers = auth_headers(await make_user())
        async with app_with(api_v1_deprecated_at=DEPRECATED_AT) as (_app, client):
            await add_tasks(client, headers, 2)
            page = await client.get("/api/v1/tasks?limit=1", headers=headers)
            assert page.status_code == 200
            assert page.json()["next_cursor"]
            found = links(page)
            assert len(found) == 2
            assert found[0].startswith("</api/v1/tasks?")
            assert found[0].endswith('rel="next"')
            assert found[1] == SUCCESSOR
            # One field, so that a client reading one `Link` line sees both.
            assert len(page.headers.get_list("link")) == 1
            last = await client.get(
                "/api/v1/tasks",
                params={"limit": 1, "cursor": page.json()["next_cursor"]},
                headers=headers,
            )
            assert links(last) == [SUCCESSOR]

    async def test_a_future_deprecation_is_announced(
        self, app_with: AppClient, make_user: UserFactory, auth_headers: Callable[[User], Headers]
    ) -> None:
        headers = auth_headers(await make_user())
        async with app_with(api_v1_deprecated_at="2098-01-01T00:00:00Z") as (_app, client):
            response = await client.get("/api/v1/users/me", headers=headers)
            assert response.status_code == 200
            assert response.headers["deprecation"] == "@4039372800"

    async def test_v2_and_the_rest_never_carry_it(
        self,
        app_with: AppClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        headers = auth_headers(await make_user())
        async with app_with(api_v1_deprecated_at=DEPRECATED_AT, api_v1_sunset_at=SUNSET_LATER) as (
            _app,
            client,
        ):
            for path in (
                "/api/v2/users/me",
                "/api/v2/roles",
                "/api/v2/nowhere",
                "/api/v10/tasks",
                "/api/v1x",
                "/healthz",
                "/openapi.json",
            ):
                for sent in (headers, {}):
                    assert_no_notice(await client.get(path, headers=sent))


class TestSunsetAhead:
    async def test_the_sunset_is_announced_and_v1_still_answers(
        self,
        app_with: AppClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        headers = auth_headers(await make_user())
        async with app_with(api_v1_deprecated_at=DEPRECATED_AT, api_v1_sunset_at=SUNSET_LATER) as (
            _app,
            client,
        ):
            me = await client.get("/api/v1/users/me", headers=headers)
            assert me.status_code == 200
            assert_notice(me, sunset=SUNSET_LATER_HEADER)
            missing = await client.get("/api/v1/tasks/987654321", headers=headers)
            assert_problem(missing, 404)
            assert_notice(missing, sunset=SUNSET_LATER_HEADER)


class _NoDatabase:
    """A sessionmaker that fails the request if anything asks it for the database."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was asked ({name})")

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the database was asked")


class TestAfterTheSunset:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/tasks"),
            ("POST", "/api/v1/tasks"),
            ("PATCH", "/api/v1/tasks/1"),
            ("DELETE", "/api/v1/tasks/1"),
            ("GET", "/api/v1/users/me"),
            ("POST", "/api/v1/auth/token"),
            ("POST", "/api/v1/auth/refresh"),
            ("GET", "/api/v1/no/such/route"),
            ("PUT", "/api/v1/tasks"),
            ("GET", "/api/v1"),
            ("OPTIONS", "/api/v1/tasks"),
        ],
    )
    async def test_every_v1_request_is_410_before_authentication(
        self,
        app_with: AppClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
        method: str,
        path: str,
    ) -> None:
        user = await make_user()
        async with app_with(api_v1_deprecated_at=DEPRECATED_AT, api_v1_sunset_at=SUNSET_PAST) as (
            _app,
            client,
        ):
            for headers in ({}, auth_headers(user), {"Authorization": "Bearer forged"}):
                response = await client.request(method, path, headers=headers, json={"x": 1})
                body = assert_problem(response, 410)
                assert body["type"].endswith(":gone")
                assert "v2" in body["detail"]
                assert "/api/v2" in body["detail"]
                assert "www-authenticate" not in response.headers
                assert_notice(response, sunset=SUNSET_PAST_HEADER)

    async def test_no_side_effect_and_no_database(
        self, app_with: AppClient, session: AsyncSession
    ) -> None:
        settings = {
            "api_v1_deprecated_at": DEPRECATED_AT,
            "api_v1_sunset_at": SUNSET_PAST,
            "max_body_bytes": 1024,
        }
        async with app_with(**settings) as (app, client):
            app.state.sessionmaker = _NoDatabase()
            body = {"email": "late@example.com", "password": TEST_PASSWORD}
            assert_problem(await client.post("/api/v1/users", json=body), 410)
            # Whatever the request holds: a body over the limit, a query that is not UTF-8.
            assert_problem(await client.post("/api/v1/users", content=b"x" * 4096), 410)
            status, _, _ = await call_asgi(app, "GET", "/api/v1/tasks", query=b"q=\xff")
            assert status == 410
            # The same app's v2 does ask the database (so the sentinel above would have told).
            assert (await client.post("/api/v2/users", json=body)).status_code == 500
        count = await session.scalar(select(func.count()).select_from(User))
        assert count == 0

    async def test_no_rate_limit_is_counted(
        self, app_with: AppClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        async with app_with(
            api_v1_deprecated_at=DEPRECATED_AT,
            api_v1_sunset_at=SUNSET_PAST,
            rate_limit_enabled=True,
            rate_limit_login_account="1/minute",
            rate_limit_anonymous_ip="1/minute",
            rate_limit_register_ip="1/minute",
        ) as (_app, client):
            for _ in range(3):
                form = {"username": user.email, "password": "wrong password, again"}
                refused = await client.post("/api/v1/auth/token", data=form)
                assert_problem(refused, 410)
                assert "ratelimit" not in refused.headers
                assert_problem(await client.get("/api/v1/users/me"), 410)
                body = {"email": "x@example.com", "password": TEST_PASSWORD}
                assert_problem(await client.post("/api/v1/users", json=body), 410)
            # v2 shares the budgets (same account, same address): none was spent.
            logged_in = await client.post(
                "/api/v2/auth/token", data={"username": user.email, "password": TEST_PASSWORD}
            )
            assert logged_in.status_code == 200, logged_in.text
            assert_problem(await client.get("/api/v2/users/me"), 401)
            body = {"email": "x@example.com", "password": TEST_PASSWORD}
            assert (await client.post("/api/v2/users", json=body)).status_code == 201

    async def test_v2_goes_on(
        self,
        app_with: AppClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        headers = auth_headers(await make_user())
        async with app_with(api_v1_deprecated_at=DEPRECATED_AT, api_v1_sunset_at=SUNSET_PAST) as (
            _app,
            client,
        ):
            for path in ("/api/v2/users/me", "/api/v2/roles"):
                response = await client.get(path, headers=headers)
                assert response.status_code == 200, response.text
                assert_no_notice(response)


# --- the sunset instant, on a clock of the test's ------------------------------------------


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("now", "status"),
    [(-1.0, 200), (-0.001, 200), (0.0, 410), (0.001, 410), (86400.0, 410)],
)
async def test_410_from_the_sunset_instant_on(now: float, status: int) -> None:
    sunset = datetime(2030, 3, 4, 5, 6, 7, 500_000, tzinfo=UTC)
    middleware = V1DeprecationMiddleware(
        _ok,
        deprecated_at=datetime(2030, 1, 1, tzinfo=UTC),
        sunset_at=sunset,
        clock=lambda: sunset.timestamp() + now,
    )
    answered, headers, _ = await call_asgi(middleware, "GET", "/api/v1/tasks")
    assert answered == status
    assert headers["sunset"] == "Mon, 04 Mar 2030 05:06:07 GMT"
    assert headers["deprecation"] == "@1893456000"
    # Elsewhere the clock is not even read.
    answered, headers, _ = await call_asgi(middleware, "GET", "/api/v2/tasks")
    assert (answered, "sunset" in headers) == (200, False)


@pytest.mark.parametrize(
    "values",
    [
        {"api_v1_sunset_at": SUNSET_LATER},
        {
            "api_v1_deprecated_at": "2030-01-02T00:00:00Z",
            "api_v1_sunset_at": "2030-01-01T00:00:00Z",
        },
        {"api_v1_deprecated_at": "2030-01-01T00:00:00"},
        {"api_v1_deprecated_at": "next year"},
    ],
)
def test_settings_that_make_no_sense_are_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        make_settings("sqlite:///unused.db", **values)
