"""Races on v2 task writes, with requests that really commit (`committing_client`).

What a user would notice:
- a member removed (or demoted) while they create a task: the task is refused, or created
  before the removal commits, never created after it. The removal is held open in a
  transaction of its own while the create is sent: the create waits for it (it reads the
  membership row `FOR SHARE`), and once the removal commits, it is refused; if the removal is
  rolled back instead, the task is created. PostgreSQL only: SQLite runs one writer at a
  time, so nothing can interleave there;
- the same for an assignee removed while someone assigns them;
- an editor's change of a task, create or label sent while the owner removes or demotes
  them, or trashes the project (holding the project's turn): it waits, and once the change
  commits it is refused with nothing written (PostgreSQL only, as above);
- two writers with the same `If-Match`: one 200, one 412, whatever they change (fields,
  assignees, labels), on SQLite and PostgreSQL;
- writers without `If-Match`, each changing the assignees: every one applied, each exactly
  one new version, none lost;
- a write that waited for another writer answers with the task as that writer left it,
  links included (not the links of the moment it started);
- a change or trash of a task that waited behind a move of the task into another project,
  from which the editor was removed (or demoted) meanwhile, is refused with nothing written;
  still a member there, it is made there.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import TextClause, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from app.core.roles import ProjectRole
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import comments as comment_statements
from app.db.statements import labels as label_statements
from app.db.statements import tasks as task_statements
from app.db.statements.turns import TURNS_MAX, TurnOf
from app.models.event import Event
from app.models.label import Label, TaskLabel
from app.models.project import Project, ProjectMember
from app.models.task import Task, TaskAssignee
from app.models.user import User
from app.schemas.user import UserCreate
from app.services import user as user_service
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2
from tests.api.v2.test_comments import comment_url, comments_url
from tests.api.v2.test_labels import label_url
from tests.api.v2.test_members import member_url, members_url
from tests.api.v2.test_tasks import TASKS, task_url
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD
from tests.support import assert_problem

TRIALS = 4
WRITERS = 6
# Long enough for a request that does not wait on a lock to have finished.
SETTLE_SECONDS = 0.5


@dataclass
class Crew:
    """A committed project with an owner, an editor and a viewer, and their headers."""

    project_id: int
    label_ids: list[int]
    ids: dict[str, int]
    headers: dict[str, Headers]


@pytest.fixture
async def crew(
    app: FastAPI,
    engine: AsyncEngine,
    committing_client: httpx.AsyncClient,
    auth_headers: Callable[[User], Headers],
) -> AsyncIterator[Crew]:
    users: dict[str, User] = {}
    async with Db.transaction_for(app.state.sessionmaker) as db:
        for who in ("owner", "editor", "viewer"):
            users[who] = await user_service.create_user(
                db,
                UserCreate(
                    email=f"{who}-{uuid.uuid4().hex[:8]}@example.com", password=TEST_PASSWORD
                ),
                rounds=BCRYPT_TEST_ROUNDS,
            )
        now = utcnow()
        project = Project(name="Race", created_at=now, updated_at=now, version=1)
        db.session.add(project)
        await db.session.flush()
        for who, role in (
            ("owner", ProjectRole.OWNER),
            ("editor", ProjectRole.EDITOR),
            ("viewer", ProjectRole.VIEWER),
        ):
            db.session.add(
                ProjectMember(
                    project_id=project.id, user_id=users[who].id, role=role.value, added_at=now
                )
            )
        labels = [
            Label(project_id=project.id, name=name, color="#123456", created_at=now)
            for name in ("one", "two")
        ]
        db.session.add_all(labels)
        await db.session.flush()
        crew = Crew(
            project.id,
            [label.id for label in labels],
            {who: user.id for who, user in users.items()},
            {who: auth_headers(user) for who, user in users.items()},
        )
    try:
        yield crew
    finally:
        # committing_client empties tasks and users (memberships go with them); the project
        # and its labels are this fixture's to remove.
        async with engine.begin() as connection:
            await connection.execute(delete(Project).where(Project.id == crew.project_id))


@pytest.fixture
def postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: nothing interleaves")


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


async def tasks_in(engine: AsyncEngine, project_id: int) -> int:
    async with engine.connect() as connection:
        found = await connection.scalar(
            select(func.count()).select_from(Task).where(Task.project_id == project_id)
        )
    return int(found or 0)


async def events_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Event)) or 0)


async def assignees_of(engine: AsyncEngine, task_id: int) -> list[int]:
    async with engine.connect() as connection:
        found = await connection.scalars(
            select(TaskAssignee.user_id).where(TaskAssignee.task_id == task_id)
        )
        return sorted(found)


async def new_task(client: httpx.AsyncClient, crew: Crew, **body: Any) -> dict[str, Any]:
    response = await client.post(
        TASKS,
        json={"title": "Race", "project_id": crew.project_id, **body},
        headers=crew.headers["editor"],
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def removal_of(crew: Crew, who: str) -> list[Any]:
    """What removing a member does (app.db.statements.members.remove): the membership first
    (its row lock is what a concurrent assignment waits for), then their assignments in the
    project."""
    return [
        delete(ProjectMember).where(
            ProjectMember.project_id == crew.project_id, ProjectMember.user_id == crew.ids[who]
        ),
        delete(TaskAssignee).where(
            TaskAssignee.user_id == crew.ids[who],
            TaskAssignee.task_id.in_(
                select(Task.id).where(Task.project_id == crew.project_id).scalar_subquery()
            ),
        ),
    ]


def demotion_of(crew: Crew, who: str) -> list[Any]:
    return [
        update(ProjectMember)
        .where(ProjectMember.project_id == crew.project_id, ProjectMember.user_id == crew.ids[who])
        .values(role=ProjectRole.VIEWER.value)
    ]


async def while_held(
    engine: AsyncEngine,
    statements: list[Any],
    request: Any,
    *,
    commit: bool,
) -> tuple[bool, httpx.Response]:
    """Run `statements` in a transaction, send `request` while it is open, then commit or
    roll it back: (whether the request was still waiting when it ended, its response)."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        for statement in statements:
            await connection.execute(statement)
        sent = asyncio.ensure_future(request)
        await asyncio.sleep(SETTLE_SECONDS)
        waiting = not sent.done()
        if commit:
            await transaction.commit()
        else:
            await transaction.rollback()
    return waiting, await asyncio.wait_for(sent, 30)


# --- a member removed while creating or assigning --------------------------------------------


@pytest.mark.usefixtures("postgresql_only")
class TestRemovedWhileCreating:
    @pytest.mark.parametrize("trial", range(2))
    async def test_the_create_waits_then_is_refused(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew, trial: int
    ) -> None:
        before = await tasks_in(engine, crew.project_id)
        waiting, response = await while_held(
            engine,
            removal_of(crew, "editor"),
            committing_client.post(
                TASKS,
                json={"title": f"Late {trial}", "project_id": crew.project_id},
                headers=crew.headers["editor"],
            ),
            commit=True,
        )
        assert waiting, "the create did not wait for the removal under way"
        # No longer a member: the project is one they may not see.
        assert_problem(response, 422, loc=["body", "project_id"])
        assert await tasks_in(engine, crew.project_id) == before

    async def test_a_removal_rolled_back_lets_the_create_through(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        before = await tasks_in(engine, crew.project_id)
        waiting, response = await while_held(
            engine,
            removal_of(crew, "editor"),
            committing_client.post(
                TASKS,
                json={"title": "Still here", "project_id": crew.project_id},
                headers=crew.headers["editor"],
            ),
            commit=False,
        )
        assert waiting
        assert response.status_code == 201, response.text
        assert await tasks_in(engine, crew.project_id) == before + 1

    async def test_a_demotion_under_way_is_waited_for(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        before = await tasks_in(engine, crew.project_id)
        waiting, response = await while_held(
            engine,
            demotion_of(crew, "editor"),
            committing_client.post(
                TASKS,
                json={"title": "Demoted", "project_id": crew.project_id},
                headers=crew.headers["editor"],
            ),
            commit=True,
        )
        assert waiting
        body = assert_problem(response, 403)
        assert (body["role"], body["required_role"]) == ("viewer", "editor")
        assert await tasks_in(engine, crew.project_id) == before

    async def test_a_create_with_links_waits_too(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        before = await tasks_in(engine, crew.project_id)
        waiting, response = await while_held(
            engine,
            removal_of(crew, "editor"),
            committing_client.post(
                TASKS,
                json={
                    "title": "Linked",
                    "project_id": crew.project_id,
                    "assignee_ids": [crew.ids["viewer"]],
                    "label_ids": crew.label_ids,
                },
                headers=crew.headers["editor"],
            ),
            commit=True,
        )
        assert waiting
        assert_problem(response, 422, loc=["body", "project_id"])
        assert await tasks_in(engine, crew.project_id) == before


@pytest.mark.usefixtures("postgresql_only")
class TestAssigneeRemovedWhileAssigning:
    async def test_the_assignment_waits_then_is_refused(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        task = await new_task(committing_client, crew)
        waiting, response = await while_held(
            engine,
            removal_of(crew, "viewer"),
            committing_client.patch(
                task_url(task["id"]),
                json={"assignee_ids": [crew.ids["owner"], crew.ids["viewer"]]},
                headers=crew.headers["editor"],
            ),
            commit=True,
        )
        assert waiting, "the assignment did not wait for the removal under way"
        assert_problem(response, 422, loc=["body", "assignee_ids", 1])
        assert await assignees_of(engine, task["id"]) == []
        after = await committing_client.get(task_url(task["id"]), headers=crew.headers["editor"])
        assert after.json()["version"] == task["version"]

    async def test_a_create_that_assigns_waits_then_is_refused(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        before = await tasks_in(engine, crew.project_id)
        waiting, response = await while_held(
            engine,
            removal_of(crew, "viewer"),
            committing_client.post(
                TASKS,
                json={
                    "title": "Assigned",
                    "project_id": crew.project_id,
                    "assignee_ids": [crew.ids["viewer"]],
                },
                headers=crew.headers["editor"],
            ),
            commit=True,
        )
        assert waiting
        assert_problem(response, 422, loc=["body", "assignee_ids", 0])
        assert await tasks_in(engine, crew.project_id) == before

    @pytest.mark.parametrize("delay", [0.0, 0.002, 0.005, 0.01, 0.02])
    async def test_an_assignment_and_a_removal_at_once_leave_no_assignment(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew, delay: float
    ) -> None:
        """In whichever order they meet: an assignment that got the membership row first
        holds it until it commits, and the removal then takes the assignment with it; one
        that came second finds no member (422)."""
        task = await new_task(committing_client, crew)
        assigned, removed = await asyncio.gather(
            committing_client.patch(
                task_url(task["id"]),
                json={"assignee_ids": [crew.ids["viewer"]]},
                headers=crew.headers["editor"],
            ),
            _remove_after(engine, removal_of(crew, "viewer"), delay=delay),
        )
        assert assigned.status_code in {200, 422}, assigned.text
        # Whatever the order, the removed member is not left assigned.
        assert await assignees_of(engine, task["id"]) == []


@pytest.mark.usefixtures("postgresql_only")
class TestAWriteThatWaited:
    async def test_answers_with_the_links_of_the_writer_it_waited_for(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """Another writer assigns the viewer (a new version) while a title change waits for
        it: the title change's answer is the task as it left it, the assignment included."""
        task = await new_task(committing_client, crew)
        waiting, response = await while_held(
            engine,
            [
                update(Task).where(Task.id == task["id"]).values(version=Task.version + 1),
                insert(TaskAssignee).values(task_id=task["id"], user_id=crew.ids["viewer"]),
            ],
            committing_client.patch(
                task_url(task["id"]), json={"title": "After"}, headers=crew.headers["editor"]
            ),
            commit=True,
        )
        assert waiting
        assert response.status_code == 200, response.text
        assert response.json()["version"] == task["version"] + 2
        assert response.json()["assignee_ids"] == [crew.ids["viewer"]]
        again = await committing_client.get(task_url(task["id"]), headers=crew.headers["editor"])
        assert again.json() == response.json()

    async def test_its_links_are_those_of_its_version_whatever_committed_since(
        self, app: FastAPI, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """It reads its links again after its commit, and a third writer may have committed
        in between (a black-box run: the links of another version in 14 of 5,676 answers).
        What the writes committed since changed is undone from them by their events: each
        version of the history reads back as the write that made it answered."""
        client = committing_client
        task = await new_task(client, crew)
        editor, viewer = crew.ids["editor"], crew.ids["viewer"]
        answered = {task["version"]: (task["assignee_ids"], task["label_ids"])}
        for body in (
            {"assignee_ids": [editor]},
            {"title": "Renamed"},
            {"label_ids": [crew.label_ids[0]]},
            {"assignee_ids": [editor, viewer], "label_ids": []},
            {"description": "Only a field"},
            {"label_ids": crew.label_ids, "assignee_ids": []},
        ):
            response = await client.patch(
                task_url(task["id"]), json=body, headers=crew.headers["editor"]
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            answered[answer["version"]] = (answer["assignee_ids"], answer["label_ids"])

        async with Db.transaction_for(app.state.sessionmaker) as db:
            read_back = {
                version: await task_statements.links_of_version(db, task["id"], version)
                for version in answered
            }
        assert read_back == {
            version: (tuple(assignees), tuple(labels))
            for version, (assignees, labels) in answered.items()
        }


@pytest.mark.usefixtures("postgresql_only")
class TestAWriteThatWaitedForAMove:
    """Another writer moves the task to a second project while an editor's change of it
    waits for that writer, and meanwhile the editor is removed from (or demoted in) the
    second project. The change must follow the removal: refused, nothing written. (Its
    statement's snapshot predates the removal, and read the editor's role in the second
    project from it: a black-box run saw such edits, and deletes, land after the removal in a
    third of the rounds where a move and a removal overlapped.) Still a member there, the
    change is made, in the task's new project."""

    @pytest.fixture
    async def second_project(self, engine: AsyncEngine, crew: Crew) -> AsyncIterator[int]:
        now = utcnow()
        async with engine.begin() as connection:
            project_id = await connection.scalar(
                insert(Project)
                .values(name="Second", created_at=now, updated_at=now, version=1)
                .returning(Project.id)
            )
            assert project_id is not None
            for who, role in (("owner", ProjectRole.OWNER), ("editor", ProjectRole.EDITOR)):
                await connection.execute(
                    insert(ProjectMember).values(
                        project_id=project_id, user_id=crew.ids[who], role=role.value, added_at=now
                    )
                )
        try:
            yield project_id
        finally:
            async with engine.begin() as connection:
                await connection.execute(delete(Task).where(Task.project_id == project_id))
                await connection.execute(delete(Project).where(Project.id == project_id))

    async def _while_moved(
        self,
        engine: AsyncEngine,
        task_id: int,
        to_project: int,
        request: Awaitable[httpx.Response],
        meanwhile: list[Any],
    ) -> httpx.Response:
        """The task moved to `to_project` in a transaction held open until `request` waits
        for it and `meanwhile` has committed."""
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(project_id=to_project, version=Task.version + 1)
            )
            sent = asyncio.ensure_future(request)
            await _until_a_request_waits_for_a_lock(engine)
            async with engine.begin() as other:
                for statement in meanwhile:
                    await other.execute(statement)
            await transaction.commit()
        return await asyncio.wait_for(sent, 30)

    @pytest.mark.parametrize("change", ["edit", "delete"])
    @pytest.mark.parametrize("how", ["removed", "demoted"])
    async def test_a_removal_from_the_new_project_meanwhile_refuses_it(
        self,
        engine: AsyncEngine,
        committing_client: httpx.AsyncClient,
        crew: Crew,
        second_project: int,
        change: str,
        how: str,
    ) -> None:
        task = await new_task(committing_client, crew)
        membership = [
            ProjectMember.project_id == second_project,
            ProjectMember.user_id == crew.ids["editor"],
        ]
        meanwhile: list[Any] = [
            delete(ProjectMember).where(*membership)
            if how == "removed"
            else update(ProjectMember).where(*membership).values(role=ProjectRole.VIEWER.value)
        ]
        request = (
            committing_client.patch(
                task_url(task["id"]), json={"title": "Late"}, headers=crew.headers["editor"]
            )
            if change == "edit"
            else committing_client.delete(task_url(task["id"]), headers=crew.headers["editor"])
        )
        events_before = await events_count(engine)

        response = await self._while_moved(engine, task["id"], second_project, request, meanwhile)

        assert_problem(response, 404 if how == "removed" else 403)
        async with engine.connect() as connection:
            title, deleted_at = (
                await connection.execute(
                    select(Task.title, Task.deleted_at).where(Task.id == task["id"])
                )
            ).one()
        assert (title, deleted_at) == (task["title"], None)
        assert await events_count(engine) == events_before  # the test's move writes none

    async def test_still_a_member_there_the_change_is_made_there(
        self,
        engine: AsyncEngine,
        committing_client: httpx.AsyncClient,
        crew: Crew,
        second_project: int,
    ) -> None:
        task = await new_task(committing_client, crew)
        response = await self._while_moved(
            engine,
            task["id"],
            second_project,
            committing_client.patch(
                task_url(task["id"]), json={"title": "Made"}, headers=crew.headers["editor"]
            ),
            [],
        )
        assert response.status_code == 200, response.text
        assert (response.json()["project_id"], response.json()["title"]) == (
            second_project,
            "Made",
        )
        assert response.json()["version"] == task["version"] + 2


def undone_before_the_diagnosis(
    monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine, module: Any, name: str, undo: Any
) -> None:
    """`module.name`, the read that tells why a write was refused, first commits `undo`: the
    change that refused the write is undone just before that read."""
    diagnose = getattr(module, name)

    async def undone_then_diagnosed(*args: Any, **kwargs: Any) -> Any:
        async with engine.begin() as connection:
            await connection.execute(undo)
        return await diagnose(*args, **kwargs)

    monkeypatch.setattr(module, name, undone_then_diagnosed)


class TestRefusedByAChangeUndoneMeanwhile:
    """A write refused by a change that is undone before the read that tells why (here the
    project trashed, and restored just before that read) is made again, as the client would
    do: 200, also with an If-Match that names the task's version, whose change was never the
    reason (it answered 412, "changed since the given tag", and a write of links 412 too)."""

    @pytest.mark.parametrize("body", [{"title": "Again"}, {"label_ids": []}])
    @pytest.mark.parametrize("tagged", [False, True])
    async def test_is_made_again(
        self,
        engine: AsyncEngine,
        committing_client: httpx.AsyncClient,
        crew: Crew,
        monkeypatch: pytest.MonkeyPatch,
        body: dict[str, Any],
        tagged: bool,
        backend: str,
    ) -> None:
        if "label_ids" in body and backend == "sqlite":
            pytest.skip(
                "SQLite: a write of links holds the one connection from its lock to the read "
                "that tells why, so no change can come between them (nor the test's restore)"
            )
        task = await new_task(committing_client, crew, label_ids=crew.label_ids)
        project = Project.id == crew.project_id
        undone_before_the_diagnosis(
            monkeypatch,
            engine,
            task_statements,
            "diagnose_role",
            update(Project).where(project).values(deleted_at=None),
        )
        async with engine.begin() as connection:
            await connection.execute(update(Project).where(project).values(deleted_at=utcnow()))
        headers = dict(crew.headers["editor"])
        if tagged:
            headers["If-Match"] = f'"{task["version"]}"'

        response = await committing_client.patch(task_url(task["id"]), json=body, headers=headers)

        assert response.status_code == 200, response.text
        assert response.json()["version"] == task["version"] + 1
        assert {key: response.json()[key] for key in body} == body


class TestLabelAndCommentWritesRefusedByADemotionUndoneMeanwhile:
    """A write of a label or of one's own comment refused because the writer was demoted, and
    promoted back before the read that tells why, is made again: 200. It answered 404, as if
    the label or comment were gone; a black-box run toggling a member's role saw that in a
    quarter of its writes on SQLite (a syncing client would drop the label)."""

    @pytest.mark.parametrize(
        ("method", "thing"),
        [("PATCH", "label"), ("DELETE", "label"), ("PATCH", "comment"), ("DELETE", "comment")],
    )
    async def test_is_made_again(
        self,
        method: str,
        thing: str,
        backend: str,
        engine: AsyncEngine,
        committing_client: httpx.AsyncClient,
        crew: Crew,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        if (method, thing, backend) == ("DELETE", "label", "sqlite"):
            pytest.skip(
                "SQLite: a label's deletion holds the one connection from its statement to the "
                "read that tells why (one transaction), so no change can come between them"
            )
        headers = crew.headers["editor"]
        if thing == "label":
            url, body, module = (
                label_url(crew.project_id, crew.label_ids[0]),
                {"name": "Renamed"},
                label_statements,
            )
        else:
            task = await new_task(committing_client, crew)
            comment = await committing_client.post(
                comments_url(task["id"]), json={"body": "Mine"}, headers=headers
            )
            assert comment.status_code == 201, comment.text
            url, body, module = (
                comment_url(task["id"], comment.json()["id"]),
                {"body": "Edited"},
                comment_statements,
            )
        editor = (ProjectMember.project_id == crew.project_id) & (
            ProjectMember.user_id == crew.ids["editor"]
        )
        undone_before_the_diagnosis(
            monkeypatch,
            engine,
            module,
            "diagnose",
            update(ProjectMember).where(editor).values(role=ProjectRole.EDITOR.value),
        )
        async with engine.begin() as connection:
            await connection.execute(*demotion_of(crew, "editor"))

        response = await committing_client.request(
            method, url, json=body if method == "PATCH" else None, headers=headers
        )

        after = await committing_client.get(url, headers=headers)
        if (method, thing) == ("DELETE", "label"):
            # Inside the request's one transaction, holding its turns: the 409 to send again
            # (nothing written), not a 404 for a label that is there.
            assert_problem(response, 409)
            assert after.status_code == 200, after.text
        elif method == "PATCH":
            assert response.status_code == 200, response.text
            assert after.json()[next(iter(body))] == next(iter(body.values()))
        else:
            assert response.status_code == 204, response.text
            assert_problem(after, 404)


async def _remove_after(engine: AsyncEngine, statements: list[Any], *, delay: float) -> None:
    await asyncio.sleep(delay)
    async with engine.begin() as connection:
        for statement in statements:
            await connection.execute(statement)


# --- writers with one ETag, and writers without ------------------------------------------------


class TestOneTagTwoWriters:
    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ({"title": "A"}, {"title": "B"}),
            ({"assignee_ids": "owner"}, {"assignee_ids": "viewer"}),
            ({"label_ids": 0}, {"title": "B", "label_ids": 1}),
            ({"title": "A"}, {"assignee_ids": "viewer"}),
        ],
        ids=["fields", "assignees", "labels", "mixed"],
    )
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_one_200_one_412(
        self,
        committing_client: httpx.AsyncClient,
        crew: Crew,
        trial: int,
        first: dict[str, Any],
        second: dict[str, Any],
    ) -> None:
        client = committing_client
        task = await new_task(client, crew, title=f"Tag {trial}")
        bodies = [_resolve(crew, body) for body in (first, second)]
        headers = {**crew.headers["editor"], "If-Match": f'"{task["version"]}"'}

        responses = await asyncio.gather(
            *(client.patch(task_url(task["id"]), json=body, headers=headers) for body in bodies)
        )

        assert statuses(list(responses)) == {200: 1, 412: 1}, [r.text for r in responses]
        [winner] = [r for r in responses if r.status_code == 200]
        for response in responses:
            if response.status_code == 412:
                assert_problem(response, 412)
        final = await client.get(task_url(task["id"]), headers=crew.headers["editor"])
        assert final.json() == winner.json()
        assert final.json()["version"] == task["version"] + 1


def _resolve(crew: Crew, body: dict[str, Any]) -> dict[str, Any]:
    """A body of the parametrization with names turned into ids."""
    resolved = dict(body)
    if "assignee_ids" in body:
        resolved["assignee_ids"] = [crew.ids[body["assignee_ids"]]]
    if "label_ids" in body:
        resolved["label_ids"] = [crew.label_ids[body["label_ids"]]]
    return resolved


class TestWritersWithoutTags:
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_every_change_is_one_version(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew, trial: int
    ) -> None:
        """Writers at once, each with a change no other makes (a title of its own, or an
        assignee set of its own, or both): every one applied, each exactly one version."""
        client = committing_client
        task = await new_task(client, crew, title=f"Busy {trial}")
        owner, editor, viewer = (crew.ids[who] for who in ("owner", "editor", "viewer"))
        bodies: list[dict[str, Any]] = [
            {"title": "Title 0"},
            {"assignee_ids": [owner]},
            {"assignee_ids": [editor, viewer], "title": "Title 2"},
            {"title": "Title 3"},
            {"assignee_ids": [viewer]},
            {"assignee_ids": [owner, editor], "label_ids": [crew.label_ids[0]]},
        ]

        responses = await asyncio.gather(
            *(
                client.patch(task_url(task["id"]), json=body, headers=crew.headers["editor"])
                for body in bodies
            )
        )

        assert statuses(list(responses)) == {200: len(bodies)}, [r.text for r in responses]
        final = (await client.get(task_url(task["id"]), headers=crew.headers["editor"])).json()
        assert final["version"] == task["version"] + len(bodies)
        assert max(response.json()["version"] for response in responses) == final["version"]
        assert final["assignee_ids"] == await assignees_of(engine, task["id"])

    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_each_answer_is_the_version_it_wrote(
        self, committing_client: httpx.AsyncClient, crew: Crew, trial: int
    ) -> None:
        """Writers of a field at once: each answer is the task as that request wrote it, its
        version and ETag its own (a client sends them back in `If-Match`). Before, a write
        that had waited for another read the task again after its commit, and when a later
        writer had committed meanwhile, answered with that writer's version (a black-box
        run, 2026-12-07: 22 of 90 answers)."""
        client = committing_client
        task = await new_task(client, crew, title=f"Versions {trial}")
        descriptions = [f"Written by {n}" for n in range(6)]

        responses = await asyncio.gather(
            *(
                client.patch(
                    task_url(task["id"]),
                    json={"description": description},
                    headers=crew.headers["editor"],
                )
                for description in descriptions
            )
        )

        assert statuses(list(responses)) == {200: len(descriptions)}, [r.text for r in responses]
        answers = [response.json() for response in responses]
        assert [answer["description"] for answer in answers] == descriptions
        versions = sorted(answer["version"] for answer in answers)
        assert versions == [task["version"] + n for n in range(1, len(descriptions) + 1)]
        for response, answer in zip(responses, answers, strict=True):
            assert response.headers["etag"] == f'"{answer["version"]}"'


# --- a deadlock: one of the two is refused, nothing half-written -----------------------------


async def _until_a_request_waits_for_a_lock(engine: AsyncEngine) -> None:
    """Until a backend of this database (the request's) waits for a row lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    await _until_counted(
        engine, query, {}, "the request never waited for the lock held by the test"
    )


async def _until_counted(
    engine: AsyncEngine, query: TextClause, params: dict[str, Any], failure: str
) -> None:
    """Until `query` (a count) is not 0, polled for up to 10 s; else `failure`. Each poll in
    a transaction of its own: PostgreSQL reads `pg_stat_activity` once per transaction, and
    a later poll in the same one would see the first poll's activity again."""
    async with engine.connect() as connection:
        for _ in range(200):
            found = await connection.scalar(query, params)
            await connection.rollback()
            if found:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(failure)


def turn_of(kind: TurnOf, entity_id: int) -> TextClause:
    """Taking a turn (app/db/statements/turns.py), as a writer of the thing does first."""
    return text("SELECT pg_advisory_xact_lock(:kind, :id)").bindparams(kind=int(kind), id=entity_id)


@pytest.mark.usefixtures("postgresql_only")
class TestDeadlock:
    async def test_the_request_chosen_is_a_409_to_send_again_with_nothing_written(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """A removal of the viewer deletes their membership, then waits for a task they are
        assigned to, which another transaction holds; that one then waits for the membership
        row: a deadlock, and PostgreSQL rolls the request back (it waited first, so its
        deadlock_timeout runs out first). The client gets a 409 with `Retry-After`, not a
        500; the membership, the assignment and the log are as they were; sent again, the
        removal goes through."""
        task = await new_task(committing_client, crew, assignee_ids=[crew.ids["viewer"]])
        removal = member_url(crew.project_id, crew.ids["viewer"])
        events_before = await events_count(engine)
        async with engine.connect() as connection:
            transaction = await connection.begin()
            # This side is never the one chosen: it detects the deadlock last.
            await connection.execute(text("SET LOCAL deadlock_timeout = '20s'"))
            await connection.execute(select(Task.id).where(Task.id == task["id"]).with_for_update())
            sent = asyncio.ensure_future(
                committing_client.delete(removal, headers=crew.headers["owner"])
            )
            await _until_a_request_waits_for_a_lock(engine)
            await connection.execute(
                select(ProjectMember.role)
                .where(
                    ProjectMember.project_id == crew.project_id,
                    ProjectMember.user_id == crew.ids["viewer"],
                )
                .with_for_update(key_share=True)
            )
            response = await asyncio.wait_for(sent, 30)
            await transaction.rollback()
        assert_problem(response, 409)
        assert response.json()["type"].endswith(":concurrent-update")
        assert response.headers["Retry-After"] == "1"
        assert await assignees_of(engine, task["id"]) == [crew.ids["viewer"]]
        assert await events_count(engine) == events_before
        roles = await committing_client.get(
            members_url(crew.project_id), headers=crew.headers["owner"]
        )
        assert crew.ids["viewer"] in {item["user"]["id"] for item in roles.json()["items"]}
        again = await committing_client.delete(removal, headers=crew.headers["owner"])
        assert again.status_code == 204, again.text
        assert await assignees_of(engine, task["id"]) == []


@pytest.mark.usefixtures("postgresql_only")
class TestRemovalWhileAssigning:
    async def test_neither_waits_in_a_circle_and_the_feed_follows_the_commits(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """Round after round, the viewer is removed while the editor makes them the task's
        only assignee. The removal takes the turns of the viewer's tasks before it writes
        anything, so the two never deadlock (each used to hold what the other waited for:
        a 409 for one of them, most rounds) and the one that commits second comes second in
        the feed: each `assignee_ids` change starts from the one before it."""
        editor, viewer = crew.ids["editor"], crew.ids["viewer"]
        for round_ in range(8):
            if round_:  # the viewer back, for the next round
                async with engine.begin() as connection:
                    await connection.execute(
                        insert(ProjectMember).values(
                            project_id=crew.project_id,
                            user_id=viewer,
                            role=ProjectRole.VIEWER.value,
                            added_at=utcnow(),
                        )
                    )
            task = await new_task(committing_client, crew, assignee_ids=[editor, viewer])
            cursor = await feed_end(committing_client, crew)
            assigned, removed = await asyncio.gather(
                committing_client.patch(
                    task_url(task["id"]),
                    json={"assignee_ids": [viewer]},
                    headers=crew.headers["editor"],
                ),
                committing_client.delete(
                    member_url(crew.project_id, viewer), headers=crew.headers["owner"]
                ),
            )
            assert removed.status_code == 204, removed.text
            # First: assigned, then taken off by the removal; second: no longer a member.
            assert assigned.status_code in {200, 422}, assigned.text
            changes = [
                item["changes"]["assignee_ids"]
                for item in await feed_after(committing_client, crew, cursor)
                if item["entity"] == "task" and item["entity_id"] == task["id"]
            ]
            assert changes, f"round {round_}: no change of the task's assignees"
            assert changes[0][0] == sorted([editor, viewer]), f"round {round_}: {changes}"
            for before, after in itertools.pairwise(changes):
                assert after[0] == before[1], f"round {round_}: {changes}"
            assert changes[-1][1] == await assignees_of(engine, task["id"])
            assert viewer not in changes[-1][1]


async def feed_end(client: httpx.AsyncClient, crew: Crew) -> str:
    """The owner's feed cursor after everything so far."""
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 1000} if cursor is None else {"cursor": cursor}
        page = await client.get(f"{V2}/changes", params=query, headers=crew.headers["owner"])
        assert page.status_code == 200, page.text
        cursor = page.json()["next_cursor"]
        assert cursor is not None
        if not page.json()["has_more"]:
            return cursor


async def feed_after(client: httpx.AsyncClient, crew: Crew, cursor: str) -> list[dict[str, Any]]:
    """The owner's events after `cursor`, in feed order."""
    items: list[dict[str, Any]] = []
    while True:
        page = await client.get(
            f"{V2}/changes", params={"cursor": cursor}, headers=crew.headers["owner"]
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not page.json()["has_more"]:
            return items


@pytest.mark.usefixtures("postgresql_only")
class TestTurnsOfManyTasks:
    @pytest.mark.parametrize(("carrying", "turns"), [(TURNS_MAX, TURNS_MAX), (TURNS_MAX + 1, 0)])
    async def test_a_write_of_more_tasks_than_the_bound_takes_no_turn(
        self,
        engine: AsyncEngine,
        committing_client: httpx.AsyncClient,
        crew: Crew,
        carrying: int,
        turns: int,
    ) -> None:
        """Each turn is an entry of PostgreSQL's shared lock table, which all sessions share
        (about 6,400 entries by default): deleting a label on thousands of tasks would fill
        it, and fail every session that needs a lock meanwhile. A deletion takes one turn per
        task up to `TURNS_MAX` tasks, and none beyond; either way the label goes."""
        label_id = crew.label_ids[0]
        now = utcnow()
        async with engine.begin() as connection:
            created = await connection.scalars(
                insert(Task)
                .values(
                    [
                        {"project_id": crew.project_id, "title": f"Many {n}", "status": "todo"}
                        | {"priority": 1, "created_at": now, "updated_at": now, "version": 1}
                        for n in range(carrying)
                    ]
                )
                .returning(Task.id)
            )
            await connection.execute(
                insert(TaskLabel).values(
                    [{"task_id": task_id, "label_id": label_id} for task_id in created]
                )
            )
            token_version = await connection.scalar(
                select(User.token_version).where(User.id == crew.ids["owner"])
            )
        params = {
            "user_id": crew.ids["owner"],
            "token_version": token_version,
            "in_project": crew.project_id,
            "label_id": label_id,
        }
        async with engine.connect() as connection, connection.begin():
            await connection.execute(label_statements._tasks_turns_statement().statement, params)
            held = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                )
            )
        assert held == turns
        deleted = await committing_client.delete(
            label_url(crew.project_id, label_id), headers=crew.headers["owner"]
        )
        assert deleted.status_code == 204, deleted.text


class TestMovesAmongWriters:
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_a_task_moved_meanwhile_is_found(
        self, committing_client: httpx.AsyncClient, crew: Crew, trial: int
    ) -> None:
        """An editor of two projects moves a task back and forth while others change its
        title: the task is visible to each of them all along, so every write applies (200),
        none answers that it does not exist."""
        client = committing_client
        editor = crew.headers["editor"]
        other = await client.post(f"{V2}/projects", json={"name": "Other"}, headers=editor)
        assert other.status_code == 201, other.text
        projects = [crew.project_id, other.json()["id"]]
        task = await new_task(client, crew, title=f"Moving {trial}")
        bodies: list[dict[str, Any]] = [
            {"project_id": projects[(writer // 2 + 1) % 2]}
            if writer % 2
            else {"title": f"Title {writer}"}
            for writer in range(WRITERS)
        ]

        responses = await asyncio.gather(
            *(client.patch(task_url(task["id"]), json=body, headers=editor) for body in bodies)
        )

        assert statuses(list(responses)) == {200: len(bodies)}, [r.text for r in responses]


@pytest.mark.usefixtures("postgresql_only")
class TestProjectChangesWaitForTaskWrites:
    @pytest.mark.parametrize("change", ["demotion", "removal", "trash"])
    async def test_a_task_write_under_way_comes_first(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew, change: str
    ) -> None:
        """An editor's write of a task is under way (held up here by the test's lock on the
        task's row) when an owner demotes or removes the editor, or trashes the project: the
        change waits for the write, and in the feed the write comes before it, so nobody
        sees the editor write after losing the right to (a project's turn, app/db/statements/
        turns.py). Before, the change committed at once and the write after it."""
        client = committing_client
        task = await new_task(client, crew, title="Under way")
        cursor = await feed_end(client, crew)
        owner, editor = crew.headers["owner"], crew.headers["editor"]
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(
                select(Task.id).where(Task.id == task["id"]).with_for_update(key_share=True)
            )
            write = asyncio.ensure_future(
                client.patch(task_url(task["id"]), json={"title": "Written"}, headers=editor)
            )
            await _until_a_request_waits_for_a_lock(engine)
            if change == "demotion":
                url = member_url(crew.project_id, crew.ids["editor"])
                sent = client.patch(url, json={"role": "viewer"}, headers=owner)
            elif change == "removal":
                sent = client.delete(member_url(crew.project_id, crew.ids["editor"]), headers=owner)
            else:
                sent = client.delete(f"{V2}/projects/{crew.project_id}", headers=owner)
            changing = asyncio.ensure_future(sent)
            await asyncio.sleep(SETTLE_SECONDS)
            assert not changing.done(), "the project's change did not wait for the task write"
            await transaction.rollback()
        written, changed = await asyncio.wait_for(asyncio.gather(write, changing), 30)
        assert written.status_code == 200, written.text
        assert changed.status_code in (200, 204), changed.text

        items = await feed_after(client, crew, cursor)
        assert [(item["entity"], item["action"]) for item in items] == [
            ("task", "updated"),
            {"demotion": ("member", "role_changed"), "removal": ("member", "removed")}.get(
                change, ("project", "deleted")
            ),
        ]


async def _a_task_and_the_editors_other_project(
    client: httpx.AsyncClient, crew: Crew
) -> tuple[int, dict[str, Any]]:
    """(a project of the editor's own, a new task of the crew's project)."""
    other = await client.post(
        f"{V2}/projects", json={"name": "Other"}, headers=crew.headers["editor"]
    )
    assert other.status_code == 201, other.text
    return other.json()["id"], await new_task(client, crew, title="Moved meanwhile")


async def _moved_in_a_transaction(
    mover: AsyncConnection, task_id: int, target: int
) -> AsyncTransaction:
    """A transaction on `mover` that holds the task's turn and has moved it to `target`, as
    a move does; the caller commits or rolls it back."""
    moving = await mover.begin()
    await mover.execute(turn_of(TurnOf.TASK, task_id))
    await mover.execute(
        update(Task).where(Task.id == task_id).values(project_id=target, version=Task.version + 1)
    )
    return moving


@pytest.mark.usefixtures("postgresql_only")
class TestAWriteBehindAMove:
    async def test_does_not_wait_for_the_new_projects_turn_with_the_row_locked(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """A write of a task waits for its turn behind a move of the task to another project;
        meanwhile a change of that project (here the test's transaction, as a label's deletion
        would) holds the project's turn and then writes the task. The write never waits for
        the new project's turn with the row locked (before, they waited for each other: a
        deadlock, one refused): it lets the row go, and is made again in the new project,
        after that project's change, which writes the task meanwhile. Both go through."""
        client = committing_client
        editor = crew.headers["editor"]
        target, task = await _a_task_and_the_editors_other_project(client, crew)
        async with engine.connect() as mover, engine.connect() as changer:
            moving = await _moved_in_a_transaction(mover, task["id"], target)
            write = asyncio.ensure_future(
                client.patch(task_url(task["id"]), json={"title": "Written"}, headers=editor)
            )
            await _until_a_request_waits_for_a_lock(engine)
            changing = await changer.begin()
            await changer.execute(turn_of(TurnOf.PROJECT, target))
            await moving.commit()
            await asyncio.sleep(SETTLE_SECONDS)
            assert not write.done()  # made again in the new project: after its change
            await asyncio.wait_for(
                changer.execute(
                    update(Task).where(Task.id == task["id"]).values(version=Task.version + 1)
                ),
                30,
            )
            await changing.commit()
            written = await asyncio.wait_for(write, 30)
        assert written.status_code == 200, written.text
        assert written.json()["project_id"] == target
        assert written.json()["version"] == task["version"] + 3  # the move, the change, its own


# --- a change of the project under way: a write that waited for it is refused ----------------


def project_change(crew: Crew, change: str) -> list[Any]:
    """A change of the project's members or of the project itself, as its writer makes it:
    the project's turn first (app/db/statements/turns.py), then its rows."""
    turn = turn_of(TurnOf.PROJECT, crew.project_id)
    if change == "removal":
        return [turn, *removal_of(crew, "editor")]
    if change == "demotion":
        return [turn, *demotion_of(crew, "editor")]
    trash = update(Project).where(Project.id == crew.project_id).values(deleted_at=utcnow())
    return [turn, trash]


# What the editor gets once the change has committed: a project they no longer see (404, or
# 422 on the body's `project_id`), or the 403 of a viewer.
REFUSED = {"removal": 404, "demotion": 403, "trash": 404}


@pytest.mark.usefixtures("postgresql_only")
class TestAWriteThatWaitedForAProjectChange:
    """An editor's write arrives while an owner's removal or demotion of the editor, or trash
    of the project, holds the project's turn: the write waits for it, and once it commits the
    write is refused with nothing written. Before, the write's one statement checked the
    membership in its snapshot, taken before the wait, and went through after the change (a
    removed editor's change in the feed after their removal)."""

    @pytest.mark.parametrize("change", ["removal", "demotion", "trash"])
    @pytest.mark.parametrize("write", ["patch", "delete", "create", "label"])
    async def test_is_refused_once_the_change_commits(
        self,
        engine: AsyncEngine,
        committing_client: httpx.AsyncClient,
        crew: Crew,
        change: str,
        write: str,
    ) -> None:
        client = committing_client
        editor = crew.headers["editor"]
        task = await new_task(client, crew, title="Before")
        events_before = await events_count(engine)
        if write == "patch":
            sent = client.patch(task_url(task["id"]), json={"title": "After"}, headers=editor)
        elif write == "delete":
            sent = client.delete(task_url(task["id"]), headers=editor)
        elif write == "create":
            body = {"title": "After", "project_id": crew.project_id}
            sent = client.post(TASKS, json=body, headers=editor)
        else:
            body = {"name": "after", "color": "#abcdef"}
            sent = client.post(f"{V2}/projects/{crew.project_id}/labels", json=body, headers=editor)
        async with engine.connect() as connection:
            transaction = await connection.begin()
            for statement in project_change(crew, change):
                await connection.execute(statement)
            writing = asyncio.ensure_future(sent)
            await _until_a_request_waits_for_a_lock(engine)
            await transaction.commit()
        response = await asyncio.wait_for(writing, 30)

        if change == "demotion":
            body = assert_problem(response, 403)
            assert (body["role"], body["required_role"]) == ("viewer", "editor")
        elif write == "create":
            assert_problem(response, 422, loc=["body", "project_id"])
        else:
            assert_problem(response, REFUSED[change])
        assert await events_count(engine) == events_before, "a refused write left an event"
        async with engine.connect() as connection:
            row = (await connection.execute(select(Task).where(Task.id == task["id"]))).one()
            labels = await connection.scalar(
                select(func.count()).select_from(Label).where(Label.project_id == crew.project_id)
            )
        assert (row.title, row.deleted_at, row.version) == ("Before", None, task["version"])
        assert await tasks_in(engine, crew.project_id) == 1
        assert labels == len(crew.label_ids)


async def _until_a_turn_is_waited_for(engine: AsyncEngine, kind: TurnOf, entity_id: int) -> None:
    """Until a backend waits for the turn (advisory lock) of `kind` and `entity_id`."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid = :kind AND objid = :id AND objsubid = 2"
    )
    await _until_counted(engine, query, {"kind": int(kind), "id": entity_id}, "nobody waited")


async def _a_links_write_behind_a_move(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    crew: Crew,
    change: Callable[[AsyncConnection, int, int], Awaitable[object]],
) -> tuple[int, httpx.Response]:
    """The editor's write of a task's title and labels (one transaction: the task locked, then
    written) waits for its turn behind a move of the task into a project of theirs, while the
    test holds that project's turn. Once the write waits for that turn too, `change`
    (connection, task id, project id) runs in the transaction holding it, which then commits.
    (the project, the write's answer)."""
    target, task = await _a_task_and_the_editors_other_project(client, crew)
    async with engine.connect() as mover, engine.connect() as changer:
        moving = await _moved_in_a_transaction(mover, task["id"], target)
        changing = await changer.begin()
        # The change never detects a deadlock: the write, which waits first, does.
        await changer.execute(text("SET LOCAL deadlock_timeout = '20s'"))
        await changer.execute(turn_of(TurnOf.PROJECT, target))
        write = asyncio.ensure_future(
            client.patch(
                task_url(task["id"]),
                json={"title": "Written", "label_ids": []},
                headers=crew.headers["editor"],
            )
        )
        await _until_a_turn_is_waited_for(engine, TurnOf.TASK, task["id"])
        await moving.commit()
        await _until_a_turn_is_waited_for(engine, TurnOf.PROJECT, target)
        await asyncio.wait_for(change(changer, task["id"], target), 30)
        await changing.commit()
        return target, await asyncio.wait_for(write, 30)


@pytest.mark.usefixtures("postgresql_only")
class TestAWriteThatFindsTheTaskMoved:
    async def test_locks_nothing_of_the_new_project_before_its_turn(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """The change of the new project renames it (its row). The write's lock finds the task
        moved; it must not lock the new project's row then (its turn is not the write's), or
        its next statement, which waits for that project's turn, and the change, which waits
        for the row, wait for each other: a deadlock, one of them refused (found by a
        black-box run, 2026-12-07). Both go through, the change first."""

        async def rename(changer: AsyncConnection, _task_id: int, target: int) -> object:
            return await changer.execute(
                update(Project).where(Project.id == target).values(name="Renamed")
            )

        target, written = await _a_links_write_behind_a_move(
            engine, committing_client, crew, rename
        )
        assert written.status_code == 200, written.text
        assert (written.json()["project_id"], written.json()["title"]) == (target, "Written")
        async with engine.connect() as connection:
            name = await connection.scalar(select(Project.name).where(Project.id == target))
        assert name == "Renamed"

    async def test_holds_no_row_while_it_waits_for_the_new_projects_turn(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """The change of the new project locks the task's row (as a removal of a member
        assigned to the task does). The write must not hold that row while it waits: it
        starts its transaction again in the task's new project, so the change goes through
        first and the write after it. Before, the write held the row and waited for the
        turn, the change waited for the row: a deadlock, and the write, which waited first,
        was refused with a 409 (decision 0036; seen once in 9,025 requests of a black-box
        load, 2026-12-07)."""

        async def lock_the_task(changer: AsyncConnection, task_id: int, _target: int) -> object:
            return await changer.execute(
                select(Task.id).where(Task.id == task_id).with_for_update()
            )

        target, written = await _a_links_write_behind_a_move(
            engine, committing_client, crew, lock_the_task
        )
        assert written.status_code == 200, written.text
        assert (written.json()["project_id"], written.json()["title"]) == (target, "Written")


@pytest.mark.usefixtures("postgresql_only")
class TestAMoveIntoAProjectBeingChanged:
    async def test_waits_and_is_refused(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """The editor moves a task into a project of theirs whose trash is under way (written,
        not yet committed): the move waits for it and is refused as for any project they
        cannot use; the task stays where it was. Before, the move read the project as its
        snapshot saw it, live, and the task landed in the trash with the project."""
        client = committing_client
        target, task = await _a_task_and_the_editors_other_project(client, crew)
        waiting, response = await while_held(
            engine,
            [update(Project).where(Project.id == target).values(deleted_at=utcnow())],
            client.patch(
                task_url(task["id"]), json={"project_id": target}, headers=crew.headers["editor"]
            ),
            commit=True,
        )
        assert waiting, "the move did not wait for the trash under way"
        assert_problem(response, 422, loc=["body", "project_id"])
        assert await tasks_in(engine, target) == 0
        assert await tasks_in(engine, crew.project_id) == 1

    async def test_waits_for_a_removal_of_the_mover_holding_the_project(
        self, engine: AsyncEngine, committing_client: httpx.AsyncClient, crew: Crew
    ) -> None:
        """A removal of the mover from the target holds the project's row (as every change of
        its members does: `projects.lock`), then deletes the membership. The move waits for
        the project's row before it reads the membership, and is refused once the removal
        commits. Before, the move locked the membership first and then waited for the
        project's row, while the removal waited for the membership: a deadlock."""
        client = committing_client
        target, task = await _a_task_and_the_editors_other_project(client, crew)
        async with engine.connect() as changer:
            changing = await changer.begin()
            await changer.execute(turn_of(TurnOf.PROJECT, target))
            await changer.execute(
                select(Project.id).where(Project.id == target).with_for_update(key_share=True)
            )
            move = asyncio.ensure_future(
                client.patch(
                    task_url(task["id"]),
                    json={"project_id": target},
                    headers=crew.headers["editor"],
                )
            )
            await _until_a_request_waits_for_a_lock(engine)
            await changer.execute(
                delete(ProjectMember).where(
                    ProjectMember.project_id == target,
                    ProjectMember.user_id == crew.ids["editor"],
                )
            )
            await changing.commit()
        response = await asyncio.wait_for(move, 30)
        assert_problem(response, 422, loc=["body", "project_id"])
        assert await tasks_in(engine, crew.project_id) == 1
