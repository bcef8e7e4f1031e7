"""The events of project, member and invitation writes (spec api-v2 section 7), on SQLite and
PostgreSQL: each write through the HTTP API appends its events in its transaction, naming who
did what to which project, member or invitation, with the old and new values; a refused
write, or one that changes nothing, appends none; no event holds a secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import ProjectRole
from app.db.base import utcnow
from app.models.event import Event
from app.models.project import Invitation
from app.models.task import Task, TaskAssignee
from app.models.user import User
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team
from tests.conftest import TEST_PASSWORD, UserFactory
from tests.support import assert_problem

PROJECTS = f"{V2}/projects"
OWNER, ADMIN, EDITOR, COMMENTER, VIEWER = (int(role) for role in sorted(ProjectRole, reverse=True))


@dataclass(frozen=True)
class Logged:
    """An event as these tests compare it."""

    entity: str
    entity_id: int
    action: str
    actor_id: int | None
    project_id: int
    changes: dict[str, Any]
    task_id: int | None = None


async def newest_event(session: AsyncSession) -> int:
    """The newest event's id (0: none): a mark to read the events after."""
    return int(await session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)


async def events_after(session: AsyncSession, mark: int) -> list[Logged]:
    rows = await session.execute(select(Event).where(Event.id > mark).order_by(Event.id))
    return [
        Logged(
            event.entity,
            event.entity_id,
            event.action,
            event.actor_id,
            event.project_id,
            event.changes,
            event.task_id,
        )
        for event in rows.scalars()
    ]


def project_url(project_id: int) -> str:
    return f"{PROJECTS}/{project_id}"


def member_url(project_id: int, user_id: int) -> str:
    return f"{project_url(project_id)}/members/{user_id}"


def invitations_url(project_id: int) -> str:
    return f"{project_url(project_id)}/invitations"


def at(value: str | None) -> datetime | None:
    """A timestamp as an event or a response writes it, to compare the instant."""
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def same_instant(logged: str, shown: str) -> bool:
    """An event's timestamp (as stored) is the one a response shows (in milliseconds)."""
    first, second = at(logged), at(shown)
    assert first is not None
    assert second is not None
    return abs(first - second) < timedelta(milliseconds=1)


async def invite(
    client: httpx.AsyncClient, team: Team, email: str, role: str = "editor"
) -> httpx.Response:
    return await client.post(
        invitations_url(team.project_id),
        json={"email": email, "role": role},
        headers=team.headers["admin"],
    )


@pytest.fixture
async def newcomer(make_user: UserFactory) -> User:
    return await make_user(email="new@example.com", full_name="New")


@pytest.fixture
def newcomer_h(newcomer: User, auth_headers: Callable[[User], Headers]) -> Headers:
    return auth_headers(newcomer)


# --- projects --------------------------------------------------------------------------------


class TestProjectEvents:
    async def test_a_creation_records_the_project_and_its_owner_joining(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        mark = await newest_event(session)
        response = await client.post(
            PROJECTS, json={"name": "Launch", "description": "Q3"}, headers=alice_h
        )
        assert response.status_code == 201, response.text
        project_id = response.json()["id"]
        assert await events_after(session, mark) == [
            Logged(
                "project",
                project_id,
                "created",
                alice.id,
                project_id,
                {"name": [None, "Launch"], "description": [None, "Q3"]},
            ),
            Logged("member", alice.id, "joined", alice.id, project_id, {"role": [None, OWNER]}),
        ]

    async def test_a_change_records_old_and_new_values(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        mark = await newest_event(session)
        for body in ({"name": "Liftoff"}, {"name": "Liftoff", "description": "Soon"}):
            response = await client.patch(
                project_url(team.project_id), json=body, headers=team.headers["admin"]
            )
            assert response.status_code == 200, response.text
        assert await events_after(session, mark) == [
            Logged("project", team.project_id, "updated", team.user("admin").id, team.project_id, c)
            for c in ({"name": ["Launch", "Liftoff"]}, {"description": [None, "Soon"]})
        ]

    @pytest.mark.parametrize("body", [{}, {"name": "Launch"}, {"description": None}])
    async def test_a_change_that_changes_nothing_records_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, body: dict[str, Any]
    ) -> None:
        mark = await newest_event(session)
        response = await client.patch(
            project_url(team.project_id), json=body, headers=team.headers["owner"]
        )
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1
        assert await events_after(session, mark) == []

    async def test_a_refused_change_records_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        mark = await newest_event(session)
        url = project_url(team.project_id)
        rename = {"name": "Mine now"}
        assert_problem(await client.patch(url, json=rename, headers=team.headers["viewer"]), 403)
        assert_problem(await client.patch(url, json=rename, headers=team.headers["outsider"]), 404)
        stale = {"If-Match": '"7"'}
        admin, owner = team.headers["admin"], team.headers["owner"]
        assert_problem(await client.patch(url, json=rename, headers={**admin, **stale}), 412)
        assert_problem(await client.delete(url, headers={**owner, **stale}), 412)
        assert_problem(await client.delete(url, headers=team.headers["admin"]), 403)
        assert await events_after(session, mark) == []
        assert (await client.get(url, headers=team.headers["viewer"])).json()["name"] == "Launch"

    async def test_trash_and_restore_record_deleted_and_restored(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        owner, url = team.headers["owner"], project_url(team.project_id)
        mark = await newest_event(session)
        trashed = await client.delete(url, headers={**owner, "If-Match": '"1"'})
        assert trashed.status_code == 204, trashed.text
        restored = await client.post(f"{url}/restore", headers=owner)
        assert restored.status_code == 200, restored.text
        again = await client.post(f"{url}/restore", headers=owner)  # live already: no change
        assert again.status_code == 200, again.text
        deleted, back = await events_after(session, mark)
        by = team.user("owner").id
        assert (deleted.entity, deleted.entity_id, deleted.action, deleted.actor_id) == (
            "project",
            team.project_id,
            "deleted",
            by,
        )
        assert list(deleted.changes) == ["deleted_at"]
        old, new = deleted.changes["deleted_at"]
        assert old is None
        assert new is not None
        trashed_at = at(new)
        assert trashed_at is not None
        assert abs(trashed_at - utcnow()) < timedelta(minutes=1)
        assert back == Logged(
            "project", team.project_id, "restored", by, team.project_id, {"deleted_at": [new, None]}
        )

    async def test_the_inbox_is_never_trashed_and_nothing_is_recorded(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice_h: Headers,
    ) -> None:
        [inbox] = (await client.get(PROJECTS, headers=alice_h)).json()["items"]
        mark = await newest_event(session)
        assert_problem(await client.delete(project_url(inbox["id"]), headers=alice_h), 409)
        assert await events_after(session, mark) == []


class TestAccountEvents:
    async def test_a_new_account_records_its_inbox_and_its_owner(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        mark = await newest_event(session)
        body = {"email": "reg@example.com", "password": TEST_PASSWORD, "full_name": "Reg"}
        response = await client.post(f"{V2}/users", json=body)
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]
        [created, joined] = await events_after(session, mark)
        assert created == Logged(
            "project", created.project_id, "created", user_id, created.project_id, created.changes
        )
        assert created.changes == {"name": [None, "Inbox"]}
        assert joined == Logged(
            "member", user_id, "joined", user_id, created.project_id, {"role": [None, OWNER]}
        )

    @pytest.mark.usefixtures("alice")
    async def test_a_refused_registration_records_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        mark = await newest_event(session)
        body = {"email": "ALICE@example.com", "password": TEST_PASSWORD}
        assert_problem(await client.post(f"{V2}/users", json=body), 409)
        assert await events_after(session, mark) == []


# --- members ---------------------------------------------------------------------------------


class TestMemberEvents:
    async def test_a_role_change_records_the_old_and_new_rank(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        editor = team.user("editor").id
        mark = await newest_event(session)
        for role in ("admin", "admin"):  # the second changes nothing
            response = await client.patch(
                member_url(team.project_id, editor),
                json={"role": role},
                headers=team.headers["owner"],
            )
            assert response.status_code == 200, response.text
        assert await events_after(session, mark) == [
            Logged(
                "member",
                editor,
                "role_changed",
                team.user("owner").id,
                team.project_id,
                {"role": [EDITOR, ADMIN]},
            )
        ]

    async def test_lowering_ones_own_role_is_recorded_as_theirs(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        admin = team.user("admin").id
        mark = await newest_event(session)
        response = await client.patch(
            member_url(team.project_id, admin),
            json={"role": "viewer"},
            headers=team.headers["admin"],
        )
        assert response.status_code == 200, response.text
        assert await events_after(session, mark) == [
            Logged(
                "member", admin, "role_changed", admin, team.project_id, {"role": [ADMIN, VIEWER]}
            )
        ]

    async def test_a_removal_records_the_member_and_the_tasks_they_left(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        editor, viewer = team.user("editor").id, team.user("viewer").id
        now = utcnow()
        task = Task(project_id=team.project_id, title="Ship", created_at=now, updated_at=now)
        untouched = Task(project_id=team.project_id, title="Other", created_at=now, updated_at=now)
        session.add_all([task, untouched])
        await session.flush()
        session.add_all(
            [
                TaskAssignee(task_id=task.id, user_id=editor),
                TaskAssignee(task_id=task.id, user_id=viewer),
                TaskAssignee(task_id=untouched.id, user_id=viewer),
            ]
        )
        await session.commit()
        mark = await newest_event(session)
        response = await client.delete(
            member_url(team.project_id, editor), headers=team.headers["admin"]
        )
        assert response.status_code == 204, response.text
        by = team.user("admin").id
        assert await events_after(session, mark) == [
            Logged("member", editor, "removed", by, team.project_id, {"role": [EDITOR, None]}),
            Logged(
                "task",
                task.id,
                "updated",
                by,
                team.project_id,
                {"assignee_ids": [sorted([editor, viewer]), [viewer]]},
                task.id,
            ),
        ]

    async def test_leaving_is_recorded_as_left(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        viewer = team.user("viewer").id
        mark = await newest_event(session)
        response = await client.delete(
            member_url(team.project_id, viewer), headers=team.headers["viewer"]
        )
        assert response.status_code == 204, response.text
        assert await events_after(session, mark) == [
            Logged("member", viewer, "left", viewer, team.project_id, {"role": [VIEWER, None]})
        ]

    async def test_a_refused_membership_change_records_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        owner = team.user("owner").id
        mark = await newest_event(session)
        last_owner = team.headers["owner"]
        assert_problem(
            await client.delete(member_url(team.project_id, owner), headers=last_owner), 409
        )
        demote = {"role": "admin"}
        url = member_url(team.project_id, owner)
        assert_problem(await client.patch(url, json=demote, headers=last_owner), 409)
        assert_problem(await client.patch(url, json=demote, headers=team.headers["admin"]), 403)
        admin_url = member_url(team.project_id, team.user("admin").id)
        assert_problem(await client.delete(admin_url, headers=team.headers["editor"]), 403)
        assert await events_after(session, mark) == []


# --- invitations -----------------------------------------------------------------------------


class TestInvitationEvents:
    async def test_an_invitation_records_its_address_role_and_expiry(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        mark = await newest_event(session)
        response = await invite(client, team, "Kim@Example.com", "commenter")
        assert response.status_code == 201, response.text
        body = response.json()
        [event] = await events_after(session, mark)
        assert event == Logged(
            "invitation",
            body["id"],
            "created",
            team.user("admin").id,
            team.project_id,
            event.changes,
        )
        assert event.changes["email"] == [None, "kim@example.com"]
        assert event.changes["role"] == [None, COMMENTER]
        old, new = event.changes["expires_at"]
        assert old is None
        assert same_instant(new, body["expires_at"])
        assert set(event.changes) == {"email", "role", "expires_at"}

    async def test_inviting_again_records_the_renewal(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        first = (await invite(client, team, "kim@example.com", "viewer")).json()
        mark = await newest_event(session)
        again = await invite(client, team, "kim@example.com", "editor")
        assert again.status_code == 200, again.text
        [event] = await events_after(session, mark)
        assert (event.entity, event.entity_id, event.action, event.actor_id) == (
            "invitation",
            first["id"],
            "updated",
            team.user("admin").id,
        )
        assert event.changes["role"] == [VIEWER, EDITOR]
        assert "email" not in event.changes
        old, new = event.changes["expires_at"]
        assert same_instant(old, first["expires_at"])
        assert same_instant(new, again.json()["expires_at"])

    async def test_revoking_and_declining_record_the_invitation_deleted(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        newcomer: User,
        newcomer_h: Headers,
    ) -> None:
        revoked = (await invite(client, team, "kim@example.com", "viewer")).json()
        declined = (await invite(client, team, newcomer.email, "editor")).json()
        mark = await newest_event(session)
        response = await client.delete(
            f"{invitations_url(team.project_id)}/{revoked['id']}", headers=team.headers["admin"]
        )
        assert response.status_code == 204, response.text
        response = await client.post(
            f"{V2}/invitations/{declined['id']}/decline", headers=newcomer_h
        )
        assert response.status_code == 204, response.text
        events = await events_after(session, mark)
        assert [(e.entity, e.entity_id, e.action, e.actor_id, e.project_id) for e in events] == [
            ("invitation", revoked["id"], "deleted", team.user("admin").id, team.project_id),
            ("invitation", declined["id"], "deleted", newcomer.id, team.project_id),
        ]
        # What the invitation was, since it is gone.
        assert events[0].changes["email"] == ["kim@example.com", None]
        assert events[1].changes["role"] == [EDITOR, None]

    async def test_accepting_records_the_invitation_gone_and_the_member_joined(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        newcomer: User,
        newcomer_h: Headers,
    ) -> None:
        invitation = (await invite(client, team, newcomer.email, "editor")).json()
        mark = await newest_event(session)
        response = await client.post(
            f"{V2}/invitations/{invitation['id']}/accept", headers=newcomer_h
        )
        assert response.status_code == 200, response.text
        gone, joined = await events_after(session, mark)
        assert (gone.entity, gone.entity_id, gone.action, gone.actor_id) == (
            "invitation",
            invitation["id"],
            "deleted",
            newcomer.id,
        )
        assert joined == Logged(
            "member", newcomer.id, "joined", newcomer.id, team.project_id, {"role": [None, EDITOR]}
        )

    async def test_a_refused_invitation_write_records_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        newcomer: User,
        newcomer_h: Headers,
    ) -> None:
        invitation = (await invite(client, team, newcomer.email, "viewer")).json()
        await session.execute(
            update(Invitation)
            .where(Invitation.id == invitation["id"])
            .values(expires_at=utcnow() - timedelta(days=1))
        )
        await session.commit()
        mark = await newest_event(session)
        assert_problem(await invite(client, team, team.user("viewer").email), 409)  # a member
        too_high = await client.post(
            invitations_url(team.project_id),
            json={"email": "kim@example.com", "role": "admin"},
            headers=team.headers["admin"],
        )
        assert_problem(too_high, 403)
        accept = f"{V2}/invitations/{invitation['id']}/accept"
        assert_problem(await client.post(accept, headers=newcomer_h), 410)
        assert_problem(await client.post(accept, headers=team.headers["outsider"]), 404)
        revoke = f"{invitations_url(team.project_id)}/{invitation['id']}"
        assert_problem(await client.delete(revoke, headers=team.headers["editor"]), 403)
        assert await events_after(session, mark) == []


async def test_no_event_holds_a_secret(
    client: httpx.AsyncClient,
    session: AsyncSession,
    team: Team,
    newcomer_h: Headers,
) -> None:
    """Every write of this file's kinds, then every event's changes: no token, no password,
    no password hash, and only the audited fields."""
    mark = await newest_event(session)
    registered = await client.post(
        f"{V2}/users", json={"email": "reg@example.com", "password": TEST_PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    created = await client.post(PROJECTS, json={"name": "Secret"}, headers=newcomer_h)
    project_id = created.json()["id"]
    invited = await client.post(
        invitations_url(project_id),
        json={"email": team.user("owner").email, "role": "admin"},
        headers=newcomer_h,
    )
    owner_h = team.headers["owner"]
    accepted = await client.post(f"{V2}/invitations/{invited.json()['id']}/accept", headers=owner_h)
    assert accepted.status_code == 200, accepted.text
    url = member_url(project_id, team.user("owner").id)
    assert (await client.patch(url, json={"role": "editor"}, headers=newcomer_h)).status_code == 200
    assert (await client.delete(url, headers=newcomer_h)).status_code == 204
    assert (
        await client.patch(project_url(project_id), json={"name": "S"}, headers=newcomer_h)
    ).status_code == 200
    events = await events_after(session, mark)
    assert {e.entity for e in events} == {"project", "member", "invitation"}
    hashes = (await session.scalars(select(User.password_hash))).all()
    secrets = [
        TEST_PASSWORD,
        *hashes,
        *(h["Authorization"].removeprefix("Bearer ") for h in (newcomer_h, owner_h)),
    ]
    audited = {"name", "description", "deleted_at", "role", "email", "expires_at"}
    for event in events:
        assert set(event.changes) <= audited, event
        text = json.dumps(event.changes)
        assert not any(secret in text for secret in secrets), event
        assert "password" not in text, event
        assert "token" not in text, event
