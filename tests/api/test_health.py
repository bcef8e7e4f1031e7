"""Section 5: liveness, readiness (also with the database gone) and the OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.security import create_access_token
from app.main import create_app
from tests.conftest import TEST_PASSWORD, make_settings
from tests.support import PROBLEM

# Nothing listens on port 1: connecting is refused at once, as when PostgreSQL is down.
UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:1/nope"


def assert_unavailable(response: httpx.Response, path: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["status"] == 503
    assert body["instance"] == path
    assert body["request_id"] == response.headers["x-request-id"]
    for leak in ("127.0.0.1", "nope", "postgres", "Traceback", "Errno", "refused"):
        assert leak not in response.text


class TestProbes:
    async def test_healthz(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["x-request-id"]

    async def test_readyz(self, committing_client: httpx.AsyncClient) -> None:
        # Not `client`: on SQLite its open test transaction holds the write lock, which the
        # probe's own transaction would wait for.
        response = await committing_client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "database": "ok"}

    async def test_head_healthz(self, client: httpx.AsyncClient) -> None:
        # RFC 9110 9.1: a GET resource answers HEAD (load balancers probe with it), and the
        # 405 for other methods lists HEAD in Allow.
        response = await client.head("/healthz")
        assert response.status_code == 200
        assert response.content == b""


class TestDatabaseDown:
    @pytest.fixture(scope="class")
    @classmethod
    def down_settings(cls) -> Settings:
        return make_settings(UNREACHABLE_DB, db_connect_timeout_seconds=2)

    @pytest.fixture(scope="class")
    @classmethod
    async def down_client(cls, down_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        app: FastAPI = create_app(down_settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield http

    @pytest.fixture(scope="class")
    @classmethod
    def token_headers(cls, down_settings: Settings) -> dict[str, str]:
        token, _ = create_access_token(
            user_id=1, token_version=1, key=down_settings.signing_key, expire_minutes=15
        )
        return {"Authorization": f"Bearer {token}"}

    async def test_readyz_is_503_with_retry_after(self, down_client: httpx.AsyncClient) -> None:
        started = time.monotonic()
        response = await down_client.get("/readyz")
        assert time.monotonic() - started < 5
        assert_unavailable(response, "/readyz")

    async def test_healthz_still_200(self, down_client: httpx.AsyncClient) -> None:
        response = await down_client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    @pytest.mark.parametrize(
        ("method", "path", "kwargs"),
        [
            ("GET", "/api/v1/users/me", {}),
            ("PATCH", "/api/v1/users/me", {"json": {"full_name": "x"}}),
            ("GET", "/api/v1/tasks", {}),
            ("POST", "/api/v1/tasks", {"json": {"title": "x"}}),
            ("GET", "/api/v1/tasks/1", {}),
        ],
    )
    async def test_authenticated_api_request_is_503(
        self,
        down_client: httpx.AsyncClient,
        token_headers: dict[str, str],
        method: str,
        path: str,
        kwargs: dict[str, Any],
    ) -> None:
        started = time.monotonic()
        response = await down_client.request(method, path, headers=token_headers, **kwargs)
        assert time.monotonic() - started < 5
        assert_unavailable(response, path)

    async def test_registration_is_503(self, down_client: httpx.AsyncClient) -> None:
        response = await down_client.post(
            "/api/v1/users", json={"email": "down@example.com", "password": TEST_PASSWORD}
        )
        assert_unavailable(response, "/api/v1/users")

    async def test_login_is_503(self, down_client: httpx.AsyncClient) -> None:
        response = await down_client.post(
            "/api/v1/auth/token", data={"username": "down@example.com", "password": TEST_PASSWORD}
        )
        assert_unavailable(response, "/api/v1/auth/token")

    async def test_errors_not_needing_the_database_unchanged(
        self, down_client: httpx.AsyncClient
    ) -> None:
        assert (await down_client.get("/api/v1/users/me")).status_code == 401
        assert (await down_client.get("/nope")).status_code == 404
        assert (await down_client.post("/api/v1/users", json={})).status_code == 422


# Every route of the contract's sections 2 (registration, login, me), 3 and 5 that is built.
EXPECTED_OPERATIONS = {
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/api/v1/auth/token"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/users/me"),
    ("patch", "/api/v1/users/me"),
    ("post", "/api/v1/tasks"),
    ("get", "/api/v1/tasks"),
    ("get", "/api/v1/tasks/{task_id}"),
    ("patch", "/api/v1/tasks/{task_id}"),
    ("delete", "/api/v1/tasks/{task_id}"),
    ("post", "/api/v1/tasks/{task_id}/restore"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


class TestOpenApi:
    @pytest.fixture
    async def schema(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        document: dict[str, Any] = response.json()
        return document

    @staticmethod
    def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (method, path): operation
            for path, item in schema["paths"].items()
            for method, operation in item.items()
            if method in HTTP_METHODS
        }

    async def test_lists_every_route(self, schema: dict[str, Any]) -> None:
        operations = self.operations(schema)
        assert EXPECTED_OPERATIONS <= set(operations)
        # No shadow routes outside the versioned API and the probes.
        for _, path in operations:
            assert path in {"/healthz", "/readyz", "/metrics"} or path.startswith(
                ("/api/v1/", "/api/v2/")
            )

    async def test_problem_component(self, schema: dict[str, Any]) -> None:
        problem = schema["components"]["schemas"]["Problem"]
        assert {"type", "title", "status", "detail", "instance", "request_id"} <= set(
            problem["required"]
        )
        assert "errors" in problem["properties"]

    async def test_every_error_response_is_a_problem(self, schema: dict[str, Any]) -> None:
        for (method, path), operation in self.operations(schema).items():
            errors = {code: r for code, r in operation["responses"].items() if code[0] in "45"}
            assert errors, f"{method} {path} declares no problem responses"
            for code, response in errors.items():
                content = response.get("content", {})
                assert list(content) == [PROBLEM], f"{method} {path} {code}: {list(content)}"
                # A 403 of a project route may be the role-required problem (a Problem with
                # `role` and `required_role`: app/schemas/role.py).
                # A comment's change may be refused as either (not its author, or a role too low).
                schemas = {"#/components/schemas/Problem"}
                if code == "403":
                    schemas.add("#/components/schemas/RoleRequiredProblem")
                schema = content[PROBLEM]["schema"]
                refs = [one["$ref"] for one in schema.get("oneOf", [schema])]
                assert refs, (method, path, code)
                assert set(refs) <= schemas, (method, path, code)

    async def test_declared_statuses(self, schema: dict[str, Any]) -> None:
        missing: list[str] = []

        def require(codes: set[str], needed: set[str], method: str, path: str) -> None:
            if not needed <= codes:
                missing.append(f"{method.upper()} {path}: {sorted(needed - codes)}")

        for (method, path), operation in self.operations(schema).items():
            codes = set(operation["responses"])
            # Unknown query parameters are a 422 on every route (an app-wide dependency).
            require(codes, {"422"}, method, path)
            if path.startswith("/api/v1/"):
                require(codes, {"503"}, method, path)
            if operation.get("security"):
                require(codes, {"401"}, method, path)
            if "requestBody" in operation:
                require(codes, {"413"}, method, path)
            if "{task_id}" in path:
                require(codes, {"404"}, method, path)
        operations = self.operations(schema)
        require(
            set(operations[("post", "/api/v1/auth/token")]["responses"]),
            {"401", "403"},
            "post",
            "/api/v1/auth/token",
        )
        require(
            set(operations[("post", "/api/v1/users")]["responses"]),
            {"409"},
            "post",
            "/api/v1/users",
        )
        require(
            set(operations[("patch", "/api/v1/users/me")]["responses"]),
            {"403"},
            "patch",
            "/api/v1/users/me",
        )
        require(set(operations[("get", "/readyz")]["responses"]), {"503"}, "get", "/readyz")
        assert missing == []

    async def test_authenticated_routes_declare_security(self, schema: dict[str, Any]) -> None:
        public = {
            ("get", "/healthz"),
            ("head", "/healthz"),
            ("get", "/readyz"),
            ("head", "/readyz"),
            ("get", "/metrics"),
            ("post", "/api/v1/auth/token"),
            ("post", "/api/v1/auth/refresh"),
            ("post", "/api/v1/auth/logout"),
            ("post", "/api/v1/users"),
        }
        # v2 serves v1's account routes identically (spec api-v2).
        public |= {(method, path.replace("/api/v1/", "/api/v2/")) for method, path in public}
        for key, operation in self.operations(schema).items():
            assert bool(operation.get("security")) is (key not in public), key

    async def test_docs_page(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/docs")
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
