"""Hostile and unusual forms of the commonest task requests, each with the answer it gets.

These were cases of the differential test that held the task fast path to the routes; with
one path per route they are plain contract tests: the status, and that nothing changed when
the answer is an error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.security import create_access_token
from app.models.project import Project
from app.models.task import Task
from app.models.user import User
from tests.conftest import UserFactory
from tests.support import assert_problem, call_asgi, inbox_id

TASKS = "/api/v1/tasks"
TOO_LONG_TAGS = ", ".join(f'"{n}"' for n in range(300))


def bearer(settings: Settings, user_id: int, token_version: int, minutes: int = 15) -> str:
    token, _ = create_access_token(
        user_id=user_id,
        token_version=token_version,
        key=settings.signing_key,
        expire_minutes=minutes,
    )
    return f"Bearer {token}"


@dataclass
class World:
    own: int  # Alice's live task, at version 1
    trashed: int  # Alice's task in the trash
    foreign: int  # Bob's task
    tokens: dict[str, str]  # who: Authorization header value


@pytest.fixture
async def world(make_user: UserFactory, session: AsyncSession, settings: Settings) -> World:
    alice = await make_user(email="alice@example.com")
    bob = await make_user(email="bob@example.com")
    gone = await make_user(email="gone@example.com", is_active=False)
    alice_inbox, bob_inbox = await inbox_id(session, alice), await inbox_id(session, bob)
    rows = [
        Task(project_id=alice_inbox, title="first"),
        Task(project_id=alice_inbox, title="trashed"),
        Task(project_id=bob_inbox, title="bob's"),
    ]
    session.add_all(rows)
    await session.flush()
    await session.execute(update(Task).where(Task.id == rows[1].id).values(deleted_at=func.now()))
    await session.commit()
    token = bearer(settings, alice.id, alice.token_version)
    return World(
        own=rows[0].id,
        trashed=rows[1].id,
        foreign=rows[2].id,
        tokens={
            "alice": token,
            "lowercase scheme": token.replace("Bearer", "bearer"),
            "two spaces": token.replace(" ", "  "),
            "garbage": "Bearer not.a.token",
            "no scheme": token.removeprefix("Bearer "),
            "expired": bearer(settings, alice.id, alice.token_version, minutes=-1),
            "revoked": bearer(settings, alice.id, alice.token_version + 1),
            "deactivated": bearer(settings, gone.id, gone.token_version),
            "unknown user": bearer(settings, 10**12, 1),
        },
    )


async def stored(session: AsyncSession, task_id: int) -> tuple[str, int]:
    row = (await session.execute(select(Task.title, Task.version).where(Task.id == task_id))).one()
    return row.title, row.version


async def alice_count(session: AsyncSession) -> int:
    query = (
        select(func.count())
        .select_from(Task)
        .join(Project, Project.id == Task.project_id)
        .join(User, User.id == Project.inbox_user_id)
        .where(User.email == "alice@example.com")
    )
    return int(await session.scalar(query) or 0)


READS: list[tuple[str, str, str | None, list[tuple[str, str]], int]] = [
    ("own task", "{own}", "alice", [], 200),
    ("If-None-Match current", "{own}", "alice", [("If-None-Match", '"1"')], 304),
    ("If-None-Match weak", "{own}", "alice", [("If-None-Match", 'W/"1"')], 304),
    ("If-None-Match others", "{own}", "alice", [("If-None-Match", '"7", "8"')], 200),
    ("If-None-Match star", "{own}", "alice", [("If-None-Match", "*")], 304),
    ("If-None-Match unquoted", "{own}", "alice", [("If-None-Match", "1")], 200),
    ("If-None-Match too long", "{own}", "alice", [("If-None-Match", TOO_LONG_TAGS)], 422),
    # One request, one reading (decision 0010): neither header is read (the first was).
    ("Authorization twice", "{own}", "alice", [("Authorization", "Bearer x")], 401),
    ("someone else's task", "{foreign}", "alice", [], 404),
    ("trashed task", "{trashed}", "alice", [], 404),
    ("no such task", "999999999", "alice", [], 404),
    ("largest id", str(2**63 - 1), "alice", [], 404),
    ("id too large", str(2**63), "alice", [], 422),
    ("id zero", "0", "alice", [], 422),
    ("negative id", "-1", "alice", [], 422),
    ("id not a number", "abc", "alice", [], 422),
    ("no token", "{own}", None, [], 401),
    ("lowercase scheme", "{own}", "lowercase scheme", [], 200),
    ("two spaces after Bearer", "{own}", "two spaces", [], 200),  # 1*SP, RFC 6750 2.1
    ("no scheme", "{own}", "no scheme", [], 401),
    ("garbage token", "{own}", "garbage", [], 401),
    ("expired token", "{own}", "expired", [], 401),
    ("token version bumped", "{own}", "revoked", [], 401),
    ("deactivated account", "{own}", "deactivated", [], 401),
    ("unknown user", "{own}", "unknown user", [], 401),
]


@pytest.mark.parametrize(
    ("target", "who", "extra", "status"), [c[1:] for c in READS], ids=[c[0] for c in READS]
)
async def test_read(
    client: httpx.AsyncClient,
    world: World,
    target: str,
    who: str | None,
    extra: list[tuple[str, str]],
    status: int,
) -> None:
    headers = ([("Authorization", world.tokens[who])] if who else []) + extra
    url = f"{TASKS}/{target.format(own=world.own, foreign=world.foreign, trashed=world.trashed)}"
    response = await client.get(url, headers=headers)
    if status >= 400:
        assert_problem(response, status)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if status in (200, 304):
        assert response.headers["etag"] == '"1"'


@pytest.mark.parametrize("path", ["/{own}/", "/", "//{own}"])
async def test_other_paths_next_to_a_task_are_404(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    headers = {"Authorization": world.tokens["alice"]}
    assert_problem(await client.get(TASKS + path.format(own=world.own), headers=headers), 404)


CREATES: list[tuple[str, bytes, str | None, int]] = [
    ("title only", b'{"title": "x"}', "application/json", 201),
    ("charset", b'{"title": "x"}', "application/json; charset=utf-8", 201),
    ("charset, no space", b'{"title": "x"}', "application/json;charset=utf-8", 201),
    ("a +json type", b'{"title": "x"}', "application/vnd.tasks+json", 201),
    ("JSON in capitals", b'{"title": "x"}', "APPLICATION/JSON", 201),
    ("unicode", '{"title": "Ünïcödé ✓ 🎉"}'.encode(), "application/json", 201),
    ("text/plain", b'{"title": "x"}', "text/plain", 415),
    ("no content type", b'{"title": "x"}', None, 415),
    ("empty body", b"", "application/json", 422),
    ("invalid JSON", b'{"title": ', "application/json", 422),
    ("a JSON array", b'[{"title": "x"}]', "application/json", 422),
    ("a JSON string", b'"x"', "application/json", 422),
    ("unknown field", b'{"title": "x", "owner_id": 1}', "application/json", 422),
    ("blank title", b'{"title": "   "}', "application/json", 422),
    ("no title", b'{"priority": "high"}', "application/json", 422),
    ("unknown priority", b'{"title": "x", "priority": "extreme"}', "application/json", 422),
    (
        "zoneless due date",
        b'{"title": "x", "due_at": "2030-01-01T00:00:00"}',
        "application/json",
        422,
    ),
    ("NaN", b'{"title": "x", "priority": NaN}', "application/json", 422),
    ("title with NUL", b'{"title": "a\\u0000b"}', "application/json", 422),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status"), [c[1:] for c in CREATES], ids=[c[0] for c in CREATES]
)
async def test_create(
    client: httpx.AsyncClient,
    world: World,
    session: AsyncSession,
    body: bytes,
    content_type: str | None,
    status: int,
) -> None:
    headers = {"Authorization": world.tokens["alice"]}
    if content_type is not None:
        headers["Content-Type"] = content_type
    before = await alice_count(session)
    response = await client.post(TASKS, content=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 201:
        read = await client.get(response.headers["location"], headers=headers)
        assert read.json() == response.json()
        assert await alice_count(session) == before + 1
    else:
        assert_problem(response, status)
        assert await alice_count(session) == before


async def test_a_query_string_on_a_create_is_refused(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    before = await alice_count(session)
    response = await client.post(
        f"{TASKS}?x=1", json={"title": "x"}, headers={"Authorization": world.tokens["alice"]}
    )
    assert_problem(response, 422, loc=["query", "x"])
    assert await alice_count(session) == before


PATCHES: list[tuple[str, bytes, str, list[tuple[str, str]], str, int]] = [
    ("new title", b'{"title": "renamed"}', "application/json", [], "own", 200),
    ("nothing to change", b"{}", "application/json", [], "own", 200),
    ("If-Match current", b'{"title": "x"}', "application/json", [("If-Match", '"1"')], "own", 200),
    (
        "If-Match among others",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", '"7", "1"')],
        "own",
        200,
    ),
    ("If-Match star", b'{"title": "x"}', "application/json", [("If-Match", "*")], "own", 200),
    ("If-Match stale", b'{"title": "x"}', "application/json", [("If-Match", '"9"')], "own", 412),
    ("If-Match weak", b'{"title": "x"}', "application/json", [("If-Match", 'W/"1"')], "own", 412),
    ("If-Match unquoted", b'{"title": "x"}', "application/json", [("If-Match", "1")], "own", 412),
    (
        "If-Match too long",
        b'{"title": "x"}',
        "application/json",
        [("If-Match", TOO_LONG_TAGS)],
        "own",
        422,
    ),
    ("someone else's task", b'{"title": "x"}', "application/json", [], "foreign", 404),
    ("trashed task", b'{"title": "x"}', "application/json", [], "trashed", 404),
    ("null title", b'{"title": null}', "application/json", [], "own", 422),
    ("unknown field", b'{"version": 7}', "application/json", [], "own", 422),
    ("invalid JSON", b'{"title"', "application/json", [], "own", 422),
    ("no body", b"", "application/json", [], "own", 422),
    ("text/plain", b'{"title": "x"}', "text/plain", [], "own", 415),
]


@pytest.mark.parametrize(
    ("body", "content_type", "extra", "target", "status"),
    [c[1:] for c in PATCHES],
    ids=[c[0] for c in PATCHES],
)
async def test_update(
    client: httpx.AsyncClient,
    world: World,
    session: AsyncSession,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]],
    target: str,
    status: int,
) -> None:
    task_id = getattr(world, target)
    headers = [("Authorization", world.tokens["alice"]), ("Content-Type", content_type), *extra]
    before = await stored(session, task_id)
    response = await client.patch(f"{TASKS}/{task_id}", content=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["etag"] == f'"{response.json()["version"]}"'
    else:
        assert_problem(response, status)
        assert await stored(session, task_id) == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "", 413),
        ("PATCH", "/{own}", 413),
        ("PATCH", "/{own}/restore", 405),  # answered without reading the body
        ("PATCH", "/x", 413),  # the route's: its body is read before its parameters
    ],
)
async def test_a_streamed_body_over_the_limit(
    client: httpx.AsyncClient,
    world: World,
    settings: Settings,
    session: AsyncSession,
    method: str,
    path: str,
    status: int,
) -> None:
    big = json.dumps({"title": "x", "description": "y" * settings.max_body_bytes}).encode()
    headers = {"Authorization": world.tokens["alice"], "Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    before = await alice_count(session), await stored(session, world.own)
    url = TASKS + path.format(own=world.own)
    response = await client.request(method, url, content=chunks(), headers=headers)
    assert_problem(response, status)
    # Declared too large, it is refused before anything else, whatever the path.
    declared = await client.request(method, url, content=big, headers=headers)
    assert_problem(declared, 413)
    assert (await alice_count(session), await stored(session, world.own)) == before


@pytest.mark.parametrize("failure", [ConnectionResetError(), TimeoutError(), RuntimeError("x")])
@pytest.mark.parametrize(("method", "path"), [("POST", ""), ("PATCH", "/{own}")])
async def test_a_body_that_cannot_be_read_is_a_422_not_a_503(
    app: FastAPI,
    client: httpx.AsyncClient,
    world: World,
    method: str,
    path: str,
    failure: Exception,
) -> None:
    """The server's `receive` fails mid-body: the body could not be parsed (422), not the
    503 that an OSError from the database would be."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"title": ', "more_body": True}
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        raise failure

    headers = [
        (b"authorization", world.tokens["alice"].encode()),
        (b"content-type", b"application/json"),
    ]
    status, _, body = await call_asgi(
        app, method, TASKS + path.format(own=world.own), headers=headers, receive=receive
    )
    assert status == 422
    assert json.loads(body)["errors"][0]["loc"] == ["body"]
