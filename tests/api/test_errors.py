"""Section 1 of the contract: every error is an RFC 9457 problem, and X-Request-ID."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy import exc as sa_exc

from app.core.errors import ERROR_ITEMS_LISTED
from app.main import create_app
from app.models.user import User
from tests.conftest import UserFactory, make_settings
from tests.support import assert_problem, call_asgi

GENERATED_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
ONE_MIB = 1024 * 1024

HeadersFor = Callable[[User], dict[str, str]]


def json_request(content: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"content": content, "headers": {"Content-Type": "application/json", **(headers or {})}}


class TestQueryBytes:
    """uvicorn refuses a query that is not UTF-8 itself; behind another server the app must
    still answer with a problem, a 422 like any unreadable parameter, not a 500."""

    @pytest.mark.parametrize("path", ["/api/v1/tasks", "/api/v1/users/me", "/healthz", "/nope"])
    async def test_a_query_that_is_not_utf8_is_a_422_problem(self, app: FastAPI, path: str) -> None:
        status, headers, body = await call_asgi(app, "GET", path, query=b"q=\xe9&limit=1")
        request = httpx.Request("GET", f"http://testserver{path}")
        response = httpx.Response(status, headers=headers, content=body, request=request)
        problem = assert_problem(response, 422, loc=["query"])
        assert problem["detail"] == "The query string is not valid UTF-8."
        assert problem["instance"] == path

    async def test_utf8_text_in_the_query_is_not_refused(self, app: FastAPI) -> None:
        status, _, _ = await call_asgi(app, "GET", "/api/v1/tasks", query="q=é".encode())
        assert status == 401  # on to the route, which wants a token


class TestRoutingErrors:
    @pytest.mark.parametrize(
        "path", ["/nope", "/api/v1/nope", "/api/v2/nope", "/api/v1/users/me/extra", "/api"]
    )
    async def test_unknown_route_is_404(self, client: httpx.AsyncClient, path: str) -> None:
        assert_problem(await client.get(path), 404)

    async def test_404_body_is_the_same_for_any_unknown_route(
        self, client: httpx.AsyncClient
    ) -> None:
        first = assert_problem(await client.get("/a"), 404)
        second = assert_problem(await client.post("/b/c", json={}), 404)
        for field in ("type", "title", "detail", "status"):
            assert first[field] == second[field]

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("DELETE", "/healthz", {"GET"}),
            ("PUT", "/api/v1/users/me", {"GET", "PATCH"}),
            ("GET", "/api/v1/auth/token", {"POST"}),
            ("TRACE", "/api/v1/tasks", {"GET", "POST"}),
            ("PUT", "/api/v1/tasks/1", {"GET", "PATCH", "DELETE"}),
        ],
    )
    async def test_wrong_method_is_405_with_allow(
        self, client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
    ) -> None:
        response = await client.request(method, path)
        assert_problem(response, 405)
        allow = {part.strip() for part in response.headers["allow"].split(",")}
        assert allowed <= allow
        assert method not in allow

    @pytest.mark.parametrize(
        "path", ["/healthz", "/api/v1/users/me", "/api/v1/tasks", "/api/v1/tasks/1"]
    )
    async def test_every_method_in_allow_is_supported(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        refused = await client.request("TRACE", path)
        assert_problem(refused, 405)
        allowed = [part.strip() for part in refused.headers["allow"].split(",")]
        answered_405 = [
            method
            for method in allowed
            if method != "OPTIONS" and (await client.request(method, path)).status_code == 405
        ]
        assert answered_405 == [], f"Allow: {refused.headers['allow']}"


class TestValidationErrors:
    async def test_422_lists_each_field_without_input_or_ctx(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/api/v1/users",
            json={"email": "not-an-email", "password": "short", "unknown": 1},
        )
        body = assert_problem(response, 422)
        locs = sorted(tuple(error["loc"]) for error in body["errors"])
        assert locs == [("body", "email"), ("body", "password"), ("body", "unknown")]
        assert '"input"' not in response.text
        assert '"ctx"' not in response.text
        assert "not-an-email" not in response.text
        assert '"short"' not in response.text

    async def test_10kb_value_is_not_echoed(self, client: httpx.AsyncClient) -> None:
        huge = "Q" * 10 * 1024
        response = await client.post(
            "/api/v1/users",
            json={"email": "echo@example.com", "password": "a fine passphrase", "full_name": huge},
        )
        body = assert_problem(response, 422)
        assert [error["loc"] for error in body["errors"]] == [["body", "full_name"]]
        assert "Q" * 50 not in response.text
        assert len(response.content) < 2048

    async def test_10kb_unknown_field_name_is_not_echoed(self, client: httpx.AsyncClient) -> None:
        name = "k" * 10 * 1024
        response = await client.post("/api/v1/users", json={name: 1})
        assert_problem(response, 422)
        assert "k" * 100 not in response.text
        assert len(response.content) < 4096

    async def test_many_unknown_fields_make_a_problem_of_a_few_kilobytes(
        self, client: httpx.AsyncClient
    ) -> None:
        """A body of 90,000 unknown fields (under 1 MiB) got a 422 of 8 MB, one item each."""
        sent = {"email": "many@example.com", "password": "a fine passphrase"}
        sent |= {f"p{number}": 1 for number in range(90_000)}
        response = await client.post("/api/v1/users", json=sent)
        body = assert_problem(response, 422)
        assert [error["loc"] for error in body["errors"]] == [
            ["body", f"p{number}"] for number in range(ERROR_ITEMS_LISTED)
        ]
        assert body["detail"] == (
            "These fields are not valid: p0, p1, p2, p3, p4, p5, p6, p7, p8, p9. "
            f"Only the first {ERROR_ITEMS_LISTED} errors are listed."
        )
        assert len(response.content) < 4096

    async def test_many_unknown_query_parameters_make_a_problem_of_a_few_kilobytes(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/healthz", params={f"p{n}": "1" for n in range(6_500)})
        body = assert_problem(response, 422)
        assert len(body["errors"]) == ERROR_ITEMS_LISTED
        assert body["detail"].endswith(f"Only the first {ERROR_ITEMS_LISTED} errors are listed.")
        assert len(response.content) < 4096

    @pytest.mark.parametrize(
        "name",
        [
            "<img src=x onerror=alert(1)>",
            "Your account is locked, call +1-555-0100",
            "nul\u0000inside",
            "k" * 65,
        ],
    )
    async def test_an_unknown_field_name_that_is_not_plain_is_not_echoed(
        self, client: httpx.AsyncClient, name: str
    ) -> None:
        response = await client.post(
            "/api/v1/users",
            json={"email": "echo@example.com", "password": "a fine passphrase", name: 1},
        )
        body = assert_problem(response, 422)
        assert [error["loc"] for error in body["errors"]] == [["body", "<unknown>"]]
        assert body["detail"] == "These fields are not valid: <unknown>."
        for piece in ("img", "locked", "nul", "k" * 65):
            assert piece not in response.text

    async def test_unknown_query_parameter(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", params={"verbose": "1"})
        body = assert_problem(response, 422)
        assert body["errors"] == [
            {
                "loc": ["query", "verbose"],
                "msg": body["errors"][0]["msg"],
                "type": "extra_forbidden",
            }
        ]

    async def test_malformed_json(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/users", **json_request(b'{"email": '))
        body = assert_problem(response, 422)
        assert body["errors"][0]["type"] == "json_invalid"

    async def test_deeply_nested_json_is_4xx(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/users", **json_request(b"[" * 100_000))
        assert 400 <= response.status_code < 500
        assert_problem(response, response.status_code)
        assert (await client.get("/healthz")).status_code == 200

    async def test_deeply_nested_object_is_4xx(self, client: httpx.AsyncClient) -> None:
        content = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
        response = await client.post("/api/v1/users", **json_request(content))
        assert 400 <= response.status_code < 500
        assert_problem(response, response.status_code)

    @pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
    async def test_non_finite_numbers_on_registration(
        self, client: httpx.AsyncClient, token: bytes
    ) -> None:
        content = b'{"email": "nan@example.com", "password": ' + token + b"}"
        response = await client.post("/api/v1/users", **json_request(content))
        body = assert_problem(response, 422)
        assert [error["loc"] for error in body["errors"]] == [["body", "password"]]

    @pytest.mark.parametrize("field", ["title", "priority", "status", "due_at", "description"])
    @pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"1e400"])
    async def test_non_finite_numbers_on_tasks(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        field: str,
        token: bytes,
    ) -> None:
        headers = auth_headers(await make_user())
        body = {"title": b'"ok"', field: token}
        content = b"{" + b",".join(b'"%s": %s' % (k.encode(), v) for k, v in body.items()) + b"}"
        response = await client.post("/api/v1/tasks", **json_request(content, headers))
        problem = assert_problem(response, 422)
        assert [error["loc"] for error in problem["errors"]] == [["body", field]]

    async def test_nan_as_whole_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/users", **json_request(b"NaN"))
        assert_problem(response, 422)

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    async def test_not_json_is_415(self, client: httpx.AsyncClient, content_type: str) -> None:
        response = await client.post(
            "/api/v1/users",
            content=b'{"email": "a@example.com"}',
            headers={"Content-Type": content_type},
        )
        assert_problem(response, 415)


class TestBodySize:
    async def test_declared_length_over_1_mib_is_413(self, client: httpx.AsyncClient) -> None:
        content = b'{"email": "' + b"a" * ONE_MIB + b'"}'
        response = await client.post("/api/v1/users", **json_request(content))
        assert_problem(response, 413)
        assert b"aaaa" not in response.content

    async def test_chunked_body_over_1_mib_is_413(self, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"email": "'
            for _ in range(40):  # 2.5 MiB in 64 KiB chunks, no Content-Length
                yield b"b" * 64 * 1024
            yield b'"}'

        response = await client.post(
            "/api/v1/users", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_problem(response, 413)

    async def test_413_on_login_form(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/token", data={"username": "x@example.com", "password": "p" * ONE_MIB}
        )
        assert_problem(response, 413)

    async def test_exactly_1_mib_is_not_413(self, client: httpx.AsyncClient) -> None:
        content = b"{}".ljust(ONE_MIB, b" ")
        assert len(content) == ONE_MIB
        response = await client.post("/api/v1/users", **json_request(content))
        assert_problem(response, 422)


class TestRequestId:
    @pytest.mark.parametrize(
        "request_id", ["a", "abc-123", "A.b_c-9", "x" * 128, "0f394c0b6a0c4474ba007be7677ee91f"]
    )
    async def test_valid_id_echoed(self, client: httpx.AsyncClient, request_id: str) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": request_id})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == request_id

    @pytest.mark.parametrize(
        "request_id",
        [
            b"x" * 129,
            b"has space",
            b"a/b",
            b"<script>",
            b"semi;colon",
            b"caf\xc3\xa9",
            b"a\tb",
            b"",
        ],
        ids=["129", "space", "slash", "markup", "semicolon", "non-ascii", "tab", "empty"],
    )
    async def test_invalid_id_replaced(self, client: httpx.AsyncClient, request_id: bytes) -> None:
        response = await client.get("/api/v1/nope", headers={b"X-Request-ID": request_id})
        body = assert_problem(response, 404)
        generated = response.headers["x-request-id"]
        assert generated.encode() != request_id
        assert GENERATED_ID.fullmatch(generated)
        assert body["request_id"] == generated

    async def test_generated_when_absent_and_unique(self, client: httpx.AsyncClient) -> None:
        ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(5)}
        assert len(ids) == 5
        assert all(GENERATED_ID.fullmatch(request_id) for request_id in ids)

    async def test_present_on_every_kind_of_response(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        headers = auth_headers(await make_user())
        responses = {
            200: await client.get("/healthz"),
            201: await client.post("/api/v1/tasks", json={"title": "t"}, headers=headers),
            401: await client.get("/api/v1/users/me"),
            404: await client.get("/api/v1/nope"),
            405: await client.delete("/healthz"),
            413: await client.post("/api/v1/users", **json_request(b" " * (ONE_MIB + 1))),
            415: await client.post(
                "/api/v1/users", content=b"x", headers={"Content-Type": "text/plain"}
            ),
            422: await client.post("/api/v1/users", json={}),
        }
        for status, response in responses.items():
            assert response.status_code == status
            assert GENERATED_ID.fullmatch(response.headers["x-request-id"])
            if status >= 400:
                assert response.json()["request_id"] == response.headers["x-request-id"]

    @pytest.mark.parametrize(
        ("method", "path", "kwargs", "status"),
        [
            ("GET", "/healthz", {}, 200),
            ("GET", "/api/v1/nope", {}, 404),
            ("POST", "/api/v1/users", {"json": {}}, 422),
            ("GET", "/api/v1/users/me", {}, 401),
        ],
    )
    async def test_client_id_echoed_on_errors_too(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        kwargs: dict[str, Any],
        status: int,
    ) -> None:
        response = await client.request(
            method, path, headers={"X-Request-ID": "trace-me.123"}, **kwargs
        )
        assert response.status_code == status
        assert response.headers["x-request-id"] == "trace-me.123"
        if status >= 400:
            assert response.json()["request_id"] == "trace-me.123"


class TestUnexpectedErrors:
    """A fresh app with routes that fail the ways a bug would, not the shared app."""

    @pytest.fixture
    async def failing_client(self, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
        app: FastAPI = create_app(make_settings(f"sqlite:///{tmp_path / 'errors.db'}"))

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret sql")

        @app.post("/boom")
        async def boom_post() -> None:
            raise KeyError("secret sql password=hunter2")

        @app.get("/programming-error")
        async def programming_error() -> None:
            raise sa_exc.ProgrammingError(
                "SELECT secret_column FROM users", {"p": "secret"}, Exception("syntax error")
            )

        @app.get("/integrity-error")
        async def integrity_error() -> None:
            raise sa_exc.IntegrityError(
                "INSERT INTO users (email) VALUES ('secret@example.com')",
                {},
                Exception('duplicate key value violates unique constraint "secret"'),
            )

        @app.get("/http-422")
        async def http_422() -> None:
            raise HTTPException(status_code=422)

        @app.get("/db-down")
        async def db_down() -> None:
            raise sa_exc.OperationalError("SELECT 1", {}, Exception("secret host refused"))

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield http

    @staticmethod
    def assert_nothing_leaks(response: httpx.Response) -> None:
        text = response.text.lower()
        for secret in ("secret", "traceback", "sql", "select", "insert", "hunter2", "keyerror"):
            assert secret not in text

    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/boom"), ("POST", "/boom"), ("GET", "/programming-error")],
    )
    async def test_500_is_a_generic_problem(
        self, failing_client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await failing_client.request(method, path, headers={"X-Request-ID": "crash-1"})
        body = assert_problem(response, 500)
        assert body["request_id"] == "crash-1"
        self.assert_nothing_leaks(response)
        assert set(response.headers) <= {"content-type", "content-length", "x-request-id"}

    async def test_an_http_exception_of_422_is_a_422_problem(
        self, failing_client: httpx.AsyncClient
    ) -> None:
        """Raised by a dependency or a library as FastAPI's HTTPException: rendered with the
        problem class of its status, made without arguments (it was a 500 once
        `ValidationFailed` required its `errors`)."""
        response = await failing_client.get("/http-422")
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith(":validation-error")
        assert response.json()["errors"] == []

    async def test_500_bodies_identical_but_for_request_id(
        self, failing_client: httpx.AsyncClient
    ) -> None:
        first = (await failing_client.get("/boom")).json()
        second = (await failing_client.get("/programming-error")).json()
        for field in ("type", "title", "status", "detail"):
            assert first[field] == second[field]

    async def test_integrity_error_is_409(self, failing_client: httpx.AsyncClient) -> None:
        response = await failing_client.get("/integrity-error")
        assert_problem(response, 409)
        self.assert_nothing_leaks(response)

    async def test_operational_error_is_503(self, failing_client: httpx.AsyncClient) -> None:
        response = await failing_client.get("/db-down")
        assert_problem(response, 503)
        assert int(response.headers["retry-after"]) >= 1
        self.assert_nothing_leaks(response)

    async def test_app_still_serves_after_a_crash(self, failing_client: httpx.AsyncClient) -> None:
        assert (await failing_client.get("/boom")).status_code == 500
        assert (await failing_client.get("/healthz")).status_code == 200
