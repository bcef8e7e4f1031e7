"""`GET /api/v2/tasks`: the tasks of every project the caller is a member of, or of those named
(spec api-v2 section 5, Listing): v1's filters, sorts and cursors, plus `project_id`,
`assignee` and `label_id`; walks that return each task once while tasks and memberships
change; and hostile parameters.

The team (tests/api/v2/conftest.py) shares "Launch"; each member also has an Inbox, and the
outsider a project of their own. Tasks, assignees, labels and memberships are written straight
into the database (the `session` fixture shares the test's transaction with the client), so
that keys are exactly what each test needs; expected orders are computed here from them.
Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import ProjectRole
from app.models.label import Label, TaskLabel
from app.models.project import Project, ProjectMember
from app.models.task import Task, TaskAssignee, TaskPriority
from app.models.user import User
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team, add_project
from tests.support import SORTS, TASK_FIELDS, assert_problem, forged, inbox_id

TASKS = f"{V2}/tasks"
V1_TASKS = "/api/v1/tasks"
V2_FIELDS = TASK_FIELDS | {"project_id", "assignee_ids", "label_ids", "remind_at"}
LINK_NEXT = re.compile(r'^<([^<>]+)>; rel="next"$')
BASE = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)

Params = dict[str, Any]


def at(ms: int = 0, *, days: int = 0) -> datetime:
    return BASE + timedelta(days=days, milliseconds=ms)


@dataclass(frozen=True, slots=True)
class Row:
    """What a test knows about a task it inserted."""

    id: int
    project_id: int
    status: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime


async def insert_tasks(
    session: AsyncSession, project_id: int, specs: Iterable[dict[str, Any]]
) -> list[Row]:
    """One task per spec in `project_id`, in order; unset fields get plain defaults."""
    tasks = []
    for number, spec in enumerate(specs, start=1):
        values: dict[str, Any] = {
            "title": f"Task {number}",
            "description": None,
            "status": "todo",
            "priority": "medium",
            "due_at": None,
            "created_at": at(number),
            "deleted_at": None,
            **spec,
        }
        values.setdefault("updated_at", values["created_at"])
        values["priority"] = TaskPriority.from_label(values["priority"]).value
        tasks.append(Task(project_id=project_id, version=1, **values))
    session.add_all(tasks)
    await session.flush()
    rows = [
        Row(t.id, t.project_id, t.status, t.priority, t.due_at, t.created_at, t.updated_at)
        for t in tasks
    ]
    await session.commit()
    return rows


async def assign(session: AsyncSession, task_id: int, *users: User) -> None:
    session.add_all(TaskAssignee(task_id=task_id, user_id=user.id) for user in users)
    await session.commit()


async def add_label(session: AsyncSession, project_id: int, name: str) -> int:
    label = Label(project_id=project_id, name=name, color="#112233", created_at=at())
    session.add(label)
    await session.commit()
    return label.id


async def tag(session: AsyncSession, task_id: int, *label_ids: int) -> None:
    session.add_all(TaskLabel(task_id=task_id, label_id=label_id) for label_id in label_ids)
    await session.commit()


async def remove_member(session: AsyncSession, project_id: int, user: User) -> None:
    await session.execute(
        delete(ProjectMember).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user.id
        )
    )
    await session.commit()


def expected_order(rows: Iterable[Row], sort: str) -> list[int]:
    """The contract's order: (key, id) in the sort's direction; no due date last either way."""
    descending = sort.startswith("-")
    field = sort.removeprefix("-")
    if field == "due_at":
        dated = sorted((r for r in rows if r.due_at), key=lambda r: (r.due_at, r.id))
        undated = sorted((r for r in rows if r.due_at is None), key=lambda r: r.id)
        if descending:
            dated.reverse()
            undated.reverse()
        return [r.id for r in dated + undated]
    ordered = sorted(rows, key=lambda r: (getattr(r, field), r.id), reverse=descending)
    return [r.id for r in ordered]


async def ok_page(client: httpx.AsyncClient, headers: Headers, **params: Any) -> dict[str, Any]:
    response = await client.get(TASKS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"items", "next_cursor"}
    return body


async def listed_ids(client: httpx.AsyncClient, headers: Headers, **params: Any) -> list[int]:
    """Every id of a one-page listing (the page must be the last one)."""
    body = await ok_page(client, headers, limit=100, **params)
    assert body["next_cursor"] is None
    return [item["id"] for item in body["items"]]


async def walk(
    client: httpx.AsyncClient,
    headers: Headers,
    params: Params,
    *,
    between_pages: Callable[[int, list[int]], Awaitable[None]] | None = None,
    max_pages: int = 200,
) -> list[int]:
    """Follow the cursors to the end: the ids in the order listed (each page checked)."""
    limit = int(params.get("limit", 20))
    seen: list[int] = []
    cursor: str | None = None
    for page_number in range(max_pages):
        query = dict(params) if cursor is None else {**params, "cursor": cursor}
        response = await client.get(TASKS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        page_ids = [item["id"] for item in body["items"]]
        seen.extend(page_ids)
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            return seen
        assert page_ids, "a page with a next cursor must not be empty"
        assert LINK_NEXT.match(response.headers["link"])
        if between_pages is not None:
            await between_pages(page_number, page_ids)
    pytest.fail(f"the walk did not end within {max_pages} pages")


# --- the board: tasks in Launch, in Inboxes, in the outsider's project -------------------


# (created ms, updated ms, due day or None, priority): ties in every key, an id order that
# matches no sort; spread over two projects so that every walk alternates between them.
SPECS: list[tuple[int, int, int | None, str]] = [
    (3, 1, None, "medium"),
    (1, 4, 2, "urgent"),
    (3, 4, 1, "low"),
    (0, 2, None, "high"),
    (1, 1, 2, "medium"),
    (2, 0, 3, "urgent"),
    (3, 3, None, "low"),
    (0, 4, 1, "high"),
    (2, 2, 2, "medium"),
    (1, 0, None, "urgent"),
    (2, 3, 3, "low"),
    (0, 1, 1, "medium"),
]


@dataclass
class Board:
    team: Team
    launch: list[Row]  # the team's shared project
    inbox: list[Row]  # the viewer's Inbox
    others: list[Row]  # the outsider's project and the editor's Inbox: never the viewer's
    outsiders_project: int
    viewers_inbox: int

    @property
    def viewers(self) -> list[Row]:
        return self.launch + self.inbox


def _spec(n: int, created: int, updated: int, due: int | None, priority: str) -> dict[str, Any]:
    return {
        "title": f"Spec {n}",
        "status": ("todo", "in_progress", "done")[n % 3],
        "created_at": at(created),
        "updated_at": at(updated),
        "due_at": None if due is None else at(days=due),
        "priority": priority,
    }


@pytest.fixture
async def board(session: AsyncSession, team: Team) -> Board:
    specs = [_spec(n, *values) for n, values in enumerate(SPECS)]
    launch = await insert_tasks(session, team.project_id, specs[0::2])
    viewers_inbox = await inbox_id(session, team.users["viewer"])
    inbox = await insert_tasks(session, viewers_inbox, specs[1::2])
    outsiders_project = await add_project(
        session, {team.users["outsider"]: ProjectRole.OWNER}, name="Secret"
    )
    # Same keys as the viewer's tasks, so that they would land in the middle of every walk.
    others = await insert_tasks(session, outsiders_project, specs[:5])
    editors_inbox = await inbox_id(session, team.users["editor"])
    others += await insert_tasks(session, editors_inbox, specs[5:9])
    # Trash in every project: never in a live listing.
    for project_id in (team.project_id, viewers_inbox, outsiders_project):
        await insert_tasks(
            session, project_id, [{"title": "Trashed", "created_at": at(2), "deleted_at": at(9)}]
        )
    return Board(team, launch, inbox, others, outsiders_project, viewers_inbox)


# --- what a member sees -------------------------------------------------------------------


class TestScope:
    async def test_every_live_task_of_every_project_of_the_caller(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        listed = await listed_ids(client, board.team.headers["viewer"])
        assert listed == expected_order(board.viewers, "-created_at")

    async def test_items_are_v2_task_objects(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        team = board.team
        task = board.launch[0]
        await assign(session, task.id, team.users["viewer"], team.users["owner"])
        labels = [await add_label(session, team.project_id, name) for name in ("b", "a")]
        await tag(session, task.id, *labels)
        await session.execute(update(Task).where(Task.id == task.id).values(remind_at=at(days=1)))
        await session.commit()

        body = await ok_page(client, team.headers["viewer"], limit=100)
        items = {item["id"]: item for item in body["items"]}
        for item in items.values():
            assert set(item) == V2_FIELDS
        shown = items[task.id]
        assert shown["project_id"] == team.project_id
        assert shown["assignee_ids"] == sorted([team.users["viewer"].id, team.users["owner"].id])
        assert shown["label_ids"] == sorted(labels)
        assert shown["remind_at"] == "2030-06-02T12:00:00.000Z"
        other = items[board.inbox[0].id]
        assert other["project_id"] == board.viewers_inbox
        assert (other["assignee_ids"], other["label_ids"], other["remind_at"]) == ([], [], None)

    async def test_outsider_sees_nothing_of_the_teams_projects(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        outsiders = [r for r in board.others if r.project_id == board.outsiders_project]
        assert await listed_ids(client, board.team.headers["outsider"]) == expected_order(
            outsiders, "-created_at"
        )
        trash = await listed_ids(client, board.team.headers["outsider"], deleted="true")
        assert len(trash) == 1
        assert not {r.id for r in board.viewers} & set(trash)

    async def test_every_role_lists_the_shared_project(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        launch = expected_order(board.launch, "-created_at")
        for who in ("owner", "admin", "editor", "commenter", "viewer"):
            listed = await listed_ids(
                client, board.team.headers[who], project_id=board.team.project_id
            )
            assert listed == launch, who

    async def test_trash_of_every_project_viewers_too(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        trashed = await listed_ids(client, board.team.headers["viewer"], deleted="true")
        assert len(trashed) == 2  # Launch's and the Inbox's, not the outsider's
        projects = {
            item["project_id"]
            for item in (
                await ok_page(client, board.team.headers["viewer"], deleted="true", limit=100)
            )["items"]
        }
        assert projects == {board.team.project_id, board.viewers_inbox}
        assert not set(trashed) & {r.id for r in board.viewers}

    async def test_a_trashed_project_lists_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        await session.execute(
            update(Project).where(Project.id == board.team.project_id).values(deleted_at=at())
        )
        await session.commit()
        headers = board.team.headers["viewer"]
        assert await listed_ids(client, headers) == expected_order(board.inbox, "-created_at")
        assert len(await listed_ids(client, headers, deleted="true")) == 1
        response = await client.get(
            TASKS, params={"project_id": board.team.project_id}, headers=headers
        )
        assert_problem(response, 422, loc=["query", "project_id"])

    async def test_v1_still_lists_the_inbox_only(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        response = await client.get(
            V1_TASKS, params={"limit": 100}, headers=board.team.headers["viewer"]
        )
        assert response.status_code == 200
        items = response.json()["items"]
        assert [item["id"] for item in items] == expected_order(board.inbox, "-created_at")
        assert set(items[0]) == TASK_FIELDS

    async def test_unauthenticated_or_revoked_is_401(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        response = await client.get(TASKS)
        assert_problem(response, 401)
        viewer = board.team.users["viewer"]
        headers = board.team.headers["viewer"]
        await session.execute(
            update(User).where(User.id == viewer.id).values(token_version=User.token_version + 1)
        )
        await session.commit()
        for params in ({}, {"project_id": board.team.project_id}, {"deleted": "true"}):
            assert_problem(await client.get(TASKS, params=params, headers=headers), 401)


# --- project_id ---------------------------------------------------------------------------


class TestProjectFilter:
    async def test_one_project(self, client: httpx.AsyncClient, board: Board) -> None:
        headers = board.team.headers["viewer"]
        listed = await listed_ids(client, headers, project_id=board.team.project_id)
        assert listed == expected_order(board.launch, "-created_at")
        inbox = await listed_ids(client, headers, project_id=board.viewers_inbox)
        assert inbox == expected_order(board.inbox, "-created_at")

    @pytest.mark.parametrize("spelling", ["{a},{b}", "{b},{a}", "{a}, {b}", "{a},{b},{a}"])
    async def test_several_projects_comma_separated(
        self, client: httpx.AsyncClient, board: Board, spelling: str
    ) -> None:
        value = spelling.format(a=board.team.project_id, b=board.viewers_inbox)
        listed = await listed_ids(client, board.team.headers["viewer"], project_id=value)
        assert listed == expected_order(board.viewers, "-created_at")

    async def test_repeated_parameter_means_several(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        response = await client.get(
            f"{TASKS}?project_id={board.team.project_id}&project_id={board.viewers_inbox}"
            "&limit=100",
            headers=board.team.headers["viewer"],
        )
        assert response.status_code == 200
        ids = [item["id"] for item in response.json()["items"]]
        assert ids == expected_order(board.viewers, "-created_at")

    async def test_unseen_projects_are_422_alike(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        """Another team's project, another user's Inbox, a project that never existed, one
        in the trash: the same 422, also beside projects the caller does see."""
        trashed = await add_project(session, {board.team.users["viewer"]: ProjectRole.OWNER})
        await session.execute(update(Project).where(Project.id == trashed).values(deleted_at=at()))
        await session.commit()
        editors_inbox = await inbox_id(session, board.team.users["editor"])
        bodies = []
        for unseen in (board.outsiders_project, editors_inbox, 10**12, trashed):
            for value in (f"{unseen}", f"{board.team.project_id},{unseen}"):
                response = await client.get(
                    TASKS, params={"project_id": value}, headers=board.team.headers["viewer"]
                )
                body = assert_problem(response, 422, loc=["query", "project_id"])
                bodies.append({key: body[key] for key in ("type", "title", "detail", "errors")})
        assert all(body == bodies[0] for body in bodies)
        assert str(board.outsiders_project) not in str(bodies[0])

    @pytest.mark.parametrize(
        "value",
        [
            "",
            " ",
            "abc",
            "1,,2",
            ",1",
            "1,",
            "01",
            "+1",
            "-1",
            "0",
            "1.0",
            "1e3",
            "1;2",
            str(2**63),
            "9" * 30,
            "1\x00",
        ],
    )
    async def test_malformed_is_422(
        self, client: httpx.AsyncClient, board: Board, value: str
    ) -> None:
        response = await client.get(
            TASKS, params={"project_id": value}, headers=board.team.headers["viewer"]
        )
        assert_problem(response, 422, loc=["query", "project_id"])

    async def test_too_many_projects_is_422(self, client: httpx.AsyncClient, board: Board) -> None:
        headers = board.team.headers["viewer"]
        many = ",".join(str(n) for n in range(1, 102))
        response = await client.get(TASKS, params={"project_id": many}, headers=headers)
        assert_problem(response, 422, loc=["query", "project_id"])
        # A hundred is fine when every one is seen: the same one a hundred times is one.
        same = ",".join([str(board.team.project_id)] * 150)
        assert await listed_ids(client, headers, project_id=same) == expected_order(
            board.launch, "-created_at"
        )


# --- assignee and label_id ------------------------------------------------------------------


class TestAssigneeAndLabel:
    async def test_assignee_me_none_and_a_user(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        team = board.team
        viewer, owner = team.users["viewer"], team.users["owner"]
        await assign(session, board.launch[0].id, viewer)
        await assign(session, board.launch[1].id, viewer, owner)
        await assign(session, board.inbox[0].id, viewer)
        await assign(session, board.launch[2].id, owner)
        headers = team.headers["viewer"]
        mine = [board.launch[0], board.launch[1], board.inbox[0]]
        assigned = {board.launch[0].id, board.launch[1].id, board.inbox[0].id, board.launch[2].id}

        assert await listed_ids(client, headers, assignee="me") == expected_order(
            mine, "-created_at"
        )
        assert await listed_ids(client, headers, assignee=str(viewer.id)) == expected_order(
            mine, "-created_at"
        )
        assert await listed_ids(client, headers, assignee=str(owner.id)) == expected_order(
            [board.launch[1], board.launch[2]], "-created_at"
        )
        assert await listed_ids(client, headers, assignee="none") == expected_order(
            [r for r in board.viewers if r.id not in assigned], "-created_at"
        )
        # The owner's own view of "me": the same tasks, as the owner sees them.
        assert await listed_ids(client, team.headers["owner"], assignee="me") == expected_order(
            [board.launch[1], board.launch[2]], "-created_at"
        )

    async def test_assignee_in_none_of_the_projects_matches_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        outsider = board.team.users["outsider"]
        outsiders_task = next(r for r in board.others if r.project_id == board.outsiders_project)
        await assign(session, outsiders_task.id, outsider)
        headers = board.team.headers["viewer"]
        assert await listed_ids(client, headers, assignee=str(outsider.id)) == []
        assert await listed_ids(client, headers, assignee=str(10**12)) == []

    @pytest.mark.parametrize("value", ["", "you", "ME", "0", "01", "-1", "1.5", str(2**63)])
    async def test_malformed_assignee_is_422(
        self, client: httpx.AsyncClient, board: Board, value: str
    ) -> None:
        response = await client.get(
            TASKS, params={"assignee": value}, headers=board.team.headers["viewer"]
        )
        assert_problem(response, 422, loc=["query", "assignee"])

    async def test_label(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        team = board.team
        urgent = await add_label(session, team.project_id, "urgent")
        other = await add_label(session, team.project_id, "later")
        await tag(session, board.launch[0].id, urgent)
        await tag(session, board.launch[3].id, urgent, other)
        await tag(session, board.launch[4].id, other)
        headers = team.headers["viewer"]
        assert await listed_ids(client, headers, label_id=urgent) == expected_order(
            [board.launch[0], board.launch[3]], "-created_at"
        )
        # With a project that is not the label's: nothing, rather than an error.
        assert (
            await listed_ids(client, headers, label_id=urgent, project_id=board.viewers_inbox) == []
        )
        # With an assignee too.
        await assign(session, board.launch[3].id, team.users["viewer"])
        assert await listed_ids(client, headers, label_id=urgent, assignee="me") == [
            board.launch[3].id
        ]

    async def test_unseen_label_is_422_alike(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        secret = await add_label(session, board.outsiders_project, "secret")
        outsiders_task = next(r for r in board.others if r.project_id == board.outsiders_project)
        await tag(session, outsiders_task.id, secret)
        bodies = []
        for label_id in (secret, secret + 1000):
            response = await client.get(
                TASKS, params={"label_id": label_id}, headers=board.team.headers["viewer"]
            )
            body = assert_problem(response, 422, loc=["query", "label_id"])
            bodies.append({key: body[key] for key in ("type", "title", "detail", "errors")})
        assert bodies[0] == bodies[1]
        # The outsider, whose label it is, lists with it.
        assert await listed_ids(client, board.team.headers["outsider"], label_id=secret) == [
            outsiders_task.id
        ]

    async def test_unseen_project_and_label_together(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        response = await client.get(
            TASKS,
            params={"label_id": 10**12, "project_id": board.outsiders_project},
            headers=board.team.headers["viewer"],
        )
        body = assert_problem(response, 422, loc=["query", "project_id"])
        assert ["query", "label_id"] in [item["loc"] for item in body["errors"]]

    @pytest.mark.parametrize("value", ["", "x", "0", "01", "1,2", "-3", str(2**63)])
    async def test_malformed_label_is_422(
        self, client: httpx.AsyncClient, board: Board, value: str
    ) -> None:
        response = await client.get(
            TASKS, params={"label_id": value}, headers=board.team.headers["viewer"]
        )
        assert_problem(response, 422, loc=["query", "label_id"])


# --- v1's filters and sorts across projects ---------------------------------------------------


class TestFiltersAndSorts:
    @pytest.mark.parametrize("sort", SORTS)
    async def test_order_across_projects(
        self, client: httpx.AsyncClient, board: Board, sort: str
    ) -> None:
        headers = board.team.headers["viewer"]
        assert await listed_ids(client, headers, sort=sort) == expected_order(board.viewers, sort)

    @pytest.mark.parametrize(
        ("params", "keep"),
        [
            ({"status": "todo,done"}, lambda r: r.status in {"todo", "done"}),
            ({"priority": "urgent,low"}, lambda r: r.priority in {1, 4}),
            (
                {"due_after": "2030-06-02T12:00:00Z", "due_before": "2030-06-04T00:00:00Z"},
                lambda r: r.due_at is not None and at(days=1) <= r.due_at < at(days=2, ms=1),
            ),
            ({"q": "SPEC 1"}, lambda _: True),  # checked against titles below
        ],
        ids=["status", "priority", "due", "q"],
    )
    @pytest.mark.parametrize("sort", ["-created_at", "priority", "due_at", "-due_at"])
    async def test_v1_filters_walked(
        self,
        client: httpx.AsyncClient,
        board: Board,
        params: Params,
        keep: Callable[[Row], bool],
        sort: str,
    ) -> None:
        headers = board.team.headers["viewer"]
        everything = (await ok_page(client, headers, limit=100))["items"]
        titles = {item["id"]: item["title"] for item in everything}
        wanted = [r for r in board.viewers if keep(r)]
        if "q" in params:
            wanted = [r for r in wanted if "spec 1" in titles[r.id].lower()]
        assert wanted
        walked = await walk(client, headers, {**params, "sort": sort, "limit": 2})
        assert walked == expected_order(wanted, sort)


# --- walks ------------------------------------------------------------------------------------


class TestWalks:
    @pytest.mark.parametrize("sort", SORTS)
    async def test_every_task_exactly_once(
        self, client: httpx.AsyncClient, board: Board, sort: str
    ) -> None:
        walked = await walk(client, board.team.headers["viewer"], {"sort": sort, "limit": 3})
        assert walked == expected_order(board.viewers, sort)

    @pytest.mark.parametrize("sort", ["-created_at", "due_at", "-due_at", "priority"])
    async def test_exactly_once_while_tasks_and_memberships_change(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        board: Board,
        sort: str,
    ) -> None:
        """Between pages: tasks deleted (listed and not yet listed), created in both
        projects, moved from one project to the other, and the caller added to a project.
        Every task that was there all along and stayed is listed once, in order; nothing is
        listed twice; a task deleted before its page came up is not listed."""
        team = board.team
        viewer = team.users["viewer"]
        order = expected_order(board.viewers, sort)
        deleted: set[int] = set()
        deleted_unseen: set[int] = set()
        created: set[int] = set()
        moved: set[int] = set()
        joined = await add_project(session, {team.users["owner"]: ProjectRole.OWNER}, "Later")
        joined_tasks = await insert_tasks(
            session, joined, [_spec(n, *SPECS[n]) for n in range(0, 12, 3)]
        )
        listed_so_far: list[int] = []

        async def trash(task_id: int) -> None:
            await session.execute(update(Task).where(Task.id == task_id).values(deleted_at=at()))
            await session.commit()
            deleted.add(task_id)

        async def churn(page_number: int, page_ids: list[int]) -> None:
            listed_so_far.extend(page_ids)
            if page_number >= 3:
                return
            unseen = [i for i in order if i not in listed_so_far and i not in deleted | moved]
            await trash(page_ids[-1])  # the cursor's own task
            if len(unseen) > 3:
                await trash(unseen[1])
                deleted_unseen.add(unseen[1])
                # Moved to the other project (its keys unchanged): still listed once.
                task = next(r for r in board.viewers if r.id == unseen[2])
                target = (
                    board.viewers_inbox if task.project_id == team.project_id else (team.project_id)
                )
                await session.execute(
                    update(Task).where(Task.id == task.id).values(project_id=target)
                )
                await session.commit()
                moved.add(task.id)
            for project_id in (team.project_id, board.viewers_inbox):
                new = await insert_tasks(
                    session,
                    project_id,
                    [_spec(n, *SPECS[(n + page_number) % 12]) for n in range(3)],
                )
                created.update(r.id for r in new)
            if page_number == 1:
                session.add(
                    ProjectMember(
                        project_id=joined,
                        user_id=viewer.id,
                        role=ProjectRole.VIEWER.value,
                        added_at=at(),
                    )
                )
                await session.commit()

        walked = await walk(
            client, team.headers["viewer"], {"sort": sort, "limit": 3}, between_pages=churn
        )
        assert deleted_unseen
        assert moved
        assert len(walked) == len(set(walked)), "a task was listed twice"
        stayed = [i for i in order if i not in deleted]
        assert [i for i in walked if i in set(stayed)] == stayed
        assert not deleted_unseen & set(walked)
        assert set(walked) <= set(order) | created | {r.id for r in joined_tasks}

    async def test_a_removed_member_stops_seeing_the_project_on_the_next_request(
        self, client: httpx.AsyncClient, session: AsyncSession, board: Board
    ) -> None:
        team = board.team
        headers = team.headers["viewer"]
        params = {"sort": "created_at", "limit": 5}
        first = await ok_page(client, headers, **params)
        assert first["next_cursor"]
        assert {item["project_id"] for item in first["items"]} == {
            team.project_id,
            board.viewers_inbox,
        }
        await remove_member(session, team.project_id, team.users["viewer"])

        # The same token, the walk's next page: nothing of Launch any more.
        rest = await walk(client, headers, {**params, "cursor": first["next_cursor"]})
        launch = {r.id for r in board.launch}
        assert not launch & set(rest)
        assert rest == [
            i for i in expected_order(board.inbox, "created_at") if i not in first_ids(first)
        ]
        assert not launch & set(await listed_ids(client, headers))
        assert not launch & set(await listed_ids(client, headers, deleted="true"))
        response = await client.get(TASKS, params={"project_id": team.project_id}, headers=headers)
        assert_problem(response, 422, loc=["query", "project_id"])
        # The others still see it.
        assert await listed_ids(
            client, team.headers["commenter"], project_id=team.project_id
        ) == expected_order(board.launch, "-created_at")


def first_ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


# --- cursors and hostile parameters -----------------------------------------------------------


CURSOR_PARAMS: Params = {"sort": "due_at", "status": "todo,done", "limit": 2}


@pytest.fixture
async def issued(client: httpx.AsyncClient, board: Board) -> str:
    first = await ok_page(client, board.team.headers["viewer"], **CURSOR_PARAMS)
    assert first["next_cursor"]
    cursor: str = first["next_cursor"]
    return cursor


class TestCursors:
    async def test_link_fetched_as_is_returns_the_next_page(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        headers = board.team.headers["viewer"]
        params = {
            **CURSOR_PARAMS,
            "project_id": f"{board.viewers_inbox},{board.team.project_id}",
            "assignee": "none",
        }
        response = await client.get(TASKS, params=params, headers=headers)
        assert response.status_code == 200
        match = LINK_NEXT.match(response.headers["link"])
        assert match
        assert match.group(1).startswith(f"{TASKS}?")
        following = await client.get(match.group(1), headers=headers)
        assert following.status_code == 200
        wanted = expected_order(
            [r for r in board.viewers if r.status in {"todo", "done"}], "due_at"
        )
        assert first_ids(following.json()) == wanted[2:4]

    @pytest.mark.parametrize(
        "bad",
        ["hello", "a.b", ".", "", "x" * 2000, "AAAA.AAAA"],
    )
    async def test_tampered_or_foreign_cursor_is_422(
        self, client: httpx.AsyncClient, board: Board, issued: str, bad: str
    ) -> None:
        headers = board.team.headers["viewer"]
        for cursor in (bad, forged(issued)):
            response = await client.get(
                TASKS, params={**CURSOR_PARAMS, "cursor": cursor}, headers=headers
            )
            assert_problem(response, 422, loc=["query", "cursor"])

    @pytest.mark.parametrize(
        "changes",
        [
            {"sort": "-due_at"},
            {"status": "todo"},
            {"project_id": "{launch}"},
            {"project_id": "{launch},{inbox}"},
            {"assignee": "me"},
            {"assignee": "none"},
            {"label_id": "{label}"},
            {"deleted": "true"},
            {"q": "spec"},
        ],
        ids=lambda changes: "-".join(f"{k}={v}" for k, v in changes.items()),
    )
    async def test_cursor_with_other_filters_is_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        board: Board,
        issued: str,
        changes: dict[str, str],
    ) -> None:
        label = await add_label(session, board.team.project_id, "any")
        values = {"launch": board.team.project_id, "inbox": board.viewers_inbox, "label": label}
        params = {**CURSOR_PARAMS} | {k: v.format(**values) for k, v in changes.items()}
        response = await client.get(
            TASKS, params={**params, "cursor": issued}, headers=board.team.headers["viewer"]
        )
        assert_problem(response, 422, loc=["query", "cursor"], absent=[issued])

    async def test_the_same_projects_in_another_order_keep_the_cursor(
        self, client: httpx.AsyncClient, board: Board
    ) -> None:
        headers = board.team.headers["viewer"]
        a, b = board.team.project_id, board.viewers_inbox
        first = await ok_page(client, headers, **CURSOR_PARAMS, project_id=f"{a},{b}")
        rest = await ok_page(
            client,
            headers,
            **{**CURSOR_PARAMS, "limit": 100},
            project_id=f"{b},{a}",
            cursor=first["next_cursor"],
        )
        wanted = expected_order(
            [r for r in board.viewers if r.status in {"todo", "done"}], "due_at"
        )
        assert first_ids(rest) == wanted[2:]

    async def test_cursor_of_another_member_or_of_v1_is_422(
        self, client: httpx.AsyncClient, board: Board, issued: str
    ) -> None:
        team = board.team
        response = await client.get(
            TASKS, params={**CURSOR_PARAMS, "cursor": issued}, headers=team.headers["owner"]
        )
        assert_problem(response, 422, loc=["query", "cursor"])
        # v1's cursors and v2's are not interchangeable, even for the same query and caller.
        response = await client.get(
            V1_TASKS, params={**CURSOR_PARAMS, "cursor": issued}, headers=team.headers["viewer"]
        )
        assert_problem(response, 422, loc=["query", "cursor"])
        v1_first = await client.get(V1_TASKS, params=CURSOR_PARAMS, headers=team.headers["viewer"])
        v1_cursor = v1_first.json()["next_cursor"]
        assert v1_cursor
        response = await client.get(
            TASKS, params={**CURSOR_PARAMS, "cursor": v1_cursor}, headers=team.headers["viewer"]
        )
        assert_problem(response, 422, loc=["query", "cursor"])

    @pytest.mark.parametrize(
        "query",
        ["owner_id=1", "project=1", "assignee_id=1", "label=1", "labels=1", "project_ids=1"],
    )
    async def test_unknown_parameter_is_422(
        self, client: httpx.AsyncClient, board: Board, query: str
    ) -> None:
        response = await client.get(f"{TASKS}?{query}", headers=board.team.headers["viewer"])
        assert_problem(response, 422, loc=["query", query.split("=")[0]])

    @pytest.mark.parametrize("query", ["assignee=me&assignee=none", "label_id=1&label_id=2"])
    async def test_repeated_single_parameter_is_422(
        self, client: httpx.AsyncClient, board: Board, query: str
    ) -> None:
        response = await client.get(f"{TASKS}?{query}", headers=board.team.headers["viewer"])
        assert_problem(response, 422, loc=["query", query.split("=")[0]])
