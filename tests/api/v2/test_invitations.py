"""Invitations (spec api-v2 section 4): an admin invites an address at a role below their own,
the addressee (and nobody else) accepts or declines it, and an invitation reveals nothing
about who has an account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.models.project import Invitation, ProjectMember
from app.models.user import User
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team
from tests.conftest import UserFactory
from tests.support import assert_problem, inbox_id

INVITATION_FIELDS = {"id", "project", "email", "role", "invited_by", "created_at", "expires_at"}
MINE = f"{V2}/invitations"


def invitations_url(project_id: int) -> str:
    return f"{V2}/projects/{project_id}/invitations"


async def invite(
    client: httpx.AsyncClient, team: Team, email: str, role: str = "editor", who: str = "admin"
) -> httpx.Response:
    return await client.post(
        invitations_url(team.project_id),
        json={"email": email, "role": role},
        headers=team.headers[who],
    )


async def pending(client: httpx.AsyncClient, team: Team) -> list[dict[str, Any]]:
    response = await client.get(invitations_url(team.project_id), headers=team.headers["owner"])
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def member_role(session: AsyncSession, project_id: int, user_id: int) -> int | None:
    return await session.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )


class TestInvite:
    async def test_an_admin_invites_below_their_role(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        response = await invite(client, team, "  New.Person@Example.COM ", "editor")
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == INVITATION_FIELDS
        assert body["email"] == "new.person@example.com"  # as registration normalises it
        assert body["role"] == "editor"
        assert body["project"] == {"id": team.project_id, "name": "Launch"}
        assert body["invited_by"] == {"id": team.users["admin"].id, "full_name": "Admin"}
        assert [i["id"] for i in await pending(client, team)] == [body["id"]]

    async def test_inviting_again_renews_the_same_invitation(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        first = (await invite(client, team, "kim@example.com", "viewer")).json()
        again = await invite(client, team, "KIM@example.com", "commenter")
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first["id"]
        assert again.json()["role"] == "commenter"
        assert again.json()["expires_at"] >= first["expires_at"]
        assert len(await pending(client, team)) == 1

    async def test_expiry_is_the_setting(self, client: httpx.AsyncClient, team: Team) -> None:
        body = (await invite(client, team, "kim@example.com")).json()
        from datetime import datetime

        created = datetime.fromisoformat(body["created_at"])
        expires = datetime.fromisoformat(body["expires_at"])
        assert expires - created == timedelta(days=7)

    async def test_the_answer_is_the_same_with_or_without_an_account(
        self, client: httpx.AsyncClient, team: Team, make_user: UserFactory
    ) -> None:
        await make_user(email="has-account@example.com")
        with_account = await invite(client, team, "has-account@example.com")
        without = await invite(client, team, "no-account@example.com")
        assert with_account.status_code == without.status_code == 201
        assert set(with_account.json()) == set(without.json())
        assert with_account.headers.keys() - {"x-request-id", "content-length"} == (
            without.headers.keys() - {"x-request-id", "content-length"}
        )

    async def test_a_members_address_is_409(self, client: httpx.AsyncClient, team: Team) -> None:
        assert_problem(await invite(client, team, "VIEWER@example.com", "viewer"), 409)
        assert await pending(client, team) == []

    @pytest.mark.parametrize(
        ("who", "role", "required"),
        [
            ("admin", "admin", "owner"),
            ("admin", "owner", "owner"),
            ("editor", "viewer", "admin"),
            ("commenter", "viewer", "admin"),
            ("viewer", "viewer", "admin"),
        ],
    )
    async def test_what_the_rules_forbid_is_403(
        self, client: httpx.AsyncClient, team: Team, who: str, role: str, required: str
    ) -> None:
        body = assert_problem(await invite(client, team, "kim@example.com", role, who), 403)
        assert (body["role"], body["required_role"]) == (who, required)
        assert await pending(client, team) == []

    async def test_403_comes_before_409(self, client: httpx.AsyncClient, team: Team) -> None:
        body = assert_problem(
            await invite(client, team, "viewer@example.com", "viewer", "editor"), 403
        )
        assert body["required_role"] == "admin"

    @pytest.mark.parametrize("granted", ["admin", "owner"])
    async def test_an_admin_cannot_change_an_invitation_at_or_above_their_role(
        self, client: httpx.AsyncClient, team: Team, granted: str
    ) -> None:
        # As with a member at that role (section 2). Before, an admin's invitation of the
        # address renewed an owner's invitation of an admin as a viewer's (a black-box run,
        # 2026-12-07).
        first = await invite(client, team, "kim@example.com", granted, "owner")
        assert first.status_code == 201, first.text
        body = assert_problem(await invite(client, team, "kim@example.com", "viewer"), 403)
        assert (body["role"], body["required_role"]) == ("admin", "owner")
        assert [(i["id"], i["role"]) for i in await pending(client, team)] == [
            (first.json()["id"], granted)
        ]
        again = await invite(client, team, "kim@example.com", "viewer", "owner")
        assert (again.status_code, again.json()["role"]) == (200, "viewer")

    async def test_an_admin_renews_or_revokes_an_expired_invitation_whatever_its_role(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        # Expired, it grants nothing and is in no list: a 403 naming the owner would speak
        # of something the admin cannot see (a review).
        for email in ("kim@example.com", "lee@example.com"):
            made = await invite(client, team, email, "admin", "owner")
            assert made.status_code == 201, made.text
        await session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
        again = await invite(client, team, "kim@example.com", "viewer")
        assert (again.status_code, again.json()["role"]) == (200, "viewer")
        lees = (
            await session.execute(
                select(Invitation.id).where(Invitation.email == "lee@example.com")
            )
        ).scalar_one()
        revoked = await client.delete(
            f"{invitations_url(team.project_id)}/{lees}", headers=team.headers["admin"]
        )
        assert revoked.status_code == 204, revoked.text

    async def test_an_admin_renews_an_owners_invitation_below_their_role(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        first = await invite(client, team, "kim@example.com", "editor", "owner")
        again = await invite(client, team, "kim@example.com", "commenter")
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
        assert again.json()["role"] == "commenter"

    async def test_an_owner_invites_owners(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await invite(client, team, "kim@example.com", "owner", "owner")
        assert response.status_code == 201

    async def test_the_inbox_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        inbox = await inbox_id(session, alice)
        response = await client.post(
            invitations_url(inbox),
            json={"email": "kim@example.com", "role": "viewer"},
            headers=alice_h,
        )
        assert_problem(response, 409)

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"email": "kim@example.com"},
            {"role": "viewer"},
            {"email": "not-an-address", "role": "viewer"},
            {"email": "kim@example.com", "role": "boss"},
            {"email": "kim@example.com", "role": "viewer", "project_id": 1},
            {"email": f"{'k' * 65}@example.com", "role": "viewer"},
            {"email": "kim\x00@example.com", "role": "viewer"},
        ],
    )
    async def test_invalid_bodies_are_422(
        self, client: httpx.AsyncClient, team: Team, payload: dict[str, Any]
    ) -> None:
        response = await client.post(
            invitations_url(team.project_id), json=payload, headers=team.headers["owner"]
        )
        assert_problem(response, 422)

    async def test_retry_with_the_idempotency_key_invites_once(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        headers = {**team.headers["admin"], "Idempotency-Key": "invite-1"}
        body = {"email": "kim@example.com", "role": "viewer"}
        first = await client.post(invitations_url(team.project_id), json=body, headers=headers)
        assert first.status_code == 201, first.text
        # A retry gets the first answer (the 201, the same expiry), not a renewal's 200.
        second = await client.post(invitations_url(team.project_id), json=body, headers=headers)
        assert second.status_code == 201, second.text
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        # The key with another body is the client's mistake, not a second invitation.
        other = await client.post(
            invitations_url(team.project_id),
            json={"email": "lee@example.com", "role": "viewer"},
            headers=headers,
        )
        assert_problem(other, 422, loc=["header", "Idempotency-Key"])
        assert [i["email"] for i in await pending(client, team)] == ["kim@example.com"]

    @pytest.mark.parametrize("key", ["", "k" * 256, "café"])
    async def test_a_malformed_idempotency_key_is_422(
        self, client: httpx.AsyncClient, team: Team, key: str
    ) -> None:
        response = await client.post(
            invitations_url(team.project_id),
            json={"email": "kim@example.com", "role": "viewer"},
            # Bytes: a header is bytes on the wire, and httpx encodes str headers as ASCII.
            headers=[
                *((name.encode(), value.encode()) for name, value in team.headers["admin"].items()),
                (b"Idempotency-Key", key.encode()),
            ],
        )
        assert_problem(response, 422, loc=["header", "Idempotency-Key"])
        assert await pending(client, team) == []


class TestRevoke:
    async def test_an_admin_revokes(self, client: httpx.AsyncClient, team: Team) -> None:
        invitation = (await invite(client, team, "kim@example.com")).json()
        url = f"{invitations_url(team.project_id)}/{invitation['id']}"
        body = assert_problem(await client.delete(url, headers=team.headers["editor"]), 403)
        assert (body["role"], body["required_role"]) == ("editor", "admin")
        assert (await client.delete(url, headers=team.headers["admin"])).status_code == 204
        assert_problem(await client.delete(url, headers=team.headers["admin"]), 404)
        assert await pending(client, team) == []

    @pytest.mark.parametrize("granted", ["admin", "owner"])
    async def test_an_admin_cannot_revoke_an_invitation_at_or_above_their_role(
        self, client: httpx.AsyncClient, team: Team, granted: str
    ) -> None:
        invitation = (await invite(client, team, "kim@example.com", granted, "owner")).json()
        url = f"{invitations_url(team.project_id)}/{invitation['id']}"
        body = assert_problem(await client.delete(url, headers=team.headers["admin"]), 403)
        assert (body["role"], body["required_role"]) == ("admin", "owner")
        assert [i["id"] for i in await pending(client, team)] == [invitation["id"]]
        assert (await client.delete(url, headers=team.headers["owner"])).status_code == 204

    async def test_an_admin_revokes_an_owners_invitation_below_their_role(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        invitation = (await invite(client, team, "kim@example.com", "editor", "owner")).json()
        url = f"{invitations_url(team.project_id)}/{invitation['id']}"
        assert (await client.delete(url, headers=team.headers["admin"])).status_code == 204
        assert await pending(client, team) == []

    async def test_another_projects_invitation_is_404(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        invitation = (await invite(client, team, "kim@example.com")).json()
        owner = team.users["owner"]
        inbox = await inbox_id(session, owner)
        response = await client.delete(
            f"{invitations_url(inbox)}/{invitation['id']}", headers=team.headers["owner"]
        )
        assert_problem(response, 404)
        assert len(await pending(client, team)) == 1

    async def test_listing_needs_an_admin(self, client: httpx.AsyncClient, team: Team) -> None:
        body = assert_problem(
            await client.get(invitations_url(team.project_id), headers=team.headers["editor"]),
            403,
        )
        assert (body["role"], body["required_role"]) == ("editor", "admin")


class TestTheAddressee:
    @pytest.fixture
    async def kim(self, make_user: UserFactory) -> User:
        return await make_user(email="kim@example.com", full_name="Kim")

    @pytest.fixture
    def kim_h(self, kim: User, auth_headers: Callable[[User], Headers]) -> Headers:
        return auth_headers(kim)

    async def test_sees_accepts_and_joins(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        kim: User,
        kim_h: Headers,
    ) -> None:
        invitation = (await invite(client, team, "Kim@Example.com", "commenter")).json()
        mine = await client.get(MINE, headers=kim_h)
        assert mine.status_code == 200
        assert mine.json()["items"] == [invitation]
        # Nobody else sees it, or can take it.
        for who in ("owner", "outsider"):
            assert (await client.get(MINE, headers=team.headers[who])).json()["items"] == []
            assert_problem(
                await client.post(f"{MINE}/{invitation['id']}/accept", headers=team.headers[who]),
                404,
            )
            assert_problem(
                await client.post(f"{MINE}/{invitation['id']}/decline", headers=team.headers[who]),
                404,
            )
        accepted = await client.post(f"{MINE}/{invitation['id']}/accept", headers=kim_h)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["user"] == {
            "id": kim.id,
            "email": "kim@example.com",
            "full_name": "Kim",
        }
        assert accepted.json()["role"] == "commenter"
        assert await member_role(session, team.project_id, kim.id) == 2
        project = await client.get(f"{V2}/projects/{team.project_id}", headers=kim_h)
        assert project.json()["my_role"] == "commenter"
        # Gone once accepted.
        assert (await client.get(MINE, headers=kim_h)).json()["items"] == []
        assert_problem(await client.post(f"{MINE}/{invitation['id']}/accept", headers=kim_h), 404)
        assert await pending(client, team) == []

    async def test_declines(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        kim: User,
        kim_h: Headers,
    ) -> None:
        invitation = (await invite(client, team, "kim@example.com")).json()
        response = await client.post(f"{MINE}/{invitation['id']}/decline", headers=kim_h)
        assert response.status_code == 204
        assert await member_role(session, team.project_id, kim.id) is None
        assert_problem(await client.post(f"{MINE}/{invitation['id']}/accept", headers=kim_h), 404)
        assert_problem(await client.post(f"{MINE}/{invitation['id']}/decline", headers=kim_h), 404)

    async def test_an_expired_one_is_410_and_unlisted(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        kim: User,
        kim_h: Headers,
    ) -> None:
        invitation = (await invite(client, team, "kim@example.com")).json()
        await session.execute(
            update(Invitation)
            .where(Invitation.id == invitation["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        assert (await client.get(MINE, headers=kim_h)).json()["items"] == []
        assert await pending(client, team) == []
        assert_problem(await client.post(f"{MINE}/{invitation['id']}/accept", headers=kim_h), 410)
        assert await member_role(session, team.project_id, kim.id) is None
        # Inviting again renews it.
        again = await invite(client, team, "kim@example.com")
        assert again.status_code == 200
        assert again.json()["id"] == invitation["id"]
        accepted = await client.post(f"{MINE}/{invitation['id']}/accept", headers=kim_h)
        assert accepted.status_code == 200

    async def test_an_invitation_of_a_trashed_project_is_404(
        self, client: httpx.AsyncClient, team: Team, kim_h: Headers
    ) -> None:
        invitation = (await invite(client, team, "kim@example.com")).json()
        deleted = await client.delete(
            f"{V2}/projects/{team.project_id}", headers=team.headers["owner"]
        )
        assert deleted.status_code == 204
        assert (await client.get(MINE, headers=kim_h)).json()["items"] == []
        assert_problem(await client.post(f"{MINE}/{invitation['id']}/accept", headers=kim_h), 404)

    async def test_pages(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession, kim_h: Headers
    ) -> None:
        from app.core.roles import ProjectRole
        from tests.api.v2.conftest import add_project

        projects = [
            await add_project(session, {team.users["owner"]: ProjectRole.OWNER}, name=f"P{n}")
            for n in range(3)
        ]
        for project_id in projects:
            response = await client.post(
                invitations_url(project_id),
                json={"email": "kim@example.com", "role": "viewer"},
                headers=team.headers["owner"],
            )
            assert response.status_code == 201
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            response = await client.get(MINE, params=params, headers=kim_h)
            seen += [item["project"]["id"] for item in response.json()["items"]]
            if response.json()["next_cursor"] is None:
                break
            params["cursor"] = response.json()["next_cursor"]
        assert seen == projects
        assert_problem(
            await client.get(MINE, params=params, headers=team.headers["owner"]),
            422,
            loc=["query", "cursor"],
        )

    @pytest.mark.parametrize("bad", ["0", "01", str(2**63), "x"])
    async def test_ids_out_of_range_are_422(
        self, client: httpx.AsyncClient, kim_h: Headers, bad: str
    ) -> None:
        assert_problem(await client.post(f"{MINE}/{bad}/accept", headers=kim_h), 422)
        assert_problem(await client.post(f"{MINE}/{bad}/decline", headers=kim_h), 422)


class TestOutsiders:
    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("POST", "", {"email": "kim@example.com", "role": "viewer"}),
            ("DELETE", "/1", None),
        ],
    )
    @pytest.mark.parametrize("if_match", [None, '"1"'])
    async def test_outsider_gets_the_unknown_ids_404(
        self,
        client: httpx.AsyncClient,
        team: Team,
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
        if_match: str | None,
    ) -> None:
        headers = dict(team.headers["outsider"])
        if if_match:
            headers["If-Match"] = if_match
        mine = await client.request(
            method, f"{invitations_url(team.project_id)}{suffix}", json=body, headers=headers
        )
        unknown = await client.request(
            method, f"{invitations_url(10**15)}{suffix}", json=body, headers=headers
        )
        left, right = assert_problem(mine, 404), assert_problem(unknown, 404)
        assert (left["type"], left["detail"]) == (right["type"], right["detail"])
        assert await pending(client, team) == []

    async def test_a_removed_admin_can_no_longer_invite(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        removed = await client.delete(
            f"{V2}/projects/{team.project_id}/members/{team.users['admin'].id}",
            headers=team.headers["owner"],
        )
        assert removed.status_code == 204
        assert_problem(await invite(client, team, "kim@example.com"), 404)
        count = await session.scalar(select(func.count()).select_from(Invitation))
        assert count == 0


async def test_a_revoked_token_is_401_and_changes_nothing(
    client: httpx.AsyncClient, team: Team, session: AsyncSession
) -> None:
    invitation = (await invite(client, team, "owner2@example.com", "viewer", "owner")).json()
    admin = team.users["admin"]
    admin.token_version += 1
    await session.commit()
    url = invitations_url(team.project_id)
    headers = team.headers["admin"]
    assert_problem(await invite(client, team, "kim@example.com"), 401)
    assert_problem(await client.get(url, headers=headers), 401)
    assert_problem(await client.delete(f"{url}/{invitation['id']}", headers=headers), 401)
    assert_problem(await client.get(MINE, headers=headers), 401)
    for action in ("accept", "decline"):
        assert_problem(
            await client.post(f"{MINE}/{invitation['id']}/{action}", headers=headers), 401
        )
    assert [i["id"] for i in await pending(client, team)] == [invitation["id"]]
