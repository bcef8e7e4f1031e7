"""One request, one reading: what a proxy, a firewall or a cache in front could read otherwise
than the service does is refused (issue "Hardening", the probes of a black-box test)."""

from __future__ import annotations

import gzip

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.task import Task
from app.models.user import User
from tests.conftest import TEST_PASSWORD, UserFactory
from tests.support import assert_problem

TASKS = "/api/v1/tasks"


@pytest.fixture
async def alice(make_user: UserFactory) -> User:
    return await make_user(email="alice@example.com")


@pytest.fixture
def headers(alice: User, auth_headers: object) -> dict[str, str]:
    made: dict[str, str] = auth_headers(alice)  # type: ignore[operator]
    return made


async def task_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Task)) or 0)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"title": "first", "title": "second"}', "application/json", 422),
        (b'{"title": "x", "priority": "low", "priority": "high"}', "application/json", 422),
        ('{"title": "x"}'.encode("utf-16"), "application/json", 422),
        ('{"title": "x"}'.encode("utf-16-le"), "application/json", 422),
        ('{"title": "x"}'.encode("utf-32"), "application/json", 422),
        ('{"title": "x"}'.encode("utf-8-sig"), "application/json", 422),
        (b'{"title": "x"}', "application/json; charset=utf-16", 415),
        (b'{"title": "x"}', "application/json; charset=iso-8859-1", 415),
    ],
)
async def test_a_body_read_two_ways_is_refused(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    response = await client.post(
        TASKS, content=body, headers={**headers, "Content-Type": content_type}
    )
    assert_problem(response, status, absent=["first", "second"])
    assert await task_count(session) == 0


async def test_utf8_named_as_such_is_read(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for charset in ("utf-8", "UTF-8", '"utf-8"'):
        response = await client.post(
            TASKS,
            content='{"title": "été"}'.encode(),
            headers={**headers, "Content-Type": f"application/json; charset={charset}"},
        )
        assert response.status_code == 201
        assert response.json()["title"] == "été"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "x-gzip"])
async def test_a_coded_body_is_415_not_ignored(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], coding: str
) -> None:
    response = await client.post(
        TASKS,
        content=gzip.compress(b'{"title": "x"}') if coding == "gzip" else b'{"title": "x"}',
        headers={**headers, "Content-Type": "application/json", "Content-Encoding": coding},
    )
    assert_problem(response, 415)
    assert await task_count(session) == 0


@pytest.mark.parametrize(
    "spelling", ["0{id}", "+{id}", "{id}.0", "%20{id}", "{id}%0a", "%C2%A0{id}", "{id}%20"]
)
async def test_an_id_has_one_spelling(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], spelling: str
) -> None:
    created = (await client.post(TASKS, json={"title": "x"}, headers=headers)).json()
    path = f"{TASKS}/{spelling.format(id=created['id'])}"
    assert_problem(await client.get(path, headers=headers), 422, loc=["path", "task_id"])
    patched = await client.patch(path, json={"title": "changed"}, headers=headers)
    assert_problem(patched, 422, loc=["path", "task_id"])
    assert_problem(await client.delete(path, headers=headers), 422)
    current = (await client.get(f"{TASKS}/{created['id']}", headers=headers)).json()
    assert current == created  # untouched


async def test_the_login_form_takes_no_unknown_or_repeated_field(
    client: httpx.AsyncClient, alice: User
) -> None:
    form = {"username": alice.email, "password": TEST_PASSWORD}
    assert (await client.post("/api/v1/auth/token", data=form)).status_code == 200
    extra = await client.post("/api/v1/auth/token", data={**form, "extra": "x"})
    assert_problem(extra, 422, loc=["body", "extra"])
    repeated = await client.post(
        "/api/v1/auth/token",
        content=f"username={alice.email}&password=x&password={TEST_PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(repeated, 422, loc=["body", "password"], absent=[TEST_PASSWORD])


@pytest.mark.parametrize("query", ["q=%ED%A0%80", "q=%FF", "q=a%C0%AFb"])
async def test_escapes_that_are_not_utf8_are_422(
    client: httpx.AsyncClient, headers: dict[str, str], query: str
) -> None:
    assert_problem(await client.get(f"{TASKS}?{query}", headers=headers), 422, loc=["query"])
