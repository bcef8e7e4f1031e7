"""History (spec api-v2 section 7): a task's and a project's activity, written with every task
change in the same transaction, on SQLite and PostgreSQL.

Activity pages read committed and uncommitted events alike, so these tests run in the test's
rolled-back transaction; the change feed, which holds back what a running transaction may
still commit, is tests/api/v2/test_change_feed.py's (real commits).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.event import Event
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team, add_project
from tests.api.v2.test_tasks import add_label, create, task_url
from tests.support import assert_problem


async def activity(
    client: httpx.AsyncClient, headers: Headers, path: str, **query: Any
) -> dict[str, Any]:
    response = await client.get(f"{V2}{path}/activity", headers=headers, params=query)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def event_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Event)) or 0)


class TestTaskHistory:
    async def test_every_change_in_order_newest_first(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        editor = team.headers["editor"]
        task = await create(client, editor, project_id=team.project_id, priority="low")
        url = task_url(task["id"])
        changed = await client.patch(
            url, json={"title": "Ship it today", "priority": "urgent"}, headers=editor
        )
        assert changed.status_code == 200, changed.text
        assert (await client.patch(url, json={"status": "done"}, headers=editor)).status_code == 200
        assert (await client.delete(url, headers=editor)).status_code == 204
        assert (await client.post(f"{url}/restore", headers=editor)).status_code == 200

        page = await activity(client, team.headers["viewer"], f"/tasks/{task['id']}")
        items = page["items"]
        assert [item["action"] for item in items] == [
            "restored",
            "deleted",
            "updated",
            "updated",
            "created",
        ]
        editor_user = team.user("editor")
        for item in items:
            assert item["actor"] == {"id": editor_user.id, "full_name": editor_user.full_name}
            assert item["entity"] == "task"
            assert item["entity_id"] == task["id"]
            assert item["project_id"] == team.project_id
        created = items[-1]["changes"]
        assert created["title"] == [None, "Ship it"]
        assert created["priority"] == [None, "low"]
        assert items[-2]["changes"] == {
            "title": ["Ship it", "Ship it today"],
            "priority": ["low", "urgent"],
        }
        done = items[-3]["changes"]
        assert done["status"] == ["todo", "done"]
        completed_at = done["completed_at"]
        assert completed_at[0] is None
        assert completed_at[1].endswith("Z")
        deleted_at = items[1]["changes"]["deleted_at"]
        assert deleted_at[0] is None
        assert deleted_at[1].endswith("Z")
        assert items[0]["changes"] == {"deleted_at": [deleted_at[1], None]}

    async def test_a_write_that_changes_nothing_records_nothing(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        editor = team.headers["editor"]
        task = await create(client, editor, project_id=team.project_id, title="Same")
        again = await client.patch(task_url(task["id"]), json={"title": "Same"}, headers=editor)
        assert again.status_code == 200
        page = await activity(client, editor, f"/tasks/{task['id']}")
        assert [item["action"] for item in page["items"]] == ["created"]

    async def test_a_timestamp_sent_back_as_shown_changes_nothing(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        """Responses show timestamps to the millisecond; sent back as shown, they are the same
        values: no new version, no event. Before, the server kept the microseconds it was
        sent, and the due date sent back was a change from a value to the same-looking one
        (a black-box run, 2026-12-07)."""
        editor = team.headers["editor"]
        task = await create(
            client,
            editor,
            project_id=team.project_id,
            due_at="2027-01-01T10:00:00.123456Z",
            remind_at="2027-01-01T09:00:00.654321+02:00",
        )
        shown = {"due_at": "2027-01-01T10:00:00.123Z", "remind_at": "2027-01-01T07:00:00.654Z"}
        assert {field: task[field] for field in shown} == shown
        again = await client.patch(task_url(task["id"]), json=shown, headers=editor)
        assert again.status_code == 200, again.text
        assert again.json()["version"] == task["version"]
        page = await activity(client, editor, f"/tasks/{task['id']}")
        assert [item["action"] for item in page["items"]] == ["created"]

    @pytest.mark.parametrize("path", ["tasks", "projects"])
    async def test_the_first_instant_in_a_history(
        self, client: httpx.AsyncClient, team: Team, path: str
    ) -> None:
        """A due date of 0001-01-01T00:00:00Z is Python's first instant, which PostgreSQL's
        driver stores as -infinity; the events' changes held that word, and every page with
        them answered 500, the feed's too (a black-box run, 2026-12-07). They show the
        instant as the task does."""
        editor = team.headers["editor"]
        task = await create(
            client, editor, project_id=team.project_id, due_at="0001-01-01T00:00:00Z"
        )
        cleared = await client.patch(task_url(task["id"]), json={"due_at": None}, headers=editor)
        assert cleared.status_code == 200, cleared.text
        entity_id = task["id"] if path == "tasks" else team.project_id
        items = (await activity(client, editor, f"/{path}/{entity_id}"))["items"]
        first = "0001-01-01T00:00:00.000Z"
        assert [item["changes"]["due_at"] for item in items[:2]] == [[first, None], [None, first]]

    async def test_assignees_and_labels_and_a_move(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        admin = team.headers["admin"]
        other = await add_project(
            session, {team.user("admin"): _owner(), team.user("viewer"): _viewer()}, name="Other"
        )
        task = await create(client, admin, project_id=team.project_id)
        editor_id = team.user("editor").id
        assigned = await client.patch(
            task_url(task["id"]), json={"assignee_ids": [editor_id]}, headers=admin
        )
        assert assigned.status_code == 200, assigned.text
        moved = await client.patch(task_url(task["id"]), json={"project_id": other}, headers=admin)
        assert moved.status_code == 200, moved.text

        items = (await activity(client, admin, f"/tasks/{task['id']}"))["items"]
        assert [item["action"] for item in items] == ["moved", "updated", "created"]
        assert items[1]["changes"] == {"assignee_ids": [[], [editor_id]]}
        # The editor is not a member of the target: the move drops the assignment.
        assert items[0]["changes"] == {
            "project_id": [team.project_id, other],
            "assignee_ids": [[editor_id], []],
        }
        assert items[0]["project_id"] == other
        # The project the task left shows the move too; the one it went to as well.
        left = (await activity(client, admin, f"/projects/{team.project_id}"))["items"]
        assert left[0]["action"] == "moved"
        went = (await activity(client, admin, f"/projects/{other}"))["items"]
        assert went[0]["action"] == "moved"

    async def test_v1_writes_are_recorded_in_the_inbox(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        headers = team.headers["viewer"]
        created = await client.post("/api/v1/tasks", json={"title": "Mine"}, headers=headers)
        assert created.status_code == 201
        task_id = created.json()["id"]
        patched = await client.patch(
            f"/api/v1/tasks/{task_id}", json={"description": "notes"}, headers=headers
        )
        assert patched.status_code == 200
        items = (await activity(client, headers, f"/tasks/{task_id}"))["items"]
        assert [item["action"] for item in items] == ["updated", "created"]
        assert items[0]["changes"] == {"description": [None, "notes"]}

    async def test_pages_newest_first_with_a_cursor(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        editor = team.headers["editor"]
        task = await create(client, editor, project_id=team.project_id)
        for n in range(4):
            patched = await client.patch(
                task_url(task["id"]), json={"title": f"Title {n}"}, headers=editor
            )
            assert patched.status_code == 200
        seen: list[int] = []
        query: dict[str, Any] = {"limit": 2}
        while True:
            page = await activity(client, editor, f"/tasks/{task['id']}", **query)
            seen += [item["id"] for item in page["items"]]
            if page["next_cursor"] is None:
                break
            query["cursor"] = page["next_cursor"]
        assert len(seen) == 5
        assert seen == sorted(seen, reverse=True)


class TestRefused:
    async def test_outsiders_and_unknown_ids_get_the_same_404(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        task = await create(client, team.headers["editor"], project_id=team.project_id)
        for path in (f"/tasks/{task['id']}", f"/projects/{team.project_id}"):
            refused = await client.get(f"{V2}{path}/activity", headers=team.headers["outsider"])
            assert_problem(refused, 404)
        for path in ("/tasks/999999999", "/projects/999999999"):
            refused = await client.get(f"{V2}{path}/activity", headers=team.headers["editor"])
            assert_problem(refused, 404)

    async def test_a_cursor_of_another_task_is_refused(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        editor = team.headers["editor"]
        first = await create(client, editor, project_id=team.project_id)
        second = await create(client, editor, project_id=team.project_id)
        await client.patch(task_url(first["id"]), json={"title": "x"}, headers=editor)
        page = await activity(client, editor, f"/tasks/{first['id']}", limit=1)
        assert page["next_cursor"]
        refused = await client.get(
            f"{V2}/tasks/{second['id']}/activity",
            params={"cursor": page["next_cursor"]},
            headers=editor,
        )
        assert_problem(refused, 422)

    async def test_a_refused_write_leaves_no_event(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        editor = team.headers["editor"]
        task = await create(client, editor, project_id=team.project_id)
        before = await event_count(session)
        stale = await client.patch(
            task_url(task["id"]),
            json={"title": "late"},
            headers={**editor, "If-Match": '"999"'},
        )
        assert_problem(stale, 412)
        viewer = await client.patch(
            task_url(task["id"]), json={"title": "no"}, headers=team.headers["viewer"]
        )
        assert_problem(viewer, 403)
        outsider_id = team.user("outsider").id
        bad_assignee = await client.post(
            f"{V2}/tasks",
            json={"title": "t", "project_id": team.project_id, "assignee_ids": [outsider_id]},
            headers=editor,
        )
        assert_problem(bad_assignee, 422)
        assert await event_count(session) == before


class TestNothingHalfWritten:
    """A write whose event cannot be written is not written either: the event is refused by a
    trigger (made in the test's own rolled-back transaction), as an outage or a constraint
    would refuse it after the write succeeded."""

    async def refuse_events(self, session: AsyncSession, backend: str) -> None:
        if backend == "postgresql":
            await session.execute(
                text(
                    "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END $$"
                )
            )
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_event BEFORE INSERT ON events "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_event()"
                )
            )
        else:
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_event BEFORE INSERT ON events "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        await session.commit()

    async def test_task_writes_on_every_path(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession, backend: str
    ) -> None:
        editor = team.headers["editor"]
        task = await create(client, editor, project_id=team.project_id, title="Before")
        label = await add_label(session, team.project_id, "Bug")
        await self.refuse_events(session, backend)
        url = task_url(task["id"])
        attempts = [
            client.post(
                f"{V2}/tasks", json={"title": "New", "project_id": team.project_id}, headers=editor
            ),
            client.post("/api/v1/tasks", json={"title": "New"}, headers=editor),
            client.patch(url, json={"title": "After"}, headers=editor),
            client.patch(url, json={"title": "After", "label_ids": [label]}, headers=editor),
            client.delete(url, headers=editor),
        ]
        for attempt in attempts:
            response = await attempt
            assert_problem(response, 409)
        now = await client.get(url, headers=editor)
        assert now.json()["title"] == "Before"
        assert now.json()["version"] == task["version"]
        assert now.json()["label_ids"] == []
        listed = await client.get(f"{V2}/tasks", headers=editor)
        assert [item["id"] for item in listed.json()["items"]] == [task["id"]]

    async def test_a_project_rename(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession, backend: str
    ) -> None:
        await self.refuse_events(session, backend)
        url = f"{V2}/projects/{team.project_id}"
        response = await client.patch(url, json={"name": "Renamed"}, headers=team.headers["owner"])
        assert_problem(response, 409)
        assert (await client.get(url, headers=team.headers["owner"])).json()["name"] == "Launch"


def _owner() -> Any:
    from app.core.roles import ProjectRole

    return ProjectRole.OWNER


def _viewer() -> Any:
    from app.core.roles import ProjectRole

    return ProjectRole.VIEWER


class TestInviteesAddress:
    async def test_only_those_who_may_read_invitations_see_it(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        """A project's activity shows an invitation's events to every member, but its
        address only to those who may list the project's invitations (admins): the invited
        person need not be a member, nor have an account."""
        invited = await client.post(
            f"{V2}/projects/{team.project_id}/invitations",
            json={"email": "someone@example.com", "role": "editor"},
            headers=team.headers["admin"],
        )
        assert invited.status_code == 201, invited.text
        path = f"/projects/{team.project_id}"

        for who, sees_address in (
            ("owner", True),
            ("admin", True),
            ("editor", False),
            ("viewer", False),
        ):
            response = await client.get(f"{V2}{path}/activity", headers=team.headers[who])
            assert response.status_code == 200, response.text
            created = next(
                item for item in response.json()["items"] if item["entity"] == "invitation"
            )
            assert created["action"] == "created"
            assert created["changes"]["role"] == [None, "editor"], who
            if sees_address:
                assert created["changes"]["email"] == [None, "someone@example.com"]
            else:
                assert "email" not in created["changes"], who
                assert "someone@example.com" not in response.text, who
