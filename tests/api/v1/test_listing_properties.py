"""Property tests for `GET /api/v1/tasks`: random tasks, filters, sorts, page sizes and churn.

Hypothesis draws a set of tasks (with deliberately colliding timestamps, due dates and
priorities, some without a due date, some in the trash), inserts them straight into the
database through the `session` fixture, and walks the listing with random filters, one of the
eight sorts and a page size of 1 to 7. The expected result is computed here, in Python, from
the contract (section 3, "Listing"), never read back from the service:

- ownership and trash: only the caller's tasks, live ones unless `deleted=true`;
- `status` / `priority`: membership in the given set; `due_before` exclusive, `due_after`
  inclusive (a task without a due date is due neither before nor after anything);
- `q`: case-insensitive substring of the title or the description, with `%`, `_` and `\\`
  taken literally;
- order: (sort key, id) in the sort's direction, priority low < medium < high < urgent,
  tasks without `due_at` last in both directions.

The fixtures are function-scoped (one rolled-back transaction per test function, not per
example), so every example starts by emptying the `tasks` table inside that transaction.
Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.task import Task, TaskPriority
from app.models.user import User
from tests.api.conftest import Headers
from tests.support import SORTS, inbox_id

TASKS = "/api/v1/tasks"
STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("low", "medium", "high", "urgent")
BASE = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
DUE_BASE = BASE + timedelta(days=1)
LINK_NEXT = re.compile(r'^<([^<>]+)>; rel="next"$')
# Offsets a client may write its bounds in: the same instant in any of them.
OFFSETS = (UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30)))
# A small alphabet, so that random `q` values often hit: both cases of two letters, LIKE's
# wildcards and escape character, a space and a digit.
TEXT_ALPHABET = "aAbB%_\\ 1"

PROPERTY_SETTINGS = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Params = dict[str, str | int]


def ms(offset: int, base: datetime = BASE) -> datetime:
    return base + timedelta(milliseconds=offset)


def rfc3339(value: datetime, offset: timezone = UTC) -> str:
    text = value.astimezone(offset).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """A task to insert: every value the listing can filter or sort on."""

    title: str
    description: str | None
    status: str
    priority: str
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    trashed: bool


@dataclass(frozen=True, slots=True)
class Row:
    """An inserted task: its id and the spec it was inserted with."""

    id: int
    spec: Spec


@dataclass(frozen=True, slots=True)
class Query:
    statuses: frozenset[str] | None
    priorities: frozenset[str] | None
    due_before: datetime | None
    due_after: datetime | None
    q: str | None
    deleted: bool
    sort: str | None  # None: the default, -created_at
    limit: int
    params: Params  # the same query as the client spells it

    @property
    def effective_sort(self) -> str:
        return self.sort or "-created_at"

    def matches(self, spec: Spec) -> bool:
        if spec.trashed != self.deleted:
            return False
        if self.statuses is not None and spec.status not in self.statuses:
            return False
        if self.priorities is not None and spec.priority not in self.priorities:
            return False
        if self.due_before is not None and (spec.due_at is None or spec.due_at >= self.due_before):
            return False
        if self.due_after is not None and (spec.due_at is None or spec.due_at < self.due_after):
            return False
        if self.q is not None:
            needle = self.q.lower()
            texts = [spec.title] if spec.description is None else [spec.title, spec.description]
            if not any(needle in text.lower() for text in texts):
                return False
        return True


def order_key(row: Row, sort: str) -> tuple[Any, ...]:
    """An ascending key for the contract's order of `sort` (direction folded in)."""
    descending = sort.startswith("-")
    field = sort.removeprefix("-")
    sign = -1 if descending else 1
    spec = row.spec
    if field == "due_at":
        if spec.due_at is None:
            return (1, 0, sign * row.id)  # undated last in both directions, ids in the sort's
        return (0, sign * (spec.due_at - BASE).total_seconds(), sign * row.id)
    if field == "priority":
        return (sign * TaskPriority.from_label(spec.priority).value, sign * row.id)
    value: datetime = getattr(spec, field)
    return (sign * (value - BASE).total_seconds(), sign * row.id)


def expected_order(rows: Iterable[Row], sort: str) -> list[int]:
    return [row.id for row in sorted(rows, key=lambda row: order_key(row, sort))]


# --- strategies -----------------------------------------------------------------------------

texts = st.text(alphabet=TEXT_ALPHABET, min_size=1, max_size=6)


def sometimes(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws; shrinks towards False (the simpler example)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    created = draw(st.integers(0, 5))
    return Spec(
        # Never blank (the contract's titles are not), but spaces at either end are fine here.
        title=draw(texts.map(lambda text: text if text.strip() else text + "a")),
        description=draw(st.none() | st.text(alphabet=TEXT_ALPHABET, max_size=8)),
        status=draw(st.sampled_from(STATUSES)),
        priority=draw(st.sampled_from(PRIORITIES)),
        due_at=None if sometimes(draw, 3) else ms(draw(st.integers(0, 5)), DUE_BASE),
        created_at=ms(created),
        # Equal to created_at, or a little later; collisions across tasks are frequent.
        updated_at=ms(created + draw(st.integers(0, 3))),
        trashed=sometimes(draw, 3),
    )


def subset(draw: st.DrawFn, values: Sequence[str]) -> list[str]:
    """One or more of `values`, in any order."""
    return draw(st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True))


def search_text(draw: st.DrawFn, tasks: Sequence[Spec]) -> str:
    """Mostly a piece of some task's text, in either case; sometimes anything."""
    haystacks = [text for spec in tasks for text in (spec.title, spec.description) if text]
    if haystacks and not sometimes(draw, 4):
        haystack = draw(st.sampled_from(haystacks))
        start = draw(st.integers(0, len(haystack) - 1))
        end = draw(st.integers(start + 1, min(len(haystack), start + 2)))
        return haystack[start:end].swapcase() if draw(st.booleans()) else haystack[start:end]
    return draw(st.text(alphabet=TEXT_ALPHABET, min_size=1, max_size=3))


FILTERS = ("status", "priority", "due_before", "due_after", "q")


@st.composite
def queries(draw: st.DrawFn, tasks: Sequence[Spec] = ()) -> Query:
    # A few filters at a time (each one alone is selective), any of them combined.
    chosen = draw(st.lists(st.sampled_from(FILTERS), max_size=3, unique=True))
    statuses = subset(draw, STATUSES) if "status" in chosen else None
    priorities = subset(draw, PRIORITIES) if "priority" in chosen else None
    # Bounds from just outside the due dates' range to just past it, often on a due date.
    due_before = ms(draw(st.integers(0, 6)), DUE_BASE) if "due_before" in chosen else None
    due_after = ms(draw(st.integers(-1, 5)), DUE_BASE) if "due_after" in chosen else None
    q = search_text(draw, tasks) if "q" in chosen else None
    deleted = sometimes(draw, 4)
    sort = None if sometimes(draw, 9) else draw(st.sampled_from(SORTS))
    limit = draw(st.integers(1, 7))
    params: Params = {"limit": limit}
    if statuses is not None:
        params["status"] = ",".join(statuses)
    if priorities is not None:
        params["priority"] = ",".join(priorities)
    if due_before is not None:
        params["due_before"] = rfc3339(due_before, draw(st.sampled_from(OFFSETS)))
    if due_after is not None:
        params["due_after"] = rfc3339(due_after, draw(st.sampled_from(OFFSETS)))
    if q is not None:
        params["q"] = q
    if deleted or draw(st.booleans()):
        params["deleted"] = "true" if deleted else "false"
    if sort is not None:
        params["sort"] = sort
    return Query(
        statuses=None if statuses is None else frozenset(statuses),
        priorities=None if priorities is None else frozenset(priorities),
        due_before=due_before,
        due_after=due_after,
        q=q,
        deleted=deleted,
        sort=sort,
        limit=limit,
        params=params,
    )


@dataclass(frozen=True, slots=True)
class Scenario:
    alices: list[Spec]  # the caller's tasks
    bobs: list[Spec]  # another user's, with the same kind of keys: never to be listed
    query: Query


@st.composite
def scenarios(draw: st.DrawFn, max_tasks: int = 16) -> Scenario:
    alices = draw(st.lists(specs(), min_size=4, max_size=max_tasks))
    bobs = draw(st.lists(specs(), max_size=4))
    return Scenario(alices, bobs, draw(queries(alices)))


def bucket(count: int) -> str:
    """A coarse label for Hypothesis's statistics (run with --hypothesis-show-statistics)."""
    return "0" if count == 0 else "1-3" if count <= 3 else "4-9" if count <= 9 else "10+"


# --- database and HTTP helpers --------------------------------------------------------------


async def reset_tasks(session: AsyncSession) -> None:
    """Empty the table inside the test's transaction: each example starts from nothing."""
    await session.execute(delete(Task))
    await session.commit()
    session.expunge_all()


async def insert(session: AsyncSession, owner: User, specs_: Iterable[Spec]) -> list[Row]:
    project_id = await inbox_id(session, owner)
    tasks = [
        (
            spec,
            Task(
                project_id=project_id,
                title=spec.title,
                description=spec.description,
                status=spec.status,
                priority=TaskPriority.from_label(spec.priority).value,
                due_at=spec.due_at,
                created_at=spec.created_at,
                updated_at=spec.updated_at,
                completed_at=spec.updated_at if spec.status == "done" else None,
                deleted_at=spec.updated_at if spec.trashed else None,
                version=1,
            ),
        )
        for spec in specs_
    ]
    session.add_all([task for _, task in tasks])
    await session.flush()
    rows = [Row(task.id, spec) for spec, task in tasks]
    await session.commit()
    session.expunge_all()
    return rows


def check_item(item: dict[str, Any], spec: Spec) -> None:
    """A listed task carries exactly the values it was inserted with."""
    assert item["title"] == spec.title
    assert item["description"] == spec.description
    assert item["status"] == spec.status
    assert item["priority"] == spec.priority
    assert item["due_at"] == (None if spec.due_at is None else rfc3339(spec.due_at))
    assert item["created_at"] == rfc3339(spec.created_at)
    assert item["updated_at"] == rfc3339(spec.updated_at)
    assert (item["deleted_at"] is not None) == spec.trashed


async def walk(
    client: httpx.AsyncClient,
    headers: Headers,
    query: Query,
    *,
    between_pages: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
    max_pages: int = 100,
) -> list[dict[str, Any]]:
    """Follow `next_cursor` to the end; the items in the order they were listed.

    Checks every page: at most `limit` items; a non-empty page and a `Link` header whenever
    there is a next page; neither on the last one.
    """
    listed: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params = dict(query.params) if cursor is None else {**query.params, "cursor": cursor}
        response = await client.get(TASKS, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        items: list[dict[str, Any]] = body["items"]
        assert len(items) <= query.limit
        listed.extend(items)
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            return listed
        assert isinstance(cursor, str)
        assert items, "a page with a next cursor must not be empty"
        assert LINK_NEXT.match(response.headers["link"]), response.headers["link"]
        if between_pages is not None:
            await between_pages(items)
    pytest.fail(f"the walk did not end within {max_pages} pages")


# --- properties -----------------------------------------------------------------------------


class TestWalkMatchesTheModel:
    """Without changes during the walk, it lists exactly the matching tasks, in order."""

    @PROPERTY_SETTINGS
    @given(scenario=scenarios())
    async def test_walk_is_exactly_the_expected_listing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        bob: User,
        alice_h: Headers,
        scenario: Scenario,
    ) -> None:
        query = scenario.query
        await reset_tasks(session)
        rows = await insert(session, alice, scenario.alices)
        await insert(session, bob, scenario.bobs)

        listed = await walk(client, alice_h, query)

        matching = [row for row in rows if query.matches(row.spec)]
        event(f"matching tasks: {bucket(len(matching))}")
        event(f"tasks: {bucket(len(rows))}")
        assert [item["id"] for item in listed] == expected_order(matching, query.effective_sort)
        by_id = {row.id: row.spec for row in rows}
        for item in listed:
            check_item(item, by_id[item["id"]])


class TestWalkWhileTasksComeAndGo:
    """Inserts and deletes between pages: every surviving task exactly once, in order."""

    @PROPERTY_SETTINGS
    @given(scenario=scenarios(max_tasks=14), data=st.data())
    async def test_survivors_exactly_once_and_nothing_else(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        bob: User,
        alice_h: Headers,
        scenario: Scenario,
        data: st.DataObject,
    ) -> None:
        query = scenario.query
        await reset_tasks(session)
        pre_existing = await insert(session, alice, scenario.alices)
        await insert(session, bob, scenario.bobs)
        known: dict[int, Row] = {row.id: row for row in pre_existing}
        seen: set[int] = set()
        removed: set[int] = set()
        removed_unseen: set[int] = set()
        rounds = 0

        async def remove(row: Row) -> None:
            """Take a task out of the walked set through the API: trash it, or restore it."""
            if query.deleted:
                response = await client.post(f"{TASKS}/{row.id}/restore", headers=alice_h)
                assert response.status_code == 200, response.text
            else:
                response = await client.delete(f"{TASKS}/{row.id}", headers=alice_h)
                assert response.status_code == 204, response.text
            removed.add(row.id)
            if row.id not in seen:
                removed_unseen.add(row.id)

        async def churn(page: list[dict[str, Any]]) -> None:
            nonlocal rounds
            seen.update(item["id"] for item in page)
            rounds += 1
            if rounds > 4:  # churn on the first pages only, so that the walk ends
                return
            # Any task in the walked set can go: listed or not, matching the filters or not,
            # the page's last one (the cursor's own position) included.
            removable = sorted(
                row.id
                for row in known.values()
                if row.spec.trashed == query.deleted and row.id not in removed
            )
            # Half the time only the interesting ones: matching tasks whose turn is yet to come.
            ahead = [i for i in removable if i not in seen and query.matches(known[i].spec)]
            if ahead and data.draw(st.booleans(), label="remove only tasks ahead"):
                removable = ahead
            if removable:
                doomed = data.draw(
                    st.lists(st.sampled_from(removable), max_size=3, unique=True), label="remove"
                )
                for task_id in doomed:
                    await remove(known[task_id])
            new_specs = data.draw(st.lists(specs(), max_size=3), label="insert")
            for row in await insert(session, alice, new_specs):
                known[row.id] = row

        listed = await walk(client, alice_h, query, between_pages=churn)
        ids = [item["id"] for item in listed]

        event(f"removed before their turn: {bucket(len(removed_unseen))}")
        event(f"listed: {bucket(len(ids))}")
        assert len(ids) == len(set(ids)), "a task was listed twice"
        # Nothing that is not the caller's, or does not match, or was gone before its turn.
        assert set(ids) <= set(known), "listed a task that is not the caller's"
        for item in listed:
            row = known[item["id"]]
            assert query.matches(row.spec), f"listed a task that does not match: {row}"
            check_item(item, row.spec)
        assert not removed_unseen & set(ids), "listed a task deleted before its page came up"
        # Keyset order over everything listed, new tasks included.
        sort = query.effective_sort
        assert ids == expected_order([known[i] for i in ids], sort)
        # Every pre-existing matching task that was still there when its turn came, once.
        matching = [row for row in pre_existing if query.matches(row.spec)]
        survivors = [i for i in expected_order(matching, sort) if i not in removed_unseen]
        pre_existing_ids = {row.id for row in pre_existing}
        assert [i for i in ids if i in pre_existing_ids] == survivors


class TestModelSanity:
    """The Python model itself, on hand-picked cases (so a wrong model cannot pass silently)."""

    def spec(self, **changes: Any) -> Spec:
        plain = Spec("t", None, "todo", "medium", None, BASE, BASE, trashed=False)
        return replace(plain, **changes)

    def test_due_at_undated_last_both_ways_and_ties_on_id(self) -> None:
        rows = [
            Row(1, self.spec(due_at=None)),
            Row(2, self.spec(due_at=ms(1))),
            Row(3, self.spec(due_at=ms(0))),
            Row(4, self.spec(due_at=ms(1))),
            Row(5, self.spec(due_at=None)),
        ]
        assert expected_order(rows, "due_at") == [3, 2, 4, 1, 5]
        assert expected_order(rows, "-due_at") == [4, 2, 3, 5, 1]

    def test_priority_order_and_ties(self) -> None:
        rows = [
            Row(1, self.spec(priority="urgent")),
            Row(2, self.spec(priority="low")),
            Row(3, self.spec(priority="high")),
            Row(4, self.spec(priority="medium")),
            Row(5, self.spec(priority="low")),
        ]
        assert expected_order(rows, "priority") == [2, 5, 4, 3, 1]
        assert expected_order(rows, "-priority") == [1, 3, 4, 5, 2]

    def test_filters(self) -> None:
        query = Query(
            statuses=frozenset({"todo"}),
            priorities=None,
            due_before=ms(5),
            due_after=ms(2),
            q="a%",
            deleted=False,
            sort=None,
            limit=1,
            params={},
        )
        assert query.matches(self.spec(title="xA%y", due_at=ms(2)))
        assert query.matches(self.spec(title="x", description="A%", due_at=ms(4)))
        assert not query.matches(self.spec(title="xAy", due_at=ms(2)))  # % is literal
        assert not query.matches(self.spec(title="a%", due_at=ms(5)))  # due_before exclusive
        assert not query.matches(self.spec(title="a%", due_at=ms(1)))
        assert not query.matches(self.spec(title="a%", due_at=None))
        assert not query.matches(self.spec(title="a%", due_at=ms(3), status="done"))
        assert not query.matches(self.spec(title="a%", due_at=ms(3), trashed=True))


class TestSearchFoldsCaseBeyondAscii:
    """`q` is case-insensitive for every cased letter, not only A to Z (section 3, `q`).

    The random alphabet above is ASCII, so that the walk properties stay about order and
    completeness; this is the same rule for accented, Cyrillic and Greek letters.
    """

    @pytest.mark.parametrize(
        ("title", "q"),
        [
            ("CAFÉ AU LAIT", "café"),
            ("café au lait", "CAFÉ"),
            ("Купить ХЛЕБ", "хлеб"),
            ("ΑΘΗΝΑ trip", "αθηνα"),
        ],
    )
    async def test_other_case_of_a_non_ascii_letter_matches(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        title: str,
        q: str,
    ) -> None:
        spec = Spec(title, None, "todo", "medium", None, BASE, BASE, trashed=False)
        [row, _] = await insert(session, alice, [spec, replace(spec, title="unrelated")])
        query = Query(None, None, None, None, q, False, None, 5, {"q": q, "limit": 5})
        assert query.matches(spec)
        listed = await walk(client, alice_h, query)
        assert [item["id"] for item in listed] == [row.id]
