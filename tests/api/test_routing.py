"""`CompiledRoute` (app/api/routing.py) answers as FastAPI answers the same declaration.

The same endpoints are declared twice, on an `api_router` (every route a `CompiledRoute`) and
on a plain `APIRouter`, in two apps with the service's problem handlers. Each request below
goes to both, and the answers must be the same: status, headers and body (but the request
id). What the compiled route refuses beyond FastAPI (undeclared, repeated or unreadable query
parameters, a body not sent as JSON) is tested on its own, below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import (
    APIRouter,
    Cookie,
    Depends,
    FastAPI,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
)
from pydantic import AfterValidator, Field, StringConstraints

from app.api.middleware import RequestIdMiddleware
from app.api.problems import install_problem_handlers
from app.api.routing import CompiledRoute, UnsupportedDeclaration, api_router, operation_id
from app.core.errors import Unauthorized
from app.schemas.common import RequestModel, ResponseModel, Timestamp, reject_controls_in_line

events: list[str] = []


async def require_key(request: Request) -> str:
    """Like the bearer scheme: a dependency that refuses before parameters are looked at."""
    key = request.headers.get("x-key")
    if key != "open sesame":
        raise Unauthorized()
    return key


async def session_like() -> AsyncIterator[str]:
    """Like the request's session: opened before the endpoint, closed before the answer."""
    events.append("open")
    try:
        yield "session"
    except Exception:
        events.append("rolled back")
        raise
    else:
        events.append("committed")


async def header_setter(response: Response) -> None:
    response.headers["X-From-Dependency"] = "yes"


class Thing(RequestModel):
    name: Annotated[
        str, StringConstraints(min_length=1, max_length=20), AfterValidator(reject_controls_in_line)
    ]
    size: int = Field(default=1, ge=1, le=10)
    due: Timestamp | None = None


class ThingRead(ResponseModel):
    name: str
    size: int
    note: str


class LoginForm:
    def __init__(
        self,
        *,
        username: Annotated[str, Form(min_length=1)],
        password: Annotated[str, Form(min_length=1)],
        scope: Annotated[str, Form()] = "",
    ) -> None:
        self.username = username
        self.password = password
        self.scope = scope


ThingId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def declare(router: APIRouter) -> APIRouter:
    @router.get("/things/{thing_id}")
    async def read_thing(
        thing_id: ThingId,
        key: Annotated[str, Depends(require_key)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        kind: Annotated[Literal["small", "large"] | None, Query()] = None,
        after: Annotated[Timestamp | None, Query()] = None,
        trash: bool = False,
        word: Annotated[str | None, Query(min_length=1, max_length=5)] = None,
        if_match: Annotated[str | None, Header(alias="If-Match", max_length=10)] = None,
    ) -> dict[str, Any]:
        return {
            "id": thing_id,
            "limit": limit,
            "kind": kind,
            "after": after.isoformat() if after else None,
            "trash": trash,
            "word": word,
            "if_match": if_match,
        }

    @router.post("/things", status_code=201, response_model=ThingRead)
    async def create_thing(
        data: Thing,
        key: Annotated[str, Depends(require_key)],
        session: Annotated[str, Depends(session_like, scope="function")],
        _headers: Annotated[None, Depends(header_setter)],
        response: Response,
    ) -> dict[str, Any]:
        if data.name == "explode":
            raise Unauthorized("Refused after the session opened.")
        response.headers["Location"] = "/things/1"
        return {"name": data.name, "size": data.size, "note": session}

    @router.post("/login")
    async def login(form: Annotated[LoginForm, Depends()]) -> dict[str, str]:
        return {"username": form.username, "scope": form.scope}

    return router


def build(router: APIRouter) -> FastAPI:
    # Routes handed to the app as they were declared, as app.main does.
    app = FastAPI(routes=declare(router).routes)
    install_problem_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    return app


compiled_app = build(api_router("", "things"))
plain_app = build(APIRouter(tags=["things"], generate_unique_id_function=operation_id))


@pytest.fixture
async def both() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        for app in (compiled_app, plain_app)
    ]
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.aclose()


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    """Status, headers and body; not the request id, nor the header a dependency set (the
    compiled route sends it with errors too: see the test of that below)."""
    body: Any = response.content
    if response.headers.get("content-type", "").endswith("json"):
        body = response.json()
        if isinstance(body, dict):
            body.pop("request_id", None)
    headers = sorted(
        (name, value)
        for name, value in response.headers.multi_items()
        if name not in ("x-request-id", "x-from-dependency")
    )
    return response.status_code, headers, body


KEY = {"X-Key": "open sesame"}

READS: list[tuple[str, str, dict[str, str]]] = [
    ("plain", "/things/1", KEY),
    (
        "every parameter",
        "/things/5?limit=100&kind=large&after=2030-01-01T00:00:00Z&trash=true&word=abc",
        {**KEY, "If-Match": '"3"'},
    ),
    ("id not a number", "/things/abc", KEY),
    ("id zero", "/things/0", KEY),
    ("id too large", f"/things/{2**63}", KEY),
    ("negative id", "/things/-1", KEY),
    ("limit not a number", "/things/1?limit=ten", KEY),
    ("limit empty", "/things/1?limit=", KEY),
    ("limit too large", "/things/1?limit=101", KEY),
    ("unknown kind", "/things/1?kind=huge", KEY),
    ("timestamp without offset", "/things/1?after=2030-01-01T00:00:00", KEY),
    ("timestamp garbage", "/things/1?after=yesterday", KEY),
    ("boolean garbage", "/things/1?trash=maybe", KEY),
    ("boolean as 1", "/things/1?trash=1", KEY),
    ("word too long", "/things/1?word=abcdef", KEY),
    ("word empty", "/things/1?word=", KEY),
    ("several bad parameters", "/things/0?limit=0&kind=huge&trash=x", KEY),
    ("header too long", "/things/1", {**KEY, "If-Match": "x" * 11}),
    ("no key", "/things/1", {}),
    ("no key and bad parameters", "/things/0?limit=0", {}),
]


@pytest.mark.parametrize(("url", "headers"), [c[1:] for c in READS], ids=[c[0] for c in READS])
async def test_reads_are_answered_alike(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient], url: str, headers: dict[str, str]
) -> None:
    compiled, plain = both
    assert comparable(await compiled.get(url, headers=headers)) == comparable(
        await plain.get(url, headers=headers)
    )


async def test_a_header_given_twice_is_read_as_fastapi_reads_it(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    headers = [("X-Key", "open sesame"), ("If-Match", '"1"'), ("If-Match", '"2"')]
    compiled, plain = both
    answer = await compiled.get("/things/1", headers=headers)
    assert answer.json()["if_match"] == '"1"'
    assert comparable(answer) == comparable(await plain.get("/things/1", headers=headers))


JSON = {"Content-Type": "application/json", **KEY}

CREATES: list[tuple[str, bytes, dict[str, str]]] = [
    ("plain", b'{"name": "a"}', JSON),
    ("every field", b'{"name": "a", "size": 3, "due": "2030-01-01T00:00:00+02:00"}', JSON),
    ("a +json media type", b'{"name": "a"}', {**JSON, "Content-Type": "application/x+json"}),
    ("charset", b'{"name": "a"}', {**JSON, "Content-Type": "application/json; charset=utf-8"}),
    ("invalid JSON", b'{"name": ', JSON),
    ("a JSON array", b'[{"name": "a"}]', JSON),
    ("JSON null", b"null", JSON),
    ("a JSON string", b'"a"', JSON),
    ("no body", b"", JSON),
    ("missing field", b'{"size": 2}', JSON),
    ("unknown field", b'{"name": "a", "owner": 1}', JSON),
    ("wrong type", b'{"name": 5}', JSON),
    ("out of bounds", b'{"name": "a", "size": 11}', JSON),
    ("NaN", b'{"name": "a", "size": NaN}', JSON),
    ("huge number", b'{"name": "a", "size": 1e400}', JSON),
    ("control character", b'{"name": "a\\u0007"}', JSON),
    ("timestamp without offset", b'{"name": "a", "due": "2030-01-01T00:00:00"}', JSON),
    ("nested too deeply", b"[" * 100_000 + b"]" * 100_000, JSON),
    ("not UTF-8", b'{"name": "\xff"}', JSON),
    ("no key", b'{"name": "a"}', {"Content-Type": "application/json"}),
    ("no key and invalid JSON", b'{"name"', {"Content-Type": "application/json"}),
    ("no key and a bad field", b'{"name": 5}', {"Content-Type": "application/json"}),
    ("refused by the endpoint", b'{"name": "explode"}', JSON),
]


@pytest.mark.parametrize(("body", "headers"), [c[1:] for c in CREATES], ids=[c[0] for c in CREATES])
async def test_bodies_are_answered_alike(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient], body: bytes, headers: dict[str, str]
) -> None:
    compiled, plain = both
    events.clear()
    compiled_answer = comparable(await compiled.post("/things", content=body, headers=headers))
    compiled_events = list(events)
    events.clear()
    plain_answer = comparable(await plain.post("/things", content=body, headers=headers))
    assert compiled_answer == plain_answer
    assert compiled_events == events  # the dependency with yield opened and closed alike


FORMS: list[tuple[str, dict[str, str] | str, str | None]] = [
    ("plain", {"username": "kim", "password": "pw"}, None),
    ("every field", {"username": "kim", "password": "pw", "scope": "a b"}, None),
    ("missing field", {"username": "kim"}, None),
    ("empty field", {"username": "", "password": "pw"}, None),
    ("multipart", {"username": "kim", "password": "pw"}, "multipart"),
    ("JSON instead", '{"username": "kim", "password": "pw"}', "application/json"),
]


@pytest.mark.parametrize(("form", "kind"), [c[1:] for c in FORMS], ids=[c[0] for c in FORMS])
async def test_forms_are_answered_alike(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient],
    form: dict[str, str] | str,
    kind: str | None,
) -> None:
    answers = []
    for client in both:
        if kind == "multipart":
            assert isinstance(form, dict)
            response = await client.post("/login", files={k: (None, v) for k, v in form.items()})
        elif isinstance(form, str):
            content_type = kind or "application/x-www-form-urlencoded"
            response = await client.post(
                "/login", content=form, headers={"Content-Type": content_type}
            )
        else:
            response = await client.post("/login", data=form)
        answers.append(comparable(response))
    assert answers[0] == answers[1]


async def test_the_answering_route_is_the_declared_route() -> None:
    seen: list[Any] = []
    router = api_router("", "things")

    @router.get("/where")
    async def where(request: Request) -> dict[str, str]:
        seen.append(request.scope["route"])
        return {}

    app = FastAPI()
    app.include_router(router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        assert (await client.get("/where")).status_code == 200
    assert seen == [router.routes[0]]
    assert isinstance(seen[0], CompiledRoute)


def test_the_openapi_document_is_the_declarations() -> None:
    compiled, plain = compiled_app.openapi(), plain_app.openapi()
    for document in (compiled, plain):
        for operations in document["paths"].values():
            for operation in operations.values():
                operation.pop("operationId")
    assert compiled == plain


# --- what the compiled route refuses beyond FastAPI ---------------------------------------


@pytest.fixture
async def compiled() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=compiled_app), base_url="http://testserver"
    ) as client:
        yield client


def problem_errors(response: httpx.Response, status: int = 422) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors: list[dict[str, Any]] = response.json().get("errors", [])
    return errors


@pytest.mark.parametrize(
    ("query", "loc", "type_"),
    [
        ("colour=red", ["query", "colour"], "extra_forbidden"),
        ("limit=1&colour=red&size=2", ["query", "colour"], "extra_forbidden"),
        ("%00=1", ["query", "<unknown>"], "extra_forbidden"),
        ("limit=1&limit=2", ["query", "limit"], "repeated_parameter"),
        ("word=%ED%A0%80", ["query"], "query_invalid"),
        ("word=%FF", ["query"], "query_invalid"),
    ],
)
async def test_undeclared_repeated_and_unreadable_query_parameters_are_422(
    compiled: httpx.AsyncClient, query: str, loc: list[str], type_: str
) -> None:
    errors = problem_errors(await compiled.get(f"/things/1?{query}", headers=KEY))
    assert {"loc": loc, "msg": errors[0]["msg"], "type": type_} in errors


async def test_credentials_come_before_the_query_parameters(
    compiled: httpx.AsyncClient,
) -> None:
    """Without credentials a mistyped parameter is a 401 like any other request, which the
    anonymous rate limit counts; with them, it is named among the parameters' own errors."""
    unauthorized = await compiled.get("/things/1?colour=red&kind=huge")
    assert unauthorized.status_code == 401, unauthorized.text
    errors = problem_errors(await compiled.get("/things/1?colour=red&kind=huge", headers=KEY))
    assert {tuple(item["loc"]) for item in errors} == {("query", "colour"), ("query", "kind")}


async def test_a_repeated_parameter_is_named_once(compiled: httpx.AsyncClient) -> None:
    errors = problem_errors(await compiled.get("/things/1?limit=1&limit=2&limit=3", headers=KEY))
    assert [item["loc"] for item in errors] == [["query", "limit"]]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
async def test_a_body_not_sent_as_json_is_415(
    compiled: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {**KEY, **({"Content-Type": content_type} if content_type else {})}
    problem_errors(await compiled.post("/things", content=b'{"name": "a"}', headers=headers), 415)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "loc"),
    [
        (b'{"name": "a", "name": "b"}', "application/json", 422, ["body", "name"]),
        ('{"name": "a"}'.encode("utf-16"), "application/json", 422, ["body"]),
        (b'{"name": "a"}', "application/json; charset=utf-16", 415, None),
        (b'{"name": "a"}', 'application/json; charset="latin-1"', 415, None),
    ],
)
async def test_json_read_one_way_only(
    compiled: httpx.AsyncClient, body: bytes, content_type: str, status: int, loc: Any
) -> None:
    """What another parser could read otherwise (a repeated key, another encoding) is refused
    rather than read our way."""
    headers = {**KEY, "Content-Type": content_type}
    errors = problem_errors(await compiled.post("/things", content=body, headers=headers), status)
    if loc is not None:
        assert loc in [item["loc"] for item in errors]


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP"])
async def test_a_coded_body_is_415(compiled: httpx.AsyncClient, coding: str) -> None:
    headers = {**JSON, "Content-Encoding": coding}
    problem_errors(await compiled.post("/things", content=b'{"name": "a"}', headers=headers), 415)
    identity = {**JSON, "Content-Encoding": "identity"}
    assert (await compiled.post("/things", json={"name": "a"}, headers=identity)).status_code == 201


@pytest.mark.parametrize(
    ("form", "loc"),
    [
        ("username=a&username=b&password=pw", ["body", "username"]),
        ("username=kim&password=pw&colour=red", ["body", "colour"]),
    ],
)
async def test_form_fields_repeated_or_undeclared_are_422(
    compiled: httpx.AsyncClient, form: str, loc: list[str]
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    errors = problem_errors(await compiled.post("/login", content=form, headers=headers))
    assert loc in [item["loc"] for item in errors]


async def test_headers_a_dependency_sets_go_out_with_errors_too(
    compiled: httpx.AsyncClient,
) -> None:
    answer = await compiled.post("/things", json={"name": "explode"}, headers=KEY)
    assert answer.status_code == 401
    assert answer.headers["x-from-dependency"] == "yes"


# --- declarations the plan refuses when the app is built ----------------------------------


def _sync_dependency() -> str:
    return "blocks the loop"


def sync_endpoint() -> dict[str, str]:
    return {}


async def with_sync_dependency(value: Annotated[str, Depends(_sync_dependency)]) -> str:
    return value


async def with_a_cookie(session_id: Annotated[str | None, Cookie()] = None) -> str | None:
    return session_id


async def with_two_json_bodies(first: Thing, second: Thing) -> str:
    return first.name + second.name


@pytest.mark.parametrize(
    "endpoint", [sync_endpoint, with_sync_dependency, with_a_cookie, with_two_json_bodies]
)
def test_what_the_plan_does_not_cover_is_refused_when_the_app_is_built(endpoint: Any) -> None:
    router = api_router("", "things")
    with pytest.raises(UnsupportedDeclaration):
        router.add_api_route("/refused", endpoint, methods=["POST"])
