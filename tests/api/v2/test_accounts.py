"""The user and authentication routes of v1, served under `/api/v2` too, identically (spec
api-v2, its introduction): a token from either version works on both, and the rate limits
count the same budgets whichever version is called."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.project import Project, ProjectMember
from app.models.user import Role, User
from tests.api.conftest import Headers
from tests.conftest import TEST_PASSWORD, UserFactory, make_settings
from tests.support import assert_problem, client_of_app, inbox_id

V1, V2 = "/api/v1", "/api/v2"
VERSIONS = [V1, V2]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


async def register(client: httpx.AsyncClient, version: str, email: str) -> httpx.Response:
    body = {"email": email, "password": TEST_PASSWORD, "full_name": "Reg"}
    return await client.post(f"{version}/users", json=body)


async def login(
    client: httpx.AsyncClient, version: str, email: str, password: str = TEST_PASSWORD
) -> httpx.Response:
    return await client.post(
        f"{version}/auth/token", data={"username": email, "password": password}
    )


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


class TestRegistrationAndLogin:
    async def test_register_on_v2(self, client: httpx.AsyncClient, session: AsyncSession) -> None:
        response = await register(client, V2, "new@example.com")
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"id", "email", "full_name", "role", "is_active", "created_at"}
        assert response.headers["location"] == f"{V2}/users/{body['id']}"
        # The account is the same as v1 makes: with its Inbox, of which it is the owner.
        user = await session.get(User, body["id"])
        assert user is not None
        project = await session.get(Project, await inbox_id(session, user))
        assert project is not None
        member = await session.get(ProjectMember, (project.id, user.id))
        assert member is not None
        assert member.role == 5
        # ... and one account: the address is taken in both versions.
        for version in VERSIONS:
            taken = assert_problem(await register(client, version, "NEW@example.com"), 409)
            assert taken["type"].endswith("email-taken")

    @pytest.mark.parametrize("version", VERSIONS)
    async def test_login_refresh_me_logout(
        self, client: httpx.AsyncClient, make_user: UserFactory, version: str
    ) -> None:
        user = await make_user(full_name="Ada")
        response = await login(client, version, user.email)
        assert response.status_code == 200, response.text
        assert "no-store" in response.headers["cache-control"]
        pair = response.json()
        for either in VERSIONS:
            me = await client.get(f"{either}/users/me", headers=bearer(pair["access_token"]))
            assert me.status_code == 200, me.text
            assert (me.json()["id"], me.json()["full_name"]) == (user.id, "Ada")

        refreshed = await client.post(
            f"{version}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        new_pair = refreshed.json()
        assert new_pair["refresh_token"] != pair["refresh_token"]
        me = await client.get(f"{version}/users/me", headers=bearer(new_pair["access_token"]))
        assert me.status_code == 200

        logout = await client.post(
            f"{version}/auth/logout", json={"refresh_token": new_pair["refresh_token"]}
        )
        assert logout.status_code == 204
        for either in VERSIONS:
            ended = await client.post(
                f"{either}/auth/refresh", json={"refresh_token": new_pair["refresh_token"]}
            )
            assert_problem(ended, 401)

    async def test_wrong_password_on_v2(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        wrong = "not the password at all"
        response = await login(client, V2, user.email, wrong)
        body = assert_problem(response, 401, absent=[wrong, user.email])
        assert body["type"].endswith("invalid-credentials")


class TestTokensAcrossVersions:
    @pytest.mark.parametrize(("issued_by", "used_on"), [(V1, V2), (V2, V1)])
    async def test_a_refresh_token_of_one_version_is_spent_by_the_other(
        self, client: httpx.AsyncClient, make_user: UserFactory, issued_by: str, used_on: str
    ) -> None:
        user = await make_user()
        pair = (await login(client, issued_by, user.email)).json()
        refreshed = await client.post(
            f"{used_on}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        # Spent: reusing it in the version that issued it is reuse (and revokes the family).
        again = await client.post(
            f"{issued_by}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert_problem(again, 401)
        after = await client.post(
            f"{used_on}/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
        )
        assert_problem(after, 401)

    @pytest.mark.parametrize(("changed_on", "read_on"), [(V1, V2), (V2, V1)])
    async def test_a_profile_change_in_one_version_shows_in_the_other(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
        changed_on: str,
        read_on: str,
    ) -> None:
        user = await make_user(full_name="Before")
        headers = auth_headers(user)
        changed = await client.patch(
            f"{changed_on}/users/me", json={"full_name": "After"}, headers=headers
        )
        assert changed.status_code == 200, changed.text
        me = await client.get(f"{read_on}/users/me", headers=headers)
        assert me.json()["full_name"] == "After"

    async def test_a_password_change_on_v2_revokes_v1_tokens(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
    ) -> None:
        user = await make_user()
        old = (await login(client, V1, user.email)).json()["access_token"]
        changed = await client.patch(
            f"{V2}/users/me",
            json={"password": "a brand new passphrase", "current_password": TEST_PASSWORD},
            headers=bearer(old),
        )
        assert changed.status_code == 200, changed.text
        for version in VERSIONS:
            response = await client.get(f"{version}/users/me", headers=bearer(old))
            assert_problem(response, 401)
            assert 'error="invalid_token"' in response.headers["www-authenticate"]

    async def test_admin_routes_on_v2(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: Callable[[User], Headers],
    ) -> None:
        admin = await make_user(role=Role.ADMIN)
        someone = await make_user()
        listed = await client.get(f"{V2}/users?limit=1", headers=auth_headers(admin))
        assert listed.status_code == 200, listed.text
        # The next page's link stays in the version that was asked.
        assert listed.headers["link"].startswith(f"<{V2}/users?")
        assert listed.json()["next_cursor"]
        read = await client.get(f"{V2}/users/{someone.id}", headers=auth_headers(admin))
        assert read.json()["email"] == someone.email
        refused = await client.get(f"{V2}/users/{admin.id}", headers=auth_headers(someone))
        assert assert_problem(refused, 403)["type"].endswith("admin-required")
        assert_problem(await client.get(f"{V2}/users"), 401)
        missing = await client.get(f"{V2}/users/987654321", headers=auth_headers(admin))
        assert_problem(missing, 404)

    @pytest.mark.parametrize("version", VERSIONS)
    async def test_hostile_input_is_refused_alike(
        self, client: httpx.AsyncClient, version: str
    ) -> None:
        body = {"email": "a@example.com", "password": TEST_PASSWORD, "role": "admin"}
        response = await client.post(f"{version}/users", json=body)
        assert_problem(response, 422, loc=["body", "role"])
        response = await client.get(f"{version}/users/me", headers=bearer("x" * 10_000))
        assert_problem(response, 401)


# --- the same budgets whichever version is asked ------------------------------------------


@pytest.mark.parametrize(("first", "then"), [(V1, V2), (V2, V1)])
async def test_failed_logins_count_the_same_budget(
    database_url: str,
    connection: AsyncConnection,
    make_user: UserFactory,
    first: str,
    then: str,
) -> None:
    settings = make_settings(
        database_url, rate_limit_enabled=True, rate_limit_login_account="2/minute"
    )
    user = await make_user()
    async with client_of_app(settings, connection) as (_app, http):
        for _ in range(2):
            assert_problem(await login(http, first, user.email, "wrong password here"), 401)
        refused = await login(http, then, user.email)
        assert_problem(refused, 429)
        assert "login-account" in refused.headers["ratelimit"]


@pytest.mark.parametrize(("first", "then"), [(V1, V2), (V2, V1)])
async def test_registrations_count_the_same_budget(
    database_url: str, connection: AsyncConnection, first: str, then: str
) -> None:
    settings = make_settings(database_url, rate_limit_enabled=True, rate_limit_register_ip="1/hour")
    async with client_of_app(settings, connection) as (_app, http):
        assert (await register(http, first, "one@example.com")).status_code == 201
        assert_problem(await register(http, then, "two@example.com"), 429)


# --- the OpenAPI document -------------------------------------------------------------------


def operations(app: FastAPI) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_operation_ids_stay_unique(app: FastAPI) -> None:
    ids = [operation["operationId"] for operation in operations(app).values()]
    duplicates = sorted({operation_id for operation_id in ids if ids.count(operation_id) > 1})
    assert duplicates == []


def test_every_account_route_of_v1_is_in_v2_identically(app: FastAPI) -> None:
    document = app.openapi()
    documented = operations(app)
    v1 = {
        key: operation
        for key, operation in documented.items()
        if key[1].startswith((f"{V1}/users", f"{V1}/auth"))
    }
    assert len(v1) == 9
    for (method, path), operation in v1.items():
        twin = documented.get((method, V2 + path.removeprefix(V1)))
        assert twin is not None, (method, path)
        # v1's operation ids are those its clients were generated with; v2's say "v2".
        assert operation["operationId"] in V1_OPERATION_IDS
        assert twin["operationId"] == f"v2-{operation['operationId']}"
        assert comparable(document, operation) == comparable(document, twin, v2=True), path


V1_OPERATION_IDS = {
    *(
        f"users-{name}"
        for name in (
            "register_user",
            "list_users",
            "read_me",
            "update_me",
            "read_user",
            "administer_user",
        )
    ),
    *(f"auth-{name}" for name in ("login", "refresh_tokens", "logout")),
}


def comparable(document: dict[str, Any], operation: dict[str, Any], *, v2: bool = False) -> Any:
    """`operation` without what must differ between the versions: its id (and, in v2, the ids
    its links point at and the name of its form body's schema, both derived from ids), and
    whether it is deprecated. The form body's schema is compared without its title (its
    name)."""
    text = json.dumps(
        {k: v for k, v in operation.items() if k not in {"operationId", "deprecated"}}
    )
    if v2:
        assert '"operationId": "auth-' not in text  # a v2 token pair links to v2's routes
        text = text.replace('"operationId": "v2-', '"operationId": "')
    comparable: Any = json.loads(text)
    body = comparable.get("requestBody", {}).get("content", {})
    for media in body.values():
        name = media["schema"].pop("$ref").removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
        media["schema"]["resolved"] = {k: v for k, v in schema.items() if k != "title"}
    return comparable


async def test_v2_account_route_outside_the_declared_ones_is_404(
    client: httpx.AsyncClient, make_user: UserFactory, auth_headers: Callable[[User], Headers]
) -> None:
    user = await make_user()
    response = await client.get(f"{V2}/auth/whoami", headers=auth_headers(user))
    assert_problem(response, 404)


async def test_v2_users_are_the_v1_users(client: httpx.AsyncClient, session: AsyncSession) -> None:
    made = await register(client, V2, "both@example.com")
    logged_in = await login(client, V1, "both@example.com")
    assert logged_in.status_code == 200
    me = await client.get(f"{V1}/users/me", headers=bearer(logged_in.json()["access_token"]))
    assert me.json() == made.json()
    count = await session.scalar(select(User.id).where(User.email == "both@example.com"))
    assert count == made.json()["id"]
