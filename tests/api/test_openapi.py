"""The OpenAPI document says what a client needs to use the API without reading its code.

(tests/api/test_generated_client.py uses it as a generated client would; tests/api/
test_health.py checks that every route and its problem responses are listed.)
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.bounds import EMAIL_MAX_LENGTH
from app.models.user import User
from tests.conftest import UserFactory

Document = dict[str, Any]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document(app: FastAPI) -> Document:
    return app.openapi()


def operations(document: Document) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def headers_of(document: Document, method: str, path: str, status: str) -> set[str]:
    response = document["paths"][path][method]["responses"][status]
    return set(response.get("headers", {}))


def test_every_response_declares_the_request_id(document: Document) -> None:
    for (method, path), operation in operations(document).items():
        for status, response in operation["responses"].items():
            assert "X-Request-ID" in response.get("headers", {}), (method, path, status)


def test_every_operation_has_a_default_problem_response(document: Document) -> None:
    for key, operation in operations(document).items():
        default = operation["responses"].get("default", {})
        schema = default.get("content", {}).get("application/problem+json", {}).get("schema")
        assert schema == {"$ref": "#/components/schemas/Problem"}, key


def test_header_references_resolve(document: Document) -> None:
    components = document["components"]["headers"]
    for operation in operations(document).values():
        for response in operation["responses"].values():
            for header in response.get("headers", {}).values():
                assert header["$ref"].removeprefix("#/components/headers/") in components


@pytest.mark.parametrize(
    ("method", "path", "status", "expected"),
    [
        ("post", "/api/v1/tasks", "201", {"Location", "ETag", "Idempotent-Replayed"}),
        ("get", "/api/v1/tasks", "200", {"Link", "RateLimit", "RateLimit-Policy"}),
        ("get", "/api/v1/tasks/{task_id}", "200", {"ETag"}),
        ("get", "/api/v1/tasks/{task_id}", "304", {"ETag"}),
        ("patch", "/api/v1/tasks/{task_id}", "200", {"ETag"}),
        ("patch", "/api/v1/tasks/{task_id}", "401", {"WWW-Authenticate"}),
        ("patch", "/api/v1/tasks/{task_id}", "429", {"Retry-After", "RateLimit"}),
        ("post", "/api/v1/tasks/{task_id}/restore", "200", {"ETag"}),
        ("post", "/api/v1/users", "201", {"Location", "RateLimit", "RateLimit-Policy"}),
        ("post", "/api/v1/auth/token", "200", {"Cache-Control", "RateLimit"}),
        ("post", "/api/v1/auth/token", "401", {"WWW-Authenticate", "RateLimit"}),
        ("post", "/api/v1/auth/refresh", "200", {"Cache-Control"}),
        ("get", "/readyz", "503", {"Retry-After"}),
    ],
)
def test_response_headers_are_declared(
    document: Document, method: str, path: str, status: str, expected: set[str]
) -> None:
    assert expected <= headers_of(document, method, path, status)


def test_output_timestamps_are_date_times(document: Document) -> None:
    task = document["components"]["schemas"]["TaskRead"]["properties"]
    assert task["created_at"]["format"] == "date-time"
    due = next(branch for branch in task["due_at"]["anyOf"] if branch.get("type") == "string")
    assert due["format"] == "date-time"


def test_list_filters_are_comma_separated_enum_arrays(document: Document) -> None:
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    for name, values in (
        ("status", ["todo", "in_progress", "done"]),
        ("priority", ["low", "medium", "high", "urgent"]),
    ):
        parameter = parameters[name]
        assert (parameter["style"], parameter["explode"]) == ("form", False)
        assert parameter["schema"]["type"] == "array"
        assert parameter["schema"]["items"]["enum"] == values
        assert "x-comma-separated" not in str(parameter)
    sort = parameters["sort"]["schema"]
    assert len(sort["x-enum-varnames"]) == len(sort["enum"]) == 8
    assert dict(zip(sort["enum"], sort["x-enum-varnames"], strict=True))["-due_at"] == "DUE_AT_DESC"


def test_bounds_and_required_fields_are_the_contracts(document: Document) -> None:
    schemas = document["components"]["schemas"]
    email = schemas["UserCreate"]["properties"]["email"]
    assert email["maxLength"] == EMAIL_MAX_LENGTH
    assert "token_type" in schemas["TokenPair"]["required"]


def test_head_is_not_an_operation_of_its_own(document: Document) -> None:
    """HEAD is answered wherever GET is (RFC 9110), with no body: it is no operation with a
    JSON body of its own for a generated client to mis-read."""
    assert [key for key in operations(document) if key[0] == "head"] == []


# --- HEAD, as every GET route answers it ---------------------------------------------------


async def test_head_of_a_task_is_its_get_without_a_body(
    client: httpx.AsyncClient, make_user: UserFactory, auth_headers: Any
) -> None:
    user: User = await make_user()
    headers = auth_headers(user)
    created = await client.post("/api/v1/tasks", json={"title": "probe"}, headers=headers)
    url = created.headers["location"]
    got = await client.get(url, headers=headers)
    head = await client.head(url, headers=headers)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == got.headers["content-type"]
    missing = await client.head("/api/v1/tasks/987654321", headers=headers)
    assert (missing.status_code, missing.content) == (404, b"")


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/tasks", "/api/v1/users/me"])
async def test_every_get_route_answers_head_and_says_so(
    client: httpx.AsyncClient, path: str
) -> None:
    head = await client.head(path)
    assert head.status_code in (200, 401)
    assert head.content == b""
    refused = await client.request("PUT", path)
    assert refused.status_code == 405
    assert "HEAD" in {method.strip() for method in refused.headers["allow"].split(",")}
