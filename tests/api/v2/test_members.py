"""`/api/v2/projects/{id}/members` (spec api-v2 sections 2 and 4): the rules of who may change
whose role and who may remove whom, the last owner, the Inbox, and removal taking effect at
once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import ProjectRole
from app.db.base import utcnow
from app.models.task import Task, TaskAssignee
from app.models.user import User
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team, add_project
from tests.support import assert_problem, inbox_id

ROLES = ("owner", "admin", "editor", "commenter", "viewer")


def members_url(project_id: int) -> str:
    return f"{V2}/projects/{project_id}/members"


def member_url(project_id: int, user_id: int) -> str:
    return f"{members_url(project_id)}/{user_id}"


async def roles_of(client: httpx.AsyncClient, team: Team, who: str = "owner") -> dict[int, str]:
    response = await client.get(
        members_url(team.project_id), params={"limit": 100}, headers=team.headers[who]
    )
    assert response.status_code == 200, response.text
    return {item["user"]["id"]: item["role"] for item in response.json()["items"]}


async def patch_role(
    client: httpx.AsyncClient, team: Team, actor: str, target: str, role: str
) -> httpx.Response:
    return await client.patch(
        member_url(team.project_id, team.users[target].id),
        json={"role": role},
        headers=team.headers[actor],
    )


async def remove(client: httpx.AsyncClient, team: Team, actor: str, target: str) -> httpx.Response:
    return await client.delete(
        member_url(team.project_id, team.users[target].id), headers=team.headers[actor]
    )


class TestList:
    async def test_owners_first_then_by_user_id_in_pages(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        expected = [(team.users[role].id, role) for role in ROLES]
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            response = await client.get(
                members_url(team.project_id), params=params, headers=team.headers["viewer"]
            )
            assert response.status_code == 200, response.text
            seen += response.json()["items"]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
            assert 'rel="next"' in response.headers["link"]
        assert [(m["user"]["id"], m["role"]) for m in seen] == expected
        first = seen[0]
        assert set(first) == {"user", "role", "added_at"}
        assert first["user"] == {
            "id": team.users["owner"].id,
            "email": "owner@example.com",
            "full_name": "Owner",
        }

    async def test_a_cursor_of_another_project_is_422(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        owner = team.headers["owner"]
        page = await client.get(members_url(team.project_id), params={"limit": 1}, headers=owner)
        cursor = page.json()["next_cursor"]
        inbox = await inbox_id(session, team.users["owner"])
        assert_problem(
            await client.get(members_url(inbox), params={"cursor": cursor}, headers=owner),
            422,
            loc=["query", "cursor"],
        )


class TestChangeRole:
    async def test_an_owner_may_grant_anything(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await patch_role(client, team, "owner", "viewer", "owner")
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "owner"
        assert response.json()["user"]["id"] == team.users["viewer"].id
        response = await patch_role(client, team, "owner", "admin", "viewer")
        assert response.status_code == 200
        roles = await roles_of(client, team)
        assert roles[team.users["viewer"].id] == "owner"
        assert roles[team.users["admin"].id] == "viewer"

    async def test_an_admin_changes_members_below_to_roles_below(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        response = await patch_role(client, team, "admin", "viewer", "editor")
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "editor"
        response = await patch_role(client, team, "admin", "editor", "viewer")
        assert response.json()["role"] == "viewer"

    @pytest.mark.parametrize(
        ("actor", "target", "role", "required"),
        [
            ("admin", "viewer", "admin", "owner"),  # granting one's own role
            ("admin", "viewer", "owner", "owner"),  # granting above
            ("admin", "owner", "viewer", "owner"),  # touching an owner
            ("editor", "viewer", "commenter", "admin"),
            ("commenter", "viewer", "viewer", "admin"),
            ("viewer", "commenter", "viewer", "admin"),
            ("editor", "editor", "admin", "owner"),  # raising oneself
            ("admin", "admin", "owner", "owner"),
        ],
    )
    async def test_what_the_rules_forbid_is_403_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        team: Team,
        actor: str,
        target: str,
        role: str,
        required: str,
    ) -> None:
        before = await roles_of(client, team)
        body = assert_problem(await patch_role(client, team, actor, target, role), 403)
        assert (body["role"], body["required_role"]) == (actor, required)
        assert await roles_of(client, team) == before

    async def test_an_admin_touching_another_admin_is_403(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        other = await patch_role(client, team, "owner", "editor", "admin")
        assert other.status_code == 200
        body = assert_problem(await patch_role(client, team, "admin", "editor", "viewer"), 403)
        assert (body["role"], body["required_role"]) == ("admin", "owner")
        body = assert_problem(await remove(client, team, "admin", "editor"), 403)
        assert (body["role"], body["required_role"]) == ("admin", "owner")
        assert (await roles_of(client, team))[team.users["editor"].id] == "admin"

    @pytest.mark.parametrize("who", ["admin", "editor", "commenter"])
    async def test_anyone_may_lower_their_own_role(
        self, client: httpx.AsyncClient, team: Team, who: str
    ) -> None:
        response = await patch_role(client, team, who, who, "viewer")
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "viewer"
        # ... and takes effect on the very next request with the same token.
        body = assert_problem(
            await client.patch(
                f"{V2}/projects/{team.project_id}",
                json={"name": "x"},
                headers=team.headers[who],
            ),
            403,
        )
        assert body["role"] == "viewer"

    async def test_the_last_owner_cannot_be_demoted(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        assert_problem(await patch_role(client, team, "owner", "owner", "admin"), 409)
        assert (await roles_of(client, team))[team.users["owner"].id] == "owner"
        # With a second owner, either may step down.
        assert (await patch_role(client, team, "owner", "admin", "owner")).status_code == 200
        response = await patch_role(client, team, "owner", "owner", "editor")
        assert response.status_code == 200, response.text
        assert_problem(await patch_role(client, team, "admin", "admin", "editor"), 409)

    async def test_an_owner_keeping_their_role_is_no_change(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        response = await patch_role(client, team, "owner", "owner", "owner")
        assert response.status_code == 200
        assert response.json()["role"] == "owner"

    @pytest.mark.parametrize(
        "payload", [{}, {"role": "boss"}, {"role": None}, {"role": 5}, {"role": "owner", "x": 1}]
    )
    async def test_invalid_bodies_are_422(
        self, client: httpx.AsyncClient, team: Team, payload: dict[str, Any]
    ) -> None:
        response = await client.patch(
            member_url(team.project_id, team.users["viewer"].id),
            json=payload,
            headers=team.headers["owner"],
        )
        assert_problem(response, 422)

    async def test_a_non_member_target_is_404(self, client: httpx.AsyncClient, team: Team) -> None:
        for target in (team.users["outsider"].id, 10**12):
            response = await client.patch(
                member_url(team.project_id, target),
                json={"role": "viewer"},
                headers=team.headers["owner"],
            )
            assert_problem(response, 404)
            assert_problem(
                await client.delete(
                    member_url(team.project_id, target), headers=team.headers["owner"]
                ),
                404,
            )


class TestRemove:
    async def test_removal_takes_their_assignments_and_access_at_once(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        editor = team.users["editor"]
        now = utcnow()
        tasks = [
            Task(project_id=team.project_id, title=f"t{n}", created_at=now, updated_at=now)
            for n in range(3)
        ]
        elsewhere = await inbox_id(session, editor)
        tasks.append(Task(project_id=elsewhere, title="mine", created_at=now, updated_at=now))
        session.add_all(tasks)
        await session.flush()
        for task in (tasks[0], tasks[1], tasks[3]):
            session.add(TaskAssignee(task_id=task.id, user_id=editor.id))
        session.add(TaskAssignee(task_id=tasks[1].id, user_id=team.users["viewer"].id))
        await session.commit()

        response = await remove(client, team, "admin", "editor")
        assert response.status_code == 204, response.text

        versions = dict(
            (
                await session.execute(
                    select(Task.id, Task.version).where(Task.id.in_([t.id for t in tasks]))
                )
            ).all()
        )
        assert [versions[t.id] for t in tasks] == [2, 2, 1, 1]
        assignees = (
            await session.execute(select(TaskAssignee.task_id, TaskAssignee.user_id))
        ).all()
        assert set(assignees) >= {(tasks[3].id, editor.id), (tasks[1].id, team.users["viewer"].id)}
        assert (tasks[0].id, editor.id) not in set(assignees)
        assert (tasks[1].id, editor.id) not in set(assignees)
        # The very next request with the same token: the project is not there for them.
        assert_problem(
            await client.get(f"{V2}/projects/{team.project_id}", headers=team.headers["editor"]),
            404,
        )
        assert_problem(
            await client.get(members_url(team.project_id), headers=team.headers["editor"]), 404
        )
        assert editor.id not in await roles_of(client, team)

    @pytest.mark.parametrize("who", ["admin", "editor", "commenter", "viewer"])
    async def test_anyone_may_leave(self, client: httpx.AsyncClient, team: Team, who: str) -> None:
        assert (await remove(client, team, who, who)).status_code == 204
        assert team.users[who].id not in await roles_of(client, team)

    @pytest.mark.parametrize(
        ("actor", "target", "required"),
        [
            ("admin", "owner", "owner"),
            ("editor", "viewer", "admin"),
            ("commenter", "viewer", "admin"),
            ("viewer", "commenter", "admin"),
        ],
    )
    async def test_what_the_rules_forbid_is_403(
        self, client: httpx.AsyncClient, team: Team, actor: str, target: str, required: str
    ) -> None:
        body = assert_problem(await remove(client, team, actor, target), 403)
        assert (body["role"], body["required_role"]) == (actor, required)
        assert team.users[target].id in await roles_of(client, team)

    async def test_the_last_owner_cannot_leave_or_be_removed(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        assert_problem(await remove(client, team, "owner", "owner"), 409)
        assert (await patch_role(client, team, "owner", "admin", "owner")).status_code == 200
        assert (await remove(client, team, "owner", "owner")).status_code == 204
        assert_problem(await remove(client, team, "admin", "admin"), 409)

    async def test_the_inbox_cannot_be_left(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        inbox = await inbox_id(session, alice)
        assert_problem(await client.delete(member_url(inbox, alice.id), headers=alice_h), 409)
        assert_problem(
            await client.patch(
                member_url(inbox, alice.id), json={"role": "admin"}, headers=alice_h
            ),
            409,
        )


class TestOutsiders:
    @pytest.mark.parametrize(
        ("method", "target", "body"),
        [
            ("GET", None, None),
            ("PATCH", "viewer", {"role": "viewer"}),
            ("PATCH", "outsider", {"role": "owner"}),
            ("DELETE", "viewer", None),
            ("DELETE", "outsider", None),
        ],
    )
    @pytest.mark.parametrize("if_match", [None, '"1"'])
    async def test_outsider_gets_the_unknown_ids_404(
        self,
        client: httpx.AsyncClient,
        team: Team,
        method: str,
        target: str | None,
        body: dict[str, Any] | None,
        if_match: str | None,
    ) -> None:
        headers = dict(team.headers["outsider"])
        if if_match:
            headers["If-Match"] = if_match
        suffix = f"/{team.users[target].id}" if target else ""
        mine = await client.request(
            method, f"{members_url(team.project_id)}{suffix}", json=body, headers=headers
        )
        unknown = await client.request(
            method, f"{members_url(10**15)}{suffix}", json=body, headers=headers
        )
        left, right = assert_problem(mine, 404), assert_problem(unknown, 404)
        assert (left["type"], left["detail"]) == (right["type"], right["detail"])
        assert len(await roles_of(client, team)) == 5

    async def test_a_trashed_project_is_404_to_its_members(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        deleted = await client.delete(
            f"{V2}/projects/{team.project_id}", headers=team.headers["owner"]
        )
        assert deleted.status_code == 204
        for who in ("owner", "viewer"):
            assert_problem(
                await client.get(members_url(team.project_id), headers=team.headers[who]), 404
            )
            assert_problem(await remove(client, team, who, who), 404)

    @pytest.mark.parametrize("bad", ["0", "01", "-3", str(2**63), "x"])
    async def test_ids_out_of_range_are_422(
        self, client: httpx.AsyncClient, team: Team, bad: str
    ) -> None:
        owner = team.headers["owner"]
        assert_problem(await client.get(f"{V2}/projects/{bad}/members", headers=owner), 422)
        assert_problem(
            await client.delete(f"{members_url(team.project_id)}/{bad}", headers=owner), 422
        )


async def test_two_projects_do_not_mix(
    client: httpx.AsyncClient, team: Team, session: AsyncSession
) -> None:
    """An admin of one project is nobody in another: no role carries over."""
    other = await add_project(session, {team.users["viewer"]: ProjectRole.OWNER}, name="Other")
    response = await client.delete(
        member_url(other, team.users["viewer"].id), headers=team.headers["admin"]
    )
    assert_problem(response, 404)


async def test_a_revoked_token_is_401_and_changes_nothing(
    client: httpx.AsyncClient, team: Team, session: AsyncSession
) -> None:
    owner = team.users["owner"]
    owner.token_version += 1
    await session.commit()
    headers = team.headers["owner"]
    viewer = team.users["viewer"].id
    assert_problem(await client.get(members_url(team.project_id), headers=headers), 401)
    assert_problem(
        await client.patch(
            member_url(team.project_id, viewer), json={"role": "editor"}, headers=headers
        ),
        401,
    )
    assert_problem(await client.delete(member_url(team.project_id, viewer), headers=headers), 401)
    assert (await roles_of(client, team, "admin"))[viewer] == "viewer"
