"""`/api/v2/notifications` (spec api-v2 section 8): a user's own notifications, newest first,
marked read one by one or all at once, on SQLite and PostgreSQL.

No job makes notifications in these tests: they are inserted as the jobs would insert them.
"""

from __future__ import annotations

import itertools
from typing import Any, get_args

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.bounds import MAX_ID
from app.core.config import Settings
from app.core.roles import ProjectRole
from app.core.security import create_access_token
from app.db.base import utcnow
from app.models.notification import NOTIFICATION_KINDS, Notification
from app.models.project import Project, ProjectMember
from app.models.task import Task
from app.models.user import User
from app.schemas.notification import NotificationKind
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, add_project
from tests.conftest import UserFactory
from tests.support import assert_problem

NOTIFICATIONS = f"{V2}/notifications"
READ_ALL = f"{NOTIFICATIONS}/read-all"
FIELDS = {"id", "kind", "created_at", "read_at", "project", "task", "actor", "message"}
MALFORMED_IDS = ("abc", "0", "-1", "01", "+1", "1.0", "9" * 20)

_keys = itertools.count(1)


def read_url(notification_id: object) -> str:
    return f"{NOTIFICATIONS}/{notification_id}/read"


async def notify(
    session: AsyncSession,
    user: User,
    *,
    kind: str = "assigned",
    message: str = "You were assigned a task",
    project_id: int | None = None,
    task_id: int | None = None,
    actor_id: int | None = None,
    read: bool = False,
) -> int:
    """A notification for `user`, inserted as a job would insert it; its id."""
    now = utcnow()
    notification = Notification(
        user_id=user.id,
        kind=kind,
        created_at=now,
        read_at=now if read else None,
        project_id=project_id,
        task_id=task_id,
        actor_id=actor_id,
        message=message,
        dedupe_key=f"test:{next(_keys)}",
    )
    session.add(notification)
    await session.commit()
    return notification.id


async def add_task(session: AsyncSession, project_id: int, title: str = "Ship it") -> int:
    now = utcnow()
    task = Task(project_id=project_id, title=title, created_at=now, updated_at=now, version=1)
    session.add(task)
    await session.commit()
    return task.id


async def unread_ids(session: AsyncSession, user: User) -> list[int]:
    rows = await session.execute(
        select(Notification.id)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .order_by(Notification.id)
    )
    return list(rows.scalars())


async def listing(
    client: httpx.AsyncClient, headers: Headers, **params: Any
) -> tuple[list[dict[str, Any]], httpx.Response]:
    response = await client.get(NOTIFICATIONS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items, response


async def walk(client: httpx.AsyncClient, headers: Headers, **params: Any) -> tuple[list[int], int]:
    """Every id of a listing, page by page through `next_cursor` (and `Link`); the pages."""
    ids: list[int] = []
    pages = 0
    response = await client.get(NOTIFICATIONS, params=params, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        pages += 1
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        ids += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            assert "link" not in response.headers
            return ids, pages
        assert response.headers["link"].endswith('rel="next"')
        response = await client.get(
            NOTIFICATIONS, params={**params, "cursor": page["next_cursor"]}, headers=headers
        )


def test_the_schema_names_every_kind_the_jobs_make() -> None:
    assert get_args(NotificationKind) == NOTIFICATION_KINDS


class TestList:
    async def test_newest_first_with_what_each_is_about(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        make_user: UserFactory,
    ) -> None:
        bob = await make_user(email="bob@example.com", full_name="Bob Builder")
        project_id = await add_project(session, {alice: ProjectRole.VIEWER}, name="Launch")
        task_id = await add_task(session, project_id, "Ship it")
        first = await notify(session, alice, kind="invited", project_id=project_id)
        second = await notify(
            session,
            alice,
            kind="assigned",
            message="Bob assigned you",
            project_id=project_id,
            task_id=task_id,
            actor_id=bob.id,
        )
        third = await notify(session, alice, kind="reminder", task_id=task_id, read=True)

        items, response = await listing(client, alice_h)

        assert [item["id"] for item in items] == [third, second, first]
        assert all(set(item) == FIELDS for item in items)
        assert items[1]["kind"] == "assigned"
        assert items[1]["message"] == "Bob assigned you"
        assert items[1]["project"] == {"id": project_id, "name": "Launch"}
        assert items[1]["task"] == {"id": task_id, "title": "Ship it"}
        assert items[1]["actor"] == {"id": bob.id, "full_name": "Bob Builder"}
        assert items[1]["read_at"] is None
        assert items[1]["created_at"].endswith("Z")
        assert items[0]["read_at"] is not None
        assert items[0]["read_at"].endswith("Z")
        assert items[2]["task"] is None
        assert items[2]["actor"] is None
        assert response.json()["next_cursor"] is None
        assert response.headers["x-unread-count"] == "2"

    async def test_no_notifications_is_an_empty_page_with_a_zero_count(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        items, response = await listing(client, alice_h)
        assert items == []
        assert response.json()["next_cursor"] is None
        assert response.headers["x-unread-count"] == "0"
        items, response = await listing(client, alice_h, unread="true")
        assert items == []
        assert response.headers["x-unread-count"] == "0"

    async def test_pages_with_a_cursor(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        made = [await notify(session, alice, message=f"n{i}") for i in range(5)]
        ids, pages = await walk(client, alice_h, limit=2)
        assert ids == made[::-1]
        assert pages == 3

    async def test_a_user_sees_only_their_own(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        bob: User,
        bob_h: Headers,
    ) -> None:
        mine = await notify(session, alice)
        theirs = [await notify(session, bob), await notify(session, bob)]
        items, response = await listing(client, alice_h)
        assert [item["id"] for item in items] == [mine]
        assert response.headers["x-unread-count"] == "1"
        items, response = await listing(client, bob_h)
        assert [item["id"] for item in items] == theirs[::-1]
        assert response.headers["x-unread-count"] == "2"

    async def test_unread_true_lists_only_the_unread(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        made = [await notify(session, alice, read=i % 2 == 0) for i in range(6)]
        unread = [made[1], made[3], made[5]]
        ids, _ = await walk(client, alice_h, unread="true", limit=2)
        assert ids == unread[::-1]
        for spelling in ("false", None):
            params = {"unread": spelling} if spelling else {}
            ids, _ = await walk(client, alice_h, **params)
            assert ids == made[::-1]
        # The count is of the unread, whatever the filter asked for.
        for unread_only in ("true", "false"):
            _, response = await listing(client, alice_h, unread=unread_only, limit=1)
            assert response.headers["x-unread-count"] == "3"

    async def test_the_count_follows_reads(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        made = [await notify(session, alice) for _ in range(3)]
        response = await client.post(read_url(made[0]), headers=alice_h)
        assert response.status_code == 200, response.text
        _, response = await listing(client, alice_h)
        assert response.headers["x-unread-count"] == "2"
        assert (await client.post(READ_ALL, headers=alice_h)).status_code == 204
        items, response = await listing(client, alice_h, unread="true")
        assert items == []
        assert response.headers["x-unread-count"] == "0"

    async def test_subjects_are_shown_as_they_are_now_and_null_once_gone(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        make_user: UserFactory,
    ) -> None:
        carol = await make_user(email="carol@example.com", full_name="Carol")
        project_id = await add_project(session, {alice: ProjectRole.VIEWER}, name="Old name")
        task_id = await add_task(session, project_id, "Old title")
        made = await notify(
            session, alice, project_id=project_id, task_id=task_id, actor_id=carol.id
        )
        await session.execute(update(Task).where(Task.id == task_id).values(title="New title"))
        await session.execute(
            update(Project).where(Project.id == project_id).values(name="New name")
        )
        await session.execute(update(User).where(User.id == carol.id).values(full_name="Caz"))
        await session.commit()

        [item], _ = await listing(client, alice_h)
        assert item["task"] == {"id": task_id, "title": "New title"}
        assert item["project"] == {"id": project_id, "name": "New name"}
        assert item["actor"] == {"id": carol.id, "full_name": "Caz"}

        # Removed from the project: its later names are no longer theirs to learn.
        await session.execute(
            delete(ProjectMember).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == alice.id
            )
        )
        await session.commit()
        [item], _ = await listing(client, alice_h)
        assert (item["project"], item["task"]) == (None, None)
        assert item["message"] == "You were assigned a task"
        session.add(
            ProjectMember(
                project_id=project_id,
                user_id=alice.id,
                role=ProjectRole.VIEWER.value,
                added_at=utcnow(),
            )
        )
        await session.commit()

        # Purged: the task, then its project; the actor's account deleted.
        await session.execute(delete(Task).where(Task.id == task_id))
        await session.commit()
        [item], _ = await listing(client, alice_h)
        assert item["task"] is None
        assert item["project"] == {"id": project_id, "name": "New name"}
        await session.execute(delete(Project).where(Project.id == project_id))
        await session.execute(delete(User).where(User.id == carol.id))
        await session.commit()

        [item], _ = await listing(client, alice_h)
        assert item["id"] == made
        assert (item["project"], item["task"], item["actor"]) == (None, None, None)
        response = await client.post(read_url(made), headers=alice_h)
        assert response.status_code == 200, response.text
        assert (response.json()["task"], response.json()["actor"]) == (None, None)

    async def test_a_task_moved_to_another_project_the_reader_sees_is_still_shown(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
    ) -> None:
        """The task is shown while the reader may read it where it is now; the project is
        the one the notification named (the task was once only shown while it stayed in
        that project)."""
        first = await add_project(session, {alice: ProjectRole.VIEWER}, name="First")
        second = await add_project(session, {alice: ProjectRole.VIEWER}, name="Second")
        outside = await add_project(session, {}, name="Outside")
        task_id = await add_task(session, first, "Travels")
        await notify(session, alice, project_id=first, task_id=task_id)
        await session.execute(update(Task).where(Task.id == task_id).values(project_id=second))
        await session.commit()

        [item], _ = await listing(client, alice_h)
        assert item["task"] == {"id": task_id, "title": "Travels"}
        assert item["project"] == {"id": first, "name": "First"}

        await session.execute(update(Task).where(Task.id == task_id).values(project_id=outside))
        await session.commit()
        [item], _ = await listing(client, alice_h)
        assert item["task"] is None  # moved where the reader may not look


class TestMarkRead:
    async def test_marks_it_read_and_answers_it(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
    ) -> None:
        project_id = await add_project(session, {alice: ProjectRole.VIEWER}, name="Launch")
        made = await notify(session, alice, project_id=project_id)
        other = await notify(session, alice)
        response = await client.post(read_url(made), headers=alice_h)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == FIELDS
        assert body["id"] == made
        assert body["read_at"] is not None
        assert body["read_at"].endswith("Z")
        assert body["project"] == {"id": project_id, "name": "Launch"}
        assert await unread_ids(session, alice) == [other]

    async def test_reading_again_keeps_the_first_read_at(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        made = await notify(session, alice)
        first = await client.post(read_url(made), headers=alice_h)
        again = await client.post(read_url(made), headers=alice_h)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.json() == first.json()
        stored = await session.scalar(select(Notification.read_at).where(Notification.id == made))
        assert stored is not None
        assert first.json()["read_at"].startswith(stored.strftime("%Y-%m-%dT%H:%M:%S"))

    async def test_someone_elses_is_the_same_404_as_an_unknown_id(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice_h: Headers,
        bob: User,
    ) -> None:
        theirs = await notify(session, bob)
        foreign = await client.post(read_url(theirs), headers=alice_h)
        unknown = await client.post(read_url(MAX_ID), headers=alice_h)
        body = assert_problem(foreign, 404)
        other = assert_problem(unknown, 404)
        assert (body["type"], body["title"], body["detail"]) == (
            other["type"],
            other["title"],
            other["detail"],
        )
        assert await unread_ids(session, bob) == [theirs]

    @pytest.mark.parametrize("bad", MALFORMED_IDS)
    async def test_malformed_ids_are_422(
        self, client: httpx.AsyncClient, alice_h: Headers, bad: str
    ) -> None:
        response = await client.post(read_url(bad), headers=alice_h)
        assert_problem(response, 422, loc=["path", "notification_id"])


class TestReadAll:
    async def test_marks_only_the_callers_unread_ones(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        bob: User,
    ) -> None:
        read_before = await notify(session, alice, read=True)
        kept_read_at = await session.scalar(
            select(Notification.read_at).where(Notification.id == read_before)
        )
        for _ in range(3):
            await notify(session, alice)
        theirs = [await notify(session, bob), await notify(session, bob)]

        response = await client.post(READ_ALL, headers=alice_h)
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert await unread_ids(session, alice) == []
        assert await unread_ids(session, bob) == theirs
        session.expire_all()
        still = await session.scalar(
            select(Notification.read_at).where(Notification.id == read_before)
        )
        assert still == kept_read_at

    async def test_with_nothing_unread_is_still_204(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        assert (await client.post(READ_ALL, headers=alice_h)).status_code == 204
        assert (await client.post(READ_ALL, headers=alice_h)).status_code == 204


class TestRefused:
    @pytest.mark.parametrize("route", ["list", "read", "read-all"])
    async def test_a_revoked_token_is_401_and_marks_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        route: str,
    ) -> None:
        made = await notify(session, alice)
        await session.execute(
            update(User).where(User.id == alice.id).values(token_version=User.token_version + 1)
        )
        await session.commit()
        if route == "list":
            response = await client.get(NOTIFICATIONS, headers=alice_h)
        else:
            url = read_url(made) if route == "read" else READ_ALL
            response = await client.post(url, headers=alice_h)
        assert_problem(response, 401)
        assert "invalid_token" in response.headers["www-authenticate"]
        assert await unread_ids(session, alice) == [made]

    async def test_a_revoked_token_with_nothing_to_show_is_still_401(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        await session.execute(
            update(User).where(User.id == alice.id).values(token_version=User.token_version + 1)
        )
        await session.commit()
        for response in (
            await client.get(NOTIFICATIONS, headers=alice_h),
            await client.get(NOTIFICATIONS, params={"unread": "true"}, headers=alice_h),
            await client.post(read_url(MAX_ID), headers=alice_h),
            await client.post(READ_ALL, headers=alice_h),
        ):
            assert_problem(response, 401)

    @pytest.mark.parametrize("route", ["list", "read", "read-all"])
    async def test_an_expired_or_missing_token_is_401(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        settings: Settings,
        alice: User,
        route: str,
    ) -> None:
        made = await notify(session, alice)
        token, _ = create_access_token(
            user_id=alice.id,
            token_version=alice.token_version,
            key=settings.signing_key,
            expire_minutes=-1,
        )
        for headers in ({"Authorization": f"Bearer {token}"}, {}):
            if route == "list":
                response = await client.get(NOTIFICATIONS, headers=headers)
            else:
                url = read_url(made) if route == "read" else READ_ALL
                response = await client.post(url, headers=headers)
            assert_problem(response, 401)
        assert await unread_ids(session, alice) == [made]

    @pytest.mark.parametrize("cursor", ["nonsense", "a.b", "x" * 2000, "é"])
    async def test_a_malformed_cursor_is_422(
        self, client: httpx.AsyncClient, alice_h: Headers, cursor: str
    ) -> None:
        response = await client.get(NOTIFICATIONS, params={"cursor": cursor}, headers=alice_h)
        assert_problem(response, 422, loc=["query", "cursor"])

    async def test_a_cursor_of_another_user_or_filter_is_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        bob: User,
        bob_h: Headers,
    ) -> None:
        for _ in range(3):
            await notify(session, alice)
            await notify(session, bob)
        _, response = await listing(client, bob_h, limit=1)
        bobs = response.json()["next_cursor"]
        _, response = await listing(client, alice_h, limit=1, unread="true")
        unread_only = response.json()["next_cursor"]
        assert bobs is not None
        assert unread_only is not None
        for params in ({"cursor": bobs}, {"cursor": unread_only, "unread": "false"}):
            response = await client.get(NOTIFICATIONS, params=params, headers=alice_h)
            assert_problem(response, 422, loc=["query", "cursor"])

    @pytest.mark.parametrize(
        ("params", "loc"),
        [
            ({"unread": "maybe"}, ["query", "unread"]),
            ({"limit": "0"}, ["query", "limit"]),
            ({"limit": "101"}, ["query", "limit"]),
            ({"user_id": "2"}, ["query", "user_id"]),
            ({"unread": "true", "unseen": "1"}, ["query", "unseen"]),
        ],
    )
    async def test_bad_or_unknown_query_parameters_are_422(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        params: dict[str, str],
        loc: list[str],
    ) -> None:
        response = await client.get(NOTIFICATIONS, params=params, headers=alice_h)
        assert_problem(response, 422, loc=loc)

    async def test_a_repeated_query_parameter_is_422(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        response = await client.get(f"{NOTIFICATIONS}?unread=true&unread=false", headers=alice_h)
        assert_problem(response, 422)

    async def test_read_all_with_a_body_or_a_query_changes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        made = await notify(session, alice)
        response = await client.post(READ_ALL, params={"before": "1"}, headers=alice_h)
        assert_problem(response, 422)
        assert await unread_ids(session, alice) == [made]
