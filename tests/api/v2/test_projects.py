"""`/api/v2/projects` (spec api-v2 section 3): what a member, an outsider and a hostile client
see, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.db.statements import projects as project_statements
from app.models.project import Project
from app.models.task import Task
from app.models.user import User
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team, add_project
from tests.support import assert_problem, inbox_id, written_before_first_call

PROJECTS = f"{V2}/projects"
PROJECT_FIELDS = {
    "id",
    "name",
    "description",
    "is_inbox",
    "my_role",
    "created_at",
    "updated_at",
    "deleted_at",
    "version",
}
ROLES = ("owner", "admin", "editor", "commenter", "viewer")


def url(project_id: int) -> str:
    return f"{PROJECTS}/{project_id}"


async def read(client: httpx.AsyncClient, project_id: int, headers: Headers) -> dict[str, Any]:
    response = await client.get(url(project_id), headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def add_task(session: AsyncSession, project_id: int, title: str = "Ship it") -> int:
    now = utcnow()
    task = Task(project_id=project_id, title=title, created_at=now, updated_at=now, version=1)
    session.add(task)
    await session.commit()
    return task.id


class TestCreate:
    async def test_the_caller_becomes_its_owner(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        response = await client.post(
            PROJECTS, json={"name": "  Launch  ", "description": "Q3"}, headers=alice_h
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == PROJECT_FIELDS
        assert body["name"] == "Launch"  # trimmed
        assert body["description"] == "Q3"
        assert body["is_inbox"] is False
        assert body["my_role"] == "owner"
        assert body["deleted_at"] is None
        assert body["version"] == 1
        assert response.headers["location"] == url(body["id"])
        assert response.headers["etag"] == '"1"'
        assert await read(client, body["id"], alice_h) == body

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"name": ""},
            {"name": "   "},
            {"name": "x" * 101},
            {"name": "a\nb"},
            {"name": "bell\x07"},
            {"name": "\u202eevil"},
            {"name": None},
            {"name": 5},
            {"name": "ok", "description": "x" * 10_001},
            {"name": "ok", "description": "nul\x00"},
            {"name": "ok", "owner_id": 1},
            {"name": "ok", "is_inbox": True},
            {"name": "ok", "version": 7},
        ],
    )
    async def test_invalid_bodies_are_422(
        self, client: httpx.AsyncClient, alice_h: Headers, payload: dict[str, Any]
    ) -> None:
        assert_problem(await client.post(PROJECTS, json=payload, headers=alice_h), 422)

    async def test_a_name_of_100_characters_after_trimming_is_fine(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        response = await client.post(PROJECTS, json={"name": f"  {'é' * 100}  "}, headers=alice_h)
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "é" * 100

    async def test_a_retry_with_its_idempotency_key_creates_nothing(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        headers = {**alice_h, "Idempotency-Key": "create-launch-1"}
        first = await client.post(PROJECTS, json={"name": "Launch"}, headers=headers)
        again = await client.post(PROJECTS, json={"name": "Launch"}, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"
        listed = (await client.get(PROJECTS, headers=alice_h)).json()["items"]
        assert [p["name"] for p in listed] == ["Inbox", "Launch"]
        other = await client.post(PROJECTS, json={"name": "Other"}, headers=headers)
        assert_problem(other, 422, loc=["header", "Idempotency-Key"])

    async def test_without_a_token_is_401(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post(PROJECTS, json={"name": "x"}), 401)


class TestList:
    async def test_only_the_callers_projects_by_name_then_id(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        bob: User,
        alice_h: Headers,
    ) -> None:
        from app.core.roles import ProjectRole

        ids = [
            await add_project(session, {alice: ProjectRole.VIEWER}, name=name)
            for name in ("banana", "Apple", "cherry", "apple")
        ]
        await add_project(session, {bob: ProjectRole.OWNER}, name="Bob's")
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            response = await client.get(PROJECTS, params=params, headers=alice_h)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                assert "link" not in response.headers
                break
            assert 'rel="next"' in response.headers["link"]
        names = [(p["name"], p["id"]) for p in seen]
        assert names == [
            ("Apple", ids[1]),
            ("apple", ids[3]),
            ("banana", ids[0]),
            ("cherry", ids[2]),
            ("Inbox", await inbox_id(session, alice)),
        ]
        assert {p["my_role"] for p in seen[:4]} == {"viewer"}

    async def test_the_longest_names_page_too(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        """A cursor after a name of 100 emoji is still one a client can send back."""
        names = [emoji * 100 for emoji in ("\U0001f600", "\U0001f680", "\U0001f98a")]
        for name in names:
            response = await client.post(PROJECTS, json={"name": name}, headers=alice_h)
            assert response.status_code == 201, response.text
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 1}
        while True:
            response = await client.get(PROJECTS, params=params, headers=alice_h)
            assert response.status_code == 200, response.text
            seen += [p["name"] for p in response.json()["items"]]
            if response.json()["next_cursor"] is None:
                break
            params["cursor"] = response.json()["next_cursor"]
        assert sorted(seen) == sorted([*names, "Inbox"])
        assert len(seen) == 4

    async def test_a_cursor_of_another_user_or_view_is_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        bob_h: Headers,
    ) -> None:
        from app.core.roles import ProjectRole

        for name in ("a", "b"):
            await add_project(session, {alice: ProjectRole.OWNER}, name=name)
        page = (await client.get(PROJECTS, params={"limit": 1}, headers=alice_h)).json()
        cursor = page["next_cursor"]
        assert cursor
        assert_problem(
            await client.get(PROJECTS, params={"cursor": cursor}, headers=bob_h),
            422,
            loc=["query", "cursor"],
        )
        assert_problem(
            await client.get(
                PROJECTS, params={"cursor": cursor, "deleted": "true"}, headers=alice_h
            ),
            422,
            loc=["query", "cursor"],
        )
        assert_problem(
            await client.get(PROJECTS, params={"cursor": "garbage"}, headers=alice_h), 422
        )

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"sort": "name"}])
    async def test_bad_parameters_are_422(
        self, client: httpx.AsyncClient, alice_h: Headers, params: dict[str, Any]
    ) -> None:
        assert_problem(await client.get(PROJECTS, params=params, headers=alice_h), 422)

    async def test_the_trash_lists_what_the_caller_owns(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        owner, admin = team.headers["owner"], team.headers["admin"]
        assert (await client.delete(url(team.project_id), headers=owner)).status_code == 204
        trash = (await client.get(PROJECTS, params={"deleted": "true"}, headers=owner)).json()
        assert [p["id"] for p in trash["items"]] == [team.project_id]
        assert trash["items"][0]["deleted_at"] is not None
        live = (await client.get(PROJECTS, headers=owner)).json()
        assert team.project_id not in [p["id"] for p in live["items"]]
        for who in ("admin", "viewer", "outsider"):
            trash = (
                await client.get(PROJECTS, params={"deleted": "true"}, headers=team.headers[who])
            ).json()
            assert trash["items"] == []
        live = (await client.get(PROJECTS, headers=admin)).json()
        assert [p["is_inbox"] for p in live["items"]] == [True]


class TestRead:
    async def test_every_member_reads_it_with_their_role(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        for role in ROLES:
            response = await client.get(url(team.project_id), headers=team.headers[role])
            assert response.status_code == 200, response.text
            assert response.json()["my_role"] == role
            assert response.json()["name"] == "Launch"
            assert response.headers["etag"] == '"1"'

    async def test_if_none_match(self, client: httpx.AsyncClient, team: Team) -> None:
        headers = {**team.headers["viewer"], "If-None-Match": '"1"'}
        response = await client.get(url(team.project_id), headers=headers)
        assert response.status_code == 304
        assert response.headers["etag"] == '"1"'
        headers["If-None-Match"] = '"2"'
        assert (await client.get(url(team.project_id), headers=headers)).status_code == 200

    async def test_the_inbox_is_its_users_alone(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        bob_h: Headers,
    ) -> None:
        inbox = await inbox_id(session, alice)
        body = await read(client, inbox, alice_h)
        assert body["is_inbox"] is True
        assert body["my_role"] == "owner"
        assert body["name"] == "Inbox"
        unknown = assert_problem(await client.get(url(10**12), headers=bob_h), 404)
        foreign = assert_problem(await client.get(url(inbox), headers=bob_h), 404)
        assert (foreign["type"], foreign["title"], foreign["detail"]) == (
            unknown["type"],
            unknown["title"],
            unknown["detail"],
        )

    @pytest.mark.parametrize("bad", ["0", "-1", "01", "+1", "1.0", "x", str(2**63)])
    async def test_ids_out_of_range_or_not_canonical_are_422(
        self, client: httpx.AsyncClient, alice_h: Headers, bad: str
    ) -> None:
        assert_problem(await client.get(f"{PROJECTS}/{bad}", headers=alice_h), 422)

    async def test_a_revoked_token_is_401(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        owner = team.users["owner"]
        owner.token_version += 1
        await session.commit()
        assert_problem(await client.get(url(team.project_id), headers=team.headers["owner"]), 401)
        assert_problem(await client.get(PROJECTS, headers=team.headers["owner"]), 401)


class TestUpdate:
    async def test_an_admin_renames_it(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.patch(
            url(team.project_id),
            json={"name": " Liftoff ", "description": "go"},
            headers={**team.headers["admin"], "If-Match": '"1"'},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["name"], body["description"], body["version"]) == ("Liftoff", "go", 2)
        assert body["my_role"] == "admin"
        assert response.headers["etag"] == '"2"'
        # A change that changes nothing keeps the version.
        same = await client.patch(
            url(team.project_id), json={"name": "Liftoff"}, headers=team.headers["owner"]
        )
        assert same.status_code == 200
        assert same.json()["version"] == 2
        assert same.json()["updated_at"] == body["updated_at"]
        empty = await client.patch(url(team.project_id), json={}, headers=team.headers["owner"])
        assert empty.json()["version"] == 2
        cleared = await client.patch(
            url(team.project_id), json={"description": None}, headers=team.headers["owner"]
        )
        assert cleared.json()["description"] is None
        assert cleared.json()["version"] == 3

    async def test_a_stale_etag_is_412(self, client: httpx.AsyncClient, team: Team) -> None:
        owner = team.headers["owner"]
        await client.patch(url(team.project_id), json={"name": "v2"}, headers=owner)
        for tag in ('"1"', 'W/"2"', '"02"', "garbage"):
            assert_problem(
                await client.patch(
                    url(team.project_id), json={"name": "v3"}, headers={**owner, "If-Match": tag}
                ),
                412,
            )
            assert_problem(
                await client.patch(
                    url(team.project_id), json={}, headers={**owner, "If-Match": tag}
                ),
                412,
            )
        assert (await read(client, team.project_id, owner))["name"] == "v2"

    @pytest.mark.parametrize("who", ["editor", "commenter", "viewer"])
    async def test_below_admin_is_403_and_changes_nothing(
        self, client: httpx.AsyncClient, team: Team, who: str
    ) -> None:
        for if_match in ({}, {"If-Match": '"1"'}, {"If-Match": '"9"'}):
            body = assert_problem(
                await client.patch(
                    url(team.project_id),
                    json={"name": "mine"},
                    headers={**team.headers[who], **if_match},
                ),
                403,
            )
            assert body["role"] == who
            assert body["required_role"] == "admin"
        project = await read(client, team.project_id, team.headers["owner"])
        assert (project["name"], project["version"]) == ("Launch", 1)

    @pytest.mark.parametrize(
        "payload", [{"name": None}, {"name": ""}, {"name": "x" * 101}, {"is_inbox": True}]
    )
    async def test_invalid_bodies_are_422(
        self, client: httpx.AsyncClient, team: Team, payload: dict[str, Any]
    ) -> None:
        assert_problem(
            await client.patch(url(team.project_id), json=payload, headers=team.headers["owner"]),
            422,
        )

    async def test_the_inbox_can_be_renamed(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        inbox = await inbox_id(session, alice)
        response = await client.patch(url(inbox), json={"name": "Mine"}, headers=alice_h)
        assert response.status_code == 200
        assert response.json()["is_inbox"] is True


class TestDeleteAndRestore:
    async def test_trash_hides_it_and_its_tasks_until_restored(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        task_id = await add_task(session, team.project_id)
        owner = team.headers["owner"]
        response = await client.delete(url(team.project_id), headers={**owner, "If-Match": '"1"'})
        assert response.status_code == 204
        for who in ROLES:
            assert_problem(await client.get(url(team.project_id), headers=team.headers[who]), 404)
            assert_problem(
                await client.patch(
                    url(team.project_id), json={"name": "x"}, headers=team.headers[who]
                ),
                404,
            )
        # Its tasks are gone for every member (membership checks need a live project).
        stored = await session.scalar(select(Task.deleted_at).where(Task.id == task_id))
        assert stored is None  # the task itself is untouched: back with the project
        for who in ("admin", "viewer"):
            for method in ("GET", "DELETE"):
                path = f"{V2}/tasks/{task_id}"
                assert_problem(await client.request(method, path, headers=team.headers[who]), 404)
        # Only an owner restores it; to anyone else it is not there.
        for who in ("admin", "viewer", "outsider"):
            assert_problem(
                await client.post(f"{url(team.project_id)}/restore", headers=team.headers[who]),
                404,
            )
        restored = await client.post(f"{url(team.project_id)}/restore", headers=owner)
        assert restored.status_code == 200, restored.text
        assert restored.json()["deleted_at"] is None
        assert restored.json()["version"] == 3
        assert restored.headers["etag"] == '"3"'
        assert (await read(client, team.project_id, team.headers["viewer"]))["my_role"] == "viewer"
        # Restoring a live project returns it unchanged.
        again = await client.post(f"{url(team.project_id)}/restore", headers=owner)
        assert again.json()["version"] == 3

    async def test_a_revoked_owner_restoring_gets_a_401(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        """A token no longer current is a 401, also for the owner of a trashed project (whom
        the restore, made again when the project is theirs and in the trash, must not take
        for one who may)."""
        owner = team.headers["owner"]
        assert (await client.delete(url(team.project_id), headers=owner)).status_code == 204
        await session.execute(
            update(User)
            .where(User.id == team.user("owner").id)
            .values(token_version=User.token_version + 1)
        )
        refused = await client.post(f"{url(team.project_id)}/restore", headers=owner)
        assert_problem(refused, 401)

    async def test_a_restore_that_meets_a_delete_restores(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The restore found the project live (nothing to restore), and a delete committed
        before the read that tells why: the restore is made again and the project comes
        back (it was a 404; a black-box run, 2026-12-07, 1 of 100 such pairs). The test
        makes the delete at that moment."""
        delete = (
            update(Project)
            .where(Project.id == team.project_id)
            .values(deleted_at=utcnow(), version=Project.version + 1)
        )
        trashed = written_before_first_call(
            monkeypatch, project_statements, "diagnose", session, delete
        )
        restored = await client.post(
            f"{url(team.project_id)}/restore", headers=team.headers["owner"]
        )
        assert restored.status_code == 200, restored.text
        assert (restored.json()["deleted_at"], restored.json()["version"]) == (None, 3)
        assert trashed == [1]

    @pytest.mark.parametrize("who", ["admin", "editor", "commenter", "viewer"])
    async def test_below_owner_is_403(
        self, client: httpx.AsyncClient, team: Team, who: str
    ) -> None:
        for path, method in (
            (url(team.project_id), "DELETE"),
            (f"{url(team.project_id)}/restore", "POST"),
        ):
            body = assert_problem(
                await client.request(method, path, headers=team.headers[who]), 403
            )
            assert (body["role"], body["required_role"]) == (who, "owner")
        assert (await read(client, team.project_id, team.headers["owner"]))["version"] == 1

    async def test_the_inbox_cannot_be_deleted(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        inbox = await inbox_id(session, alice)
        assert_problem(await client.delete(url(inbox), headers=alice_h), 409)
        assert_problem(await client.delete(url(inbox), headers={**alice_h, "If-Match": '"7"'}), 409)
        assert (await read(client, inbox, alice_h))["deleted_at"] is None

    async def test_a_stale_etag_is_412(self, client: httpx.AsyncClient, team: Team) -> None:
        owner = team.headers["owner"]
        assert_problem(
            await client.delete(url(team.project_id), headers={**owner, "If-Match": '"2"'}), 412
        )
        assert (await read(client, team.project_id, owner))["deleted_at"] is None


class TestOutsiders:
    """A non-member gets, on every route and method, the 404 an unknown id gets."""

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("PATCH", "", {"name": "mine"}),
            ("PATCH", "", {}),
            ("DELETE", "", None),
            ("POST", "/restore", None),
        ],
    )
    @pytest.mark.parametrize("if_match", [None, '"1"', '"5"', "*"])
    async def test_outsider_gets_the_unknown_ids_404(
        self,
        client: httpx.AsyncClient,
        team: Team,
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
        if_match: str | None,
    ) -> None:
        headers = {**team.headers["outsider"]}
        if if_match is not None:
            headers["If-Match"] = if_match
        mine = await client.request(
            method, f"{url(team.project_id)}{suffix}", json=body, headers=headers
        )
        unknown = await client.request(method, f"{url(10**15)}{suffix}", json=body, headers=headers)
        left, right = assert_problem(mine, 404), assert_problem(unknown, 404)
        assert (left["type"], left["title"], left["detail"]) == (
            right["type"],
            right["title"],
            right["detail"],
        )
        project = await read(client, team.project_id, team.headers["owner"])
        assert (project["name"], project["version"]) == ("Launch", 1)
