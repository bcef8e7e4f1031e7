"""The task fast path answers exactly as the FastAPI routes would (app/api/v1/task_fast_path.py).

Every request below is sent twice, in the same test transaction: to the app as it is served
(the fast path in front of the routes) and to the same app built without it, so that the
routes answer everything. The two answers must be the same: status, every header but the
request id, and the body (but the request id; for a created task, its id and timestamps).
Each case also says whether the fast path should answer it itself or hand it to the route,
and that is checked too: hostile and unusual requests must reach the route, whose rules and
wording they get; plain ones must not, or the fast path would be dead code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.v1.task_fast_path import TaskFastPath
from app.core.config import Settings
from app.core.security import create_access_token
from app.main import create_app
from app.models.task import Task
from app.models.user import User
from tests.conftest import UserFactory, _bound_sessionmaker
from tests.support import SORTS, call_asgi

TASKS = "/api/v1/tasks"
TOO_LONG_TAGS = ", ".join(f'"{n}"' for n in range(300))


@pytest.fixture(scope="session")
def plain_app(app: FastAPI, settings: Settings) -> FastAPI:
    """The same app without the fast path, sharing the served app's engine."""
    plain = create_app(settings, task_fast_path=False)
    plain.state.engine = app.state.engine
    return plain


@pytest.fixture
async def plain_client(
    plain_app: FastAPI, connection: AsyncConnection
) -> AsyncIterator[httpx.AsyncClient]:
    """Like `client`, for the app without the fast path, in the same test transaction."""
    plain_app.state.sessionmaker = _bound_sessionmaker(connection)
    transport = httpx.ASGITransport(app=plain_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def handed_on(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The paths of the requests the fast path handed to the routes."""
    await client.get("/healthz")  # builds the middleware stack
    layer: Any = app.middleware_stack
    while not isinstance(layer, TaskFastPath):
        layer = layer.app
    inner: ASGIApp = layer.app
    seen: list[str] = []

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await inner(scope, receive, send)

    monkeypatch.setattr(layer, "app", spy)
    return seen


@dataclass
class World:
    own: int  # Alice's live task
    twin: int  # another of Alice's live tasks, the same as `own` but for its id
    done: int  # Alice's finished task
    trashed: int  # Alice's task in the trash
    foreign: int  # Bob's task
    tokens: dict[str, str]  # who: Authorization header value

    def url(self, template: str) -> str:
        return template.format(own=self.own, foreign=self.foreign, trashed=self.trashed)


def bearer(settings: Settings, user_id: int, token_version: int, minutes: int = 15) -> str:
    token, _ = create_access_token(
        user_id=user_id,
        token_version=token_version,
        key=settings.signing_key,
        expire_minutes=minutes,
    )
    return f"Bearer {token}"


@pytest.fixture
async def world(make_user: UserFactory, session: AsyncSession, settings: Settings) -> World:
    alice = await make_user(email="alice@example.com")
    bob = await make_user(email="bob@example.com")
    gone = await make_user(email="gone@example.com", is_active=False)
    rows = [
        Task(owner_id=alice.id, title="first % _ task", description="plain words"),
        Task(owner_id=alice.id, title="second", status="done", priority=3),
        Task(owner_id=alice.id, title="third", priority=4),
        Task(owner_id=bob.id, title="bob's"),
        Task(owner_id=alice.id, title="first % _ task", description="plain words"),
    ]
    session.add_all(rows)
    await session.flush()
    await session.execute(update(Task).where(Task.id == rows[2].id).values(deleted_at=func.now()))
    await session.commit()
    token = bearer(settings, alice.id, alice.token_version)
    return World(
        own=rows[0].id,
        done=rows[1].id,
        trashed=rows[2].id,
        foreign=rows[3].id,
        twin=rows[4].id,
        tokens={
            "alice": token,
            "lowercase scheme": token.replace("Bearer", "bearer"),
            "two spaces": token.replace(" ", "  "),
            "garbage": "Bearer not.a.token",
            "expired": bearer(settings, alice.id, alice.token_version, minutes=-1),
            "revoked": bearer(settings, alice.id, alice.token_version + 1),
            "deactivated": bearer(settings, gone.id, gone.token_version),
            "unknown user": bearer(settings, 10**12, 1),
        },
    )


Send2 = Callable[..., Awaitable[tuple[httpx.Response, httpx.Response]]]


@pytest.fixture
def both(client: httpx.AsyncClient, plain_client: httpx.AsyncClient) -> Send2:
    async def send(method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        fast = await client.request(method, url, **kwargs)
        plain = await plain_client.request(method, url, **kwargs)
        return fast, plain

    return send


_CREATED_VALUES = ("id", "created_at", "updated_at", "completed_at")


def comparable(
    response: httpx.Response, *, written: bool = False
) -> tuple[int, list[tuple[str, str]], Any]:
    """Status, headers and body, without what differs between any two answers (and, for a
    task `written` by both, its id and timestamps)."""
    body: Any = response.content
    if response.content and response.headers.get("content-type", "").endswith("json"):
        body = response.json()
        if isinstance(body, dict):
            body.pop("request_id", None)
            if response.status_code == 201 or written:
                body = {
                    k: ("<set>" if k in _CREATED_VALUES and body[k] else v) for k, v in body.items()
                }
    headers = sorted(
        (name, "<new task>" if name == "location" else value)
        for name, value in response.headers.multi_items()
        if name != "x-request-id"
    )
    if response.status_code == 201 or written:
        headers = [(n, v) for n, v in headers if n != "content-length"]  # ids differ in length
    return response.status_code, headers, body


def assert_same(fast: httpx.Response, plain: httpx.Response, *, written: bool = False) -> None:
    assert comparable(fast, written=written) == comparable(plain, written=written)


# (case, URL template, who, extra headers, handed on to the route?)
READS: list[tuple[str, str, str | None, list[tuple[str, str]], bool]] = [
    ("own task", "/{own}", "alice", [], False),
    ("If-None-Match current", "/{own}", "alice", [("If-None-Match", '"1"')], False),
    ("If-None-Match weak", "/{own}", "alice", [("If-None-Match", 'W/"1"')], False),
    ("If-None-Match other", "/{own}", "alice", [("If-None-Match", '"7", "8"')], False),
    ("If-None-Match star", "/{own}", "alice", [("If-None-Match", "*")], False),
    ("If-None-Match garbage", "/{own}", "alice", [("If-None-Match", "1")], False),
    ("If-None-Match too long", "/{own}", "alice", [("If-None-Match", TOO_LONG_TAGS)], True),
    (
        "If-None-Match twice",
        "/{own}",
        "alice",
        [("If-None-Match", '"1"'), ("If-None-Match", '"2"')],
        True,
    ),
    ("Authorization twice", "/{own}", "alice", [("Authorization", "Bearer x")], True),
    ("someone else's task", "/{foreign}", "alice", [], False),
    ("trashed task", "/{trashed}", "alice", [], False),
    ("no such task", "/999999999", "alice", [], False),
    ("largest id", f"/{2**63 - 1}", "alice", [], False),
    ("id too large", f"/{2**63}", "alice", [], True),
    ("id zero", "/0", "alice", [], True),
    ("leading zero", "/0{own}", "alice", [], True),
    ("negative id", "/-1", "alice", [], True),
    ("id not a number", "/abc", "alice", [], True),
    ("id with spaces", "/%20{own}", "alice", [], True),
    ("query string", "/{own}?x=1", "alice", [], True),
    ("trailing slash", "/{own}/", "alice", [], True),
    ("empty id", "/", "alice", [], True),
    ("no token", "/{own}", None, [], True),
    ("lowercase scheme", "/{own}", "lowercase scheme", [], True),
    ("two spaces after Bearer", "/{own}", "two spaces", [], True),
    ("garbage token", "/{own}", "garbage", [], True),
    ("expired token", "/{own}", "expired", [], True),
    ("token version bumped", "/{own}", "revoked", [], False),
    ("deactivated account", "/{own}", "deactivated", [], False),
    ("unknown user", "/{own}", "unknown user", [], False),
]


@pytest.mark.parametrize(
    ("template", "who", "extra", "expect_handed_on"),
    [case[1:] for case in READS],
    ids=[case[0] for case in READS],
)
async def test_read(
    world: World,
    both: Send2,
    handed_on: list[str],
    template: str,
    who: str | None,
    extra: list[tuple[str, str]],
    expect_handed_on: bool,
) -> None:
    headers = ([("Authorization", world.tokens[who])] if who else []) + extra
    fast, plain = await both("GET", TASKS + world.url(template), headers=headers)
    assert_same(fast, plain)
    assert bool(handed_on) == expect_handed_on, handed_on


async def test_head_is_left_to_the_route(world: World, both: Send2, handed_on: list[str]) -> None:
    headers = {"Authorization": world.tokens["alice"]}
    fast, plain = await both("HEAD", f"{TASKS}/{world.own}", headers=headers)
    assert_same(fast, plain)
    assert handed_on


LISTS: list[tuple[str, str, bool]] = [
    ("no parameters", "", False),
    ("smallest page", "limit=1", False),
    ("largest page", "limit=100", False),
    ("limit zero", "limit=0", True),
    ("limit too large", "limit=101", True),
    ("limit with leading zero", "limit=01", True),
    ("limit with a sign", "limit=%2B5", True),
    ("limit empty", "limit=", True),
    ("limit not a number", "limit=ten", True),
    ("one status", "status=todo", False),
    ("two statuses", "status=todo,done", False),
    ("statuses with spaces", "status=todo,%20done", False),
    ("unknown status", "status=bogus", True),
    ("empty status", "status=", True),
    ("status repeated", "status=todo&status=done", True),
    ("one priority", "priority=high", False),
    ("priority in capitals", "priority=HIGH", True),
    ("status and priority", "status=todo&priority=medium,urgent", False),
    *[(f"sort {sort}", f"sort={sort}", False) for sort in SORTS],
    ("unknown sort", "sort=title", True),
    ("the trash", "deleted=true", False),
    ("not the trash", "deleted=false", False),
    ("deleted as 1", "deleted=1", True),
    ("deleted as yes", "deleted=yes", True),
    ("text", "q=first", False),
    ("text with LIKE wildcards", "q=%25%20_", False),
    ("text in capitals", "q=FIRST", False),
    ("empty text", "q=", True),
    ("text too long", "q=" + "x" * 201, True),
    ("longest text", "q=" + "x" * 200, False),
    ("text with NUL", "q=a%00b", True),
    ("due bound", "due_before=2030-01-01T00:00:00Z", True),
    ("unknown parameter", "colour=red", True),
    ("garbage cursor", "cursor=abc", False),
    ("cursor with NUL", "cursor=a%00b", True),
    ("name percent-encoded", "li%6Dit=1", False),
]


@pytest.mark.parametrize(
    ("query", "expect_handed_on"),
    [case[1:] for case in LISTS],
    ids=[case[0] for case in LISTS],
)
async def test_list(
    world: World, both: Send2, handed_on: list[str], query: str, expect_handed_on: bool
) -> None:
    headers = {"Authorization": world.tokens["alice"]}
    fast, plain = await both("GET", f"{TASKS}?{query}" if query else TASKS, headers=headers)
    assert_same(fast, plain)
    assert bool(handed_on) == expect_handed_on, handed_on


@pytest.mark.parametrize("who", ["revoked", "deactivated", "garbage", "expired"])
async def test_list_with_a_bad_token(world: World, both: Send2, who: str) -> None:
    fast, plain = await both("GET", TASKS, headers={"Authorization": world.tokens[who]})
    assert fast.status_code == 401
    assert_same(fast, plain)


@pytest.mark.parametrize("query", ["", "status=todo,done&sort=priority", "sort=-due_at&q=s"])
async def test_walking_pages_by_cursor(
    world: World, both: Send2, handed_on: list[str], query: str
) -> None:
    """Each page, its cursor and its `Link` are the same; a cursor from one is good on the
    other; a cursor given with other filters is refused alike."""
    headers = {"Authorization": world.tokens["alice"]}
    url: str | None = f"{TASKS}?limit=1&{query}"
    pages = 0
    while url is not None:
        fast, plain = await both("GET", url, headers=headers)
        assert fast.status_code == 200
        assert_same(fast, plain)
        pages += 1
        cursor = fast.json()["next_cursor"]
        if cursor is not None:
            other, other_plain = await both(
                "GET", f"{TASKS}?limit=1&deleted=true&cursor={cursor}", headers=headers
            )
            assert other.status_code == 422
            assert_same(other, other_plain)
        url = fast.links["next"]["url"] if "next" in fast.links else None
    assert pages >= 2
    assert not handed_on


# (case, body, content type, extra headers, handed on to the route?)
CREATES: list[tuple[str, bytes, str | None, dict[str, str], bool]] = [
    ("title only", b'{"title": "x"}', "application/json", {}, False),
    (
        "every field",
        json.dumps(
            {
                "title": "  Write the report  ",
                "description": "line one\nline two",
                "status": "done",
                "priority": "urgent",
                "due_at": "2030-05-01T12:00:00+02:00",
            }
        ).encode(),
        "application/json",
        {},
        False,
    ),
    ("unicode", '{"title": "Ünïcödé ✓ 🎉"}'.encode(), "application/json", {}, False),
    ("charset", b'{"title": "x"}', "application/json; charset=utf-8", {}, False),
    ("charset, no space", b'{"title": "x"}', "application/json;charset=utf-8", {}, True),
    ("a +json type", b'{"title": "x"}', "application/vnd.tasks+json", {}, True),
    ("JSON in capitals", b'{"title": "x"}', "APPLICATION/JSON", {}, False),
    ("text/plain", b'{"title": "x"}', "text/plain", {}, True),
    ("no content type", b'{"title": "x"}', None, {}, True),
    ("empty body", b"", "application/json", {}, True),
    ("invalid JSON", b'{"title": ', "application/json", {}, True),
    ("a JSON array", b'[{"title": "x"}]', "application/json", {}, True),
    ("a JSON string", b'"x"', "application/json", {}, True),
    ("unknown field", b'{"title": "x", "owner_id": 1}', "application/json", {}, True),
    ("blank title", b'{"title": "   "}', "application/json", {}, True),
    ("no title", b'{"priority": "high"}', "application/json", {}, True),
    ("unknown priority", b'{"title": "x", "priority": "extreme"}', "application/json", {}, True),
    (
        "due date without zone",
        b'{"title": "x", "due_at": "2030-01-01T00:00:00"}',
        "application/json",
        {},
        True,
    ),
    ("NaN", b'{"title": "x", "priority": NaN}', "application/json", {}, True),
    ("duplicate key", b'{"title": "a", "title": "b"}', "application/json", {}, False),
    ("title with NUL", b'{"title": "a\\u0000b"}', "application/json", {}, True),
    ("query string", b'{"title": "x"}', "application/json", {"?": "x=1"}, True),
]


async def alice_tasks(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Task).join(User).where(User.email == "alice@example.com")
    )
    return int(count or 0)


@pytest.mark.parametrize(
    ("body", "content_type", "extra", "expect_handed_on"),
    [case[1:] for case in CREATES],
    ids=[case[0] for case in CREATES],
)
async def test_create(
    world: World,
    both: Send2,
    handed_on: list[str],
    session: AsyncSession,
    body: bytes,
    content_type: str | None,
    extra: dict[str, str],
    expect_handed_on: bool,
) -> None:
    extra = dict(extra)
    query = extra.pop("?", None)
    headers = {"Authorization": world.tokens["alice"], **extra}
    if content_type is not None:
        headers["Content-Type"] = content_type
    before = await alice_tasks(session)
    url = f"{TASKS}?{query}" if query else TASKS
    fast, plain = await both("POST", url, content=body, headers=headers)
    assert_same(fast, plain)
    assert bool(handed_on) == expect_handed_on, handed_on
    created = 2 if fast.status_code == 201 else 0
    assert await alice_tasks(session) == before + created
    if fast.status_code == 201:
        location = fast.headers["location"]
        read = await both("GET", location, headers={"Authorization": world.tokens["alice"]})
        assert read[0].json() == fast.json()


@pytest.mark.parametrize("who", ["revoked", "deactivated", "unknown user", "garbage", None])
async def test_create_with_a_bad_token(
    world: World, both: Send2, session: AsyncSession, who: str | None
) -> None:
    headers = {"Authorization": world.tokens[who]} if who else {}
    before = await alice_tasks(session)
    fast, plain = await both("POST", TASKS, json={"title": "never stored"}, headers=headers)
    assert fast.status_code == 401
    assert_same(fast, plain)
    assert await alice_tasks(session) == before


async def test_create_with_a_body_over_the_limit(
    world: World,
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    settings: Settings,
    session: AsyncSession,
) -> None:
    big = json.dumps({"title": "x", "description": "y" * settings.max_body_bytes}).encode()
    headers = {"Authorization": world.tokens["alice"], "Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    before = await alice_tasks(session)
    for http in (client, plain_client):
        declared = await http.post(TASKS, content=big, headers=headers)
        streamed = await http.post(TASKS, content=chunks(), headers=headers)
        assert declared.status_code == streamed.status_code == 413
        assert comparable(declared)[2] == comparable(streamed)[2]
    assert_same(
        await client.post(TASKS, content=chunks(), headers=headers),
        await plain_client.post(TASKS, content=chunks(), headers=headers),
    )
    assert await alice_tasks(session) == before


async def test_create_with_an_idempotency_key_is_left_to_the_route(
    world: World, client: httpx.AsyncClient, handed_on: list[str], session: AsyncSession
) -> None:
    headers = {"Authorization": world.tokens["alice"], "Idempotency-Key": "fast-path-1"}
    before = await alice_tasks(session)
    first = await client.post(TASKS, json={"title": "once"}, headers=headers)
    retry = await client.post(TASKS, json={"title": "once"}, headers=headers)
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert handed_on == [TASKS, TASKS]
    assert await alice_tasks(session) == before + 1


# (case, body, Content-Type, extra headers, which task, handed on to the route?, status)
PATCHES: list[tuple[str, bytes, str, list[tuple[str, str]], str, bool, int]] = [
    ("new title", b'{"title": "renamed"}', "application/json", [], "own", False, 200),
    (
        "every field",
        json.dumps(
            {
                "title": "t",
                "description": None,
                "status": "in_progress",
                "priority": "low",
                "due_at": "2031-02-03T04:05:06Z",
            }
        ).encode(),
        "application/json",
        [],
        "own",
        False,
        200,
    ),
    ("done", b'{"status": "done"}', "application/json", [], "own", False, 200),
    ("nothing to change", b"{}", "application/json", [], "own", False, 200),
    ("due date cleared", b'{"due_at": null}', "application/json", [], "own", False, 200),
    (
        "If-Match current",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", '"1"')],
        "own",
        False,
        200,
    ),
    (
        "If-Match among others",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", '"7", "1"')],
        "own",
        False,
        200,
    ),
    (
        "If-Match star",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", "*")],
        "own",
        False,
        200,
    ),
    (
        "If-Match stale",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", '"9"')],
        "own",
        False,
        412,
    ),
    (
        "If-Match weak",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", 'W/"1"')],
        "own",
        False,
        412,
    ),
    (
        "If-Match garbage",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", "1")],
        "own",
        False,
        412,
    ),
    (
        "If-Match too long",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", TOO_LONG_TAGS)],
        "own",
        True,
        422,
    ),
    (
        "If-Match twice",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", '"1"'), ("If-Match", '"2"')],
        "own",
        True,
        200,
    ),
    ("someone else's task", b'{"title": "x"}', "application/json", [], "foreign", False, 404),
    ("trashed task", b'{"title": "x"}', "application/json", [], "trashed", False, 404),
    ("null title", b'{"title": null}', "application/json", [], "own", True, 422),
    ("blank title", b'{"title": "  "}', "application/json", [], "own", True, 422),
    ("unknown field", b'{"version": 7}', "application/json", [], "own", True, 422),
    ("unknown status", b'{"status": "later"}', "application/json", [], "own", True, 422),
    ("invalid JSON", b'{"title"', "application/json", [], "own", True, 422),
    ("no body", b"", "application/json", [], "own", True, 422),
    ("text/plain", b'{"title": "x"}', "text/plain", [], "own", True, 415),
]


@pytest.mark.parametrize(
    ("body", "content_type", "extra", "target", "expect_handed_on", "status"),
    [case[1:] for case in PATCHES],
    ids=[case[0] for case in PATCHES],
)
async def test_update(
    world: World,
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    handed_on: list[str],
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]],
    target: str,
    expect_handed_on: bool,
    status: int,
) -> None:
    """A write that succeeds is made by each app on its own one of two identical tasks; one
    that fails is sent to both for the same task (and must change nothing)."""
    headers = [("Authorization", world.tokens["alice"]), ("Content-Type", content_type), *extra]
    url = f"{TASKS}/{getattr(world, target)}"
    plain_url = f"{TASKS}/{world.twin}" if status == 200 else url
    before = comparable(await client.get(url, headers=headers[:1]))
    fast = await client.patch(url, content=body, headers=headers)
    plain = await plain_client.patch(plain_url, content=body, headers=headers)
    assert fast.status_code == status, fast.text
    assert_same(fast, plain, written=status == 200)
    assert bool(handed_on) == expect_handed_on, handed_on
    if status != 200:
        assert comparable(await client.get(url, headers=headers[:1])) == before


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("POST", ""),
        ("PATCH", "/{own}"),
        ("PATCH", "/{own}/restore"),  # the route answers 405 without reading the body
        ("PATCH", "/x"),  # and 404 here
        ("PATCH", "//{own}"),
    ],
)
async def test_a_streamed_body_over_the_limit_is_the_routes_to_answer(
    world: World,
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    handed_on: list[str],
    settings: Settings,
    method: str,
    template: str,
) -> None:
    """The same answer as the route's, labelled as the route labels it (the fast path hands
    the request on with what it had read, and the error that stopped it)."""
    big = json.dumps({"title": "x", "description": "y" * settings.max_body_bytes}).encode()
    headers = {"Authorization": world.tokens["alice"], "Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    url = TASKS + world.url(template)
    fast = await client.request(method, url, content=chunks(), headers=headers)
    plain = await plain_client.request(method, url, content=chunks(), headers=headers)
    assert fast.status_code in (404, 405, 413)
    assert_same(fast, plain)
    assert handed_on == [url]


@pytest.mark.parametrize("failure", [ConnectionResetError(), TimeoutError(), RuntimeError("x")])
@pytest.mark.parametrize(("method", "template"), [("POST", ""), ("PATCH", "/{own}")])
async def test_a_body_that_cannot_be_read_is_the_routes_to_answer(
    world: World,
    app: FastAPI,
    plain_app: FastAPI,
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    method: str,
    template: str,
    failure: Exception,
) -> None:
    """The server's `receive` fails mid-body: FastAPI's 400, rendered as our 422, from both
    (not the 503 that an OSError from the database would be)."""
    path = TASKS + world.url(template)

    async def answer(asgi: FastAPI) -> tuple[int, bytes]:
        messages = [{"type": "http.request", "body": b'{"title": ', "more_body": True}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            raise failure

        headers = [
            (b"authorization", world.tokens["alice"].encode()),
            (b"content-type", b"application/json"),
        ]
        status, _, body = await call_asgi(asgi, method, path, headers=headers, receive=receive)
        return status, body

    fast_status, fast_body = await answer(app)
    plain_status, plain_body = await answer(plain_app)
    assert fast_status == plain_status == 422
    assert json.loads(fast_body)["errors"] == json.loads(plain_body)["errors"]
