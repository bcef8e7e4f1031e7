"""`/api/v2/projects/{id}/labels` (spec api-v2 section 6): what each role, an outsider and a
hostile client get, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import ProjectRole
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import labels as label_statements
from app.models.label import Label, TaskLabel
from app.models.project import Project, ProjectMember
from app.models.task import Task
from app.models.user import User
from app.schemas.label import PALETTE
from app.schemas.user import UserCreate
from app.services import user as user_service
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team, add_project
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD
from tests.support import assert_problem, forged, refused_at_first

LABEL_FIELDS = {"id", "project_id", "name", "color"}
WRITERS = ("owner", "admin", "editor")
NOT_WRITERS = ("commenter", "viewer")
TRIALS = 4
MALFORMED_IDS = ("abc", "0", "-1", "01", "+1", "1.0", "9" * 20)


def labels_url(project_id: object) -> str:
    return f"{V2}/projects/{project_id}/labels"


def label_url(project_id: object, label_id: object) -> str:
    return f"{labels_url(project_id)}/{label_id}"


def comparable(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem body without the parts that differ between any two requests."""
    return {key: value for key, value in problem.items() if key not in {"request_id", "instance"}}


async def create(
    client: httpx.AsyncClient, project_id: int, headers: Headers, **body: object
) -> dict[str, Any]:
    response = await client.post(
        labels_url(project_id), json={"name": "Bug", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def labels_in_db(session: AsyncSession, project_id: int) -> list[tuple[int, str, str]]:
    rows = await session.execute(
        select(Label.id, Label.name, Label.color)
        .where(Label.project_id == project_id)
        .order_by(Label.id)
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def add_task(session: AsyncSession, project_id: int, *label_ids: int) -> int:
    now = utcnow()
    task = Task(project_id=project_id, title="Ship it", created_at=now, updated_at=now, version=1)
    session.add(task)
    await session.flush()
    for label_id in label_ids:
        session.add(TaskLabel(task_id=task.id, label_id=label_id))
    await session.commit()
    return task.id


async def versions(session: AsyncSession, *task_ids: int) -> dict[int, int]:
    rows = await session.execute(select(Task.id, Task.version).where(Task.id.in_(task_ids)))
    return {row[0]: row[1] for row in rows}


async def walk(
    client: httpx.AsyncClient, project_id: int, headers: Headers, limit: int
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    response = await client.get(labels_url(project_id), params={"limit": limit}, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen.extend(page["items"])
        if page["next_cursor"] is None:
            assert "link" not in response.headers
            return seen
        link = response.headers["link"]
        assert link.endswith('rel="next"')
        response = await client.get(
            labels_url(project_id),
            params={"limit": limit, "cursor": page["next_cursor"]},
            headers=headers,
        )


# --- create -------------------------------------------------------------------------------


class TestCreate:
    async def test_a_create_refused_by_a_change_gone_at_once_is_made(
        self, client: httpx.AsyncClient, team: Team, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The insert met the project in the trash, restored by the read that tells why: the
        label is made again and answers 201. It was a bare 409 `conflict`, without
        `Retry-After` (a black-box run, 2026-12-07: 8 of 1,812 label creates)."""
        calls = refused_at_first(monkeypatch, label_statements, "insert_label")
        response = await client.post(
            labels_url(team.project_id), json={"name": "After"}, headers=team.headers["editor"]
        )
        assert response.status_code == 201, response.text
        assert calls == ["refused", "made"]
        listed = await client.get(labels_url(team.project_id), headers=team.headers["viewer"])
        assert "After" in [label["name"] for label in listed.json()["items"]]

    @pytest.mark.parametrize("who", WRITERS)
    async def test_editors_and_above_create(
        self, client: httpx.AsyncClient, team: Team, who: str
    ) -> None:
        response = await client.post(
            labels_url(team.project_id),
            json={"name": "  Needs review ", "color": "#A1B2C3"},
            headers=team.headers[who],
        )
        assert response.status_code == 201, response.text
        label = response.json()
        assert set(label) == LABEL_FIELDS
        assert label["project_id"] == team.project_id
        assert label["name"] == "Needs review"  # trimmed
        assert label["color"] == "#a1b2c3"  # lower case
        assert response.headers["location"] == label_url(team.project_id, label["id"])
        again = await client.get(response.headers["location"], headers=team.headers["viewer"])
        assert again.status_code == 200
        assert again.json() == label

    async def test_without_a_color_the_server_picks_one_by_name(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        other = await add_project(session, {team.users["editor"]: ProjectRole.EDITOR}, "Other")
        first = await create(client, team.project_id, team.headers["editor"], name="Urgent")
        second = await create(client, other, team.headers["editor"], name="URGENT")
        assert re.fullmatch(r"#[0-9a-f]{6}", first["color"])
        assert first["color"] in PALETTE
        assert second["color"] == first["color"]

    @pytest.mark.parametrize("who", NOT_WRITERS)
    async def test_below_editor_is_403_and_writes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, who: str
    ) -> None:
        response = await client.post(
            labels_url(team.project_id), json={"name": "Bug"}, headers=team.headers[who]
        )
        problem = assert_problem(response, 403)
        assert problem["role"] == who
        assert problem["required_role"] == "editor"
        assert await labels_in_db(session, team.project_id) == []

    async def test_same_name_in_another_case_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        first = await create(client, team.project_id, team.headers["editor"], name="Bug")
        response = await client.post(
            labels_url(team.project_id), json={"name": " bUG "}, headers=team.headers["admin"]
        )
        problem = assert_problem(response, 409)
        assert problem["type"].endswith(":label-name-taken")
        assert [row[0] for row in await labels_in_db(session, team.project_id)] == [first["id"]]

    async def test_same_name_in_another_project_is_fine(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        other = await add_project(session, {team.users["editor"]: ProjectRole.EDITOR}, "Other")
        await create(client, team.project_id, team.headers["editor"], name="Bug")
        label = await create(client, other, team.headers["editor"], name="bug")
        assert label["project_id"] == other

    async def test_a_viewer_is_refused_before_a_duplicate_is(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        # 403 before 409: a viewer learns nothing from a name that is taken.
        await create(client, team.project_id, team.headers["editor"], name="Bug")
        response = await client.post(
            labels_url(team.project_id), json={"name": "Bug"}, headers=team.headers["viewer"]
        )
        assert_problem(response, 403)

    @pytest.mark.parametrize(
        "color",
        ["#abc", "red", "#GGGGGG", "#abcdef0", "abcdef", "#abcde", "", " #abcdef", 123, None],
    )
    async def test_bad_colors_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, color: object
    ) -> None:
        response = await client.post(
            labels_url(team.project_id),
            json={"name": "Bug", "color": color},
            headers=team.headers["editor"],
        )
        assert_problem(response, 422, loc=["body", "color"])
        assert await labels_in_db(session, team.project_id) == []

    @pytest.mark.parametrize(
        "name",
        [
            "",
            "   ",
            "a" * 51,
            " " + "a" * 51 + " ",
            "a\u0000b",
            "a\nb",
            "a\tb",
            "a\u0007b",
            "a\u202eb",
            "\u200b",
            "\ufeff\u200d",
            None,
            17,
        ],
    )
    async def test_bad_names_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, name: object
    ) -> None:
        response = await client.post(
            labels_url(team.project_id), json={"name": name}, headers=team.headers["editor"]
        )
        assert_problem(response, 422, loc=["body", "name"])
        assert await labels_in_db(session, team.project_id) == []

    async def test_name_bounds_apply_after_trimming(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        label = await create(
            client, team.project_id, team.headers["editor"], name=f"  {'é' * 50}  "
        )
        assert label["name"] == "é" * 50
        one = await create(client, team.project_id, team.headers["editor"], name="x")
        assert one["name"] == "x"

    async def test_missing_name_and_unknown_fields_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        response = await client.post(
            labels_url(team.project_id), json={"color": "#abcdef"}, headers=team.headers["editor"]
        )
        assert_problem(response, 422, loc=["body", "name"])
        response = await client.post(
            labels_url(team.project_id),
            json={"name": "Bug", "project_id": team.project_id + 1, "id": 5},
            headers=team.headers["editor"],
        )
        assert_problem(response, 422, loc=["body", "project_id"])
        assert await labels_in_db(session, team.project_id) == []

    async def test_not_a_json_object_is_422(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.post(
            labels_url(team.project_id), json=["Bug"], headers=team.headers["editor"]
        )
        assert_problem(response, 422)

    async def test_retry_with_the_idempotency_key_creates_once(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        headers = {**team.headers["editor"], "Idempotency-Key": "label-1"}
        first = await client.post(
            labels_url(team.project_id), json={"name": "Bug"}, headers=headers
        )
        assert first.status_code == 201, first.text
        second = await client.post(
            labels_url(team.project_id), json={"name": "Bug"}, headers=headers
        )
        assert second.status_code == 201, second.text
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert second.headers["location"] == first.headers["location"]
        assert len(await labels_in_db(session, team.project_id)) == 1
        # The key with another body is the client's mistake, not a second label.
        other = await client.post(
            labels_url(team.project_id), json={"name": "Feature"}, headers=headers
        )
        assert_problem(other, 422, loc=["header", "Idempotency-Key"])

    async def test_retry_without_a_key_is_409_not_500(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        await create(client, team.project_id, team.headers["editor"], name="Bug")
        response = await client.post(
            labels_url(team.project_id), json={"name": "Bug"}, headers=team.headers["editor"]
        )
        assert_problem(response, 409)

    async def test_a_refused_request_with_a_key_claims_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        headers = {**team.headers["editor"], "Idempotency-Key": "label-dup"}
        await create(client, team.project_id, team.headers["editor"], name="Bug")
        assert_problem(
            await client.post(labels_url(team.project_id), json={"name": "bug"}, headers=headers),
            409,
        )
        # The label is renamed away; the same retry now succeeds.
        label_id = (await labels_in_db(session, team.project_id))[0][0]
        renamed = await client.patch(
            label_url(team.project_id, label_id),
            json={"name": "Defect"},
            headers=team.headers["editor"],
        )
        assert renamed.status_code == 200
        retry = await client.post(
            labels_url(team.project_id), json={"name": "bug"}, headers=headers
        )
        assert retry.status_code == 201, retry.text


# --- read and list ------------------------------------------------------------------------


class TestList:
    async def test_by_name_without_regard_to_case_then_id(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        for name in ("beta", "Alpha", "gamma", "ALPHA2", "Delta", "alpha3"):
            await create(client, team.project_id, team.headers["editor"], name=name)
        response = await client.get(labels_url(team.project_id), headers=team.headers["viewer"])
        assert response.status_code == 200
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert page["next_cursor"] is None
        assert [label["name"] for label in page["items"]] == [
            "Alpha",
            "ALPHA2",
            "alpha3",
            "beta",
            "Delta",
            "gamma",
        ]
        assert all(set(label) == LABEL_FIELDS for label in page["items"])

    async def test_walking_the_cursors_returns_each_label_once(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        names = [f"{'ab'[n % 2]}{n:02d}" for n in range(7)]
        for name in names:
            await create(client, team.project_id, team.headers["editor"], name=name.upper())
        walked = await walk(client, team.project_id, team.headers["commenter"], limit=2)
        assert [label["name"] for label in walked] == sorted(name.upper() for name in names)

    async def test_a_label_created_between_pages_does_not_repeat_any(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        for name in ("b", "d", "f"):
            await create(client, team.project_id, team.headers["editor"], name=name)
        first = await client.get(
            labels_url(team.project_id), params={"limit": 2}, headers=team.headers["viewer"]
        )
        await create(client, team.project_id, team.headers["editor"], name="a")
        await create(client, team.project_id, team.headers["editor"], name="e")
        rest = await client.get(
            labels_url(team.project_id),
            params={"limit": 10, "cursor": first.json()["next_cursor"]},
            headers=team.headers["viewer"],
        )
        assert [label["name"] for label in first.json()["items"]] == ["b", "d"]
        assert [label["name"] for label in rest.json()["items"]] == ["e", "f"]

    async def test_an_empty_project_is_an_empty_page(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        response = await client.get(labels_url(team.project_id), headers=team.headers["viewer"])
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}

    async def test_a_cursor_of_another_project_or_user_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        other = await add_project(session, {team.users["editor"]: ProjectRole.EDITOR}, "Other")
        for name in ("a", "b"):
            await create(client, team.project_id, team.headers["editor"], name=name)
            await create(client, other, team.headers["editor"], name=name)
        first = await client.get(
            labels_url(team.project_id), params={"limit": 1}, headers=team.headers["editor"]
        )
        cursor = first.json()["next_cursor"]
        elsewhere = await client.get(
            labels_url(other), params={"cursor": cursor}, headers=team.headers["editor"]
        )
        assert_problem(elsewhere, 422, loc=["query", "cursor"])
        someone_else = await client.get(
            labels_url(team.project_id), params={"cursor": cursor}, headers=team.headers["viewer"]
        )
        assert_problem(someone_else, 422, loc=["query", "cursor"])
        signed_otherwise = await client.get(
            labels_url(team.project_id),
            params={"cursor": forged(cursor)},
            headers=team.headers["editor"],
        )
        assert_problem(signed_otherwise, 422, loc=["query", "cursor"])

    @pytest.mark.parametrize(
        "params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"sort": "name"}]
    )
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, team: Team, params: dict[str, str | int]
    ) -> None:
        response = await client.get(
            labels_url(team.project_id), params=params, headers=team.headers["viewer"]
        )
        assert_problem(response, 422)

    async def test_read_one_label(self, client: httpx.AsyncClient, team: Team) -> None:
        label = await create(client, team.project_id, team.headers["editor"], color="#00FF00")
        response = await client.get(
            label_url(team.project_id, label["id"]), headers=team.headers["viewer"]
        )
        assert response.status_code == 200
        assert response.json() == {**label, "color": "#00ff00"}


# --- update -------------------------------------------------------------------------------


class TestUpdate:
    @pytest.mark.parametrize("who", WRITERS)
    async def test_editors_rename_and_recolor(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, who: str
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"], color="#000000")
        response = await client.patch(
            label_url(team.project_id, label["id"]),
            json={"name": " Defect ", "color": "#FFAA00"},
            headers=team.headers[who],
        )
        assert response.status_code == 200, response.text
        assert response.json() == {**label, "name": "Defect", "color": "#ffaa00"}
        assert await labels_in_db(session, team.project_id) == [(label["id"], "Defect", "#ffaa00")]

    async def test_only_the_fields_sent_change(self, client: httpx.AsyncClient, team: Team) -> None:
        label = await create(client, team.project_id, team.headers["editor"], color="#123456")
        renamed = await client.patch(
            label_url(team.project_id, label["id"]),
            json={"name": "Bugs"},
            headers=team.headers["editor"],
        )
        assert renamed.json() == {**label, "name": "Bugs"}
        recolored = await client.patch(
            label_url(team.project_id, label["id"]),
            json={"color": "#654321"},
            headers=team.headers["editor"],
        )
        assert recolored.json() == {**label, "name": "Bugs", "color": "#654321"}
        unchanged = await client.patch(
            label_url(team.project_id, label["id"]), json={}, headers=team.headers["editor"]
        )
        assert unchanged.status_code == 200
        assert unchanged.json() == recolored.json()

    async def test_changing_the_case_of_its_own_name_is_fine(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"], name="bug")
        response = await client.patch(
            label_url(team.project_id, label["id"]),
            json={"name": "BUG"},
            headers=team.headers["editor"],
        )
        assert response.status_code == 200
        assert response.json()["name"] == "BUG"

    async def test_renaming_onto_another_label_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        await create(client, team.project_id, team.headers["editor"], name="Bug")
        feature = await create(client, team.project_id, team.headers["editor"], name="Feature")
        response = await client.patch(
            label_url(team.project_id, feature["id"]),
            json={"name": "BUG"},
            headers=team.headers["editor"],
        )
        assert_problem(response, 409)
        names = {row[1] for row in await labels_in_db(session, team.project_id)}
        assert names == {"Bug", "Feature"}

    @pytest.mark.parametrize("who", NOT_WRITERS)
    @pytest.mark.parametrize("body", [{"name": "Defect"}, {}])
    async def test_below_editor_is_403_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        who: str,
        body: dict[str, object],
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"], color="#000000")
        response = await client.patch(
            label_url(team.project_id, label["id"]), json=body, headers=team.headers[who]
        )
        problem = assert_problem(response, 403)
        assert (problem["role"], problem["required_role"]) == (who, "editor")
        assert await labels_in_db(session, team.project_id) == [(label["id"], "Bug", "#000000")]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": ""}, "name"),
            ({"name": None}, "name"),
            ({"name": "a" * 51}, "name"),
            ({"name": "a\nb"}, "name"),
            ({"color": "#abc"}, "color"),
            ({"color": None}, "color"),
            ({"color": "blue"}, "color"),
            ({"project_id": 1}, "project_id"),
            ({"id": 1}, "id"),
        ],
    )
    async def test_bad_bodies_are_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        body: dict[str, object],
        field: str,
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"], color="#000000")
        response = await client.patch(
            label_url(team.project_id, label["id"]), json=body, headers=team.headers["editor"]
        )
        assert_problem(response, 422, loc=["body", field])
        assert await labels_in_db(session, team.project_id) == [(label["id"], "Bug", "#000000")]


# --- delete -------------------------------------------------------------------------------


class TestDelete:
    async def test_takes_the_label_off_its_tasks_and_bumps_exactly_theirs(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team
    ) -> None:
        doomed = await create(client, team.project_id, team.headers["editor"], name="Doomed")
        kept = await create(client, team.project_id, team.headers["editor"], name="Kept")
        only_doomed = await add_task(session, team.project_id, doomed["id"])
        both = await add_task(session, team.project_id, doomed["id"], kept["id"])
        only_kept = await add_task(session, team.project_id, kept["id"])
        bare = await add_task(session, team.project_id)
        trashed = await add_task(session, team.project_id, doomed["id"])
        await session.execute(update(Task).where(Task.id == trashed).values(deleted_at=utcnow()))
        await session.commit()
        tasks = (only_doomed, both, only_kept, bare, trashed)
        before = await versions(session, *tasks)

        response = await client.delete(
            label_url(team.project_id, doomed["id"]), headers=team.headers["editor"]
        )
        assert response.status_code == 204
        assert response.content == b""
        session.expire_all()
        after = await versions(session, *tasks)
        assert {task for task in tasks if after[task] != before[task]} == {
            only_doomed,
            both,
            trashed,
        }
        assert all(after[task] in (before[task], before[task] + 1) for task in tasks)
        links = await session.execute(select(TaskLabel.task_id, TaskLabel.label_id))
        assert sorted(tuple(row) for row in links) == sorted(
            [(both, kept["id"]), (only_kept, kept["id"])]
        )
        assert [row[0] for row in await labels_in_db(session, team.project_id)] == [kept["id"]]
        gone = await client.get(
            label_url(team.project_id, doomed["id"]), headers=team.headers["viewer"]
        )
        assert_problem(gone, 404)
        again = await client.delete(
            label_url(team.project_id, doomed["id"]), headers=team.headers["editor"]
        )
        assert_problem(again, 404)

    @pytest.mark.parametrize("who", NOT_WRITERS)
    async def test_below_editor_is_403_and_changes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, who: str
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"])
        task = await add_task(session, team.project_id, label["id"])
        response = await client.delete(
            label_url(team.project_id, label["id"]), headers=team.headers[who]
        )
        problem = assert_problem(response, 403)
        assert (problem["role"], problem["required_role"]) == (who, "editor")
        session.expire_all()
        assert await versions(session, task) == {task: 1}
        assert len(await labels_in_db(session, team.project_id)) == 1
        links = await session.scalar(select(func.count()).select_from(TaskLabel))
        assert links == 1

    @pytest.mark.parametrize("who", ["owner", "admin"])
    async def test_admins_and_owners_delete(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, who: str
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"])
        response = await client.delete(
            label_url(team.project_id, label["id"]), headers=team.headers[who]
        )
        assert response.status_code == 204
        assert await labels_in_db(session, team.project_id) == []


# --- who may see what ---------------------------------------------------------------------


ROUTES = [
    ("GET", "list", None),
    ("POST", "list", {"name": "Intruder"}),
    ("GET", "one", None),
    ("PATCH", "one", {"name": "Intruder"}),
    ("PATCH", "one", {}),
    ("DELETE", "one", None),
]


def route_url(kind: str, project_id: object, label_id: object) -> str:
    return labels_url(project_id) if kind == "list" else label_url(project_id, label_id)


class TestVisibility:
    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_an_outsider_gets_the_404_of_an_unknown_project(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        method: str,
        kind: str,
        body: dict[str, object] | None,
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"], color="#000000")
        task = await add_task(session, team.project_id, label["id"])
        outsider = await client.request(
            method,
            route_url(kind, team.project_id, label["id"]),
            json=body,
            headers=team.headers["outsider"],
        )
        unknown = await client.request(
            method,
            route_url(kind, 2**62, label["id"]),
            json=body,
            headers=team.headers["outsider"],
        )
        assert comparable(assert_problem(outsider, 404)) == comparable(assert_problem(unknown, 404))
        for who in ("outsider", "editor"):
            # ... and a member asking for a label that does not exist gets the same status.
            missing = await client.request(
                method, route_url(kind, 2**62, 2**62), json=body, headers=team.headers[who]
            )
            assert_problem(missing, 404)
        assert await labels_in_db(session, team.project_id) == [(label["id"], "Bug", "#000000")]
        session.expire_all()
        assert await versions(session, task) == {task: 1}

    @pytest.mark.parametrize(
        ("method", "body"), [(method, body) for method, kind, body in ROUTES if kind == "one"]
    )
    async def test_a_label_of_another_project_in_the_path_is_404(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        method: str,
        body: dict[str, object] | None,
    ) -> None:
        # The editor may change labels in both projects, but not one project's through the
        # other's path.
        other = await add_project(session, {team.users["editor"]: ProjectRole.EDITOR}, "Other")
        foreign = await create(client, other, team.headers["editor"], color="#000000")
        await create(client, team.project_id, team.headers["editor"], name="Local")
        response = await client.request(
            method,
            label_url(team.project_id, foreign["id"]),
            json=body,
            headers=team.headers["editor"],
        )
        problem = assert_problem(response, 404)
        unknown = await client.request(
            method, label_url(team.project_id, 2**62), json=body, headers=team.headers["editor"]
        )
        assert comparable(problem) == comparable(assert_problem(unknown, 404))
        assert await labels_in_db(session, other) == [(foreign["id"], "Bug", "#000000")]

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_a_project_in_the_trash_is_404_for_its_members(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        method: str,
        kind: str,
        body: dict[str, object] | None,
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"])
        await session.execute(
            update(Project).where(Project.id == team.project_id).values(deleted_at=utcnow())
        )
        await session.commit()
        response = await client.request(
            method,
            route_url(kind, team.project_id, label["id"]),
            json=body,
            headers=team.headers["owner"],
        )
        assert_problem(response, 404)

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_a_removed_member_is_404_on_the_next_request(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        method: str,
        kind: str,
        body: dict[str, object] | None,
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"])
        await session.execute(
            delete(ProjectMember).where(
                ProjectMember.project_id == team.project_id,
                ProjectMember.user_id == team.users["editor"].id,
            )
        )
        await session.commit()
        response = await client.request(
            method,
            route_url(kind, team.project_id, label["id"]),
            json=body,
            headers=team.headers["editor"],
        )
        assert_problem(response, 404)

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_a_revoked_token_is_401(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        method: str,
        kind: str,
        body: dict[str, object] | None,
    ) -> None:
        label = await create(client, team.project_id, team.headers["editor"])
        await session.execute(
            update(User)
            .where(User.id == team.users["editor"].id)
            .values(token_version=User.token_version + 1)
        )
        await session.commit()
        response = await client.request(
            method,
            route_url(kind, team.project_id, label["id"]),
            json=body,
            headers=team.headers["editor"],
        )
        assert_problem(response, 401)
        assert len(await labels_in_db(session, team.project_id)) == 1

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    async def test_without_a_token_is_401(
        self, client: httpx.AsyncClient, team: Team, method: str, kind: str, body: object
    ) -> None:
        response = await client.request(method, route_url(kind, team.project_id, 1), json=body)
        assert_problem(response, 401)

    @pytest.mark.parametrize(("method", "kind", "body"), ROUTES)
    @pytest.mark.parametrize("bad", MALFORMED_IDS)
    async def test_malformed_ids_are_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        method: str,
        kind: str,
        body: dict[str, object] | None,
        bad: str,
    ) -> None:
        response = await client.request(
            method, route_url(kind, bad, 1), json=body, headers=team.headers["editor"]
        )
        assert_problem(response, 422, loc=["path", "project_id"])
        if kind == "one":
            response = await client.request(
                method,
                label_url(team.project_id, bad),
                json=body,
                headers=team.headers["editor"],
            )
            assert_problem(response, 422, loc=["path", "label_id"])


# --- races (requests that really commit, at once) -----------------------------------------


@dataclass
class Committed:
    """An editor and a project of theirs, committed for real (not in the test's transaction)."""

    project_id: int
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
                project_id=project.id,
                user_id=user.id,
                role=ProjectRole.EDITOR.value,
                added_at=now,
            )
        )
    try:
        yield Committed(project.id, auth_headers(user))
    finally:
        # Its labels, links and tasks go with it; `committing_client` removes the user.
        async with Db.transaction_for(sessions) as db:
            await db.session.execute(delete(Project).where(Project.id == project.id))


class TestRaces:
    async def test_one_name_created_at_once_in_several_cases_is_one_label(
        self, committing_client: httpx.AsyncClient, committed: Committed
    ) -> None:
        for trial in range(TRIALS):
            names = [
                f"Bug {trial}",
                f"BUG {trial}",
                f"bug {trial}",
                f"bUg {trial}",
                f" Bug {trial} ",
            ]
            responses = await asyncio.gather(
                *(
                    committing_client.post(
                        labels_url(committed.project_id),
                        json={"name": name},
                        headers=committed.headers,
                    )
                    for name in names
                )
            )
            statuses = sorted(response.status_code for response in responses)
            assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
            for response in responses:
                if response.status_code == 409:
                    assert assert_problem(response, 409)["type"].endswith(":label-name-taken")
        listed = await committing_client.get(
            labels_url(committed.project_id), headers=committed.headers
        )
        assert len(listed.json()["items"]) == TRIALS

    async def test_labels_deleted_twice_at_once_bump_their_task_once_each(
        self, app: FastAPI, committing_client: httpx.AsyncClient, committed: Committed
    ) -> None:
        for trial in range(TRIALS):
            labels = [
                await create(
                    committing_client,
                    committed.project_id,
                    committed.headers,
                    name=f"{name} {trial}",
                )
                for name in ("One", "Two")
            ]
            async with Db.transaction_for(app.state.sessionmaker) as db:
                now = utcnow()
                task = Task(
                    project_id=committed.project_id,
                    title="Shared",
                    created_at=now,
                    updated_at=now,
                    version=1,
                )
                db.session.add(task)
                await db.session.flush()
                for label in labels:
                    db.session.add(TaskLabel(task_id=task.id, label_id=label["id"]))
            # Each label twice, all four at once: the task loses two labels, so two new
            # versions; the second deletion of each is a 404.
            responses = await asyncio.gather(
                *(
                    committing_client.delete(
                        label_url(committed.project_id, label["id"]), headers=committed.headers
                    )
                    for label in labels * 2
                )
            )
            statuses = sorted(response.status_code for response in responses)
            assert statuses == [204, 204, 404, 404], [r.text for r in responses]
            async with Db.transaction_for(app.state.sessionmaker) as db:
                version = await db.session.scalar(select(Task.version).where(Task.id == task.id))
                links = await db.session.scalar(
                    select(func.count()).select_from(TaskLabel).where(TaskLabel.task_id == task.id)
                )
            assert version == 3
            assert links == 0
