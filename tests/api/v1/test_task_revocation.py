"""Revoked tokens on the task routes, whose statements check the caller themselves.

The task routes do not read the user before their work: each statement carries the check
that the token is still current (docs/decisions/0017). These tests hold every route to the
contract's section 2 all the same: after a password change or role change (token_version
bumped), a deactivation or a deletion, the old token is a 401 at once, with
`error="invalid_token"`, and nothing is read, written or kept. A list that finds no task and
a write that matches nothing take a second statement to tell 401 from an empty page, 404 or
412; those cases are here too. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.task import Task
from app.models.user import User
from tests.api.conftest import Headers
from tests.conftest import UserFactory
from tests.support import assert_problem

TASKS = "/api/v1/tasks"

Revoke = Callable[[AsyncSession, User], Awaitable[None]]


async def bump_token_version(session: AsyncSession, user: User) -> None:
    await session.execute(
        update(User).where(User.id == user.id).values(token_version=User.token_version + 1)
    )
    await session.commit()


async def deactivate(session: AsyncSession, user: User) -> None:
    await session.execute(update(User).where(User.id == user.id).values(is_active=False))
    await session.commit()


async def delete_user(session: AsyncSession, user: User) -> None:
    await session.execute(delete(User).where(User.id == user.id))
    await session.commit()


REVOCATIONS: dict[str, Revoke] = {
    "token-version-bumped": bump_token_version,
    "deactivated": deactivate,
    "deleted": delete_user,
}


def assert_revoked(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def snapshot(session: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await session.execute(select(*Task.__table__.c).order_by(Task.id))
    return [tuple(row) for row in rows]


@pytest.fixture
async def alice(make_user: UserFactory) -> User:
    return await make_user(email="alice@example.com")


@pytest.fixture
async def alice_h(alice: User, auth_headers: Callable[[User], Headers]) -> Headers:
    return auth_headers(alice)


async def new_task(client: httpx.AsyncClient, headers: Headers) -> dict[str, Any]:
    created = await client.post(TASKS, json={"title": "Mine"}, headers=headers)
    assert created.status_code == 201, created.text
    task: dict[str, Any] = created.json()
    return task


Call = Callable[[httpx.AsyncClient, Headers, dict[str, Any]], Awaitable[httpx.Response]]

CALLS: dict[str, Call] = {
    "list": lambda c, h, _t: c.get(TASKS, headers=h),
    "list-trash": lambda c, h, _t: c.get(TASKS, params={"deleted": "true"}, headers=h),
    "list-text": lambda c, h, _t: c.get(TASKS, params={"q": "Mine"}, headers=h),
    "get": lambda c, h, t: c.get(f"{TASKS}/{t['id']}", headers=h),
    "get-if-none-match": lambda c, h, t: c.get(
        f"{TASKS}/{t['id']}", headers={**h, "If-None-Match": f'"{t["version"]}"'}
    ),
    "create": lambda c, h, _t: c.post(TASKS, json={"title": "Another"}, headers=h),
    "create-idempotent": lambda c, h, _t: c.post(
        TASKS, json={"title": "Another"}, headers={**h, "Idempotency-Key": "revoked-1"}
    ),
    "patch": lambda c, h, t: c.patch(f"{TASKS}/{t['id']}", json={"title": "x"}, headers=h),
    "patch-if-match": lambda c, h, t: c.patch(
        f"{TASKS}/{t['id']}",
        json={"status": "done"},
        headers={**h, "If-Match": f'"{t["version"]}"'},
    ),
    "patch-stale-tag": lambda c, h, t: c.patch(
        f"{TASKS}/{t['id']}", json={"title": "x"}, headers={**h, "If-Match": '"999"'}
    ),
    "patch-empty": lambda c, h, t: c.patch(f"{TASKS}/{t['id']}", json={}, headers=h),
    "delete": lambda c, h, t: c.delete(f"{TASKS}/{t['id']}", headers=h),
    "restore": lambda c, h, t: c.post(f"{TASKS}/{t['id']}/restore", headers=h),
    "get-missing": lambda c, h, t: c.get(f"{TASKS}/{t['id'] + 1000}", headers=h),
    "patch-missing": lambda c, h, t: c.patch(
        f"{TASKS}/{t['id'] + 1000}", json={"title": "x"}, headers=h
    ),
}


class TestRevokedTokenOnTaskRoutes:
    @pytest.mark.parametrize("revocation", list(REVOCATIONS))
    @pytest.mark.parametrize("call", list(CALLS))
    async def test_is_401_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        revocation: str,
        call: str,
    ) -> None:
        task = await new_task(client, alice_h)
        before = await snapshot(session)
        await REVOCATIONS[revocation](session, alice)
        if revocation == "deleted":
            before = []  # the user's tasks went with the user
        response = await CALLS[call](client, alice_h, task)
        assert_revoked(response)
        assert await snapshot(session) == before

    @pytest.mark.parametrize("revocation", ["token-version-bumped", "deactivated"])
    async def test_empty_list_is_401_not_an_empty_page(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        revocation: str,
    ) -> None:
        """No task to list: the statement finds nothing either way, and a second one tells
        a revoked token (401) from a user without tasks (200, empty page)."""
        listed = await client.get(TASKS, headers=alice_h)
        assert listed.status_code == 200
        assert listed.json() == {"items": [], "next_cursor": None}
        await REVOCATIONS[revocation](session, alice)
        assert_revoked(await client.get(TASKS, headers=alice_h))

    async def test_new_token_works_after_bump(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        task = await new_task(client, alice_h)
        await bump_token_version(session, alice)
        await session.refresh(alice)
        fresh = auth_headers(alice)
        for call in ("list", "get", "patch", "create"):
            response = await CALLS[call](client, fresh, task)
            assert response.status_code in (200, 201), (call, response.text)

    async def test_revoked_idempotent_create_does_not_replay(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
    ) -> None:
        """A stored response is the user's data: a revoked token cannot fetch it again."""
        headers = {**alice_h, "Idempotency-Key": "replay-me"}
        first = await client.post(TASKS, json={"title": "Once"}, headers=headers)
        assert first.status_code == 201
        await bump_token_version(session, alice)
        assert_revoked(await client.post(TASKS, json={"title": "Once"}, headers=headers))
        count = await session.scalar(select(func.count()).select_from(Task))
        assert count == 1

    async def test_other_users_are_unaffected(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        bob_h = auth_headers(await make_user(email="bob@example.com"))
        bobs = await new_task(client, bob_h)
        await deactivate(session, alice)
        assert_revoked(await client.get(f"{TASKS}/{bobs['id']}", headers=alice_h))
        assert (await client.get(f"{TASKS}/{bobs['id']}", headers=bob_h)).status_code == 200
