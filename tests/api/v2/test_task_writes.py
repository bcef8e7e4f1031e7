"""`PATCH`, `DELETE` and restore of `/api/v2/tasks/{id}`: fields, assignees, labels, moves
between projects, the version each request adds, roles and `If-Match`, hostile inputs.

Every test runs on SQLite and on PostgreSQL, with the `team` of tests/api/v2/conftest.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import ProjectRole
from app.db.statements import tasks as task_statements
from app.models.project import ProjectMember
from app.services import retries
from tests.api.conftest import Headers
from tests.api.v2.conftest import Team, add_project
from tests.api.v2.test_tasks import (
    V1_TASKS,
    add_label,
    assert_role_required,
    create,
    ids_of,
    read,
    stored,
    task_url,
)
from tests.support import assert_problem, inbox_id, trash, written_before_first_call


async def patch(
    client: httpx.AsyncClient, headers: Headers, task_id: int, **body: Any
) -> httpx.Response:
    return await client.patch(task_url(task_id), json=body, headers=headers)


async def patched(
    client: httpx.AsyncClient, headers: Headers, task_id: int, **body: Any
) -> dict[str, Any]:
    response = await patch(client, headers, task_id, **body)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    found: dict[str, Any] = response.json()
    return found


@pytest.fixture
async def label_id(session: AsyncSession, team: Team) -> int:
    return await add_label(session, team.project_id, "bug")


@pytest.fixture
async def task(client: httpx.AsyncClient, team: Team, label_id: int) -> dict[str, Any]:
    """A task of the team's project, assigned to the viewer and the admin, labelled."""
    return await create(
        client,
        team.headers["editor"],
        project_id=team.project_id,
        assignee_ids=ids_of(team, "viewer", "admin"),
        label_ids=[label_id],
    )


@pytest.fixture
async def target(session: AsyncSession, team: Team) -> int:
    """Another project: the owner and the editor edit there, the admin is a viewer, the
    viewer is a member too; the commenter is not a member."""
    return await add_project(
        session,
        {
            team.users["owner"]: ProjectRole.OWNER,
            team.users["editor"]: ProjectRole.EDITOR,
            team.users["admin"]: ProjectRole.VIEWER,
            team.users["viewer"]: ProjectRole.VIEWER,
        },
        name="Target",
    )


# --- what a change adds to the version ----------------------------------------------------------


class TestVersions:
    async def test_fields_assignees_and_labels_at_once_are_one_version(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        other_label = await add_label(session, team.project_id, "feature")
        changed = await patched(
            client,
            team.headers["editor"],
            task["id"],
            title="Renamed",
            status="done",
            assignee_ids=ids_of(team, "owner", "commenter"),
            label_ids=[other_label],
            remind_at="2030-05-06T07:08:09Z",
        )

        assert changed["version"] == task["version"] + 1
        assert changed["assignee_ids"] == sorted(ids_of(team, "owner", "commenter"))
        assert changed["label_ids"] == [other_label]
        assert changed["remind_at"] == "2030-05-06T07:08:09.000Z"
        assert changed["completed_at"] is not None
        assert changed["updated_at"] > task["updated_at"]
        assert await read(client, team.headers["viewer"], task["id"]) == changed

    @pytest.mark.parametrize(
        "body",
        [
            {"assignee_ids": "swap"},
            {"label_ids": []},
            {"remind_at": "2030-01-01T00:00:00Z"},
            {"description": "More"},
        ],
        ids=["assignees", "labels", "remind_at", "description"],
    )
    async def test_each_kind_of_change_is_one_version(
        self, client: httpx.AsyncClient, team: Team, task: dict[str, Any], body: dict[str, Any]
    ) -> None:
        if body.get("assignee_ids") == "swap":
            body = {"assignee_ids": ids_of(team, "viewer")}
        changed = await patched(client, team.headers["editor"], task["id"], **body)
        assert changed["version"] == task["version"] + 1
        again = await patched(client, team.headers["editor"], task["id"], **body)
        assert again == changed  # the same change again changes nothing

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"title": "Ship it"},
            {"assignee_ids": "same"},
            {"label_ids": "same"},
            {"project_id": "same"},
            {"remind_at": None},
        ],
        ids=["empty", "title", "assignees", "labels", "project", "remind_at"],
    )
    async def test_a_request_that_changes_nothing_keeps_version_and_updated_at(
        self,
        client: httpx.AsyncClient,
        team: Team,
        task: dict[str, Any],
        body: dict[str, Any],
    ) -> None:
        same = {
            "assignee_ids": list(reversed(task["assignee_ids"])),
            "label_ids": task["label_ids"],
            "project_id": task["project_id"],
        }
        body = {key: same[key] if value == "same" else value for key, value in body.items()}
        response = await patch(client, team.headers["editor"], task["id"], **body)
        assert response.status_code == 200, response.text
        assert response.json() == task
        assert response.headers["etag"] == f'"{task["version"]}"'

    async def test_an_assignee_set_in_another_order_is_the_same(
        self, client: httpx.AsyncClient, team: Team, task: dict[str, Any]
    ) -> None:
        again = await patched(
            client, team.headers["editor"], task["id"], assignee_ids=ids_of(team, "admin", "viewer")
        )
        assert again["version"] == task["version"]


# --- If-Match, and the order of the answers ------------------------------------------------------


class TestConditions:
    @pytest.mark.parametrize(
        "body",
        [{"title": "New"}, {"assignee_ids": []}, {"label_ids": []}, {}],
        ids=["field", "assignees", "labels", "nothing"],
    )
    async def test_a_stale_tag_is_412_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        body: dict[str, Any],
    ) -> None:
        current = f'"{task["version"]}"'
        bumped = await patched(client, team.headers["editor"], task["id"], title="Bumped")
        before = await stored(session, task["id"])

        response = await client.patch(
            task_url(task["id"]), json=body, headers={**team.headers["editor"], "If-Match": current}
        )

        assert_problem(response, 412)
        assert await stored(session, task["id"]) == before
        assert await read(client, team.headers["editor"], task["id"]) == bumped

    async def test_the_current_tag_is_accepted(
        self, client: httpx.AsyncClient, team: Team, task: dict[str, Any]
    ) -> None:
        response = await client.patch(
            task_url(task["id"]),
            json={"assignee_ids": []},
            headers={**team.headers["editor"], "If-Match": f'"{task["version"]}"'},
        )
        assert response.status_code == 200, response.text
        assert response.json()["assignee_ids"] == []

    @pytest.mark.parametrize("who", ["viewer", "commenter"])
    @pytest.mark.parametrize("if_match", [None, '"1"', '"99"'])
    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("PATCH", "", {"title": "Mine"}),
            ("PATCH", "", {}),
            ("PATCH", "", {"assignee_ids": []}),
            ("PATCH", "", {"label_ids": []}),
            ("DELETE", "", None),
        ],
    )
    async def test_viewers_and_commenters_get_403_before_412(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        who: str,
        if_match: str | None,
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
    ) -> None:
        headers = dict(team.headers[who])
        if if_match is not None:
            headers["If-Match"] = if_match
        before = await stored(session, task["id"])

        response = await client.request(
            method, f"{task_url(task['id'])}{suffix}", json=body, headers=headers
        )

        assert_role_required(response, who, "editor")
        assert await stored(session, task["id"]) == before

    @pytest.mark.parametrize("who", ["viewer", "commenter"])
    async def test_restore_needs_an_editor(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        who: str,
    ) -> None:
        assert (
            await client.delete(task_url(task["id"]), headers=team.headers["editor"])
        ).is_success
        before = await stored(session, task["id"])
        trashed = await client.post(f"{task_url(task['id'])}/restore", headers=team.headers[who])
        assert_role_required(trashed, who, "editor")
        assert await stored(session, task["id"]) == before
        # A live task too: restoring is not theirs to do either way.
        assert (
            await client.post(f"{task_url(task['id'])}/restore", headers=team.headers["editor"])
        ).is_success
        live = await client.post(f"{task_url(task['id'])}/restore", headers=team.headers[who])
        assert_role_required(live, who, "editor")

    async def test_a_revoked_token_is_401_before_anything(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        user = team.users["editor"]
        user.token_version += 1
        await session.commit()
        bodies: list[dict[str, Any]] = [{"title": "x"}, {"assignee_ids": []}]
        for body in bodies:
            response = await patch(client, team.headers["editor"], task["id"], **body)
            assert_problem(response, 401)
        assert_problem(await client.get(task_url(task["id"]), headers=team.headers["editor"]), 401)


# --- ids in the body ------------------------------------------------------------------------------


class TestIdsInTheBody:
    async def test_a_non_member_assignee_is_422_and_changes_nothing(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession, task: dict[str, Any]
    ) -> None:
        before = await stored(session, task["id"])
        for assignees in (
            ids_of(team, "owner", "outsider"),
            [team.users["owner"].id, 10**12],
        ):
            response = await patch(
                client, team.headers["editor"], task["id"], title="x", assignee_ids=assignees
            )
            assert_problem(response, 422, loc=["body", "assignee_ids", 1])
        assert await stored(session, task["id"]) == before

    async def test_another_projects_label_is_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        target: int,
    ) -> None:
        foreign = await add_label(session, target, "theirs")
        before = await stored(session, task["id"])
        response = await patch(client, team.headers["editor"], task["id"], label_ids=[foreign])
        assert_problem(response, 422, loc=["body", "label_ids", 0])
        assert await stored(session, task["id"]) == before
        assert (await read(client, team.headers["editor"], task["id"]))["label_ids"] == task[
            "label_ids"
        ]

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"project_id": None}, ["body", "project_id"]),
            ({"assignee_ids": None}, ["body", "assignee_ids"]),
            ({"label_ids": None}, ["body", "label_ids"]),
            ({"title": None}, ["body", "title"]),
            ({"assignee_ids": list(range(1, 22))}, ["body", "assignee_ids"]),
            ({"label_ids": list(range(1, 22))}, ["body", "label_ids"]),
            ({"assignee_ids": [5, 5]}, ["body", "assignee_ids", 1]),
            ({"assignee_ids": ["5"]}, ["body", "assignee_ids", 0]),
            ({"owner_id": 1}, ["body", "owner_id"]),
            ({"version": 1}, ["body", "version"]),
            ({"id": 1}, ["body", "id"]),
        ],
    )
    async def test_malformed_bodies_are_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        body: dict[str, Any],
        loc: list[Any],
    ) -> None:
        before = await stored(session, task["id"])
        response = await patch(client, team.headers["editor"], task["id"], **body)
        assert_problem(response, 422, loc=loc)
        assert await stored(session, task["id"]) == before


# --- moving -------------------------------------------------------------------------------------


class TestMovedWhileWaiting:
    async def test_a_task_moved_at_every_start_is_a_409_to_send_again(
        self,
        client: httpx.AsyncClient,
        team: Team,
        task: dict[str, Any],
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A write of links starts its transaction again when its lock finds the task moved
        meanwhile (tests/api/v2/test_task_races.py makes one such move); found moved at each
        of its starts (here the test says so every time), it gives up: the 409 of a
        concurrent update, with `Retry-After`, and nothing written."""
        starts = 0

        async def moved_meanwhile(*_args: Any, **_kwargs: Any) -> None:
            nonlocal starts
            starts += 1
            raise task_statements.MovedMeanwhile

        monkeypatch.setattr(task_statements, "lock_detail", moved_meanwhile)
        before = await stored(session, task["id"])
        response = await patch(
            client, team.headers["editor"], task["id"], title="Never", label_ids=[]
        )
        problem = assert_problem(response, 409)
        assert problem["type"].endswith(":concurrent-update")
        assert response.headers["retry-after"] == "1"
        assert starts == retries.ATTEMPTS
        assert await stored(session, task["id"]) == before


class TestMove:
    async def test_assignees_not_in_the_target_go_and_labels_are_cleared(
        self,
        client: httpx.AsyncClient,
        team: Team,
        task: dict[str, Any],
        target: int,
    ) -> None:
        # The task's assignees: the viewer (a member of the target) and the admin (also).
        await patched(
            client,
            team.headers["editor"],
            task["id"],
            assignee_ids=ids_of(team, "viewer", "commenter"),
        )
        moved = await patched(client, team.headers["editor"], task["id"], project_id=target)

        assert moved["id"] == task["id"]
        assert moved["project_id"] == target
        assert moved["assignee_ids"] == ids_of(team, "viewer")  # the commenter is not a member
        assert moved["label_ids"] == []
        assert moved["version"] == task["version"] + 2
        # Gone from the source for those who are only members there; there in the target.
        assert_problem(
            await client.get(task_url(task["id"]), headers=team.headers["commenter"]), 404
        )
        assert await read(client, team.headers["admin"], task["id"]) == moved

    async def test_with_assignees_and_labels_of_the_target(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        target: int,
    ) -> None:
        theirs = await add_label(session, target, "theirs")
        moved = await patched(
            client,
            team.headers["editor"],
            task["id"],
            project_id=target,
            assignee_ids=ids_of(team, "owner", "admin"),
            label_ids=[theirs],
            title="Moved",
        )
        assert (moved["project_id"], moved["label_ids"], moved["title"]) == (
            target,
            [theirs],
            "Moved",
        )
        assert moved["assignee_ids"] == sorted(ids_of(team, "owner", "admin"))
        assert moved["version"] == task["version"] + 1

    @pytest.mark.parametrize("field", ["assignee_ids", "label_ids"])
    async def test_ids_that_do_not_belong_to_the_target_are_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        target: int,
        label_id: int,
        field: str,
    ) -> None:
        """The commenter is no member of the target; the source's label no label of it."""
        ids = ids_of(team, "owner", "commenter") if field == "assignee_ids" else [label_id]
        bad_index = 1 if field == "assignee_ids" else 0
        before = await stored(session, task["id"])
        response = await patch(
            client, team.headers["editor"], task["id"], project_id=target, **{field: ids}
        )
        assert_problem(response, 422, loc=["body", field, bad_index])
        assert await stored(session, task["id"]) == before

    async def test_to_a_project_where_the_caller_is_a_viewer_is_403(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
        target: int,
    ) -> None:
        """The admin edits in the source but only views the target."""
        before = await stored(session, task["id"])
        response = await patch(client, team.headers["admin"], task["id"], project_id=target)
        assert_role_required(response, "viewer", "editor")
        assert await stored(session, task["id"]) == before

    async def test_to_an_unseen_project_is_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        """Someone else's Inbox, and an id no project has: the same 422."""
        before = await stored(session, task["id"])
        outsiders_inbox = await inbox_id(session, team.users["outsider"])
        first = await patch(client, team.headers["editor"], task["id"], project_id=outsiders_inbox)
        second = await patch(client, team.headers["editor"], task["id"], project_id=10**12)
        body = assert_problem(first, 422, loc=["body", "project_id"])
        assert assert_problem(second, 422)["errors"] == body["errors"]
        assert await stored(session, task["id"]) == before

    async def test_out_of_a_project_where_the_caller_is_a_viewer_is_403(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        """The viewer may edit their Inbox, not the team's task: no taking it away."""
        before = await stored(session, task["id"])
        viewers_inbox = await inbox_id(session, team.users["viewer"])
        response = await patch(client, team.headers["viewer"], task["id"], project_id=viewers_inbox)
        assert_role_required(response, "viewer", "editor")
        assert await stored(session, task["id"]) == before

    async def test_into_the_inbox_and_v1_sees_it(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        editors_inbox = await inbox_id(session, team.users["editor"])
        moved = await patched(client, team.headers["editor"], task["id"], project_id=editors_inbox)
        # Nobody else is a member of an Inbox: every assignee goes.
        assert moved["assignee_ids"] == []
        in_v1 = await client.get(f"{V1_TASKS}/{task['id']}", headers=team.headers["editor"])
        assert in_v1.status_code == 200
        assert in_v1.headers["etag"] == f'"{moved["version"]}"'
        assert_problem(await client.get(task_url(task["id"]), headers=team.headers["owner"]), 404)

    async def test_to_a_project_of_two_every_other_assignee_goes(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        """A project where only the editor and the owner are members: the viewer and the
        admin assigned in the source are not carried over, in the response or the table."""
        pair = await add_project(
            session,
            {team.users["owner"]: ProjectRole.OWNER, team.users["editor"]: ProjectRole.EDITOR},
            name="Pair",
        )
        moved = await patched(client, team.headers["editor"], task["id"], project_id=pair)
        assert moved["assignee_ids"] == []
        assert (await stored(session, task["id"]))["assignees"] == []


# --- trash and restore ------------------------------------------------------------------------


class TestTrash:
    async def test_a_restore_that_meets_a_delete_restores(
        self,
        client: httpx.AsyncClient,
        team: Team,
        task: dict[str, Any],
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A restore found the task live (nothing to restore), and a delete committed before
        its read of the live task: in either order the two leave the task restored or live,
        so the answer is the task, restored, never the 404 it was (a black-box run,
        2026-12-07: 130 of 200 such pairs). The test makes the delete at that moment."""
        deletes = written_before_first_call(
            monkeypatch, task_statements, "fetch_detail", session, trash(task["id"])
        )
        restored = await client.post(
            f"{task_url(task['id'])}/restore", headers=team.headers["editor"]
        )
        assert restored.status_code == 200, restored.text
        assert restored.json()["deleted_at"] is None
        assert restored.json()["version"] == task["version"] + 2  # the delete, the restore
        assert deletes == [1]

    async def test_delete_then_restore(
        self,
        client: httpx.AsyncClient,
        team: Team,
        task: dict[str, Any],
    ) -> None:
        deleted = await client.delete(task_url(task["id"]), headers=team.headers["editor"])
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert_problem(await client.get(task_url(task["id"]), headers=team.headers["owner"]), 404)
        assert_problem(await patch(client, team.headers["owner"], task["id"], title="x"), 404)
        assert_problem(
            await client.delete(task_url(task["id"]), headers=team.headers["owner"]), 404
        )

        restored = await client.post(
            f"{task_url(task['id'])}/restore", headers=team.headers["admin"]
        )

        assert restored.status_code == 200, restored.text
        body = restored.json()
        assert body["deleted_at"] is None
        assert body["version"] == task["version"] + 2
        assert (body["assignee_ids"], body["label_ids"]) == (
            task["assignee_ids"],
            task["label_ids"],
        )
        assert restored.headers["etag"] == f'"{body["version"]}"'
        # Restoring a live task returns it as it is.
        again = await client.post(f"{task_url(task['id'])}/restore", headers=team.headers["editor"])
        assert again.status_code == 200
        assert again.json() == body

    async def test_delete_honours_if_match(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        stale = {**team.headers["editor"], "If-Match": f'"{task["version"] + 1}"'}
        assert_problem(await client.delete(task_url(task["id"]), headers=stale), 412)
        assert (await stored(session, task["id"]))["deleted_at"] is None
        current = {**team.headers["editor"], "If-Match": f'"{task["version"]}"'}
        assert (await client.delete(task_url(task["id"]), headers=current)).status_code == 204

    async def test_a_member_removed_cannot_write_with_the_same_token(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        task: dict[str, Any],
    ) -> None:
        await session.execute(
            delete(ProjectMember).where(
                ProjectMember.project_id == team.project_id,
                ProjectMember.user_id == team.users["editor"].id,
            )
        )
        await session.commit()
        before = await stored(session, task["id"])
        assert_problem(await patch(client, team.headers["editor"], task["id"], title="x"), 404)
        assert_problem(
            await client.delete(task_url(task["id"]), headers=team.headers["editor"]), 404
        )
        assert await stored(session, task["id"]) == before
