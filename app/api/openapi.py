"""The OpenAPI document: FastAPI's, built from the route declarations, completed where the
declarations cannot say it themselves, so that a client generated from it works.

Routes declare their responses with `documented()`: the success statuses with the headers
they carry (`ETag`, `Location`, `Link`, ...) and the problem statuses they can answer, each
problem with the headers its status implies (`WWW-Authenticate` on a 401, `Retry-After` on a
429 or 503, ...). `complete_document` then adds what holds for every operation: the
`X-Request-ID` header on every response, `RateLimit`/`RateLimit-Policy` on every response of
an authenticated operation (the per-user limit counts each one), a `default` problem
response, the reusable headers (`components/headers`) and the `Problem` schema, comma-separated
list parameters (`style: form, explode: false`), and the reading order of the paths; and,
when the operator has deprecated v1, `deprecated: true` on its operations with the headers
every v1 response then carries (and the 410 once a sunset is set: app/api/deprecation.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.api.problems import PROBLEM_MEDIA_TYPE
from app.core import errors
from app.core.bounds import MAX_ID
from app.schemas.common import COMMA_SEPARATED, Problem
from app.schemas.role import RoleRequiredProblem

PROBLEM_SCHEMA_REF = {"$ref": "#/components/schemas/Problem"}
ROLE_REQUIRED_SCHEMA_REF = {"$ref": "#/components/schemas/RoleRequiredProblem"}

_STRING = {"type": "string"}
_INTEGER = {"type": "integer", "minimum": 0}

# Every response header the service sends that a client may read.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id, also in a problem's `request_id`: the client's own "
        "when it sent 1 to 128 characters of [A-Za-z0-9._-], otherwise one the server made.",
        "required": True,
        "schema": _STRING,
    },
    "ETag": {
        "description": "Strong entity tag of the representation's version: send it back in "
        "`If-Match` to change it only if nobody else has, or `If-None-Match` to read it again "
        "only if it changed.",
        "schema": _STRING,
    },
    "Location": {"description": "The URL of the created resource.", "schema": _STRING},
    "Link": {
        "description": 'The next page: `<URL with the next cursor>; rel="next"`, absent on '
        "the last page. Once v1 is deprecated, every v1 response also links `</api/v2>; "
        'rel="successor-version"`.',
        "schema": _STRING,
    },
    "Deprecation": {
        "description": "When this version was or will be deprecated (RFC 9745): `@` and Unix "
        "seconds. Only on v1 responses, once the operator has deprecated v1.",
        "schema": _STRING,
    },
    "Sunset": {
        "description": "From when this version answers 410 (RFC 8594), an HTTP-date. Only on "
        "v1 responses, once the operator has set v1's sunset.",
        "schema": _STRING,
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the "
        "same `Idempotency-Key` (nothing was created again).",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": _INTEGER},
    "X-Unread-Count": {
        "description": "How many of your notifications are unread now (on every page of "
        "`GET /api/v2/notifications`, whatever `unread` asked for).",
        "required": True,
        "schema": _INTEGER,
    },
    "RateLimit": {
        "description": "The state of each rate limit that counted this request "
        "(draft-ietf-httpapi-ratelimit-headers): remaining requests and seconds to reset.",
        "schema": _STRING,
    },
    "RateLimit-Policy": {
        "description": "Each rate limit that counted this request: its quota and window.",
        "schema": _STRING,
    },
    "WWW-Authenticate": {
        "description": 'The authentication scheme: `Bearer`, with `error="invalid_token"` '
        "when the token sent is invalid, expired or revoked.",
        "schema": _STRING,
    },
    "Allow": {"description": "The methods the resource supports.", "schema": _STRING},
    "Cache-Control": {"description": "`no-store`: never cache tokens.", "schema": _STRING},
    "Pragma": {"description": "`no-cache`, for HTTP/1.0 caches.", "schema": _STRING},
}

# Headers a problem's status implies.
_PROBLEM_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",),
    405: ("Allow",),
    429: ("Retry-After", "RateLimit", "RateLimit-Policy"),
    503: ("Retry-After",),
}
_SUCCESS_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    204: "No content",
    304: "Not modified: the `If-None-Match` tag is still current.",
}
_RATE_LIMIT_HEADERS = ("RateLimit", "RateLimit-Policy")


def header_refs(names: Iterable[str]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def documented(
    *problems: int,
    success: Mapping[int, Sequence[str]] | None = None,
    links: Mapping[str, Any] | None = None,
    role_required: bool = False,
) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: its success statuses with the headers each carries, and the
    problem statuses it can answer (422 always: every route refuses undeclared parameters).

    `links`: OpenAPI links from the first success response (what its values are for).
    `role_required`: the route's 403 is a role too low in a project (spec api-v2 section 2),
    a problem with `role` and `required_role` (implies 403).
    """
    if role_required:
        problems = (*problems, 403)
    responses: dict[int | str, dict[str, Any]] = {}
    for position, (status, names) in enumerate((success or {}).items()):
        response: dict[str, Any] = {"description": _SUCCESS_DESCRIPTIONS.get(status, "OK")}
        if names:
            response["headers"] = header_refs(names)
        if position == 0 and links:
            response["links"] = dict(links)
        responses[status] = response
    for status in sorted({*problems, 422}):
        error = errors.RoleRequired if role_required and status == 403 else None
        schema = ROLE_REQUIRED_SCHEMA_REF if error is not None else PROBLEM_SCHEMA_REF
        problem: dict[str, Any] = {
            "description": (error or errors.ERROR_BY_STATUS.get(status, errors.AppError)).title,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        if status in _PROBLEM_HEADERS:
            problem["headers"] = header_refs(_PROBLEM_HEADERS[status])
        responses[status] = problem
    return responses


def rate_limited(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """`responses` of a public route that a rate limit counts (sign-up, log-in): every one
    carries the limit's headers, as every response of an authenticated route does."""
    for response in responses.values():
        response.setdefault("headers", {}).update(header_refs(_RATE_LIMIT_HEADERS))
    return responses


def complete_document(
    document: dict[str, Any],
    reading_order: Sequence[str],
    *,
    deprecated_prefix: str | None = None,
    sunset: bool = False,
) -> dict[str, Any]:
    """What holds for every operation, added to FastAPI's document (see the module docstring).

    `reading_order`: the tags, in the order the paths are listed (matching order is not
    reading order: the task routes come first to be matched first).
    `deprecated_prefix`: the paths of a deprecated version (`/api/v1/`), when the operator
    has deprecated it; `sunset`: it has a sunset too (its requests may be answered 410).
    """
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(_problem_component_schemas())
    components["headers"] = HEADERS
    _exact_integer_bounds(components["schemas"])
    _closed_forms(document)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if method in _NOT_OPERATIONS:
                continue
            _complete_operation(operation)
            if deprecated_prefix is not None and path.startswith(deprecated_prefix):
                _deprecate_operation(operation, sunset=sunset)
    document["paths"] = dict(
        sorted(document.get("paths", {}).items(), key=lambda item: _rank(item[1], reading_order))
    )
    return document


_NOT_OPERATIONS = {"parameters", "summary", "description", "servers"}


def _closed_forms(document: dict[str, Any]) -> None:
    """A form body (the login's) is refused with a field it does not declare, as a JSON body
    is (`CompiledRoute`): its schema says so, as pydantic's do for JSON bodies."""
    schemas = document["components"]["schemas"]
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("application/x-www-form-urlencoded", {}).get("schema", {})
            if "$ref" in form:
                schemas[form["$ref"].rsplit("/", 1)[-1]]["additionalProperties"] = False


def _exact_integer_bounds(node: Any) -> None:
    """Integer bounds as integers: FastAPI's `Schema` model types `minimum` and `maximum` as
    floats, and `MAX_ID` (2**63 - 1) as a float is 2**63, an id that a client reading the
    document would take as valid. No integer bound of the API is above `MAX_ID`."""
    if isinstance(node, list):
        for item in node:
            _exact_integer_bounds(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "integer":
        for bound in ("minimum", "maximum"):
            value = node.get(bound)
            if isinstance(value, float):
                node[bound] = min(int(value), MAX_ID)
    for child in node.values():
        _exact_integer_bounds(child)


def _complete_operation(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.setdefault(
        "default",
        {
            "description": "Any other problem (a 405, a 500)",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA_REF}},
        },
    )
    authenticated = bool(operation.get("security"))
    for response in responses.values():
        headers = response.setdefault("headers", {})
        headers.update(header_refs(["X-Request-ID"]))
        if authenticated:
            headers.update(header_refs(_RATE_LIMIT_HEADERS))
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        if _marked_comma_separated(schema):
            parameter["style"] = "form"
            parameter["explode"] = False


def _deprecate_operation(operation: dict[str, Any], *, sunset: bool) -> None:
    """An operation of a deprecated version: so marked, each response with the headers that
    say so (app/api/deprecation.py), and the 410 that every request gets after a sunset."""
    operation["deprecated"] = True
    responses = operation.setdefault("responses", {})
    if sunset:
        gone = documented(410)[410]
        gone["headers"] = header_refs(["X-Request-ID"])
        responses.setdefault("410", gone)
    names = ("Deprecation", "Link", "Sunset") if sunset else ("Deprecation", "Link")
    for response in responses.values():
        response.setdefault("headers", {}).update(header_refs(names))


def _marked_comma_separated(schema: dict[str, Any]) -> bool:
    """Whether a parameter's schema (or a branch of it) is a comma-separated list; the
    marker is the schema's business only, so it is taken out of the document."""
    found = bool(schema.pop(COMMA_SEPARATED, False))
    for branch in schema.get("anyOf", ()):
        found = _marked_comma_separated(branch) or found
    return found


def _rank(operations: dict[str, Any], reading_order: Sequence[str]) -> int:
    tags = [tag for operation in operations.values() for tag in operation.get("tags", ())]
    return reading_order.index(tags[0]) if tags and tags[0] in reading_order else len(reading_order)


def _problem_component_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (Problem, RoleRequiredProblem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas
