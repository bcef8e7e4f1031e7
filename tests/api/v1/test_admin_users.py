"""Roles (issue 3): the admin-only user routes, deny by default, and what admins still cannot do.

Contract section 2 (`GET /users`, `GET`/`PATCH /users/{id}`), catalogue 8 D (function-level
authorisation: every admin route and method is a 403 for a regular user, and an admin still
sees only their own tasks) and 8 E (no mass assignment through the admin PATCH).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import Role, User
from tests.conftest import TEST_PASSWORD, UserFactory
from tests.support import assert_problem

USERS_URL = "/api/v1/users"
ME_URL = "/api/v1/users/me"
TOKEN_URL = "/api/v1/auth/token"
REFRESH_URL = "/api/v1/auth/refresh"
TASKS_URL = "/api/v1/tasks"

Headers = dict[str, str]
HeadersFor = Callable[[User], Headers]


def user_url(user_id: int | str) -> str:
    return f"{USERS_URL}/{user_id}"


async def stored(session: AsyncSession, user_id: int) -> User:
    """The user's row as the database has it now."""
    session.expunge_all()
    found = await session.scalar(select(User).where(User.id == user_id))
    assert found is not None
    return found


def snapshot(user: User) -> tuple[Any, ...]:
    return (
        user.email,
        user.full_name,
        user.role,
        user.is_active,
        user.token_version,
        user.password_hash,
        user.updated_at,
    )


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(TOKEN_URL, data={"username": email, "password": password})


def bearer(response: httpx.Response) -> Headers:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def assert_forbidden(response: httpx.Response) -> None:
    body = assert_problem(response, 403)
    assert body["type"].endswith("admin-required"), body


def assert_token_rejected(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.fixture
async def admin(make_user: UserFactory) -> User:
    return await make_user(email="admin@example.com", role=Role.ADMIN)


@pytest.fixture
def admin_h(admin: User, auth_headers: HeadersFor) -> Headers:
    return auth_headers(admin)


# --- regular users and anonymous callers -------------------------------------------------

VALID_ADMIN_BODIES = [
    {"role": "admin"},
    {"role": "user"},
    {"is_active": False},
    {"is_active": True},
    {"role": "admin", "is_active": True},
    {},
]


class TestRegularUserIsForbidden:
    async def test_list_users(self, client: httpx.AsyncClient, alice_h: Headers) -> None:
        assert_forbidden(await client.get(USERS_URL, headers=alice_h))
        assert_forbidden(await client.get(USERS_URL, params={"limit": 1}, headers=alice_h))

    async def test_read_any_user(
        self, client: httpx.AsyncClient, alice: User, alice_h: Headers, bob: User
    ) -> None:
        for user_id in (bob.id, alice.id, 2**62):
            response = await client.get(user_url(user_id), headers=alice_h)
            assert_forbidden(response)
            assert "bob@example.com" not in response.text

    @pytest.mark.parametrize("body", VALID_ADMIN_BODIES, ids=str)
    async def test_patch_other_user_changes_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice_h: Headers,
        bob: User,
        bob_h: Headers,
        body: dict[str, Any],
    ) -> None:
        before = snapshot(await stored(session, bob.id))
        assert_forbidden(await client.patch(user_url(bob.id), json=body, headers=alice_h))
        assert snapshot(await stored(session, bob.id)) == before
        assert (await client.get(ME_URL, headers=bob_h)).status_code == 200

    @pytest.mark.parametrize("body", VALID_ADMIN_BODIES, ids=str)
    async def test_patch_self_changes_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        body: dict[str, Any],
    ) -> None:
        before = snapshot(await stored(session, alice.id))
        assert_forbidden(await client.patch(user_url(alice.id), json=body, headers=alice_h))
        assert snapshot(await stored(session, alice.id)) == before
        assert (await client.get(ME_URL, headers=alice_h)).json()["role"] == "user"

    async def test_patch_admin_changes_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice_h: Headers,
        admin: User,
    ) -> None:
        before = snapshot(await stored(session, admin.id))
        for body in ({"role": "user"}, {"is_active": False}):
            assert_forbidden(await client.patch(user_url(admin.id), json=body, headers=alice_h))
        assert snapshot(await stored(session, admin.id)) == before

    async def test_patch_missing_user_is_403_not_404(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        # Deny first: a regular user learns nothing about which ids exist.
        assert_forbidden(
            await client.patch(user_url(2**62), json={"role": "admin"}, headers=alice_h)
        )

    async def test_self_promotion_via_me_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        for body in ({"role": "admin"}, {"is_active": False}):
            assert_problem(await client.patch(ME_URL, json=body, headers=alice_h), 422)
        assert (await stored(session, alice.id)).role == "user"

    @pytest.mark.parametrize("method", ["DELETE", "PUT", "POST"])
    async def test_no_other_methods_on_a_user(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice_h: Headers,
        admin_h: Headers,
        bob: User,
        method: str,
    ) -> None:
        before = snapshot(await stored(session, bob.id))
        for headers in (alice_h, admin_h):
            response = await client.request(
                method, user_url(bob.id), json={"role": "admin"}, headers=headers
            )
            assert_problem(response, 405)
        assert snapshot(await stored(session, bob.id)) == before


class TestUnauthenticated:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", USERS_URL, None),
            ("GET", USERS_URL + "/{id}", None),
            ("PATCH", USERS_URL + "/{id}", {"role": "admin"}),
            ("PATCH", USERS_URL + "/{id}", {"is_active": False}),
        ],
        ids=["list", "read", "patch-role", "patch-active"],
    )
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer not-a-token"}],
        ids=["no-token", "bad-token"],
    )
    async def test_401(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin: User,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: Headers,
    ) -> None:
        path = path.replace("{id}", str(admin.id))
        before = snapshot(await stored(session, admin.id))
        response = await client.request(method, path, json=body, headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert snapshot(await stored(session, admin.id)) == before


# --- admin: listing -------------------------------------------------------------------------


async def walk(client: httpx.AsyncClient, headers: Headers, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(USERS_URL, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            return items
        assert len(page["items"]) == limit
        assert 'rel="next"' in response.headers["link"]
    raise AssertionError("the walk never ended")


class TestListUsers:
    @pytest.fixture
    async def population(self, make_user: UserFactory, admin: User) -> list[User]:
        others = [await make_user(full_name=f"User {n}") for n in range(6)]
        others.append(await make_user(is_active=False))
        return [admin, *others]

    @pytest.mark.parametrize("limit", [1, 2, 3, 7, 8, 100])
    async def test_walk_every_page_each_user_once(
        self,
        client: httpx.AsyncClient,
        admin_h: Headers,
        population: list[User],
        limit: int,
    ) -> None:
        items = await walk(client, admin_h, limit)
        ids = [item["id"] for item in items]
        assert len(ids) == len(set(ids))
        assert set(ids) == {user.id for user in population}
        for item in items:
            assert set(item) == {"id", "email", "full_name", "role", "is_active", "created_at"}
        assert "password" not in str(items)
        inactive = [item for item in items if not item["is_active"]]
        assert len(inactive) == 1

    async def test_default_page(
        self, client: httpx.AsyncClient, admin_h: Headers, population: list[User]
    ) -> None:
        response = await client.get(USERS_URL, headers=admin_h)
        assert response.status_code == 200
        assert len(response.json()["items"]) == len(population)
        assert response.json()["next_cursor"] is None

    @pytest.mark.parametrize("limit", ["0", "-1", "101", str(10**30), "abc", "1.5", ""])
    async def test_bad_limit_is_422(
        self, client: httpx.AsyncClient, admin_h: Headers, limit: str
    ) -> None:
        response = await client.get(USERS_URL, params={"limit": limit}, headers=admin_h)
        assert_problem(response, 422)

    @pytest.mark.usefixtures("population")
    async def test_tampered_cursor_is_422(
        self, client: httpx.AsyncClient, admin_h: Headers
    ) -> None:
        first = await client.get(USERS_URL, params={"limit": 2}, headers=admin_h)
        cursor = first.json()["next_cursor"]
        assert cursor
        payload, tag = cursor.split(".")
        flipped = "A" if payload[0] != "A" else "B"
        for bad in (
            flipped + payload[1:] + "." + tag,
            payload + "." + ("A" if tag[0] != "A" else "B") + tag[1:],
            payload,
            "garbage",
            "x" * 2000,
            "a.b",
            cursor + "x",
        ):
            response = await client.get(
                USERS_URL, params={"limit": 2, "cursor": bad}, headers=admin_h
            )
            assert_problem(response, 422)

    @pytest.mark.usefixtures("population")
    async def test_cursor_bound_to_its_admin(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        admin_h: Headers,
    ) -> None:
        other_admin = await make_user(role=Role.ADMIN)
        cursor = (await client.get(USERS_URL, params={"limit": 2}, headers=admin_h)).json()[
            "next_cursor"
        ]
        assert cursor
        mine = await client.get(USERS_URL, params={"limit": 2, "cursor": cursor}, headers=admin_h)
        assert mine.status_code == 200
        theirs = await client.get(
            USERS_URL, params={"limit": 2, "cursor": cursor}, headers=auth_headers(other_admin)
        )
        assert_problem(theirs, 422)

    @pytest.mark.usefixtures("population")
    async def test_task_cursor_is_not_a_user_cursor(
        self, client: httpx.AsyncClient, admin_h: Headers
    ) -> None:
        for n in range(3):
            created = await client.post(TASKS_URL, json={"title": f"t{n}"}, headers=admin_h)
            assert created.status_code == 201, created.text
        cursor = (await client.get(TASKS_URL, params={"limit": 1}, headers=admin_h)).json()[
            "next_cursor"
        ]
        assert cursor
        response = await client.get(
            USERS_URL, params={"limit": 1, "cursor": cursor}, headers=admin_h
        )
        assert_problem(response, 422)

    async def test_unknown_query_parameter_is_422(
        self, client: httpx.AsyncClient, admin_h: Headers
    ) -> None:
        for params in ({"role": "admin"}, {"email": "x"}, {"offset": 0}):
            assert_problem(await client.get(USERS_URL, params=params, headers=admin_h), 422)


# --- admin: one user --------------------------------------------------------------------------


class TestReadUser:
    async def test_read(self, client: httpx.AsyncClient, admin_h: Headers, bob: User) -> None:
        response = await client.get(user_url(bob.id), headers=admin_h)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body == {
            "id": bob.id,
            "email": "bob@example.com",
            "full_name": None,
            "role": "user",
            "is_active": True,
            "created_at": body["created_at"],
        }

    async def test_read_self(
        self, client: httpx.AsyncClient, admin: User, admin_h: Headers
    ) -> None:
        response = await client.get(user_url(admin.id), headers=admin_h)
        assert response.status_code == 200
        assert response.json()["role"] == "admin"

    async def test_missing_is_404(self, client: httpx.AsyncClient, admin_h: Headers) -> None:
        body = assert_problem(await client.get(user_url(2**62), headers=admin_h), 404)
        assert body["type"].endswith("not-found")

    @pytest.mark.parametrize(
        "user_id",
        ["0", "-1", str(2**63), str(2**63 - 1), "99999999999999999999", "1.5", "abc", "1e3"],
    )
    async def test_odd_ids(self, client: httpx.AsyncClient, admin_h: Headers, user_id: str) -> None:
        for response in (
            await client.get(user_url(user_id), headers=admin_h),
            await client.patch(user_url(user_id), json={"role": "admin"}, headers=admin_h),
        ):
            assert response.status_code in {404, 422}, response.text
            assert_problem(response, response.status_code)


class TestChangeRole:
    async def test_promote_and_demote(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        auth_headers: HeadersFor,
        admin_h: Headers,
        bob: User,
    ) -> None:
        before_promotion = auth_headers(bob)
        response = await client.patch(user_url(bob.id), json={"role": "admin"}, headers=admin_h)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "admin"
        assert response.json()["id"] == bob.id

        # Tokens issued under the old role stop working; a new one carries the new role.
        assert_token_rejected(await client.get(ME_URL, headers=before_promotion))
        promoted = auth_headers(await stored(session, bob.id))
        assert (await client.get(USERS_URL, headers=promoted)).status_code == 200

        response = await client.patch(user_url(bob.id), json={"role": "user"}, headers=admin_h)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "user"
        assert_token_rejected(await client.get(USERS_URL, headers=promoted))
        demoted = auth_headers(await stored(session, bob.id))
        assert_forbidden(await client.get(USERS_URL, headers=demoted))
        assert (await client.get(ME_URL, headers=demoted)).json()["role"] == "user"

    async def test_promotion_revokes_access_tokens_from_login(
        self, client: httpx.AsyncClient, admin_h: Headers, bob: User
    ) -> None:
        old = bearer(await login(client, bob.email, TEST_PASSWORD))
        response = await client.patch(user_url(bob.id), json={"role": "admin"}, headers=admin_h)
        assert response.status_code == 200
        assert_token_rejected(await client.get(ME_URL, headers=old))
        new = bearer(await login(client, bob.email, TEST_PASSWORD))
        assert (await client.get(ME_URL, headers=new)).json()["role"] == "admin"

    async def test_admin_demotes_another_admin(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        admin_h: Headers,
    ) -> None:
        other = await make_user(role=Role.ADMIN)
        other_h = auth_headers(other)
        response = await client.patch(user_url(other.id), json={"role": "user"}, headers=admin_h)
        assert response.status_code == 200, response.text
        assert_token_rejected(await client.get(USERS_URL, headers=other_h))


class TestDeactivate:
    async def test_deactivation_and_reactivation(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_h: Headers,
        bob: User,
        bob_h: Headers,
    ) -> None:
        pair = await login(client, bob.email, TEST_PASSWORD)
        assert pair.status_code == 200
        from_login = bearer(pair)
        refresh_token = pair.json()["refresh_token"]

        response = await client.patch(user_url(bob.id), json={"is_active": False}, headers=admin_h)
        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is False

        # At once: every existing token is a 401.
        assert_token_rejected(await client.get(ME_URL, headers=bob_h))
        assert_token_rejected(await client.get(ME_URL, headers=from_login))
        assert_token_rejected(await client.get(TASKS_URL, headers=from_login))
        assert_problem(await client.post(REFRESH_URL, json={"refresh_token": refresh_token}), 401)
        # Login: the right password learns the account is disabled, a wrong one learns nothing.
        disabled = assert_problem(await login(client, bob.email, TEST_PASSWORD), 403)
        assert disabled["type"].endswith("account-disabled")
        wrong = assert_problem(await login(client, bob.email, "not bob's password at all"), 401)
        unknown = assert_problem(await login(client, "nobody@example.com", TEST_PASSWORD), 401)
        assert (wrong["type"], wrong["detail"]) == (unknown["type"], unknown["detail"])
        # Listing still shows the account, as inactive.
        listed = (await client.get(user_url(bob.id), headers=admin_h)).json()
        assert listed["is_active"] is False

        response = await client.patch(user_url(bob.id), json={"is_active": True}, headers=admin_h)
        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is True
        again = await login(client, bob.email, TEST_PASSWORD)
        assert (await client.get(ME_URL, headers=bearer(again))).json()["id"] == bob.id
        # Re-activation does not revive what deactivation ended.
        assert_token_rejected(await client.get(ME_URL, headers=from_login))
        assert_problem(await client.post(REFRESH_URL, json={"refresh_token": refresh_token}), 401)
        assert (await stored(session, bob.id)).is_active is True

    async def test_deactivated_admin_loses_admin_access(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        admin_h: Headers,
    ) -> None:
        other = await make_user(role=Role.ADMIN)
        other_h = auth_headers(other)
        response = await client.patch(
            user_url(other.id), json={"is_active": False}, headers=admin_h
        )
        assert response.status_code == 200
        assert_token_rejected(await client.get(USERS_URL, headers=other_h))


class TestAdminCannotLockThemselvesOut:
    @pytest.mark.parametrize(
        "body",
        [{"role": "user"}, {"is_active": False}, {"role": "user", "is_active": False}],
        ids=["demote", "deactivate", "both"],
    )
    async def test_409_and_unchanged(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin: User,
        admin_h: Headers,
        body: dict[str, Any],
    ) -> None:
        before = snapshot(await stored(session, admin.id))
        response = await client.patch(user_url(admin.id), json=body, headers=admin_h)
        assert_problem(response, 409)
        assert snapshot(await stored(session, admin.id)) == before
        assert (await client.get(USERS_URL, headers=admin_h)).status_code == 200

    async def test_noop_on_self_is_200(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin: User,
        admin_h: Headers,
    ) -> None:
        before = snapshot(await stored(session, admin.id))
        for body in ({}, {"role": "admin"}, {"is_active": True}):
            response = await client.patch(user_url(admin.id), json=body, headers=admin_h)
            assert response.status_code == 200, response.text
            assert response.json()["role"] == "admin"
        assert snapshot(await stored(session, admin.id)) == before
        assert (await client.get(USERS_URL, headers=admin_h)).status_code == 200


class TestNoOpPatch:
    @pytest.mark.parametrize(
        "body",
        [{}, {"role": "user"}, {"is_active": True}, {"role": "user", "is_active": True}],
        ids=["empty", "same-role", "same-active", "both-same"],
    )
    async def test_keeps_tokens(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_h: Headers,
        bob: User,
        bob_h: Headers,
        body: dict[str, Any],
    ) -> None:
        refresh_token = (await login(client, bob.email, TEST_PASSWORD)).json()["refresh_token"]
        before = snapshot(await stored(session, bob.id))
        response = await client.patch(user_url(bob.id), json=body, headers=admin_h)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "user"
        assert response.json()["is_active"] is True
        assert snapshot(await stored(session, bob.id)) == before
        assert (await client.get(ME_URL, headers=bob_h)).status_code == 200
        refreshed = await client.post(REFRESH_URL, json={"refresh_token": refresh_token})
        assert refreshed.status_code == 200


class TestPatchValidation:
    @pytest.mark.parametrize(
        "body",
        [
            {"email": "taken-over@example.com"},
            {"password": "a perfectly fine new passphrase"},
            {"token_version": 0},
            {"id": 1},
            {"role": "admin", "email": "x@example.com"},
            {"is_admin": True},
            {"full_name": "Renamed"},
            {"hashed_password": "x"},
            {"role": None},
            {"is_active": None},
            {"is_active": "false"},
            {"is_active": "true"},
            {"is_active": 0},
            {"is_active": 1},
            {"is_active": "no"},
            {"is_active": []},
            {"role": "ADMIN"},
            {"role": "Admin"},
            {"role": "root"},
            {"role": "superuser"},
            {"role": ""},
            {"role": " admin"},
            {"role": 1},
            {"role": ["admin"]},
        ],
        ids=str,
    )
    async def test_422_and_unchanged(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        admin_h: Headers,
        bob: User,
        bob_h: Headers,
        body: dict[str, Any],
    ) -> None:
        before = snapshot(await stored(session, bob.id))
        response = await client.patch(user_url(bob.id), json=body, headers=admin_h)
        assert_problem(response, 422, absent=["a perfectly fine new passphrase"])
        assert snapshot(await stored(session, bob.id)) == before
        assert (await client.get(ME_URL, headers=bob_h)).status_code == 200

    async def test_not_json_is_415(
        self, client: httpx.AsyncClient, session: AsyncSession, admin_h: Headers, bob: User
    ) -> None:
        before = snapshot(await stored(session, bob.id))
        response = await client.patch(user_url(bob.id), data={"role": "admin"}, headers=admin_h)
        assert_problem(response, 415)
        assert snapshot(await stored(session, bob.id)) == before

    async def test_missing_user_is_404(self, client: httpx.AsyncClient, admin_h: Headers) -> None:
        response = await client.patch(user_url(2**62), json={"role": "admin"}, headers=admin_h)
        assert_problem(response, 404)


# --- admins are users too -----------------------------------------------------------------------


class TestAdminTasks:
    async def test_admin_sees_only_own_tasks(
        self,
        client: httpx.AsyncClient,
        admin_h: Headers,
        alice_h: Headers,
    ) -> None:
        theirs = await client.post(TASKS_URL, json={"title": "alice's task"}, headers=alice_h)
        assert theirs.status_code == 201, theirs.text
        mine = await client.post(TASKS_URL, json={"title": "admin's task"}, headers=admin_h)
        assert mine.status_code == 201, mine.text

        listed = await client.get(TASKS_URL, headers=admin_h)
        assert listed.status_code == 200
        assert [task["id"] for task in listed.json()["items"]] == [mine.json()["id"]]
        assert "alice's task" not in listed.text

        task_id = theirs.json()["id"]
        hidden = await client.get(f"{TASKS_URL}/{task_id}", headers=admin_h)
        missing = await client.get(f"{TASKS_URL}/{2**62}", headers=admin_h)
        hidden_body = assert_problem(hidden, 404)
        missing_body = assert_problem(missing, 404)
        assert (hidden_body["type"], hidden_body["title"], hidden_body["detail"]) == (
            missing_body["type"],
            missing_body["title"],
            missing_body["detail"],
        )
        for response in (
            await client.patch(
                f"{TASKS_URL}/{task_id}", json={"title": "admin was here"}, headers=admin_h
            ),
            await client.delete(f"{TASKS_URL}/{task_id}", headers=admin_h),
        ):
            assert_problem(response, 404)
        still = await client.get(f"{TASKS_URL}/{task_id}", headers=alice_h)
        assert still.status_code == 200
        assert still.json()["title"] == "alice's task"


class TestMeRouteOrdering:
    async def test_me_for_admin(
        self, client: httpx.AsyncClient, admin: User, admin_h: Headers
    ) -> None:
        response = await client.get(ME_URL, headers=admin_h)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == admin.id
        assert response.json()["role"] == "admin"
        renamed = await client.patch(ME_URL, json={"full_name": "The Admin"}, headers=admin_h)
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["full_name"] == "The Admin"
        assert renamed.json()["role"] == "admin"

    async def test_me_for_user(
        self, client: httpx.AsyncClient, alice: User, alice_h: Headers
    ) -> None:
        response = await client.get(ME_URL, headers=alice_h)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == alice.id
        renamed = await client.patch(ME_URL, json={"full_name": "Alice"}, headers=alice_h)
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["full_name"] == "Alice"
