"""The events of label and comment writes (spec api-v2 section 7), on SQLite and PostgreSQL:
each write through the HTTP API appends one event, in its transaction, naming who did what to
which label or comment, and in which project (and task: a task's history includes its
comments); a refused write, or one that changes nothing, appends none."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import ProjectRole
from app.db.access import Db
from app.db.base import utcnow
from app.models.event import Event
from app.models.label import TaskLabel
from app.models.project import Project, ProjectMember
from app.models.task import Task
from app.models.user import User
from app.schemas.user import UserCreate
from app.services import user as user_service
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD
from tests.support import assert_problem

RACERS = 6


@dataclass(frozen=True)
class Logged:
    """An event as these tests compare it."""

    entity: str
    entity_id: int
    action: str
    actor_id: int | None
    project_id: int
    task_id: int | None
    changes: dict[str, Any]


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
            event.task_id,
            event.changes,
        )
        for event in rows.scalars()
    ]


def labels_url(project_id: int) -> str:
    return f"{V2}/projects/{project_id}/labels"


def comments_url(task_id: int) -> str:
    return f"{V2}/tasks/{task_id}/comments"


async def add_task(session: AsyncSession, project_id: int, *label_ids: int) -> int:
    now = utcnow()
    task = Task(project_id=project_id, title="Ship it", created_at=now, updated_at=now, version=1)
    session.add(task)
    await session.flush()
    for label_id in label_ids:
        session.add(TaskLabel(task_id=task.id, label_id=label_id))
    await session.commit()
    return task.id


async def create_label(
    client: httpx.AsyncClient, team: Team, who: str = "editor", **body: object
) -> dict[str, Any]:
    response = await client.post(
        labels_url(team.project_id), json={"name": "Bug", **body}, headers=team.headers[who]
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def post_comment(
    client: httpx.AsyncClient, team: Team, task_id: int, who: str, body: str = "Looks good"
) -> dict[str, Any]:
    response = await client.post(
        comments_url(task_id), json={"body": body}, headers=team.headers[who]
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
async def task_id(session: AsyncSession, team: Team) -> int:
    return await add_task(session, team.project_id)


# --- labels --------------------------------------------------------------------------------


class TestLabelEvents:
    async def test_a_creation_records_its_name_and_color(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        mark = await newest_event(session)
        chosen = await create_label(client, team, name="Bug", color="#A1B2C3")
        picked = await create_label(client, team, "admin", name="Urgent")
        assert await events_after(session, mark) == [
            Logged(
                "label",
                label["id"],
                "created",
                team.user(who).id,
                team.project_id,
                None,
                {"name": [None, label["name"]], "color": [None, label["color"]]},
            )
            for label, who in ((chosen, "editor"), (picked, "admin"))
        ]
        assert chosen["color"] == "#a1b2c3"  # the value as stored, as the label shows it

    async def test_an_update_records_only_what_changed(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        label = await create_label(client, team, name="Bug", color="#000000")
        url = f"{labels_url(team.project_id)}/{label['id']}"
        mark = await newest_event(session)
        for body in ({"name": "Defect", "color": "#000000"}, {"color": "#ffffff"}):
            response = await client.patch(url, json=body, headers=team.headers["admin"])
            assert response.status_code == 200, response.text
        assert await events_after(session, mark) == [
            Logged(
                "label",
                label["id"],
                "updated",
                team.user("admin").id,
                team.project_id,
                None,
                changes,
            )
            for changes in ({"name": ["Bug", "Defect"]}, {"color": ["#000000", "#ffffff"]})
        ]

    async def test_a_rename_in_another_case_is_recorded(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        label = await create_label(client, team, name="Bug")
        mark = await newest_event(session)
        response = await client.patch(
            f"{labels_url(team.project_id)}/{label['id']}",
            json={"name": "BUG"},
            headers=team.headers["editor"],
        )
        assert response.status_code == 200, response.text
        [event] = await events_after(session, mark)
        assert (event.action, event.changes) == ("updated", {"name": ["Bug", "BUG"]})

    @pytest.mark.parametrize("body", [{}, {"name": "Bug"}, {"name": "Bug", "color": "#000000"}])
    async def test_an_update_that_changes_nothing_records_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        body: dict[str, object],
    ) -> None:
        label = await create_label(client, team, name="Bug", color="#000000")
        mark = await newest_event(session)
        response = await client.patch(
            f"{labels_url(team.project_id)}/{label['id']}",
            json=body,
            headers=team.headers["editor"],
        )
        assert response.status_code == 200, response.text
        assert await events_after(session, mark) == []

    async def test_a_deletion_records_each_task_that_lost_it_then_the_label(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        label = await create_label(client, team, name="Doomed", color="#123456")
        other = await create_label(client, team, name="Kept", color="#654321")
        tasks = [await add_task(session, team.project_id, label["id"]) for _ in range(2)]
        both = await add_task(session, team.project_id, label["id"], other["id"])
        await add_task(session, team.project_id, other["id"])
        mark = await newest_event(session)
        response = await client.delete(
            f"{labels_url(team.project_id)}/{label['id']}", headers=team.headers["owner"]
        )
        assert response.status_code == 204, response.text
        owner_id = team.user("owner").id
        # Every task that lost it got a new version, and records that change: a client that
        # keeps a copy by the feed sees each version. The task that did not carry it, nothing.
        lost = [
            Logged(
                "task",
                task_id,
                "updated",
                owner_id,
                team.project_id,
                task_id,
                {"label_ids": [[label["id"]], []]},
            )
            for task_id in tasks
        ]
        lost.append(
            Logged(
                "task",
                both,
                "updated",
                owner_id,
                team.project_id,
                both,
                {"label_ids": [sorted([label["id"], other["id"]]), [other["id"]]]},
            )
        )
        assert await events_after(session, mark) == [
            *lost,
            Logged(
                "label",
                label["id"],
                "deleted",
                owner_id,
                team.project_id,
                None,
                {"name": ["Doomed", None], "color": ["#123456", None]},
            ),
        ]

    @pytest.mark.parametrize("who", ["commenter", "viewer"])
    async def test_writes_refused_below_editor_record_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, who: str
    ) -> None:
        label = await create_label(client, team)
        url = f"{labels_url(team.project_id)}/{label['id']}"
        mark = await newest_event(session)
        headers = team.headers[who]
        assert_problem(
            await client.post(labels_url(team.project_id), json={"name": "X"}, headers=headers),
            403,
        )
        assert_problem(await client.patch(url, json={"name": "X"}, headers=headers), 403)
        assert_problem(await client.delete(url, headers=headers), 403)
        assert await events_after(session, mark) == []

    async def test_a_name_taken_records_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        await create_label(client, team, name="Bug")
        other = await create_label(client, team, name="Feature")
        mark = await newest_event(session)
        created = await client.post(
            labels_url(team.project_id), json={"name": " bUG "}, headers=team.headers["editor"]
        )
        renamed = await client.patch(
            f"{labels_url(team.project_id)}/{other['id']}",
            json={"name": "BUG"},
            headers=team.headers["editor"],
        )
        for response in (created, renamed):
            assert assert_problem(response, 409)["type"].endswith(":label-name-taken")
        assert await events_after(session, mark) == []

    async def test_misses_record_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        label = await create_label(client, team)
        mark = await newest_event(session)
        unknown = f"{labels_url(team.project_id)}/{label['id'] + 1000}"
        assert_problem(
            await client.patch(unknown, json={"name": "X"}, headers=team.headers["editor"]), 404
        )
        assert_problem(await client.delete(unknown, headers=team.headers["editor"]), 404)
        outsider = f"{labels_url(team.project_id)}/{label['id']}"
        assert_problem(await client.delete(outsider, headers=team.headers["outsider"]), 404)
        assert await events_after(session, mark) == []

    async def test_a_replayed_creation_records_one_event(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        mark = await newest_event(session)
        headers = {**team.headers["editor"], "Idempotency-Key": "label-event-1"}
        first = await client.post(
            labels_url(team.project_id), json={"name": "Bug"}, headers=headers
        )
        again = await client.post(
            labels_url(team.project_id), json={"name": "Bug"}, headers=headers
        )
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["idempotent-replayed"] == "true"
        events = await events_after(session, mark)
        assert [(event.action, event.entity_id) for event in events] == [
            ("created", first.json()["id"])
        ]


# --- comments ------------------------------------------------------------------------------


class TestCommentEvents:
    async def test_a_comment_is_recorded_in_its_tasks_history(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        mark = await newest_event(session)
        comment = await post_comment(client, team, task_id, "commenter", "First!")
        assert await events_after(session, mark) == [
            Logged(
                "comment",
                comment["id"],
                "created",
                team.user("commenter").id,
                team.project_id,
                task_id,
                {"body": [None, "First!"]},
            )
        ]
        # A comment is no change of the task: only the comment's event.
        task_events = await session.scalar(
            select(func.count()).select_from(Event).where(Event.entity == "task")
        )
        assert task_events == 0

    async def test_a_change_records_the_old_and_new_body(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post_comment(client, team, task_id, "editor", "Before")
        url = f"{comments_url(task_id)}/{comment['id']}"
        mark = await newest_event(session)
        changed = await client.patch(url, json={"body": "After"}, headers=team.headers["editor"])
        assert changed.status_code == 200, changed.text
        assert await events_after(session, mark) == [
            Logged(
                "comment",
                comment["id"],
                "updated",
                team.user("editor").id,
                team.project_id,
                task_id,
                {"body": ["Before", "After"]},
            )
        ]

    async def test_the_same_body_again_records_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post_comment(client, team, task_id, "commenter", "Same")
        mark = await newest_event(session)
        response = await client.patch(
            f"{comments_url(task_id)}/{comment['id']}",
            json={"body": "Same"},
            headers=team.headers["commenter"],
        )
        assert response.status_code == 200, response.text
        assert await events_after(session, mark) == []

    @pytest.mark.parametrize(("author", "who"), [("commenter", "commenter"), ("editor", "admin")])
    async def test_a_deletion_records_its_deleter(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        author: str,
        who: str,
    ) -> None:
        comment = await post_comment(client, team, task_id, author, "Gone soon")
        mark = await newest_event(session)
        response = await client.delete(
            f"{comments_url(task_id)}/{comment['id']}", headers=team.headers[who]
        )
        assert response.status_code == 204, response.text
        assert await events_after(session, mark) == [
            Logged(
                "comment",
                comment["id"],
                "deleted",
                team.user(who).id,
                team.project_id,
                task_id,
                {"body": ["Gone soon", None]},
            )
        ]

    async def test_refused_writes_record_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post_comment(client, team, task_id, "commenter")
        url = f"{comments_url(task_id)}/{comment['id']}"
        mark = await newest_event(session)
        # A viewer may not comment; no one but the author may change a comment; below admin,
        # no one but the author may delete it; an outsider does not see the task.
        assert_problem(
            await client.post(
                comments_url(task_id), json={"body": "Hi"}, headers=team.headers["viewer"]
            ),
            403,
        )
        for who in ("owner", "editor"):
            refused = await client.patch(url, json={"body": "Mine now"}, headers=team.headers[who])
            assert assert_problem(refused, 403)["type"].endswith(":not-comment-author")
        assert_problem(await client.delete(url, headers=team.headers["editor"]), 403)
        assert_problem(await client.delete(url, headers=team.headers["outsider"]), 404)
        assert await events_after(session, mark) == []

    async def test_misses_record_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post_comment(client, team, task_id, "commenter")
        trashed = await add_task(session, team.project_id)
        task = await session.get(Task, trashed)
        assert task is not None
        task.deleted_at = utcnow()
        await session.commit()
        mark = await newest_event(session)
        headers = team.headers["commenter"]
        unknown = f"{comments_url(task_id)}/{comment['id'] + 1000}"
        assert_problem(await client.patch(unknown, json={"body": "X"}, headers=headers), 404)
        assert_problem(await client.delete(unknown, headers=headers), 404)
        # Under another task (one in the trash): a miss too.
        elsewhere = f"{comments_url(trashed)}/{comment['id']}"
        assert_problem(await client.delete(elsewhere, headers=headers), 404)
        assert_problem(
            await client.post(comments_url(trashed), json={"body": "X"}, headers=headers), 404
        )
        assert await events_after(session, mark) == []


# --- races (requests that really commit, at once) -----------------------------------------


@dataclass
class Committed:
    """An editor, a project of theirs and a task in it, committed for real."""

    project_id: int
    task_id: int
    headers: Headers


@pytest.fixture
async def committed(
    app: FastAPI,
    committing_client: httpx.AsyncClient,
    auth_headers: Callable[[User], Headers],
) -> AsyncIterator[Committed]:
    sessions = app.state.sessionmaker
    async with Db.transaction_for(sessions) as db:
        user = await user_service.create_user(
            db,
            UserCreate(email=f"racer-{uuid.uuid4().hex[:8]}@example.com", password=TEST_PASSWORD),
            rounds=BCRYPT_TEST_ROUNDS,
        )
        now = utcnow()
        project = Project(name="Race", created_at=now, updated_at=now, version=1)
        db.session.add(project)
        await db.session.flush()
        db.session.add(
            ProjectMember(
                project_id=project.id, user_id=user.id, role=ProjectRole.EDITOR.value, added_at=now
            )
        )
        task = Task(project_id=project.id, title="Race", created_at=now, updated_at=now, version=1)
        db.session.add(task)
        await db.session.flush()
    try:
        yield Committed(project.id, task.id, auth_headers(user))
    finally:
        # Its labels, tasks and comments go with it; `committing_client` removes the user and
        # the events.
        async with Db.transaction_for(sessions) as db:
            await db.session.execute(delete(Project).where(Project.id == project.id))


async def committed_changes(app: FastAPI, entity: str, entity_id: int) -> list[dict[str, Any]]:
    async with Db.transaction_for(app.state.sessionmaker) as db:
        rows = await db.session.scalars(
            select(Event.changes)
            .where(Event.entity == entity, Event.entity_id == entity_id)
            .order_by(Event.id)
        )
        return list(rows)


def assert_chained(changes: list[dict[str, Any]], field: str, first: str, last: str) -> None:
    """Each event's old value is the one the event before it left: no two writes at once
    both claim to have replaced the same value."""
    value = first
    for change in changes:
        old, new = change[field]
        assert old == value, changes
        value = new
    assert value == last, changes


class TestRaces:
    async def test_renames_at_once_each_record_the_name_they_replaced(
        self, app: FastAPI, committing_client: httpx.AsyncClient, committed: Committed
    ) -> None:
        created = await committing_client.post(
            labels_url(committed.project_id), json={"name": "Start"}, headers=committed.headers
        )
        assert created.status_code == 201, created.text
        url = f"{labels_url(committed.project_id)}/{created.json()['id']}"
        responses = await asyncio.gather(
            *(
                committing_client.patch(url, json={"name": f"Name {n}"}, headers=committed.headers)
                for n in range(RACERS)
            )
        )
        assert [response.status_code for response in responses] == [200] * RACERS
        final = (await committing_client.get(url, headers=committed.headers)).json()["name"]
        changes = await committed_changes(app, "label", created.json()["id"])
        assert len(changes) == 1 + RACERS  # created, then each rename
        assert_chained(changes[1:], "name", "Start", final)

    async def test_edits_at_once_each_record_the_body_they_replaced(
        self, app: FastAPI, committing_client: httpx.AsyncClient, committed: Committed
    ) -> None:
        created = await committing_client.post(
            comments_url(committed.task_id), json={"body": "Start"}, headers=committed.headers
        )
        assert created.status_code == 201, created.text
        url = f"{comments_url(committed.task_id)}/{created.json()['id']}"
        responses = await asyncio.gather(
            *(
                committing_client.patch(url, json={"body": f"Body {n}"}, headers=committed.headers)
                for n in range(RACERS)
            )
        )
        assert [response.status_code for response in responses] == [200] * RACERS
        final = (await committing_client.get(url, headers=committed.headers)).json()["body"]
        changes = await committed_changes(app, "comment", created.json()["id"])
        assert len(changes) == 1 + RACERS
        assert_chained(changes[1:], "body", "Start", final)
