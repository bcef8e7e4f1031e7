"""`GET /api/v1/tasks`: filters, sorts, keyset pages, the `Link` header and hostile cursors.

Tasks are mostly inserted straight into the database (through the `session` fixture, which
shares the test's transaction with the HTTP client) so that their timestamps, due dates and
priorities are exactly what each test needs. Expected orders are computed here from those
values, never read back from the service. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.task import Task, TaskPriority
from app.models.user import User
from tests.api.conftest import Headers
from tests.support import PROBLEM, SORTS, TASK_FIELDS, assert_problem, inbox_id

TASKS = "/api/v1/tasks"
LINK_NEXT = re.compile(r'^<([^<>]+)>; rel="next"$')
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BASE = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)

Params = dict[str, Any]


# --- helpers --------------------------------------------------------------------------------


def at(ms: int = 0, *, days: int = 0) -> datetime:
    """A timestamp `days` and `ms` milliseconds after BASE."""
    return BASE + timedelta(days=days, milliseconds=ms)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Row:
    """What a test knows about a task it inserted (a snapshot, not a live ORM object)."""

    id: int
    title: str
    status: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime


async def insert_tasks(
    session: AsyncSession, owner: User, specs: Iterable[dict[str, Any]]
) -> list[Row]:
    """Insert one task per spec, in order; unset fields get plain defaults."""
    project_id = await inbox_id(session, owner)
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
        done = values["status"] == "done"
        tasks.append(
            Task(
                project_id=project_id,
                completed_at=values["updated_at"] if done else None,
                version=1,
                **values,
            )
        )
    session.add_all(tasks)
    await session.flush()
    rows = [
        Row(t.id, t.title, t.status, t.priority, t.due_at, t.created_at, t.updated_at)
        for t in tasks
    ]
    await session.commit()
    return rows


def expected_order(rows: Iterable[Row], sort: str) -> list[int]:
    """The contract's order: (key, id) in the sort's direction; no due date last either way."""
    descending = sort.startswith("-")
    field = sort.removeprefix("-")
    if field == "due_at":
        dated = [r for r in rows if r.due_at is not None]
        undated = [r for r in rows if r.due_at is None]
        dated.sort(key=lambda r: (r.due_at, r.id), reverse=descending)
        undated.sort(key=lambda r: r.id, reverse=descending)
        return [r.id for r in dated + undated]
    ordered = sorted(rows, key=lambda r: (getattr(r, field), r.id), reverse=descending)
    return [r.id for r in ordered]


async def get_page(client: httpx.AsyncClient, headers: Headers, **params: Any) -> httpx.Response:
    return await client.get(TASKS, params=params, headers=headers)


async def ok_page(client: httpx.AsyncClient, headers: Headers, **params: Any) -> dict[str, Any]:
    response = await get_page(client, headers, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"items", "next_cursor"}
    return body


async def listed_ids(client: httpx.AsyncClient, headers: Headers, **params: Any) -> list[int]:
    """Every id of a one-page listing (the page must be the last one)."""
    body = await ok_page(client, headers, limit=100, **params)
    assert body["next_cursor"] is None
    return [item["id"] for item in body["items"]]


def next_link(response: httpx.Response) -> str:
    match = LINK_NEXT.match(response.headers["link"])
    assert match, response.headers["link"]
    return match.group(1)


async def walk(
    client: httpx.AsyncClient,
    headers: Headers,
    params: Params,
    *,
    between_pages: Callable[[int, list[int]], Awaitable[None]] | None = None,
    max_pages: int = 200,
) -> list[int]:
    """Follow `next_cursor` to the end and return the ids in the order they were listed.

    Checks each page on the way: at most `limit` items, a non-empty page and a `Link` header
    whenever there is a next page, neither `next_cursor` nor `Link` on the last one.
    """
    limit = int(params.get("limit", 20))
    seen: list[int] = []
    cursor: str | None = None
    for page_number in range(max_pages):
        query = dict(params) if cursor is None else {**params, "cursor": cursor}
        response = await client.get(TASKS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= limit
        page_ids = [item["id"] for item in body["items"]]
        seen.extend(page_ids)
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            return seen
        assert isinstance(cursor, str)
        assert page_ids, "a page with a next cursor must not be empty"
        assert next_link(response)
        if between_pages is not None:
            await between_pages(page_number, page_ids)
    pytest.fail(f"the walk did not end within {max_pages} pages")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def replace_char(text: str, index: int, replacement: str | None = None) -> str:
    """`text` with the character at `index` changed (to `replacement` or another letter)."""
    old = text[index]
    new = replacement or ("A" if old != "A" else "B")
    assert new != old
    return text[:index] + new + text[index + 1 :]


# --- fixtures -------------------------------------------------------------------------------


# Twelve tasks whose sort keys tie in every column, in an insertion (id) order that matches
# none of the sorts: (created_at ms, updated_at ms, due_at day or None, priority).
MIXED_SPECS: list[tuple[int, int, int | None, str]] = [
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


@pytest.fixture
async def mixed(session: AsyncSession, alice: User, bob: User) -> list[Row]:
    """Alice's twelve live tasks of MIXED_SPECS, plus noise that must never be listed."""
    rows = await insert_tasks(
        session,
        alice,
        (
            {
                "title": f"Mixed {n}",
                "status": ("todo", "in_progress", "done")[n % 3],
                "created_at": at(created),
                "updated_at": at(updated),
                "due_at": None if due is None else at(days=due),
                "priority": priority,
            }
            for n, (created, updated, due, priority) in enumerate(MIXED_SPECS)
        ),
    )
    # Alice's trash and Bob's tasks share the same keys, to land in the middle of every walk.
    await insert_tasks(
        session,
        alice,
        [
            {
                "title": "Mixed trashed",
                "created_at": at(2),
                "due_at": at(days=2),
                "deleted_at": at(9),
            }
        ],
    )
    await insert_tasks(
        session,
        bob,
        [
            {
                "title": f"Mixed (Bob) {n}",
                "status": ("todo", "done")[n % 2],
                "created_at": at(n % 4),
                "due_at": at(days=n % 3 + 1),
            }
            for n in range(5)
        ],
    )
    return rows


# --- default page and shape -----------------------------------------------------------------


class TestDefaultPage:
    async def test_newest_twenty_live_tasks_first(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        # Insert oldest last, so that id order and created_at order disagree.
        rows = await insert_tasks(session, alice, ({"created_at": at(1000 - n)} for n in range(25)))
        await insert_tasks(session, alice, [{"created_at": at(5000), "deleted_at": at(5001)}])
        response = await get_page(client, alice_h)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        newest_first = expected_order(rows, "-created_at")
        assert [item["id"] for item in body["items"]] == newest_first[:20]
        assert isinstance(body["next_cursor"], str)
        assert next_link(response)

        rest = await ok_page(client, alice_h, cursor=body["next_cursor"])
        assert [item["id"] for item in rest["items"]] == newest_first[20:]
        assert rest["next_cursor"] is None

    async def test_items_are_task_objects(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        await insert_tasks(
            session,
            alice,
            [
                {
                    "title": "Shaped",
                    "description": "with every field",
                    "status": "done",
                    "priority": "urgent",
                    "due_at": at(250, days=3),
                    "created_at": at(125),
                    "updated_at": at(500),
                }
            ],
        )
        body = await ok_page(client, alice_h)
        assert body["next_cursor"] is None
        [item] = body["items"]
        assert set(item) == TASK_FIELDS
        assert item["title"] == "Shaped"
        assert item["description"] == "with every field"
        assert item["status"] == "done"
        assert item["priority"] == "urgent"
        assert item["due_at"] == rfc3339(at(250, days=3))
        assert item["created_at"] == rfc3339(at(125))
        assert item["updated_at"] == rfc3339(at(500))
        assert item["completed_at"].endswith("Z")
        assert item["deleted_at"] is None
        assert item["version"] == 1

    async def test_no_tasks_is_an_empty_last_page(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        response = await get_page(client, alice_h)
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}
        assert "link" not in response.headers

    async def test_tasks_created_through_the_api_are_listed_newest_first(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        created = []
        for n in range(3):
            response = await client.post(TASKS, json={"title": f"Via API {n}"}, headers=alice_h)
            assert response.status_code == 201
            created.append(response.json()["id"])
        assert await listed_ids(client, alice_h) == created[::-1]

    async def test_unauthenticated_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get(TASKS)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"].startswith("Bearer")


# --- ownership ------------------------------------------------------------------------------


class TestOwnership:
    async def test_only_the_callers_tasks_in_any_listing(
        self,
        client: httpx.AsyncClient,
        mixed: list[Row],
        alice_h: Headers,
        bob_h: Headers,
    ) -> None:
        mine = {row.id for row in mixed}
        bobs = set(await listed_ids(client, bob_h))
        assert len(bobs) == 5
        assert not bobs & mine
        for params in (
            {},
            {"q": "mixed"},
            {"status": "todo,in_progress,done"},
            {"priority": "low,medium,high,urgent"},
            {"due_after": rfc3339(at(days=-365))},
            {"sort": "due_at"},
        ):
            ids = set(await listed_ids(client, alice_h, **params))
            assert not ids & bobs, params
            assert ids <= mine, params

    async def test_other_users_trash_never_listed(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        bob: User,
        alice_h: Headers,
        bob_h: Headers,
    ) -> None:
        [alices] = await insert_tasks(session, alice, [{"deleted_at": at(10)}])
        [bobs] = await insert_tasks(session, bob, [{"deleted_at": at(10)}])
        assert await listed_ids(client, alice_h, deleted="true") == [alices.id]
        assert await listed_ids(client, bob_h, deleted="true") == [bobs.id]

    async def test_walk_never_crosses_into_another_users_tasks(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers, bob_h: Headers
    ) -> None:
        bobs = set(await listed_ids(client, bob_h))
        ids = await walk(client, alice_h, {"limit": 1, "sort": "due_at"})
        assert ids == expected_order(mixed, "due_at")
        assert not set(ids) & bobs


# --- filters --------------------------------------------------------------------------------


class TestStatusAndPriorityFilters:
    @pytest.fixture
    async def rows(self, session: AsyncSession, alice: User, bob: User) -> list[Row]:
        await insert_tasks(session, bob, [{"status": s} for s in ("todo", "in_progress", "done")])
        return await insert_tasks(
            session,
            alice,
            [
                {"status": status, "priority": priority}
                for status in ("todo", "in_progress", "done")
                for priority in ("low", "medium", "high", "urgent")
            ],
        )

    @pytest.mark.parametrize(
        "value",
        ["todo", "in_progress", "done", "todo,done", "in_progress,done", "todo,in_progress,done"],
    )
    async def test_status(
        self, client: httpx.AsyncClient, rows: list[Row], alice_h: Headers, value: str
    ) -> None:
        wanted = value.split(",")
        expected = expected_order([r for r in rows if r.status in wanted], "-created_at")
        assert await listed_ids(client, alice_h, status=value) == expected

    @pytest.mark.parametrize(
        "value", ["low", "urgent", "medium,high", "low,urgent", "low,medium,high,urgent"]
    )
    async def test_priority(
        self, client: httpx.AsyncClient, rows: list[Row], alice_h: Headers, value: str
    ) -> None:
        wanted = {TaskPriority.from_label(label).value for label in value.split(",")}
        expected = expected_order([r for r in rows if r.priority in wanted], "-created_at")
        ids = await listed_ids(client, alice_h, priority=value)
        assert ids == expected
        body = await ok_page(client, alice_h, priority=value, limit=100)
        assert {item["priority"] for item in body["items"]} == set(value.split(","))

    async def test_status_and_priority_combine(
        self, client: httpx.AsyncClient, rows: list[Row], alice_h: Headers
    ) -> None:
        expected = expected_order(
            [r for r in rows if r.status in {"todo", "done"} and r.priority == 4], "-created_at"
        )
        assert len(expected) == 2
        assert await listed_ids(client, alice_h, status="todo,done", priority="urgent") == expected

    @pytest.mark.parametrize(
        ("name", "value", "distinctive"),
        [
            ("status", "bogus", True),
            ("status", "DONE", True),
            ("status", "todo,bogus", True),
            ("status", "todo,", False),
            ("status", "", False),
            ("status", "todo;drop", True),
            ("priority", "critical", True),
            ("priority", "HIGH", True),
            ("priority", "3", False),
            ("priority", "low,nope", True),
            ("priority", "", False),
        ],
    )
    @pytest.mark.usefixtures("rows")
    async def test_bogus_value_is_422(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        name: str,
        value: str,
        distinctive: bool,
    ) -> None:
        response = await get_page(client, alice_h, **{name: value})
        assert_problem(response, 422, loc=["query", name], absent=[value] if distinctive else [])


class TestDueFilters:
    @pytest.fixture
    async def rows(self, session: AsyncSession, alice: User, bob: User) -> dict[str, Row]:
        bound = at(250)
        await insert_tasks(session, bob, [{"due_at": bound}])
        before, on, after, undated = await insert_tasks(
            session,
            alice,
            [
                {"title": "before", "due_at": bound - timedelta(milliseconds=1)},
                {"title": "on", "due_at": bound},
                {"title": "after", "due_at": bound + timedelta(milliseconds=1)},
                {"title": "undated"},
            ],
        )
        return {"before": before, "on": on, "after": after, "undated": undated}

    async def test_due_before_is_exclusive(
        self, client: httpx.AsyncClient, rows: dict[str, Row], alice_h: Headers
    ) -> None:
        ids = await listed_ids(client, alice_h, due_before=rfc3339(at(250)))
        assert ids == [rows["before"].id]

    async def test_due_after_is_inclusive(
        self, client: httpx.AsyncClient, rows: dict[str, Row], alice_h: Headers
    ) -> None:
        ids = await listed_ids(client, alice_h, due_after=rfc3339(at(250)), sort="due_at")
        assert ids == [rows["on"].id, rows["after"].id]

    async def test_both_bounds_select_the_task_on_the_lower_bound(
        self, client: httpx.AsyncClient, rows: dict[str, Row], alice_h: Headers
    ) -> None:
        ids = await listed_ids(
            client, alice_h, due_after=rfc3339(at(250)), due_before=rfc3339(at(251))
        )
        assert ids == [rows["on"].id]
        empty = await listed_ids(
            client, alice_h, due_after=rfc3339(at(250)), due_before=rfc3339(at(250))
        )
        assert empty == []

    async def test_bounds_with_another_offset_mean_the_same_instant(
        self, client: httpx.AsyncClient, rows: dict[str, Row], alice_h: Headers
    ) -> None:
        # 2030-06-01T12:00:00.250Z written in UTC+02:00.
        ids = await listed_ids(
            client, alice_h, due_after="2030-06-01T14:00:00.250+02:00", sort="due_at"
        )
        assert ids == [rows["on"].id, rows["after"].id]
        ids = await listed_ids(client, alice_h, due_before="2030-06-01T07:00:00.250-05:00")
        assert ids == [rows["before"].id]

    async def test_a_bound_to_the_microsecond_is_taken_to_the_millisecond(
        self, client: httpx.AsyncClient, rows: dict[str, Row], alice_h: Headers
    ) -> None:
        """Timestamps are kept and shown to the millisecond: a task created with a due date
        of .250900 has .250, and a bound of .250900 is taken as .250 too, so the due date as
        sent finds the task with `due_after` and not with `due_before`."""
        bound = "2030-06-01T12:00:00.250900Z"
        ids = await listed_ids(client, alice_h, due_after=bound, sort="due_at")
        assert ids == [rows["on"].id, rows["after"].id]
        assert await listed_ids(client, alice_h, due_before=bound) == [rows["before"].id]

    @pytest.mark.parametrize("name", ["due_before", "due_after"])
    @pytest.mark.parametrize(
        "value",
        [
            "2030-06-01T12:00:00.250",
            "2030-06-01T12:00:00",
            "2030-06-01 12:00:00",
            "2030-06-01",
            "not-a-time",
            "2030-13-01T00:00:00Z",
            # Epoch numbers are not RFC 3339 and say nothing of an offset (decision 0009).
            "1906632000",
            "1906632000.25",
        ],
    )
    @pytest.mark.usefixtures("rows")
    async def test_naive_or_bad_timestamp_is_422(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        name: str,
        value: str,
    ) -> None:
        response = await get_page(client, alice_h, **{name: value})
        assert_problem(response, 422, loc=["query", name], absent=[value])


class TestTextSearch:
    @pytest.fixture
    async def rows(self, session: AsyncSession, alice: User, bob: User) -> dict[str, Row]:
        await insert_tasks(session, bob, [{"title": "Buy milk", "description": "100% milk_"}])
        specs = {
            "title_upper": {"title": "Buy MILK today"},
            "desc_mixed": {"title": "Groceries", "description": "Remember the mIlK"},
            "unrelated": {"title": "Walk the dog", "description": "in the park"},
            "percent": {"title": "Reach 100% coverage"},
            "hundred": {"title": "Reach 100 coverage", "description": "1000 lines"},
            "underscore": {"title": "rename snake_case"},
            "no_underscore": {"title": "rename snakeXcase"},
            "backslash": {"title": "path C:\\temp"},
        }
        inserted = await insert_tasks(session, alice, specs.values())
        return dict(zip(specs, inserted, strict=True))

    def ids_of(self, rows: dict[str, Row], *names: str) -> list[int]:
        return expected_order([rows[name] for name in names], "-created_at")

    @pytest.mark.parametrize("q", ["milk", "MILK", "Milk", "mIlK"])
    async def test_case_insensitive_in_title_or_description(
        self, client: httpx.AsyncClient, rows: dict[str, Row], alice_h: Headers, q: str
    ) -> None:
        ids = await listed_ids(client, alice_h, q=q)
        assert ids == self.ids_of(rows, "title_upper", "desc_mixed")

    async def test_matches_inside_words_and_description_only(
        self, client: httpx.AsyncClient, rows: dict[str, Row], alice_h: Headers
    ) -> None:
        assert await listed_ids(client, alice_h, q="PAR") == self.ids_of(rows, "unrelated")
        assert await listed_ids(client, alice_h, q="nothing like it") == []

    @pytest.mark.parametrize(
        ("q", "names"),
        [
            ("%", ("percent",)),
            ("100%", ("percent",)),
            ("100% c", ("percent",)),
            ("_", ("underscore",)),
            ("snake_case", ("underscore",)),
            ("e_c", ("underscore",)),
            ("\\", ("backslash",)),
            ("C:\\t", ("backslash",)),
            ("100", ("percent", "hundred")),
        ],
    )
    async def test_like_wildcards_are_literal(
        self,
        client: httpx.AsyncClient,
        rows: dict[str, Row],
        alice_h: Headers,
        q: str,
        names: tuple[str, ...],
    ) -> None:
        assert await listed_ids(client, alice_h, q=q) == self.ids_of(rows, *names)

    @pytest.mark.usefixtures("rows")
    async def test_two_hundred_characters_accepted(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        assert await listed_ids(client, alice_h, q="m" * 200) == []

    @pytest.mark.parametrize(
        "q",
        ["", "x" * 201, "\x00", "milk\x00", "\x00%"],
        ids=["empty", "201", "nul", "x-nul", "nul-pct"],
    )
    @pytest.mark.usefixtures("rows")
    async def test_bad_q_is_422(self, client: httpx.AsyncClient, alice_h: Headers, q: str) -> None:
        response = await get_page(client, alice_h, q=q)
        assert_problem(response, 422, loc=["query", "q"], absent=[q] if len(q) > 3 else [])

    @pytest.mark.usefixtures("rows")
    async def test_too_long_q_is_explained_in_characters(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        body = assert_problem(await get_page(client, alice_h, q="x" * 201), 422)
        assert body["errors"] == [
            {
                "loc": ["query", "q"],
                "msg": "must be at most 200 characters",
                "type": "string_too_long",
            }
        ]
        assert body["detail"] == "These fields are not valid: q."


class TestTrash:
    async def test_deleted_true_lists_only_the_trash(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        live = await insert_tasks(session, alice, [{"title": "live"} for _ in range(3)])
        trashed = await insert_tasks(
            session,
            alice,
            [{"title": "gone", "deleted_at": at(900 + n)} for n in range(3)],
        )
        trash_ids = await listed_ids(client, alice_h, deleted="true")
        assert trash_ids == expected_order(trashed, "-created_at")
        body = await ok_page(client, alice_h, deleted="true")
        assert all(item["deleted_at"] is not None for item in body["items"])
        assert await listed_ids(client, alice_h, deleted="false") == expected_order(
            live, "-created_at"
        )
        assert await listed_ids(client, alice_h) == expected_order(live, "-created_at")

    async def test_task_deleted_through_the_api_moves_to_the_trash_listing(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        kept, binned = await insert_tasks(session, alice, [{}, {}])
        assert (await client.delete(f"{TASKS}/{binned.id}", headers=alice_h)).status_code == 204
        assert await listed_ids(client, alice_h) == [kept.id]
        assert await listed_ids(client, alice_h, deleted="true") == [binned.id]

    async def test_trash_filters_and_walks(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        trashed = await insert_tasks(
            session,
            alice,
            [
                {"priority": ("low", "high")[n % 2], "created_at": at(n % 3), "deleted_at": at(50)}
                for n in range(7)
            ],
        )
        await insert_tasks(session, alice, [{"priority": "high"} for _ in range(3)])
        params = {"deleted": "true", "priority": "high", "sort": "created_at", "limit": 1}
        expected = expected_order([r for r in trashed if r.priority == 3], "created_at")
        assert await walk(client, alice_h, params) == expected


# --- sorting --------------------------------------------------------------------------------


class TestSorting:
    @pytest.mark.parametrize("sort", SORTS)
    async def test_order_with_ties_on_id(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers, sort: str
    ) -> None:
        assert await listed_ids(client, alice_h, sort=sort) == expected_order(mixed, sort)

    async def test_default_sort_is_newest_first(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers
    ) -> None:
        assert await listed_ids(client, alice_h) == expected_order(mixed, "-created_at")

    @pytest.mark.parametrize(("sort", "reverse"), [("created_at", False), ("-created_at", True)])
    async def test_full_ties_break_on_id_in_the_same_direction(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        sort: str,
        reverse: bool,
    ) -> None:
        rows = await insert_tasks(session, alice, [{"created_at": at(7)} for _ in range(5)])
        ids = sorted((r.id for r in rows), reverse=reverse)
        assert await listed_ids(client, alice_h, sort=sort) == ids

    async def test_priority_order_is_low_medium_high_urgent(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        await insert_tasks(
            session, alice, [{"priority": p} for p in ("high", "urgent", "low", "medium")]
        )
        body = await ok_page(client, alice_h, sort="priority")
        assert [item["priority"] for item in body["items"]] == ["low", "medium", "high", "urgent"]
        body = await ok_page(client, alice_h, sort="-priority")
        assert [item["priority"] for item in body["items"]] == ["urgent", "high", "medium", "low"]

    @pytest.mark.parametrize("sort", ["due_at", "-due_at"])
    async def test_tasks_without_due_date_last_in_both_directions(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        sort: str,
    ) -> None:
        rows = await insert_tasks(
            session,
            alice,
            [{"due_at": None}, {"due_at": at(days=2)}, {"due_at": None}, {"due_at": at(days=1)}],
        )
        body = await ok_page(client, alice_h, sort=sort)
        dues = [item["due_at"] for item in body["items"]]
        assert dues[2:] == [None, None]
        assert None not in dues[:2]
        assert [item["id"] for item in body["items"]] == expected_order(rows, sort)

    @pytest.mark.parametrize(
        ("sort", "distinctive"),
        [
            ("hashed_password", True),
            ("title;drop", True),
            ("title", False),  # "title" is a key of every problem body
            ("owner_id", True),
            ("id", False),
            ("CREATED_AT", True),
            ("--created_at", True),
            ("created_at,id", True),
            ("created_at ", False),
            ("+created_at", True),
            ("-", False),
            ("", False),
            ("created_at; DROP TABLE tasks", True),
        ],
    )
    @pytest.mark.usefixtures("mixed")
    async def test_bogus_sort_is_422(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        sort: str,
        distinctive: bool,
    ) -> None:
        response = await get_page(client, alice_h, sort=sort)
        assert_problem(response, 422, loc=["query", "sort"], absent=[sort] if distinctive else [])


# --- limit and unknown parameters -------------------------------------------------------


class TestLimit:
    @pytest.mark.parametrize("limit", ["0", "-1", "101", str(10**30), "abc", "1.5", "", "1e2"])
    async def test_out_of_range_or_not_an_integer_is_422(
        self, client: httpx.AsyncClient, alice_h: Headers, limit: str
    ) -> None:
        response = await get_page(client, alice_h, limit=limit)
        absent = [limit] if limit not in {"0", ""} else []
        assert_problem(response, 422, loc=["query", "limit"], absent=absent)

    async def test_limit_one(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers
    ) -> None:
        body = await ok_page(client, alice_h, limit=1)
        assert [item["id"] for item in body["items"]] == expected_order(mixed, "-created_at")[:1]
        assert body["next_cursor"]

    async def test_limit_one_hundred(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        rows = await insert_tasks(session, alice, ({"created_at": at(n)} for n in range(103)))
        order = expected_order(rows, "-created_at")
        first = await ok_page(client, alice_h, limit=100)
        assert [item["id"] for item in first["items"]] == order[:100]
        second = await ok_page(client, alice_h, limit=100, cursor=first["next_cursor"])
        assert [item["id"] for item in second["items"]] == order[100:]
        assert second["next_cursor"] is None

    async def test_exactly_full_last_page_has_no_next_cursor(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        await insert_tasks(session, alice, [{} for _ in range(4)])
        response = await get_page(client, alice_h, limit=2)
        second = await get_page(client, alice_h, limit=2, cursor=response.json()["next_cursor"])
        assert len(second.json()["items"]) == 2
        assert second.json()["next_cursor"] is None
        assert "link" not in second.headers
        response = await get_page(client, alice_h, limit=4)
        assert len(response.json()["items"]) == 4
        assert response.json()["next_cursor"] is None
        assert "link" not in response.headers


class TestUnknownParameters:
    @pytest.mark.parametrize(
        "name", ["owner_id", "user_id", "page", "offset", "Status", "sort_by", "per_page"]
    )
    @pytest.mark.usefixtures("mixed")
    async def test_unknown_query_parameter_is_422(
        self,
        client: httpx.AsyncClient,
        bob: User,
        alice_h: Headers,
        name: str,
    ) -> None:
        value = "evil-value-4711" if name != "owner_id" else str(bob.id)
        response = await get_page(client, alice_h, **{name: value})
        absent = ["evil-value-4711"] if name != "owner_id" else []
        body = assert_problem(response, 422, loc=["query", name], absent=absent)
        assert "items" not in body

    @pytest.mark.usefixtures("mixed")
    async def test_unknown_next_to_known_parameters_is_422(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        response = await get_page(client, alice_h, status="todo", limit=5, statuss="done")
        assert_problem(response, 422, loc=["query", "statuss"])


# --- keyset walks ---------------------------------------------------------------------------


class TestKeysetWalk:
    @pytest.mark.parametrize("limit", [1, 2, 5])
    @pytest.mark.parametrize("sort", SORTS)
    async def test_every_task_exactly_once_in_order(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers, sort: str, limit: int
    ) -> None:
        ids = await walk(client, alice_h, {"sort": sort, "limit": limit})
        assert ids == expected_order(mixed, sort)

    @pytest.mark.parametrize("sort", ["due_at", "-due_at", "priority", "-updated_at"])
    async def test_walk_with_filters(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers, sort: str
    ) -> None:
        wanted = [r for r in mixed if r.status in {"todo", "done"} and r.priority != 1]
        params = {"sort": sort, "limit": 2, "status": "todo,done", "priority": "medium,high,urgent"}
        assert await walk(client, alice_h, params) == expected_order(wanted, sort)

    async def test_walk_with_search_and_due_bounds(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers
    ) -> None:
        wanted = [r for r in mixed if r.due_at is not None and r.due_at >= at(days=2)]
        params = {"sort": "-due_at", "limit": 1, "q": "mixed", "due_after": rfc3339(at(days=2))}
        assert await walk(client, alice_h, params) == expected_order(wanted, "-due_at")

    @pytest.mark.parametrize("sort", ["created_at", "-created_at", "-updated_at"])
    async def test_walk_over_tasks_created_quickly_through_the_api(
        self, client: httpx.AsyncClient, alice_h: Headers, sort: str
    ) -> None:
        # Real server timestamps, often within the same millisecond: the cursor must keep
        # the full stored precision.
        created = []
        for n in range(7):
            response = await client.post(TASKS, json={"title": f"Quick {n}"}, headers=alice_h)
            assert response.status_code == 201
            created.append(response.json()["id"])
        ids = await walk(client, alice_h, {"sort": sort, "limit": 2})
        assert ids == (created if sort == "created_at" else created[::-1])

    async def test_limit_may_change_between_pages(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers
    ) -> None:
        order = expected_order(mixed, "due_at")
        first = await ok_page(client, alice_h, sort="due_at", limit=2)
        assert [item["id"] for item in first["items"]] == order[:2]
        second = await ok_page(client, alice_h, sort="due_at", limit=7, cursor=first["next_cursor"])
        assert [item["id"] for item in second["items"]] == order[2:9]
        third = await ok_page(client, alice_h, sort="due_at", limit=1, cursor=second["next_cursor"])
        assert [item["id"] for item in third["items"]] == order[9:10]
        rest = await ok_page(client, alice_h, sort="due_at", limit=100, cursor=third["next_cursor"])
        assert [item["id"] for item in rest["items"]] == order[10:]
        assert rest["next_cursor"] is None

    @pytest.mark.usefixtures("mixed")
    async def test_same_cursor_twice_gives_the_same_page(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        first = await ok_page(client, alice_h, sort="priority", limit=3)
        again = [
            await ok_page(client, alice_h, sort="priority", limit=3, cursor=first["next_cursor"])
            for _ in range(2)
        ]
        assert again[0] == again[1]


class TestWalkWhileChanging:
    @pytest.mark.parametrize("sort", SORTS)
    async def test_survivors_exactly_once_while_tasks_come_and_go(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        mixed: list[Row],
        alice: User,
        alice_h: Headers,
        sort: str,
    ) -> None:
        order = expected_order(mixed, sort)
        deleted: set[int] = set()
        deleted_unseen: set[int] = set()
        created: set[int] = set()

        async def delete(task_id: int) -> None:
            response = await client.delete(f"{TASKS}/{task_id}", headers=alice_h)
            assert response.status_code == 204
            deleted.add(task_id)

        async def churn(page_number: int, page_ids: list[int]) -> None:
            if page_number >= 3:  # churn on the first pages only, so that the walk ends
                return
            seen_so_far = set(ids_so_far) | set(page_ids)
            unseen = [i for i in order if i not in seen_so_far and i not in deleted]
            # The page's last task (the cursor's own position), an earlier one, and one not
            # yet listed.
            await delete(page_ids[-1])
            if len(page_ids) > 1:
                await delete(page_ids[0])
            if len(unseen) > 2:
                await delete(unseen[1])
                deleted_unseen.add(unseen[1])
            # New tasks: one through the API (server time), and ones whose keys land among
            # both the listed and the not yet listed tasks of every sort.
            response = await client.post(
                TASKS, json={"title": f"New {page_number}", "priority": "high"}, headers=alice_h
            )
            assert response.status_code == 201
            created.add(response.json()["id"])
            new_rows = await insert_tasks(
                session,
                alice,
                [
                    {
                        "title": f"Inserted {page_number}.{n}",
                        "created_at": at(n),
                        "updated_at": at(n + 1),
                        "due_at": None if n == 3 else at(days=n),
                        "priority": ("low", "medium", "high", "urgent")[n],
                    }
                    for n in range(4)
                ],
            )
            created.update(row.id for row in new_rows)
            ids_so_far.extend(page_ids)

        ids_so_far: list[int] = []
        ids = await walk(client, alice_h, {"sort": sort, "limit": 3}, between_pages=churn)

        assert deleted
        assert len(ids) == len(set(ids)), "a task was listed twice"
        survivors = [i for i in order if i not in deleted]
        pre_existing = [i for i in ids if i in set(order)]
        listed_survivors = [i for i in pre_existing if i not in deleted]
        assert listed_survivors == survivors
        assert set(ids) <= set(order) | created
        # A task deleted before its page came up is not listed.
        assert deleted_unseen
        assert not deleted_unseen & set(ids)


# --- Link header ----------------------------------------------------------------------------


class TestLinkHeader:
    async def test_link_fetched_as_is_returns_the_next_page(
        self, client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers
    ) -> None:
        params = {
            "status": "todo,done",
            "priority": "medium,high,urgent",
            "q": "mixed",
            "due_after": rfc3339(at(days=-1)),
            "due_before": "2031-01-01T00:00:00+01:00",
            "sort": "-due_at",
            "limit": 2,
        }
        wanted = [r for r in mixed if r.status in {"todo", "done"} and r.priority != 1 and r.due_at]
        order = expected_order(wanted, "-due_at")
        assert len(order) > 2

        response = await get_page(client, alice_h, **params)
        assert response.status_code == 200
        body = response.json()
        assert [item["id"] for item in body["items"]] == order[:2]
        url = next_link(response)
        assert url.startswith(f"{TASKS}?")

        query = parse_qs(urlsplit(url).query, keep_blank_values=True)
        assert query.pop("cursor") == [body["next_cursor"]]
        assert query == {name: [str(value)] for name, value in params.items()}

        seen = [item["id"] for item in body["items"]]
        while True:
            follow = await client.get(url, headers=alice_h)
            assert follow.status_code == 200, follow.text
            page = follow.json()
            assert len(page["items"]) <= 2
            seen.extend(item["id"] for item in page["items"])
            if page["next_cursor"] is None:
                assert "link" not in follow.headers
                break
            url = next_link(follow)
        assert seen == order

    async def test_link_keeps_special_characters_in_q(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        q = "a&b=c+d 100%#?/"
        rows = await insert_tasks(session, alice, [{"title": f"x {q} {n}"} for n in range(3)])
        await insert_tasks(session, alice, [{"title": "a&b=c d 100"}])
        response = await get_page(client, alice_h, q=q, limit=1)
        seen = [item["id"] for item in response.json()["items"]]
        while "link" in response.headers:
            response = await client.get(next_link(response), headers=alice_h)
            assert response.status_code == 200, response.text
            seen.extend(item["id"] for item in response.json()["items"])
        assert seen == expected_order(rows, "-created_at")

    @pytest.mark.usefixtures("mixed")
    async def test_no_link_on_a_single_page(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        response = await get_page(client, alice_h)
        assert response.json()["next_cursor"] is None
        assert "link" not in response.headers


# --- cursors --------------------------------------------------------------------------------


CURSOR_PARAMS: Params = {"sort": "due_at", "status": "todo,done", "limit": 2}


@pytest.fixture
async def issued(client: httpx.AsyncClient, mixed: list[Row], alice_h: Headers) -> list[str]:
    """The first two cursors of Alice's walk with CURSOR_PARAMS."""
    first = await ok_page(client, alice_h, **CURSOR_PARAMS)
    second = await ok_page(client, alice_h, **CURSOR_PARAMS, cursor=first["next_cursor"])
    assert first["next_cursor"]
    assert second["next_cursor"]
    return [first["next_cursor"], second["next_cursor"]]


def _tampered(cursor: str, other: str, how: str) -> str:
    payload, tag = cursor.split(".")
    other_payload, other_tag = other.split(".")
    return {
        "flip_payload_start": replace_char(cursor, 0),
        "flip_payload_middle": replace_char(cursor, len(payload) // 2),
        "flip_tag_first": replace_char(cursor, len(payload) + 1),
        "flip_tag_middle": replace_char(cursor, len(payload) + 1 + len(tag) // 2),
        "truncate_one": cursor[:-1],
        "truncate_half": cursor[: len(cursor) // 2],
        "payload_only": payload,
        "tag_dropped": payload + ".",
        "payload_dropped": "." + tag,
        "parts_swapped": f"{tag}.{payload}",
        "extra_part": f"{cursor}.{tag}",
        "other_payload_this_tag": f"{other_payload}.{tag}",
        "this_payload_other_tag": f"{payload}.{other_tag}",
        "random": "hello-world",
        "random_dotted": "c2VjcmV0.c2lnbmF0dXJl",
        "unsigned_json": b64(json.dumps({"b": "x" * 32, "k": None, "i": 1}).encode())
        + "."
        + b64(bytes(16)),
        "unsigned_copy": payload + "." + b64(bytes(16)),
        "dot": ".",
        "dots": "...",
        "empty": "",
        "not_base64": "é.é",
        "percent": "%.%",
    }[how]


TAMPERINGS = [
    "flip_payload_start",
    "flip_payload_middle",
    "flip_tag_first",
    "flip_tag_middle",
    "truncate_one",
    "truncate_half",
    "payload_only",
    "tag_dropped",
    "payload_dropped",
    "parts_swapped",
    "extra_part",
    "other_payload_this_tag",
    "this_payload_other_tag",
    "random",
    "random_dotted",
    "unsigned_json",
    "unsigned_copy",
    "dot",
    "dots",
    "empty",
    "not_base64",
    "percent",
]


class TestCursorValidation:
    async def test_issued_cursor_is_opaque_url_safe_text(self, issued: list[str]) -> None:
        for cursor in issued:
            assert re.fullmatch(r"[A-Za-z0-9_.~-]+", cursor), cursor

    @pytest.mark.parametrize("how", TAMPERINGS)
    async def test_tampered_cursor_is_422(
        self, client: httpx.AsyncClient, issued: list[str], alice_h: Headers, how: str
    ) -> None:
        bad = _tampered(issued[0], issued[1], how)
        assert bad not in issued
        response = await get_page(client, alice_h, **CURSOR_PARAMS, cursor=bad)
        assert_problem(response, 422, loc=["query", "cursor"], absent=[bad] if len(bad) > 3 else [])

    @pytest.mark.parametrize("how", ["tag_spare_bits", "padding", "junk_prefix", "junk_inside"])
    async def test_other_spelling_of_an_issued_cursor_is_422(
        self, client: httpx.AsyncClient, issued: list[str], alice_h: Headers, how: str
    ) -> None:
        """Strings the server never issued, though they decode to the same bytes, are 422.

        The tag is 16 bytes in 22 base64url characters, whose last character carries 4 unused
        bits: changing its lowest bit gives another string for the same tag.
        """
        cursor = issued[0]
        last = B64URL.index(cursor[-1])
        bad = {
            "tag_spare_bits": cursor[:-1] + B64URL[last ^ 1],
            "padding": cursor + "==",
            # Four characters the decoder skips keep the length modulo 4 (the padding) as is.
            "junk_prefix": "!!!!" + cursor,
            "junk_inside": cursor[:5] + "****" + cursor[5:],
        }[how]
        assert bad not in issued
        response = await get_page(client, alice_h, **CURSOR_PARAMS, cursor=bad)
        assert_problem(response, 422, loc=["query", "cursor"], absent=[bad])

    async def test_overlong_or_nul_cursor_is_422(
        self, client: httpx.AsyncClient, issued: list[str], alice_h: Headers
    ) -> None:
        for bad in ("A" * 5000, issued[0] + "A" * 1100, issued[0] + "\x00"):
            response = await get_page(client, alice_h, **CURSOR_PARAMS, cursor=bad)
            assert_problem(response, 422, loc=["query", "cursor"], absent=["A" * 100])

    @pytest.mark.parametrize(
        "changes",
        [
            {"sort": "-due_at"},
            {"sort": "created_at"},
            {"sort": "priority"},
            {"status": None},
            {"status": "todo"},
            {"status": "todo,in_progress,done"},
            {"priority": "high"},
            {"q": "mixed"},
            {"deleted": "true"},
            {"due_before": "2040-01-01T00:00:00Z"},
            {"due_after": "2000-01-01T00:00:00Z"},
        ],
        ids=lambda changes: "-".join(f"{k}={v}" for k, v in changes.items()),
    )
    async def test_cursor_with_other_filters_or_sort_is_422(
        self,
        client: httpx.AsyncClient,
        issued: list[str],
        alice_h: Headers,
        changes: dict[str, str | None],
    ) -> None:
        params = {**CURSOR_PARAMS, **changes}
        params = {name: value for name, value in params.items() if value is not None}
        response = await get_page(client, alice_h, **params, cursor=issued[0])
        assert_problem(response, 422, loc=["query", "cursor"], absent=[issued[0]])

    async def test_cursor_of_another_user_is_422(
        self,
        client: httpx.AsyncClient,
        issued: list[str],
        bob_h: Headers,
    ) -> None:
        bobs_first = await ok_page(client, bob_h, **CURSOR_PARAMS)
        assert bobs_first["items"]
        for cursor in issued:
            response = await get_page(client, bob_h, **CURSOR_PARAMS, cursor=cursor)
            assert_problem(response, 422, loc=["query", "cursor"], absent=[cursor])

    async def test_own_cursor_with_the_same_query_and_another_limit_is_fine(
        self, client: httpx.AsyncClient, mixed: list[Row], issued: list[str], alice_h: Headers
    ) -> None:
        wanted = expected_order([r for r in mixed if r.status in {"todo", "done"}], "due_at")
        params = {**CURSOR_PARAMS, "limit": 100}
        body = await ok_page(client, alice_h, **params, cursor=issued[0])
        assert [item["id"] for item in body["items"]] == wanted[2:]
        # The order of comma-separated values does not change the query.
        params["status"] = "done,todo"
        body = await ok_page(client, alice_h, **params, cursor=issued[1])
        assert [item["id"] for item in body["items"]] == wanted[4:]
