"""The OpenAPI document says what a client needs to use the API without reading its code.

(tests/api/test_generated_client.py uses it as a generated client would; tests/api/
test_health.py checks that every route and its problem responses are listed.)
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.api.openapi import documented
from app.core.bounds import EMAIL_MAX_LENGTH
from app.main import create_app
from app.models.user import User
from tests.conftest import UserFactory, make_settings

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


# --- problem responses that documented() declares ----------------------------------------


def test_a_role_required_403_shows_role_and_required_role() -> None:
    responses = documented(401, 404, role_required=True)
    assert set(responses) == {401, 403, 404, 422}
    schema = responses[403]["content"]["application/problem+json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/RoleRequiredProblem"}
    assert responses[403]["description"] == "Role required"
    # Without it, a 403 is the plain problem (v1's admin-only routes).
    plain = documented(403)[403]["content"]["application/problem+json"]["schema"]
    assert plain == {"$ref": "#/components/schemas/Problem"}


def test_the_role_required_problem_schema(document: Document) -> None:
    schema = document["components"]["schemas"]["RoleRequiredProblem"]
    assert {"role", "required_role", "type", "status", "detail"} <= set(schema["required"])
    for name in ("role", "required_role"):
        values = resolve(document, schema["properties"][name])["enum"]
        assert values == ["owner", "admin", "editor", "commenter", "viewer"]


def test_a_410_is_declared_as_gone() -> None:
    gone = documented(404, 410)[410]
    assert gone["description"] == "Gone"
    assert gone["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }


# --- v1's deprecation, as the operator configures it --------------------------------------


def v1_deprecation_document(database_url: str, **overrides: Any) -> Document:
    settings = make_settings(database_url, **overrides)
    document: Document = create_app(settings).openapi()
    return document


def test_v1_is_not_deprecated_by_default(document: Document) -> None:
    for (method, path), operation in operations(document).items():
        assert "deprecated" not in operation, (method, path)
        for response in operation["responses"].values():
            assert "Deprecation" not in response.get("headers", {}), (method, path)


@pytest.mark.parametrize("sunset", [None, "2099-01-01T00:00:00Z"])
def test_v1_operations_are_deprecated_when_configured(
    database_url: str, sunset: str | None
) -> None:
    document = v1_deprecation_document(
        database_url, api_v1_deprecated_at="2026-01-01T00:00:00Z", api_v1_sunset_at=sunset
    )
    v1 = 0
    for (method, path), operation in operations(document).items():
        if not path.startswith("/api/v1/"):
            assert "deprecated" not in operation, (method, path)
            for response in operation["responses"].values():
                assert "Deprecation" not in response.get("headers", {}), (method, path)
            if path.startswith(("/api/v2/users", "/api/v2/auth")):  # v1's twins
                assert "410" not in operation["responses"], (method, path)
            continue
        v1 += 1
        assert operation["deprecated"] is True, (method, path)
        for status, response in operation["responses"].items():
            headers = set(response.get("headers", {}))
            assert {"Deprecation", "Link", "X-Request-ID"} <= headers, (method, path, status)
            assert ("Sunset" in headers) is (sunset is not None), (method, path, status)
        assert ("410" in operation["responses"]) is (sunset is not None)
    assert v1 >= 15
    assert {"Deprecation", "Sunset"} <= set(document["components"]["headers"])
    # v1's own operations are the same otherwise: ids included.
    assert document["paths"]["/api/v1/tasks"]["get"]["operationId"] == "tasks-list_tasks"


# --- every v2 operation declares what it can answer -----------------------------------------


def resolve(document: Document, schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


_ANY = "{}"
_P = f"/api/v2/projects/{_ANY}"
_T = f"/api/v2/tasks/{_ANY}"

# Spec api-v2 sections 2 to 6: every operation with the least role that makes a 403 possible
# (above viewer; a viewer is any member), the state rules (409) and expiry (410) it names,
# and the headers its success carries besides those every response has.
V2_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/api/v2/notifications"): {"success": ("200", {"X-Unread-Count"})},
    ("post", f"/api/v2/notifications/{_ANY}/read"): {},
    ("post", "/api/v2/notifications/read-all"): {},
    ("post", f"{_P}/webhooks"): {
        "role": "admin",
        "problems": {409},
        "success": ("201", {"Location"}),
    },
    ("get", f"{_P}/webhooks"): {"role": "admin"},
    ("get", f"{_P}/webhooks/{_ANY}"): {"role": "admin"},
    ("patch", f"{_P}/webhooks/{_ANY}"): {"role": "admin"},
    ("delete", f"{_P}/webhooks/{_ANY}"): {"role": "admin"},
    ("post", f"{_P}/webhooks/{_ANY}/rotate-secret"): {"role": "admin"},
    ("post", f"{_P}/webhooks/{_ANY}/ping"): {"role": "admin"},
    ("get", f"{_P}/webhooks/{_ANY}/deliveries"): {"role": "admin"},
    ("post", f"{_P}/webhooks/{_ANY}/deliveries/{_ANY}/redeliver"): {
        "role": "admin",
        "problems": {409},
    },
    ("post", "/api/v2/projects"): {"success": ("201", {"Location", "ETag"})},
    ("get", "/api/v2/projects"): {},
    ("get", _P): {"success": ("200", {"ETag"})},
    ("patch", _P): {"role": "admin", "success": ("200", {"ETag"}), "if_match": True},
    ("delete", _P): {"role": "owner", "problems": {409}},
    ("post", f"{_P}/restore"): {"role": "owner"},
    ("get", f"{_P}/members"): {},
    ("patch", f"{_P}/members/{_ANY}"): {"role": "admin", "problems": {409}},
    ("delete", f"{_P}/members/{_ANY}"): {"role": "admin", "problems": {409}},
    ("post", f"{_P}/invitations"): {"role": "admin", "problems": {409}},
    ("get", f"{_P}/invitations"): {"role": "admin"},
    ("delete", f"{_P}/invitations/{_ANY}"): {"role": "admin"},
    ("get", "/api/v2/invitations"): {},
    ("post", f"/api/v2/invitations/{_ANY}/accept"): {"problems": {410}},
    ("post", f"/api/v2/invitations/{_ANY}/decline"): {},
    ("post", "/api/v2/tasks"): {"role": "editor", "success": ("201", {"Location", "ETag"})},
    ("get", "/api/v2/tasks"): {},
    ("get", _T): {"success": ("200", {"ETag"})},
    ("patch", _T): {"role": "editor", "success": ("200", {"ETag"}), "if_match": True},
    ("delete", _T): {"role": "editor", "if_match": True},
    ("post", f"{_T}/restore"): {"role": "editor", "success": ("200", {"ETag"})},
    ("get", f"{_P}/labels"): {},
    ("post", f"{_P}/labels"): {"role": "editor", "problems": {409}},
    ("patch", f"{_P}/labels/{_ANY}"): {"role": "editor", "problems": {409}},
    ("delete", f"{_P}/labels/{_ANY}"): {"role": "editor"},
    ("get", f"{_T}/comments"): {},
    ("post", f"{_T}/comments"): {"role": "commenter"},
    ("patch", f"{_T}/comments/{_ANY}"): {"role": "commenter"},
    ("delete", f"{_T}/comments/{_ANY}"): {"role": "commenter"},
    ("get", "/api/v2/roles"): {},
}


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", _ANY, path)


def _problem_schema(document: Document, response: dict[str, Any]) -> dict[str, Any]:
    schema = response.get("content", {}).get("application/problem+json", {}).get("schema", {})
    return resolve(document, schema)


def _v2_declaration_faults(document: Document) -> list[str]:
    """What each v2 operation fails to declare, one line per fault."""
    faults: list[str] = []
    found = {
        (method, _template(path)): (path, operation)
        for (method, path), operation in operations(document).items()
        if path.startswith("/api/v2/")
    }
    faults += [
        f"{m.upper()} {p}: no such operation" for m, p in V2_OPERATIONS if (m, p) not in found
    ]
    for (method, template), (path, operation) in sorted(found.items()):
        where = f"{method.upper()} {path}"
        # An operation the spec does not list (a single label, say) meets the general rules.
        expected = V2_OPERATIONS.get((method, template), {})
        responses = operation["responses"]
        parameters = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
        problems = {422}
        if operation.get("security"):
            problems.add(401)
        if any(location == "path" for location, _ in parameters):
            problems.add(404)
        if ("header", "if-match") in parameters:
            problems.add(412)
        elif expected.get("if_match"):
            faults.append(f"{where}: no If-Match parameter")
        if expected.get("role"):
            problems.add(403)
        problems |= expected.get("problems", set())
        for status in sorted(problems):
            if str(status) not in responses:
                faults.append(f"{where}: {status} not declared")
        if expected.get("role") and "403" in responses:
            schema = _problem_schema(document, responses["403"])
            # One of several problems (a comment's: not its author, or a role too low).
            shown = [resolve(document, one) for one in schema.get("oneOf", [])] or [schema]
            if not any({"role", "required_role"} <= set(s.get("properties", {})) for s in shown):
                faults.append(f"{where}: its 403 does not show role and required_role")
        for status, response in responses.items():
            if status in {"default"} or status.startswith(("4", "5")):
                continue
            headers = set(response.get("headers", {}))
            schema = resolve(
                document, response.get("content", {}).get("application/json", {}).get("schema", {})
            )
            properties = set(schema.get("properties", {}))
            wanted: set[str] = set()
            if "version" in properties:
                wanted.add("ETag")
            if {"items", "next_cursor"} <= properties:
                wanted.add("Link")
            if expected.get("success", ("", set()))[0] == status:
                wanted |= expected["success"][1]
            faults += [f"{where}: {status} does not declare {name}" for name in wanted - headers]
        if method == "get" and "ETag" in set(responses.get("200", {}).get("headers", {})):
            if ("header", "if-none-match") not in parameters or "304" not in responses:
                faults.append(f"{where}: no If-None-Match and 304")
    return faults


def test_every_v2_operation_declares_its_answers(document: Document) -> None:
    """Problem responses (401 when signed in, 404 with an id in the path, 422 always; 403
    showing role and required_role where a role is needed, 412 with If-Match, the 409s and
    410s of the spec) and the headers of its success (ETag for a versioned body, Location of
    what is created, Link of a page)."""
    faults = _v2_declaration_faults(document)
    assert faults == [], "\n".join(faults)


def test_the_v2_check_finds_faults(document: Document) -> None:
    """The check above is not vacuous: a v2 operation stripped of its declarations fails it."""
    paths = {
        path: {
            method: {**operation, "responses": {"default": operation["responses"]["default"]}}
            for method, operation in item.items()
        }
        for path, item in document["paths"].items()
    }
    faults = _v2_declaration_faults({**document, "paths": paths})
    assert "GET /api/v2/roles: 401 not declared" in faults
    assert "GET /api/v2/users/{user_id}: 404 not declared" in faults
