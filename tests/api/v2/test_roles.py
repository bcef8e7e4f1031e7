"""`GET /api/v2/roles`: the roles table as data (spec api-v2 section 2), and the same table as
the routes enforce it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import Permission, ProjectRole, roles_table
from app.models.user import User
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team
from tests.support import assert_problem

ROLES_URL = f"{V2}/roles"
ORDER = ["owner", "admin", "editor", "commenter", "viewer"]


async def served_table(client: httpx.AsyncClient, headers: Headers) -> list[dict[str, Any]]:
    response = await client.get(ROLES_URL, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    table: list[dict[str, Any]] = response.json()
    return table


def least_roles(table: list[dict[str, Any]]) -> dict[str, str]:
    """Each permission's least role, as a client reads it from the served table: the lowest
    role that lists it."""
    least: dict[str, str] = {}
    for entry in sorted(table, key=lambda entry: entry["rank"], reverse=True):
        for permission in entry["permissions"]:
            least[permission] = entry["role"]
    return least


class TestTable:
    async def test_an_array_from_owner_to_viewer(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        table = await served_table(client, team.headers["viewer"])
        assert isinstance(table, list)  # the table itself, not a page
        assert [entry["role"] for entry in table] == ORDER
        assert [entry["rank"] for entry in table] == [5, 4, 3, 2, 1]
        for entry in table:
            assert set(entry) == {"role", "rank", "permissions"}
            assert entry["permissions"]
            assert len(entry["permissions"]) == len(set(entry["permissions"]))
            for name in entry["permissions"]:
                thing, _, verb = name.partition(".")
                assert thing.isidentifier()
                assert verb.isidentifier()
        assert table == roles_table()

    async def test_a_higher_rank_holds_every_permission_of_a_lower(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        table = await served_table(client, team.headers["editor"])
        for higher, lower in zip(table, table[1:], strict=False):
            assert higher["rank"] > lower["rank"]
            assert set(lower["permissions"]) < set(higher["permissions"]), (higher, lower)
        assert set(table[0]["permissions"]) == {permission.value for permission in Permission}

    async def test_the_least_roles_of_the_spec(self, client: httpx.AsyncClient, team: Team) -> None:
        """Spec api-v2 section 2's table, a row or two of each line."""
        least = least_roles(await served_table(client, team.headers["owner"]))
        viewer = {name for name, role in least.items() if role == "viewer"}
        assert viewer == {
            "project.read",
            "task.read",
            "label.read",
            "member.read",
            "comment.read",
            "activity.read",
        }
        assert least["comment.create"] == "commenter"
        for name in ("task.create", "task.update", "task.move", "task.delete", "task.restore"):
            assert least[name] == "editor", name
        for name in ("task.assign", "label.create", "label.update", "label.delete"):
            assert least[name] == "editor", name
        for name in ("project.update", "invitation.create", "member.update", "member.delete"):
            assert least[name] == "admin", name
        assert least["webhook.manage"] == "admin"
        assert least["project.delete"] == least["project.restore"] == "owner"

    async def test_the_same_for_everyone(self, client: httpx.AsyncClient, team: Team) -> None:
        tables = [await served_table(client, headers) for headers in team.headers.values()]
        assert all(table == tables[0] for table in tables)

    async def test_head(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.head(ROLES_URL, headers=team.headers["outsider"])
        assert (response.status_code, response.content) == (200, b"")


class TestRefused:
    async def test_without_a_token_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ROLES_URL)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000])
    async def test_a_bad_token_401(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.get(ROLES_URL, headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, absent=[token])

    async def test_a_revoked_token_401(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        viewer = team.user("viewer")
        await session.execute(
            update(User).where(User.id == viewer.id).values(token_version=User.token_version + 1)
        )
        await session.commit()
        response = await client.get(ROLES_URL, headers=team.headers["viewer"])
        assert_problem(response, 401)

    async def test_a_query_parameter_422(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.get(f"{ROLES_URL}?limit=1", headers=team.headers["viewer"])
        assert_problem(response, 422, loc=["query", "limit"])

    @pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "PUT"])
    async def test_read_only_405(self, client: httpx.AsyncClient, team: Team, method: str) -> None:
        response = await client.request(method, ROLES_URL, headers=team.headers["owner"])
        assert_problem(response, 405)
        assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD"}


# --- the table is what the routes enforce -------------------------------------------------


def _request(permission: str, team: Team, who: str) -> tuple[str, str, dict[str, Any] | None]:
    """A request that needs `permission` in the team's project (each member's its own)."""
    project = f"{V2}/projects/{team.project_id}"
    if permission == Permission.PROJECT_UPDATE:
        return "PATCH", project, {"description": f"by {who}"}
    if permission == Permission.TASK_CREATE:
        return "POST", f"{V2}/tasks", {"title": f"by {who}", "project_id": team.project_id}
    if permission == Permission.LABEL_CREATE:
        return "POST", f"{project}/labels", {"name": f"label of {who}"}
    if permission == Permission.INVITATION_READ:
        return "GET", f"{project}/invitations", None
    raise AssertionError(permission)


@pytest.mark.parametrize(
    "permission",
    [
        Permission.PROJECT_UPDATE,
        Permission.TASK_CREATE,
        Permission.LABEL_CREATE,
        Permission.INVITATION_READ,
    ],
)
async def test_the_served_least_role_is_the_one_enforced(
    client: httpx.AsyncClient, team: Team, permission: Permission
) -> None:
    """Below the least role the table names: 403 naming the member's role and that least
    role; at it and above: allowed. (A member's rank alone decides, as the table says.)"""
    least = least_roles(await served_table(client, team.headers["viewer"]))[permission.value]
    for role in sorted(ProjectRole, reverse=True):
        who = role.label
        method, url, body = _request(permission, team, who)
        response = await client.request(method, url, json=body, headers=team.headers[who])
        if role >= ProjectRole.from_label(least):
            assert response.status_code in (200, 201), (who, response.text)
        else:
            problem = assert_problem(response, 403)
            assert problem["type"].endswith("role-required")
            assert (problem["role"], problem["required_role"]) == (who, least)
