"""`/api/v2/tasks/{id}/comments` (spec api-v2 section 6): what each role, the author, an
outsider and a hostile client get, on SQLite and PostgreSQL.

Who may change or delete a comment (the decision this file holds the service to):

- changing it is for its author alone, while still a commenter or above: anyone else who can
  see it gets 403 `not-comment-author` (no role would let them, so no `required_role`), and an
  author demoted to viewer gets 403 `role-required` (`required_role: commenter`);
- deleting it is for its author (while a commenter or above) or for an admin or owner: an
  author below commenter gets `role-required` with `commenter`, anyone else below admin
  `role-required` with `admin`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.bounds import COMMENT_BODY_MAX_LENGTH
from app.core.roles import ProjectRole
from app.db.base import utcnow
from app.db.statements import comments as comment_statements
from app.models.comment import Comment
from app.models.project import Project, ProjectMember
from app.models.task import Task
from app.models.user import Role, User
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team, add_project
from tests.support import assert_problem, refused_at_first

COMMENT_FIELDS = {"id", "task_id", "author", "body", "created_at", "updated_at"}
COMMENTERS = ("owner", "admin", "editor", "commenter")
MALFORMED_IDS = ("abc", "0", "-1", "01", "+1", "1.0", "9" * 20)


def comments_url(task_id: object) -> str:
    return f"{V2}/tasks/{task_id}/comments"


def comment_url(task_id: object, comment_id: object) -> str:
    return f"{comments_url(task_id)}/{comment_id}"


def comparable(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem body without the parts that differ between any two requests."""
    return {key: value for key, value in problem.items() if key not in {"request_id", "instance"}}


def parse_ts(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def add_task(session: AsyncSession, project_id: int, *, trashed: bool = False) -> int:
    now = utcnow()
    task = Task(
        project_id=project_id,
        title="Ship it",
        created_at=now,
        updated_at=now,
        deleted_at=now if trashed else None,
        version=1,
    )
    session.add(task)
    await session.commit()
    return task.id


async def post(
    client: httpx.AsyncClient, task_id: int, headers: Headers, body: str = "Looks good"
) -> dict[str, Any]:
    response = await client.post(comments_url(task_id), json={"body": body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def comments_in_db(session: AsyncSession) -> list[tuple[int, int, int, str]]:
    rows = await session.execute(
        select(Comment.id, Comment.task_id, Comment.author_id, Comment.body).order_by(Comment.id)
    )
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def task_version(session: AsyncSession, task_id: int) -> int:
    version = await session.scalar(select(Task.version).where(Task.id == task_id))
    assert version is not None
    return int(version)


async def set_role(session: AsyncSession, team: Team, who: str, role: ProjectRole) -> None:
    await session.execute(
        update(ProjectMember)
        .where(
            ProjectMember.project_id == team.project_id,
            ProjectMember.user_id == team.users[who].id,
        )
        .values(role=role.value)
    )
    await session.commit()


@pytest.fixture
async def task_id(session: AsyncSession, team: Team) -> int:
    return await add_task(session, team.project_id)


# --- create -------------------------------------------------------------------------------


class TestCreate:
    async def test_a_create_refused_by_a_change_gone_at_once_is_made(
        self,
        client: httpx.AsyncClient,
        team: Team,
        task_id: int,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The insert met the task's project in the trash, restored by the read that tells
        why: the comment is made again and answers 201 (it was a 404 for a task that is
        there)."""
        calls = refused_at_first(monkeypatch, comment_statements, "insert_comment")
        response = await client.post(
            comments_url(task_id), json={"body": "After"}, headers=team.headers["commenter"]
        )
        assert response.status_code == 201, response.text
        assert calls == ["refused", "made"]

    @pytest.mark.parametrize("who", COMMENTERS)
    async def test_commenters_and_above_comment(
        self, client: httpx.AsyncClient, team: Team, task_id: int, who: str
    ) -> None:
        body = "Line one\n\tLine two \U0001f600"
        response = await client.post(
            comments_url(task_id), json={"body": body}, headers=team.headers[who]
        )
        assert response.status_code == 201, response.text
        comment = response.json()
        assert set(comment) == COMMENT_FIELDS
        assert comment["task_id"] == task_id
        assert comment["author"] == {"id": team.users[who].id, "full_name": who.title()}
        assert comment["body"] == body  # kept as sent
        assert comment["created_at"] == comment["updated_at"]
        parse_ts(comment["created_at"])
        assert response.headers["location"] == comment_url(task_id, comment["id"])
        again = await client.get(response.headers["location"], headers=team.headers["viewer"])
        assert again.status_code == 200
        assert again.json() == comment

    async def test_a_comment_does_not_change_the_task(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        await client.patch(
            comment_url(task_id, comment["id"]),
            json={"body": "Changed"},
            headers=team.headers["commenter"],
        )
        await client.delete(comment_url(task_id, comment["id"]), headers=team.headers["commenter"])
        assert await task_version(session, task_id) == 1

    async def test_a_viewer_is_403_and_writes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        response = await client.post(
            comments_url(task_id), json={"body": "Hi"}, headers=team.headers["viewer"]
        )
        problem = assert_problem(response, 403)
        assert (problem["role"], problem["required_role"]) == ("viewer", "commenter")
        assert await comments_in_db(session) == []

    @pytest.mark.parametrize(
        "body",
        [
            "",
            "   ",
            "\n\n\t",
            "\u200b",
            "a" * (COMMENT_BODY_MAX_LENGTH + 1),
            "a\u0000b",
            "a\u0007b",
            "a\u202eb",
            None,
            42,
            ["Hi"],
        ],
    )
    async def test_bad_bodies_are_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        body: object,
    ) -> None:
        response = await client.post(
            comments_url(task_id), json={"body": body}, headers=team.headers["commenter"]
        )
        assert_problem(response, 422, loc=["body", "body"])
        assert await comments_in_db(session) == []

    async def test_the_longest_body_is_accepted(
        self, client: httpx.AsyncClient, team: Team, task_id: int
    ) -> None:
        comment = await post(
            client, task_id, team.headers["commenter"], "é" * COMMENT_BODY_MAX_LENGTH
        )
        assert len(comment["body"]) == COMMENT_BODY_MAX_LENGTH

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({}, ["body", "body"]),
            ({"body": "Hi", "author_id": 1}, ["body", "author_id"]),
            ({"body": "Hi", "task_id": 1}, ["body", "task_id"]),
        ],
    )
    async def test_missing_and_unknown_fields_are_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        body: dict[str, object],
        loc: list[str],
    ) -> None:
        response = await client.post(
            comments_url(task_id), json=body, headers=team.headers["owner"]
        )
        assert_problem(response, 422, loc=loc)
        assert await comments_in_db(session) == []

    async def test_retry_with_the_idempotency_key_creates_once(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        headers = {**team.headers["commenter"], "Idempotency-Key": "comment-1"}
        first = await client.post(comments_url(task_id), json={"body": "Hi"}, headers=headers)
        second = await client.post(comments_url(task_id), json={"body": "Hi"}, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert len(await comments_in_db(session)) == 1

    async def test_a_refused_request_with_a_key_can_be_retried(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        headers = {**team.headers["viewer"], "Idempotency-Key": "comment-2"}
        refused = await client.post(comments_url(task_id), json={"body": "Hi"}, headers=headers)
        assert_problem(refused, 403)
        await set_role(session, team, "viewer", ProjectRole.COMMENTER)
        retried = await client.post(comments_url(task_id), json={"body": "Hi"}, headers=headers)
        assert retried.status_code == 201, retried.text
        assert "idempotent-replayed" not in retried.headers


# --- read and list ------------------------------------------------------------------------


class TestList:
    async def test_oldest_first_in_pages(
        self, client: httpx.AsyncClient, team: Team, task_id: int
    ) -> None:
        posted = [
            await post(client, task_id, team.headers[who], f"Comment {n}")
            for n, who in enumerate(["commenter", "owner", "editor", "commenter", "admin"])
        ]
        seen: list[dict[str, Any]] = []
        response = await client.get(
            comments_url(task_id), params={"limit": 2}, headers=team.headers["viewer"]
        )
        while True:
            assert response.status_code == 200, response.text
            page = response.json()
            assert set(page) == {"items", "next_cursor"}
            seen.extend(page["items"])
            if page["next_cursor"] is None:
                assert "link" not in response.headers
                break
            assert response.headers["link"].endswith('rel="next"')
            response = await client.get(
                comments_url(task_id),
                params={"limit": 2, "cursor": page["next_cursor"]},
                headers=team.headers["viewer"],
            )
        assert seen == posted

    async def test_only_the_tasks_own_comments(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        other = await add_task(session, team.project_id)
        mine = await post(client, task_id, team.headers["commenter"], "Here")
        await post(client, other, team.headers["commenter"], "There")
        response = await client.get(comments_url(task_id), headers=team.headers["viewer"])
        assert response.json() == {"items": [mine], "next_cursor": None}
        empty = await add_task(session, team.project_id)
        response = await client.get(comments_url(empty), headers=team.headers["viewer"])
        assert response.json() == {"items": [], "next_cursor": None}

    async def test_a_cursor_of_another_task_or_user_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        other = await add_task(session, team.project_id)
        for target in (task_id, task_id, other, other):
            await post(client, target, team.headers["commenter"])
        first = await client.get(
            comments_url(task_id), params={"limit": 1}, headers=team.headers["viewer"]
        )
        cursor = first.json()["next_cursor"]
        assert cursor is not None
        elsewhere = await client.get(
            comments_url(other), params={"cursor": cursor}, headers=team.headers["viewer"]
        )
        assert_problem(elsewhere, 422, loc=["query", "cursor"])
        someone_else = await client.get(
            comments_url(task_id), params={"cursor": cursor}, headers=team.headers["editor"]
        )
        assert_problem(someone_else, 422, loc=["query", "cursor"])

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"order": "desc"}])
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, team: Team, task_id: int, params: dict[str, str | int]
    ) -> None:
        response = await client.get(
            comments_url(task_id), params=params, headers=team.headers["viewer"]
        )
        assert_problem(response, 422)

    async def test_the_author_without_a_name(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
    ) -> None:
        await session.execute(
            update(User).where(User.id == team.users["commenter"].id).values(full_name=None)
        )
        await session.commit()
        comment = await post(client, task_id, team.headers["commenter"])
        assert comment["author"] == {"id": team.users["commenter"].id, "full_name": None}
        listed = await client.get(comments_url(task_id), headers=team.headers["viewer"])
        assert listed.json()["items"][0]["author"]["full_name"] is None


# --- update -------------------------------------------------------------------------------


class TestUpdate:
    async def test_the_author_changes_the_body(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        response = await client.patch(
            comment_url(task_id, comment["id"]),
            json={"body": "Looks better"},
            headers=team.headers["commenter"],
        )
        assert response.status_code == 200, response.text
        changed = response.json()
        assert changed["body"] == "Looks better"
        assert changed["created_at"] == comment["created_at"]
        assert parse_ts(changed["updated_at"]) >= parse_ts(comment["updated_at"])
        assert {k: v for k, v in changed.items() if k not in {"body", "updated_at"}} == {
            k: v for k, v in comment.items() if k not in {"body", "updated_at"}
        }
        assert (await comments_in_db(session))[0][3] == "Looks better"

    async def test_the_same_body_keeps_updated_at(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        long_ago = datetime(2020, 1, 1, tzinfo=utcnow().tzinfo)
        await session.execute(
            update(Comment).where(Comment.id == comment["id"]).values(updated_at=long_ago)
        )
        await session.commit()
        same = await client.patch(
            comment_url(task_id, comment["id"]),
            json={"body": comment["body"]},
            headers=team.headers["commenter"],
        )
        assert same.json()["updated_at"] == "2020-01-01T00:00:00.000Z"
        changed = await client.patch(
            comment_url(task_id, comment["id"]),
            json={"body": "New"},
            headers=team.headers["commenter"],
        )
        assert parse_ts(changed.json()["updated_at"]) > long_ago

    @pytest.mark.parametrize("who", ["owner", "admin", "editor", "viewer"])
    async def test_anyone_but_the_author_is_403_not_the_author(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int, who: str
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        response = await client.patch(
            comment_url(task_id, comment["id"]),
            json={"body": "Hijacked"},
            headers=team.headers[who],
        )
        problem = assert_problem(response, 403)
        assert problem["type"].endswith(":not-comment-author")
        assert "required_role" not in problem
        assert (await comments_in_db(session))[0][3] == "Looks good"

    async def test_an_author_demoted_to_viewer_is_403_role_required(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post(client, task_id, team.headers["editor"])
        await set_role(session, team, "editor", ProjectRole.VIEWER)
        response = await client.patch(
            comment_url(task_id, comment["id"]), json={"body": "X"}, headers=team.headers["editor"]
        )
        problem = assert_problem(response, 403)
        assert (problem["role"], problem["required_role"]) == ("viewer", "commenter")
        assert (await comments_in_db(session))[0][3] == "Looks good"

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({}, ["body", "body"]),
            ({"body": ""}, ["body", "body"]),
            ({"body": None}, ["body", "body"]),
            ({"body": "a" * (COMMENT_BODY_MAX_LENGTH + 1)}, ["body", "body"]),
            ({"body": "Hi", "author_id": 99}, ["body", "author_id"]),
        ],
    )
    async def test_bad_bodies_are_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        body: dict[str, object],
        loc: list[str],
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        response = await client.patch(
            comment_url(task_id, comment["id"]), json=body, headers=team.headers["commenter"]
        )
        assert_problem(response, 422, loc=loc)
        assert (await comments_in_db(session))[0][3] == "Looks good"


# --- delete -------------------------------------------------------------------------------


class TestDelete:
    async def test_the_author_deletes(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        response = await client.delete(
            comment_url(task_id, comment["id"]), headers=team.headers["commenter"]
        )
        assert response.status_code == 204
        assert response.content == b""
        assert await comments_in_db(session) == []
        again = await client.delete(
            comment_url(task_id, comment["id"]), headers=team.headers["commenter"]
        )
        assert_problem(again, 404)

    @pytest.mark.parametrize("who", ["owner", "admin"])
    async def test_an_admin_deletes_anyones(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int, who: str
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        response = await client.delete(
            comment_url(task_id, comment["id"]), headers=team.headers[who]
        )
        assert response.status_code == 204
        assert await comments_in_db(session) == []

    @pytest.mark.parametrize("who", ["editor", "commenter", "viewer"])
    async def test_anyone_else_below_admin_is_403_admin_required(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int, who: str
    ) -> None:
        comment = await post(client, task_id, team.headers["owner"])
        response = await client.delete(
            comment_url(task_id, comment["id"]), headers=team.headers[who]
        )
        problem = assert_problem(response, 403)
        assert (problem["role"], problem["required_role"]) == (who, "admin")
        assert len(await comments_in_db(session)) == 1

    async def test_an_author_demoted_to_viewer_is_403_commenter_required(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, task_id: int
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        await set_role(session, team, "commenter", ProjectRole.VIEWER)
        response = await client.delete(
            comment_url(task_id, comment["id"]), headers=team.headers["commenter"]
        )
        problem = assert_problem(response, 403)
        assert (problem["role"], problem["required_role"]) == ("viewer", "commenter")
        assert len(await comments_in_db(session)) == 1


# --- who may see what ---------------------------------------------------------------------


ROUTES = [
    ("GET", "list", None),
    ("POST", "list", {"body": "Intruder"}),
    ("GET", "one", None),
    ("PATCH", "one", {"body": "Intruder"}),
    ("DELETE", "one", None),
]


def route_url(kind: str, task_id: object, comment_id: object) -> str:
    return comments_url(task_id) if kind == "list" else comment_url(task_id, comment_id)


class TestVisibility:
    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_an_outsider_gets_the_404_of_an_unknown_task(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        method: str,
        kind: str,
        body: dict[str, object] | None,
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        outsider = await client.request(
            method,
            route_url(kind, task_id, comment["id"]),
            json=body,
            headers=team.headers["outsider"],
        )
        unknown = await client.request(
            method, route_url(kind, 2**62, comment["id"]), json=body, headers=team.headers["owner"]
        )
        assert comparable(assert_problem(outsider, 404)) == comparable(assert_problem(unknown, 404))
        assert [row[3] for row in await comments_in_db(session)] == ["Looks good"]

    async def test_an_instance_admin_who_is_not_a_member_is_404(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
    ) -> None:
        await session.execute(
            update(User).where(User.id == team.users["outsider"].id).values(role=Role.ADMIN.value)
        )
        await session.commit()
        comment = await post(client, task_id, team.headers["commenter"])
        for method, kind, body in ROUTES:
            response = await client.request(
                method,
                route_url(kind, task_id, comment["id"]),
                json=body,
                headers=team.headers["outsider"],
            )
            assert_problem(response, 404)
        assert len(await comments_in_db(session)) == 1

    @pytest.mark.parametrize(
        ("method", "body"), [(method, body) for method, kind, body in ROUTES if kind == "one"]
    )
    async def test_a_comment_under_another_task_is_404(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        method: str,
        body: dict[str, object] | None,
    ) -> None:
        other = await add_task(session, team.project_id)
        comment = await post(client, other, team.headers["commenter"])
        # The author, and an admin who may delete any comment: neither reaches it through
        # another task's path.
        for who in ("commenter", "admin"):
            response = await client.request(
                method, comment_url(task_id, comment["id"]), json=body, headers=team.headers[who]
            )
            problem = assert_problem(response, 404)
            unknown = await client.request(
                method, comment_url(task_id, 2**62), json=body, headers=team.headers[who]
            )
            assert comparable(problem) == comparable(assert_problem(unknown, 404))
        assert await comments_in_db(session) == [
            (comment["id"], other, team.users["commenter"].id, "Looks good")
        ]

    async def test_a_comment_under_a_task_of_another_project_is_404(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
    ) -> None:
        other_project = await add_project(
            session, {team.users["admin"]: ProjectRole.OWNER}, "Other"
        )
        other_task = await add_task(session, other_project)
        comment = await post(client, other_task, team.headers["admin"])
        for method, _, body in [route for route in ROUTES if route[1] == "one"]:
            response = await client.request(
                method,
                comment_url(task_id, comment["id"]),
                json=body,
                headers=team.headers["admin"],
            )
            assert_problem(response, 404)
        assert len(await comments_in_db(session)) == 1

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    @pytest.mark.parametrize("where", ["task", "project"])
    async def test_in_the_trash_is_404_for_every_member(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        method: str,
        kind: str,
        body: dict[str, object] | None,
        where: str,
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        if where == "task":
            await session.execute(
                update(Task).where(Task.id == task_id).values(deleted_at=utcnow())
            )
        else:
            await session.execute(
                update(Project).where(Project.id == team.project_id).values(deleted_at=utcnow())
            )
        await session.commit()
        for who in ("owner", "commenter"):
            response = await client.request(
                method,
                route_url(kind, task_id, comment["id"]),
                json=body,
                headers=team.headers[who],
            )
            assert_problem(response, 404)
        assert [row[3] for row in await comments_in_db(session)] == ["Looks good"]

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_a_removed_member_is_404_on_the_next_request(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        method: str,
        kind: str,
        body: dict[str, object] | None,
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        await session.execute(
            delete(ProjectMember).where(
                ProjectMember.project_id == team.project_id,
                ProjectMember.user_id == team.users["commenter"].id,
            )
        )
        await session.commit()
        response = await client.request(
            method,
            route_url(kind, task_id, comment["id"]),
            json=body,
            headers=team.headers["commenter"],
        )
        assert_problem(response, 404)
        assert [row[3] for row in await comments_in_db(session)] == ["Looks good"]

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_a_revoked_token_is_401(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        task_id: int,
        method: str,
        kind: str,
        body: dict[str, object] | None,
    ) -> None:
        comment = await post(client, task_id, team.headers["commenter"])
        await session.execute(
            update(User)
            .where(User.id == team.users["commenter"].id)
            .values(token_version=User.token_version + 1)
        )
        await session.commit()
        response = await client.request(
            method,
            route_url(kind, task_id, comment["id"]),
            json=body,
            headers=team.headers["commenter"],
        )
        assert_problem(response, 401)
        count = await session.scalar(select(func.count()).select_from(Comment))
        assert count == 1
        assert [row[3] for row in await comments_in_db(session)] == ["Looks good"]

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    @pytest.mark.parametrize("bad", MALFORMED_IDS)
    async def test_malformed_ids_are_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        task_id: int,
        method: str,
        kind: str,
        body: dict[str, object] | None,
        bad: str,
    ) -> None:
        response = await client.request(
            method, route_url(kind, bad, 1), json=body, headers=team.headers["owner"]
        )
        assert_problem(response, 422, loc=["path", "task_id"])
        if kind == "one":
            response = await client.request(
                method, comment_url(task_id, bad), json=body, headers=team.headers["owner"]
            )
            assert_problem(response, 422, loc=["path", "comment_id"])
