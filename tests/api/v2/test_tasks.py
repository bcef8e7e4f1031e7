"""`/api/v2/tasks`: create and read a task of a project, with its assignees and labels, and
what a v1 client sees of the same task; hostile inputs included.

Writes (`PATCH`, `DELETE`, restore) are tests/api/v2/test_task_writes.py's, races
tests/api/v2/test_task_races.py's; this module also holds the helpers they share. Every
test runs on SQLite and on PostgreSQL, with the `team` of tests/api/v2/conftest.py (a
project "Launch" with a member at each role, and an outsider).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.bounds import TASK_ASSIGNEES_MAX, TASK_LABELS_MAX
from app.core.roles import ProjectRole
from app.db.base import utcnow
from app.db.statements import tasks as statements_of_tasks
from app.db.statements.tasks import TaskDetail
from app.models.label import Label
from app.models.project import Project, ProjectMember
from app.models.task import Task, TaskAssignee, TaskRecord
from app.schemas.task import ProjectTaskRead, project_task_json
from tests.api.conftest import Headers
from tests.api.v1.test_round_trips import register, statements
from tests.api.v1.test_round_trips import sent as sent  # noqa: F401 - a fixture
from tests.api.v2.conftest import V2, Team, add_project
from tests.support import TASK_FIELDS, assert_problem, inbox_id, refused_at_first

TASKS = f"{V2}/tasks"
V1_TASKS = "/api/v1/tasks"
V2_TASK_FIELDS = TASK_FIELDS | {"project_id", "assignee_ids", "label_ids", "remind_at"}


# --- helpers (shared by the other v2 task modules) ------------------------------------------


def task_url(task_id: object) -> str:
    return f"{TASKS}/{task_id}"


async def create(client: httpx.AsyncClient, headers: Headers, **body: Any) -> dict[str, Any]:
    response = await client.post(TASKS, json={"title": "Ship it", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def read(client: httpx.AsyncClient, headers: Headers, task_id: int) -> dict[str, Any]:
    response = await client.get(task_url(task_id), headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def add_label(session: AsyncSession, project_id: int, name: str) -> int:
    """A label of `project_id`, straight in the database (labels have routes of their own)."""
    label = Label(project_id=project_id, name=name, color="#336699", created_at=utcnow())
    session.add(label)
    await session.commit()
    return label.id


async def stored(session: AsyncSession, task_id: int) -> dict[str, Any]:
    """The task as stored (past the session's identity map), with its assignees."""
    row = (await session.execute(select(*Task.__table__.c).where(Task.id == task_id))).one()
    assignees = await session.scalars(
        select(TaskAssignee.user_id).where(TaskAssignee.task_id == task_id)
    )
    return {**row._asdict(), "assignees": sorted(assignees)}


async def count_tasks(session: AsyncSession, project_id: int) -> int:
    query = select(func.count()).select_from(Task).where(Task.project_id == project_id)
    return int(await session.scalar(query) or 0)


def comparable(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem body without the parts that differ between any two requests."""
    return {key: value for key, value in problem.items() if key not in {"request_id", "instance"}}


def assert_role_required(response: httpx.Response, role: str, required: str) -> None:
    """The 403 of a member whose role is below the action's: it names both roles."""
    body = assert_problem(response, 403)
    assert body["type"] == "urn:tasks-api:problem:role-required"
    assert (body["role"], body["required_role"]) == (role, required)


def ids_of(team: Team, *who: str) -> list[int]:
    return [team.users[name].id for name in who]


@pytest.fixture
async def label_id(session: AsyncSession, team: Team) -> int:
    return await add_label(session, team.project_id, "bug")


@pytest.fixture
async def other_project(session: AsyncSession, team: Team) -> int:
    """A second project of the owner and the editor (the editor edits there too)."""
    return await add_project(
        session,
        {team.users["owner"]: ProjectRole.OWNER, team.users["editor"]: ProjectRole.EDITOR},
        name="Other",
    )


@pytest.fixture
async def shared_task(client: httpx.AsyncClient, team: Team, label_id: int) -> dict[str, Any]:
    """A task of the team's project, assigned to the viewer and the admin, labelled."""
    return await create(
        client,
        team.headers["editor"],
        project_id=team.project_id,
        assignee_ids=ids_of(team, "viewer", "admin"),
        label_ids=[label_id],
    )


# --- create -----------------------------------------------------------------------------------


class TestCreate:
    async def test_in_the_inbox_by_default(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        response = await client.post(TASKS, json={"title": "Mine"}, headers=team.headers["viewer"])

        assert response.status_code == 201, response.text
        task = response.json()
        assert set(task) == V2_TASK_FIELDS
        assert task["project_id"] == await inbox_id(session, team.users["viewer"])
        assert (task["assignee_ids"], task["label_ids"], task["remind_at"]) == ([], [], None)
        assert task["version"] == 1
        assert response.headers["location"] == f"{TASKS}/{task['id']}"
        assert response.headers["etag"] == '"1"'
        assert await read(client, team.headers["viewer"], task["id"]) == task

    async def test_in_a_project_with_assignees_and_labels(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        labels = [await add_label(session, team.project_id, name) for name in ("b", "a")]
        assignees = ids_of(team, "viewer", "owner", "commenter")

        task = await create(
            client,
            team.headers["editor"],
            project_id=team.project_id,
            assignee_ids=assignees,
            label_ids=labels,
            remind_at="2031-01-02T03:04:05+01:00",
        )

        assert task["project_id"] == team.project_id
        assert task["assignee_ids"] == sorted(assignees)
        assert task["label_ids"] == sorted(labels)
        assert task["remind_at"] == "2031-01-02T02:04:05.000Z"
        # Every member sees it, as it was created.
        assert await read(client, team.headers["viewer"], task["id"]) == task
        assert (await stored(session, task["id"]))["assignees"] == sorted(assignees)

    @pytest.mark.parametrize("who", ["viewer", "commenter"])
    async def test_below_editor_is_403(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession, who: str
    ) -> None:
        before = await count_tasks(session, team.project_id)

        response = await client.post(
            TASKS, json={"title": "No", "project_id": team.project_id}, headers=team.headers[who]
        )

        assert_role_required(response, who, "editor")
        assert await count_tasks(session, team.project_id) == before

    async def test_assigning_is_checked_after_the_role(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        """A viewer naming a non-member assignee learns only that they may not create."""
        response = await client.post(
            TASKS,
            json={
                "title": "No",
                "project_id": team.project_id,
                "assignee_ids": ids_of(team, "outsider"),
            },
            headers=team.headers["viewer"],
        )
        assert_role_required(response, "viewer", "editor")

    async def test_an_unseen_project_is_422_like_a_missing_one(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        before = await count_tasks(session, team.project_id)
        unseen = await client.post(
            TASKS,
            json={"title": "Sneak", "project_id": team.project_id},
            headers=team.headers["outsider"],
        )
        missing = await client.post(
            TASKS,
            json={"title": "Sneak", "project_id": team.project_id + 10_000},
            headers=team.headers["outsider"],
        )

        body = assert_problem(unseen, 422, loc=["body", "project_id"])
        assert comparable(body) == comparable(assert_problem(missing, 422))
        assert await count_tasks(session, team.project_id) == before

    async def test_a_project_in_the_trash_is_422(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        await session.execute(
            update(Project).where(Project.id == team.project_id).values(deleted_at=utcnow())
        )
        await session.commit()
        response = await client.post(
            TASKS,
            json={"title": "Late", "project_id": team.project_id},
            headers=team.headers["owner"],
        )
        assert_problem(response, 422, loc=["body", "project_id"])

    async def test_someone_elses_inbox_is_422(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        owners_inbox = await inbox_id(session, team.users["owner"])
        response = await client.post(
            TASKS,
            json={"title": "Sneak", "project_id": owners_inbox},
            headers=team.headers["admin"],
        )
        assert_problem(response, 422, loc=["body", "project_id"])
        assert await count_tasks(session, owners_inbox) == 0

    async def test_a_non_member_assignee_is_422_at_its_index(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        before = await count_tasks(session, team.project_id)
        non_member = await client.post(
            TASKS,
            json={
                "title": "x",
                "project_id": team.project_id,
                "assignee_ids": ids_of(team, "viewer", "outsider"),
            },
            headers=team.headers["editor"],
        )
        ghost = await client.post(
            TASKS,
            json={
                "title": "x",
                "project_id": team.project_id,
                "assignee_ids": [team.users["viewer"].id, 10**12],
            },
            headers=team.headers["editor"],
        )

        body = assert_problem(non_member, 422, loc=["body", "assignee_ids", 1])
        assert len(body["errors"]) == 1
        # The same answer for an account that does not exist.
        assert comparable(assert_problem(ghost, 422)) == comparable(body)
        assert await count_tasks(session, team.project_id) == before

    async def test_another_projects_label_is_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        label_id: int,
        other_project: int,
    ) -> None:
        foreign = await add_label(session, other_project, "theirs")
        before = await count_tasks(session, team.project_id)

        response = await client.post(
            TASKS,
            json={"title": "x", "project_id": team.project_id, "label_ids": [label_id, foreign]},
            headers=team.headers["editor"],
        )

        assert_problem(response, 422, loc=["body", "label_ids", 1])
        assert await count_tasks(session, team.project_id) == before

    async def test_labels_of_the_inbox_default(
        self, client: httpx.AsyncClient, team: Team, label_id: int
    ) -> None:
        """Without project_id the task goes to the Inbox: the team's label is not one of it."""
        response = await client.post(
            TASKS, json={"title": "x", "label_ids": [label_id]}, headers=team.headers["editor"]
        )
        assert_problem(response, 422, loc=["body", "label_ids", 0])

    @pytest.mark.parametrize("field", ["assignee_ids", "label_ids"])
    async def test_a_repeated_id_is_422_at_the_repetition(
        self, client: httpx.AsyncClient, team: Team, label_id: int, field: str
    ) -> None:
        value = team.users["viewer"].id if field == "assignee_ids" else label_id
        response = await client.post(
            TASKS,
            json={"title": "x", "project_id": team.project_id, field: [value, value]},
            headers=team.headers["editor"],
        )
        assert_problem(response, 422, loc=["body", field, 1])

    @pytest.mark.parametrize(
        ("field", "bound"), [("assignee_ids", TASK_ASSIGNEES_MAX), ("label_ids", TASK_LABELS_MAX)]
    )
    async def test_more_than_the_bound_is_422(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession, field: str, bound: int
    ) -> None:
        before = await count_tasks(session, team.project_id)
        response = await client.post(
            TASKS,
            json={"title": "x", "project_id": team.project_id, field: list(range(1, bound + 2))},
            headers=team.headers["editor"],
        )
        assert_problem(response, 422, loc=["body", field])
        assert await count_tasks(session, team.project_id) == before

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"owner_id": 1}, ["body", "owner_id"]),
            ({"version": 7}, ["body", "version"]),
            ({"project_id": "1"}, ["body", "project_id"]),
            ({"project_id": 0}, ["body", "project_id"]),
            ({"project_id": 2**63}, ["body", "project_id"]),
            ({"project_id": 1.5}, ["body", "project_id"]),
            ({"assignee_ids": "1"}, ["body", "assignee_ids"]),
            ({"assignee_ids": [True]}, ["body", "assignee_ids", 0]),
            ({"assignee_ids": [1, -1]}, ["body", "assignee_ids", 1]),
            ({"label_ids": [None]}, ["body", "label_ids", 0]),
            ({"remind_at": "tomorrow"}, ["body", "remind_at"]),
            ({"remind_at": "2030-01-01T00:00:00"}, ["body", "remind_at"]),
        ],
    )
    async def test_malformed_bodies_are_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        body: dict[str, Any],
        loc: list[Any],
    ) -> None:
        before = await count_tasks(session, await inbox_id(session, team.users["editor"]))
        response = await client.post(
            TASKS, json={"title": "x", **body}, headers=team.headers["editor"]
        )
        assert_problem(response, 422, loc=loc)
        assert await count_tasks(session, await inbox_id(session, team.users["editor"])) == before

    async def test_the_edge_timestamps_round_trip(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        """The first instant is stored as -infinity on PostgreSQL; the last, sent to the
        microsecond, is kept to the millisecond, as it is shown."""
        for value, shown in (
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999Z"),
        ):
            task = await create(client, team.headers["editor"], remind_at=value, due_at=value)
            assert (task["remind_at"], task["due_at"]) == (shown, shown)
            assert (await read(client, team.headers["editor"], task["id"]))["remind_at"] == shown

    async def test_a_create_refused_by_a_membership_that_came_back_is_a_409_to_resend(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The insert found the caller no member, and the read that tells why finds them a
        member, at every start (removed and added back, again and again): nothing was
        written, and after three starts the answer is the 409 of any write that met a
        concurrent one, with `Retry-After` (it was a bare `conflict` without it, at once).
        The insert's refusal is what the test makes."""

        async def refused(*_args: Any, **_kwargs: Any) -> None:
            return None

        monkeypatch.setattr(statements_of_tasks, "insert_into_project", refused)
        before = await count_tasks(session, team.project_id)
        response = await client.post(
            TASKS,
            json={"title": "x", "project_id": team.project_id},
            headers=team.headers["editor"],
        )
        problem = assert_problem(response, 409)
        assert problem["type"].endswith(":concurrent-update")
        assert response.headers["retry-after"] == "1"
        assert await count_tasks(session, team.project_id) == before

    async def test_a_create_refused_by_a_change_gone_at_once_is_made(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The insert met the project in the trash (or the caller not yet a member), and by
        the read that tells why it was restored (or they had joined): the create is made
        again, and answers 201, as it would have after the change. It was a 409 (a
        black-box run, 2026-12-07: 26 of 150 creates sent beside a restore)."""
        calls = refused_at_first(monkeypatch, statements_of_tasks, "insert_into_project")
        before = await count_tasks(session, team.project_id)
        response = await client.post(
            TASKS,
            json={"title": "After the restore", "project_id": team.project_id},
            headers=team.headers["editor"],
        )
        assert response.status_code == 201, response.text
        assert calls == ["refused", "made"]
        assert await count_tasks(session, team.project_id) == before + 1

    async def test_an_idempotency_key_creates_once(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession, label_id: int
    ) -> None:
        body = {
            "title": "Once",
            "project_id": team.project_id,
            "assignee_ids": ids_of(team, "viewer"),
            "label_ids": [label_id],
        }
        headers = {**team.headers["editor"], "Idempotency-Key": "create-once-1"}
        before = await count_tasks(session, team.project_id)

        first = await client.post(TASKS, json=body, headers=headers)
        again = await client.post(TASKS, json=body, headers=headers)
        other = await client.post(TASKS, json={**body, "title": "Twice"}, headers=headers)

        assert first.status_code == again.status_code == 201, (first.text, again.text)
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["etag"] == first.headers["etag"]
        assert first.json()["assignee_ids"] == ids_of(team, "viewer")
        assert_problem(other, 422, loc=["header", "Idempotency-Key"])
        assert await count_tasks(session, team.project_id) == before + 1

    async def test_an_idempotent_create_that_fails_creates_nothing(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        body = {
            "title": "x",
            "project_id": team.project_id,
            "assignee_ids": ids_of(team, "outsider"),
        }
        headers = {**team.headers["editor"], "Idempotency-Key": "create-fails-1"}
        before = await count_tasks(session, team.project_id)
        for _ in range(2):  # the failure is not stored: the retry is checked again
            response = await client.post(TASKS, json=body, headers=headers)
            assert_problem(response, 422, loc=["body", "assignee_ids", 0])
        assert await count_tasks(session, team.project_id) == before


# --- read -------------------------------------------------------------------------------------


class TestRead:
    @pytest.mark.parametrize("who", ["owner", "admin", "editor", "commenter", "viewer"])
    async def test_every_member_reads_it(
        self, client: httpx.AsyncClient, team: Team, shared_task: dict[str, Any], who: str
    ) -> None:
        response = await client.get(task_url(shared_task["id"]), headers=team.headers[who])
        assert response.status_code == 200, response.text
        assert response.json() == shared_task
        assert response.headers["etag"] == f'"{shared_task["version"]}"'

    async def test_if_none_match_is_304(
        self, client: httpx.AsyncClient, team: Team, shared_task: dict[str, Any]
    ) -> None:
        response = await client.get(
            task_url(shared_task["id"]),
            headers={**team.headers["viewer"], "If-None-Match": f'W/"{shared_task["version"]}"'},
        )
        assert response.status_code == 304
        assert response.headers["etag"] == f'"{shared_task["version"]}"'
        assert response.content == b""

    async def test_an_outsider_gets_the_404_of_a_missing_id(
        self, client: httpx.AsyncClient, team: Team, shared_task: dict[str, Any]
    ) -> None:
        hidden = await client.get(task_url(shared_task["id"]), headers=team.headers["outsider"])
        missing = await client.get(task_url(10**12), headers=team.headers["outsider"])
        assert comparable(assert_problem(hidden, 404)) == comparable(assert_problem(missing, 404))

    async def test_a_trashed_task_is_404(
        self, client: httpx.AsyncClient, team: Team, shared_task: dict[str, Any]
    ) -> None:
        deleted = await client.delete(task_url(shared_task["id"]), headers=team.headers["editor"])
        assert deleted.status_code == 204
        assert_problem(
            await client.get(task_url(shared_task["id"]), headers=team.headers["viewer"]), 404
        )

    async def test_a_task_of_a_trashed_project_is_404(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        shared_task: dict[str, Any],
    ) -> None:
        await session.execute(
            update(Project).where(Project.id == team.project_id).values(deleted_at=utcnow())
        )
        await session.commit()
        assert_problem(
            await client.get(task_url(shared_task["id"]), headers=team.headers["owner"]), 404
        )

    async def test_a_member_removed_no_longer_reads_it(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        shared_task: dict[str, Any],
    ) -> None:
        """Removal takes effect on the very next request, with the same token."""
        member = await session.get(ProjectMember, (team.project_id, team.users["viewer"].id))
        assert member is not None
        await session.delete(member)
        await session.commit()
        assert_problem(
            await client.get(task_url(shared_task["id"]), headers=team.headers["viewer"]), 404
        )

    @pytest.mark.parametrize("path_id", ["0", "-1", "01", "x", "1.0", str(2**63)])
    @pytest.mark.parametrize(
        ("method", "suffix"),
        [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/restore")],
    )
    async def test_malformed_path_ids_are_422(
        self, client: httpx.AsyncClient, team: Team, path_id: str, method: str, suffix: str
    ) -> None:
        response = await client.request(
            method,
            f"{TASKS}/{path_id}{suffix}",
            json={"title": "x"} if method == "PATCH" else None,
            headers=team.headers["owner"],
        )
        assert_problem(response, 422, loc=["path", "task_id"])

    async def test_the_document_matches_its_schema(self) -> None:
        """The routes build the JSON by hand (`project_task_json`); the schema OpenAPI shows
        (`ProjectTaskRead`) must say the same."""
        now = utcnow()
        task = TaskRecord(
            id=7,
            project_id=3,
            title="t",
            description=None,
            status="done",
            priority=4,
            due_at=now,
            created_at=now,
            updated_at=now,
            completed_at=now,
            deleted_at=None,
            version=2,
            remind_at=now,
            creator_id=1,
        )
        found = TaskDetail(task, (2, 5), (9,))
        document = project_task_json(found.task, found.assignee_ids, found.label_ids)
        as_schema = ProjectTaskRead.model_validate(
            task._asdict() | {"assignee_ids": [2, 5], "label_ids": [9]}
        ).model_dump(mode="json")
        assert document == as_schema


# --- outsiders, on every method ----------------------------------------------------------------


class TestOutsiders:
    @pytest.mark.parametrize("if_match", [None, '"1"', '"7"', "*"])
    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("PATCH", "", {"title": "mine"}),
            ("PATCH", "", {}),
            ("PATCH", "", {"assignee_ids": []}),
            ("DELETE", "", None),
            ("POST", "/restore", None),
        ],
    )
    async def test_every_method_is_the_404_of_a_missing_id(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        shared_task: dict[str, Any],
        if_match: str | None,
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
    ) -> None:
        headers = dict(team.headers["outsider"])
        if if_match is not None:
            headers["If-Match"] = if_match
        before = await stored(session, shared_task["id"])

        hidden = await client.request(
            method, f"{task_url(shared_task['id'])}{suffix}", json=body, headers=headers
        )
        missing = await client.request(
            method, f"{task_url(10**12)}{suffix}", json=body, headers=headers
        )

        assert comparable(assert_problem(hidden, 404)) == comparable(assert_problem(missing, 404))
        assert await stored(session, shared_task["id"]) == before


# --- the same task in v1 -----------------------------------------------------------------------


class TestWithV1:
    async def test_an_inbox_task_is_the_same_task_in_both(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        headers = team.headers["editor"]
        v1 = await client.post(V1_TASKS, json={"title": "Old client"}, headers=headers)
        assert v1.status_code == 201
        v2 = await client.get(task_url(v1.json()["id"]), headers=headers)

        assert v2.status_code == 200
        assert v2.headers["etag"] == v1.headers["etag"]
        assert {k: v for k, v in v2.json().items() if k in TASK_FIELDS} == v1.json()
        assert v2.json()["project_id"] == await inbox_id(session, team.users["editor"])
        # A v1 task does not gain the v2 fields.
        assert set(v1.json()) == TASK_FIELDS

    async def test_etags_work_across_versions(self, client: httpx.AsyncClient, team: Team) -> None:
        headers = team.headers["editor"]
        task = await create(client, headers)
        v1_tag = (await client.get(f"{V1_TASKS}/{task['id']}", headers=headers)).headers["etag"]

        # A v1 tag as v2's If-Match, then the v2 tag as v1's.
        patched = await client.patch(
            task_url(task["id"]), json={"title": "v2"}, headers={**headers, "If-Match": v1_tag}
        )
        assert patched.status_code == 200, patched.text
        stale_in_v1 = await client.patch(
            f"{V1_TASKS}/{task['id']}",
            json={"title": "v1"},
            headers={**headers, "If-Match": v1_tag},
        )
        assert_problem(stale_in_v1, 412)
        in_v1 = await client.patch(
            f"{V1_TASKS}/{task['id']}",
            json={"title": "v1"},
            headers={**headers, "If-Match": patched.headers["etag"]},
        )
        assert in_v1.status_code == 200, in_v1.text
        assert in_v1.json()["version"] == 3
        assert (await read(client, headers, task["id"]))["title"] == "v1"

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("PATCH", "", {"title": "v1"}),
            ("DELETE", "", None),
            ("POST", "/restore", None),
        ],
    )
    async def test_a_task_outside_the_inbox_is_404_in_v1(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        shared_task: dict[str, Any],
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
    ) -> None:
        before = await stored(session, shared_task["id"])
        for who in ("owner", "editor"):
            response = await client.request(
                method,
                f"{V1_TASKS}/{shared_task['id']}{suffix}",
                json=body,
                headers=team.headers[who],
            )
            assert_problem(response, 404)
        assert await stored(session, shared_task["id"]) == before
        listed = await client.get(V1_TASKS, headers=team.headers["editor"])
        assert shared_task["id"] not in [task["id"] for task in listed.json()["items"]]

    async def test_v1_refuses_the_v2_fields(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.post(
            V1_TASKS,
            json={"title": "x", "project_id": 1, "remind_at": None},
            headers=team.headers["editor"],
        )
        assert_problem(response, 422, loc=["body", "project_id"])


# --- round trips ------------------------------------------------------------------------------


class TestOneStatementPerRequest:
    """A v2 read, a create without links and a change of fields are one statement each on
    PostgreSQL, assignees and labels included (their ids come with the task)."""

    async def test_hot_routes(
        self, committing_client: httpx.AsyncClient, sent: Counter[str]
    ) -> None:
        client = committing_client
        headers = await register(client)
        task = await create(client, headers)

        async def read_it() -> httpx.Response:
            return await client.get(task_url(task["id"]), headers=headers)

        async def create_one() -> httpx.Response:
            return await client.post(TASKS, json={"title": "new"}, headers=headers)

        async def conditional_update() -> httpx.Response:
            current = await read_it()
            sent.clear()
            return await client.patch(
                task_url(task["id"]),
                json={"title": f"v{current.json()['version']}"},
                headers={**headers, "If-Match": current.headers["etag"]},
            )

        for name, call, status in (
            ("read", read_it, 200),
            ("create", create_one, 201),
            ("conditional update", conditional_update, 200),
        ):
            assert (await call()).status_code == status  # prepares what it needs
            sent.clear()
            response = await call()
            assert response.status_code == status, response.text
            assert statements(sent) == {"statement": 1}, (name, dict(sent))


class TestOneTransactionOnSqlite:
    """On SQLite a change of a task is one transaction (the task as it was, the UPDATE, its
    event), and the request sends nothing once it has committed. A statement after the
    commit waits for the database's one write lock like any other (`BEGIN IMMEDIATE`), and
    under many writers can time out: the client got a 503 for a change that was made, and a
    retry made it twice. Before, every change of a task other than the first in the table
    was read again after its commit (a subquery of its RETURNING compared the wrong row)."""

    async def test_nothing_is_sent_after_the_commit(
        self, backend: str, engine: AsyncEngine, committing_client: httpx.AsyncClient
    ) -> None:
        if backend != "sqlite":
            pytest.skip("SQLite's transactions (PostgreSQL's statements: TestOneStatement...)")
        client = committing_client
        headers = await register(client)
        first, task = [await create(client, headers, title=f"t{n}") for n in range(2)]
        for version in range(2, 6):  # the first task's version far from the other's
            patched = await client.patch(
                task_url(first["id"]), json={"title": f"v{version}"}, headers=headers
            )
            assert patched.status_code == 200, patched.text
        sent: list[str] = []

        def on_statement(*args: Any) -> None:
            sent.append(str(args[2]).split()[0].upper())

        def on_commit(_connection: Any) -> None:
            sent.append("COMMIT")

        for body in ({"title": "changed"}, {"title": "changed"}, {"status": "done"}):
            sent.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", on_statement)
            event.listen(engine.sync_engine, "commit", on_commit)
            try:
                response = await client.patch(task_url(task["id"]), json=body, headers=headers)
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", on_statement)
                event.remove(engine.sync_engine, "commit", on_commit)
            assert response.status_code == 200, response.text
            assert sent.count("COMMIT") == 1, sent
            assert sent[-1] == "COMMIT", sent
        assert response.json()["status"] == "done"
        assert response.json()["version"] == task["version"] + 2
