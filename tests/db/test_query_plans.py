"""On PostgreSQL every list query is an index walk that stops with its page.

One owner has 30,000 tasks in their Inbox (about 5 % of them in the trash), three others
3,000 each; the tasks are inserted in creation order, so each owner's rows are spread over
the whole table, then VACUUM ANALYZE. For every supported list query (each sort both ways;
no filter, each filter alone, status and priority together, a due range, a rare and a
common `q`; the live list and the trash; the first page, a page from the middle of the
walk, and the pages where a walk goes from one of its pieces to the next) the service runs
on the large owner's tasks, its page is compared with the same walk done in Python, and
every SELECT it sent is explained with EXPLAIN (ANALYZE, BUFFERS): with its own parameter
values, and (except for `q`, whose plans the service keeps custom) as the generic plan that
a prepared statement switches to after five runs. (The migration's 1,000-entry statistics
on title and description make ANALYZE read all of this table, so no plan here depends on a
random sample.)

What a plan may be (docs/decisions/0016-listing-indexes.md):
- Never a Seq Scan of tasks, nor its primary key: every scan of tasks uses one of the
  listing's indexes for the view asked for (live or trash), or a trigram index.
- Limit -> Index Scan on the walk's own index: the rows come in the walk's order and the
  scan stops with the page. Or Limit -> Sort, if the Sort gets only a few rows that an index
  condition picked: those containing a rare `q` (a bitmap of the trigram indexes), or the
  last few of an index range after the cursor. Never a Sort of the owner's tasks at large.
- Each statement reads a bounded number of buffers: a few index pages and its page's rows,
  not the owner's walk (thousands of buffers).
- Besides, each statement runs two InitPlans, once: the caller check and the lookup of the
  caller's Inbox (v1's scope), each one index lookup.

v2's listing across projects (`TestTeamListingPlans`) is proven the same way on a database of
its own, which adds 100 shared projects (60,000 tasks, assignees and labels) to the above:
for a member of 1 project and of 50, each statement walks each of the caller's projects on
its walk index and merges the walks, so that its buffers and the rows it sorts are bounded
by the projects walked and the page (and the share of tasks an assignee or label keeps),
never by the tasks the caller may see.

v2's history (`TestHistoryPlans`), on a third database: the team database's projects with
about 250,000 events in their log, most of them not the callers'. The change feed, for a
member of 1 project and of 50, 1,000 events a page, walks each membership's events on its
(project_id, xid, id) index, the moves out of it and the caller's own member events, each
walk stopping with a page, and fetches the page's rows by primary key: on the first page, a
page deep in the log, the last page and a poll at the end alike. A task's and a project's
activity walk back on their (task_id, id) and (project_id, id) indexes, also for a project
whose events are all far behind the newest (never back along the whole log).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

import app.models  # noqa: F401 - registers every table on Base.metadata
from app.core.bounds import FEED_PAGE_SIZE_DEFAULT, FEED_PAGE_SIZE_MAX, PAGE_SIZE_MAX
from app.core.pagination import CursorPosition, binding_digest, encode_cursor
from app.core.roles import ProjectRole
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import Base
from app.db.session import create_engine_for
from app.db.statements.events import SCAN_BUDGET_PER_ITEM
from app.models.event import LOG_INDEX
from app.services import history, task_listing
from app.services.task_listing import TaskFilters, TaskSort, TeamFilters
from tests.conftest import create_database, drop_database, make_settings, run_alembic
from tests.support import SORTS

BIG_OWNER = 1
BIG_CALLER = AccessClaims(BIG_OWNER, token_version=1, issued_at=0, expires_at=2**40)
BIG_OWNER_TASKS = 30_000
OTHER_OWNERS = 3
OTHER_OWNER_TASKS = 3_000
# Accounts without tasks, so that the users table is large enough for its plans to be the
# ones a real deployment gets (the caller check, a lookup by primary key).
OTHER_USERS = 20_000
LIMIT = 20
OWNER_RANK = ProjectRole.OWNER.value
VIEWER_RANK = ProjectRole.VIEWER.value
# v2: shared projects, each holding SHARED_TASKS / SHARED_PROJECTS tasks. TEAM_MEMBER (an
# account without tasks of their own) is a viewer of TEAM_PROJECTS - 1 of them and has an
# Inbox: a member of TEAM_PROJECTS projects, which hold about half of the shared tasks.
# TEAM_MATE owns them all. BIG_OWNER is a member of one project, their Inbox. A quarter of
# the tasks of each caller's projects are assigned to the caller, a third of the shared ones
# to TEAM_MATE; every project has two labels, "red" on a fifth of its tasks, "blue" on a
# seventh (chosen by a hash of the task's id, so that no project's share differs much).
TEAM_MEMBER = 2 + OTHER_OWNERS
TEAM_MATE = TEAM_MEMBER + 1
TEAM_CALLER = AccessClaims(TEAM_MEMBER, token_version=1, issued_at=0, expires_at=2**40)
SHARED_PROJECTS = 100
TEAM_PROJECTS = 50
SHARED_TASKS = 60_000
SHARED_FIRST = 100_001  # the number n of the first shared task (titles and keys follow n)
BIG_INBOX_OF = f"(SELECT id FROM projects WHERE inbox_user_id = {BIG_OWNER})"
CURSOR_KEY = b"plan-test-cursor-key-" + b"x" * 16

RARE_TITLE = "zanzibar"  # in 1 title of 4,001
RARE_DESCRIPTION = "quetzal"  # in 1 description of 3,989
COMMON = "report"  # in 1 title of 4

# A page reads a few index pages and its rows (a heap page each, at worst), and the rows it
# skips: a filter that is checked on the row (several statuses) or a `q` in a quarter of the
# tasks means a few times the page. Walking all of the owner's tasks reads over fifteen
# times this (test_the_budget_is_below_a_walk).
BUFFER_BUDGET = 150
# A Sort may only order a few rows that an index condition picked: those containing a rare
# text (by the trigram indexes), those of a due range in the (small) trash, the last few of a
# range after a cursor. Two thirds of one percent of the owner's tasks, far below any
# filter's share of them.
SORT_INPUT_BUDGET = 200

# The index each sort walks (after ix_tasks_live_ or ix_tasks_trash_); a descending sort walks
# the ascending index backwards, except -due_at, whose NULLs still come last.
_WALK_INDEX = {
    "created_at": "created",
    "updated_at": "updated",
    "priority": "priority",
    "due_at": "due",
    "-due_at": "due_desc",
}
_TRIGRAM_INDEXES = {"ix_tasks_title_trgm", "ix_tasks_description_trgm"}

# A task's columns after project_id, from its number n (in a SELECT over generate_series).
_TASK_VALUES = f"""
    (ARRAY['Buy', 'Call', 'Write', 'Fix', 'Plan', 'Read', 'Book'])[1 + n % 7] || ' ' ||
    (ARRAY['{COMMON}', 'milk', 'invoice', 'garden'])[1 + (n / 7) % 4] ||
    CASE WHEN n % 4001 = 0 THEN ' {RARE_TITLE}' ELSE '' END || ' #' || n,
    CASE WHEN n % 5 = 0 THEN NULL
         ELSE 'Details of task ' || n || CASE WHEN n % 3989 = 0 THEN ' {RARE_DESCRIPTION}'
                                              ELSE '' END || repeat(' and so on', 25)
    END,
    (ARRAY['todo', 'in_progress', 'done'])[1 + (hashint4(n) & 65535) % 3],
    1 + (hashint4(n + 1) & 65535) % 4,
    CASE WHEN (hashint4(n + 2) & 65535) % 10 < 3 THEN NULL
         ELSE timestamptz '2026-01-01' + ((hashint4(n + 3) & 65535) % 730) * interval '1 day'
    END,
    timestamptz '2025-01-01' + n * interval '7 minutes',
    timestamptz '2025-01-01' + n * interval '7 minutes'
        + ((hashint4(n + 4) & 65535) % 50000) * interval '1 minute',
    NULL,
    CASE WHEN (hashint4(n + 5) & 65535) % 100 < 5 THEN timestamptz '2026-11-01' END,
    1"""

_SEED = f"""
INSERT INTO users (email, password_hash, role, is_active, token_version, created_at, updated_at)
SELECT 'owner' || g || '@example.com', 'x', 'user', true, 1, now(), now()
FROM generate_series(1, {1 + OTHER_OWNERS + OTHER_USERS}) AS g;

INSERT INTO projects (name, inbox_user_id, created_at, updated_at, version)
SELECT 'Inbox', id, now(), now(), 1 FROM users ORDER BY id;

INSERT INTO project_members (project_id, user_id, role, added_at)
SELECT id, inbox_user_id, {OWNER_RANK}, now() FROM projects;

INSERT INTO tasks (project_id, title, description, status, priority, due_at, created_at,
                   updated_at, completed_at, deleted_at, version)
SELECT
    (SELECT id FROM projects
     WHERE inbox_user_id = CASE WHEN n % 13 < 10 THEN {BIG_OWNER} ELSE 2 + n % {OTHER_OWNERS} END),
    {_TASK_VALUES}
FROM generate_series(1, {(BIG_OWNER_TASKS + OTHER_OWNERS * OTHER_OWNER_TASKS)}) AS n;
"""

# v2's data, in a database of its own (after _SEED), so that v1's plans are proven on v1's.
_TEAM_SEED = f"""
INSERT INTO projects (name, inbox_user_id, created_at, updated_at, version)
SELECT 'Shared ' || g, NULL, now(), now(), 1 FROM generate_series(1, {SHARED_PROJECTS}) AS g;

INSERT INTO project_members (project_id, user_id, role, added_at)
SELECT id, {TEAM_MEMBER}, {VIEWER_RANK}, now() FROM projects
WHERE inbox_user_id IS NULL AND id % 2 = 0
ORDER BY id LIMIT {TEAM_PROJECTS - 1};

INSERT INTO project_members (project_id, user_id, role, added_at)
SELECT id, {TEAM_MATE}, {OWNER_RANK}, now() FROM projects WHERE inbox_user_id IS NULL;

INSERT INTO tasks (project_id, title, description, status, priority, due_at, created_at,
                   updated_at, completed_at, deleted_at, version)
SELECT
    (SELECT min(id) FROM projects WHERE inbox_user_id IS NULL) + n % {SHARED_PROJECTS},
    {_TASK_VALUES}
FROM generate_series({SHARED_FIRST}, {SHARED_FIRST + SHARED_TASKS - 1}) AS n;

INSERT INTO task_assignees (task_id, user_id)
SELECT id, CASE WHEN project_id = {BIG_INBOX_OF} THEN {BIG_OWNER} ELSE {TEAM_MEMBER} END
FROM tasks
WHERE (hashint4(id::int) & 65535) % 4 = 0 AND (project_id = {BIG_INBOX_OF} OR project_id IN
      (SELECT project_id FROM project_members WHERE user_id = {TEAM_MEMBER}));

INSERT INTO task_assignees (task_id, user_id)
SELECT id, {TEAM_MATE} FROM tasks
WHERE (hashint4(id::int + 1) & 65535) % 3 = 0
  AND project_id IN (SELECT id FROM projects WHERE inbox_user_id IS NULL);

INSERT INTO labels (project_id, name, color, created_at)
SELECT p.id, c.name, '#aa0000', now()
FROM projects AS p CROSS JOIN (VALUES ('red'), ('blue')) AS c (name);

INSERT INTO task_labels (task_id, label_id)
SELECT t.id, l.id FROM tasks AS t JOIN labels AS l ON l.project_id = t.project_id
WHERE (l.name = 'red' AND (hashint4(t.id::int + 2) & 65535) % 5 = 0)
   OR (l.name = 'blue' AND (hashint4(t.id::int + 3) & 65535) % 7 = 0);
"""


@dataclass(frozen=True)
class Row:
    id: int
    title: str
    description: str | None
    status: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


RowT = TypeVar("RowT", bound=Row)
T = TypeVar("T")


@dataclass
class Captured:
    statements: list[tuple[str, Any]] = field(default_factory=list)
    on: bool = False


@dataclass
class Database:
    engine: AsyncEngine
    rows: list[Row]
    captured: Captured
    big_inbox: int
    members: dict[str, Member]  # v2's callers, by how many projects they are members of


@dataclass(frozen=True)
class TeamRow(Row):
    project_id: int
    assignee_ids: frozenset[int]
    label_ids: frozenset[int]


@dataclass
class Member:
    """A v2 caller: the tasks of their projects, and a label of one of them."""

    claims: AccessClaims
    project_ids: list[int]
    rows: list[TeamRow]
    label_id: int  # "red", of the project with the smallest id


def _team_row(values: tuple[Any, ...]) -> TeamRow:
    *columns, project_id, assignee_ids, label_ids = values
    return TeamRow(
        **vars(Row(*columns)),
        project_id=project_id,
        assignee_ids=frozenset(assignee_ids),
        label_ids=frozenset(label_ids),
    )


async def _member(connection: AsyncConnection, claims: AccessClaims) -> Member:
    result = await connection.execute(
        text("SELECT project_id FROM project_members WHERE user_id = :u ORDER BY project_id"),
        {"u": claims.user_id},
    )
    project_ids = [int(project_id) for (project_id,) in result]
    result = await connection.execute(
        text(
            "SELECT id, title, description, status, priority, due_at, created_at, updated_at,"
            " deleted_at, project_id,"
            " ARRAY(SELECT user_id FROM task_assignees WHERE task_id = tasks.id),"
            " ARRAY(SELECT label_id FROM task_labels WHERE task_id = tasks.id)"
            " FROM tasks WHERE project_id = ANY(:projects)"
        ),
        {"projects": project_ids},
    )
    rows = [_team_row(tuple(row)) for row in result]
    label_id = await connection.scalar(
        text(
            "SELECT min(id) FROM labels WHERE name = 'red' AND project_id ="
            " (SELECT min(project_id) FROM tasks WHERE project_id = ANY(:projects))"
        ),
        {"projects": project_ids},
    )
    return Member(claims, project_ids, rows, int(label_id))


@asynccontextmanager
async def seeded(
    tmp_path_factory: pytest.TempPathFactory, seed: str, *, team: bool
) -> AsyncIterator[Database]:
    """A new, migrated PostgreSQL database with the tasks of `seed`; dropped afterwards."""
    url = await create_database("postgresql", tmp_path_factory.mktemp("plans"))
    try:
        run_alembic(url)
        engine = create_engine_for(make_settings(url, db_pool_size=2, db_max_overflow=0))
        try:
            async with engine.begin() as connection:
                for statement in seed.split(";\n\n"):
                    await connection.exec_driver_sql(statement)
                big_inbox = await connection.scalar(
                    text("SELECT id FROM projects WHERE inbox_user_id = :o"), {"o": BIG_OWNER}
                )
                assert await connection.scalar(
                    text("SELECT count(*) FROM tasks WHERE project_id = :p"), {"p": big_inbox}
                ) == pytest.approx(BIG_OWNER_TASKS, rel=0.01)
            autocommit = await engine.connect()
            try:
                await autocommit.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql("VACUUM ANALYZE tasks")
                for table in ("users", "projects", "project_members", "labels"):
                    await autocommit.exec_driver_sql(f"ANALYZE {table}")
                for table in ("task_assignees", "task_labels", "events"):
                    await autocommit.exec_driver_sql(f"VACUUM ANALYZE {table}")
            finally:
                await autocommit.close()
            async with engine.connect() as connection:
                result = await connection.execute(
                    text(
                        "SELECT id, title, description, status, priority, due_at, created_at,"
                        " updated_at, deleted_at FROM tasks WHERE project_id = :p"
                    ),
                    {"p": big_inbox},
                )
                rows = [Row(*row) for row in result]
                members = {}
                if team:
                    members = {
                        "1 project": await _member(connection, BIG_CALLER),
                        f"{TEAM_PROJECTS} projects": await _member(connection, TEAM_CALLER),
                    }
            captured = Captured()

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def _capture(
                _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any
            ) -> None:
                if captured.on:
                    captured.statements.append((statement, parameters))

            yield Database(engine, rows, captured, big_inbox, members)
        finally:
            await engine.dispose()
    finally:
        await drop_database(url)


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """v1's: the owners' tasks."""
    async with seeded(tmp_path_factory, _SEED, team=False) as seeded_database:
        yield seeded_database


@pytest.fixture(scope="module")
async def team_database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """v2's: the owners' tasks, and the shared projects with theirs."""
    async with seeded(tmp_path_factory, _SEED + _TEAM_SEED, team=True) as seeded_database:
        yield seeded_database


# --- the walks, done in Python ---------------------------------------------------------


def matches(row: Row, filters: TaskFilters) -> bool:
    if (row.deleted_at is not None) != filters.deleted:
        return False
    if filters.statuses and row.status not in filters.statuses:
        return False
    if filters.priorities and row.priority not in filters.priorities:
        return False
    if filters.due_before is not None and not (row.due_at and row.due_at < filters.due_before):
        return False
    if filters.due_after is not None and not (row.due_at and row.due_at >= filters.due_after):
        return False
    if filters.q:
        text_ = filters.q.lower()
        return text_ in row.title.lower() or text_ in (row.description or "").lower()
    return True


def walk(rows: Sequence[RowT], filters: TaskFilters, sort: TaskSort) -> list[RowT]:
    chosen = [row for row in rows if matches(row, filters)]
    if sort.field == "due_at":
        dated = sorted((r for r in chosen if r.due_at), key=lambda r: (r.due_at, r.id))
        undated = sorted((r for r in chosen if r.due_at is None), key=lambda r: r.id)
        if sort.descending:
            dated.reverse()
            undated.reverse()
        return dated + undated  # without a due date: last in both directions
    return sorted(chosen, key=lambda r: (getattr(r, sort.field), r.id), reverse=sort.descending)


def cursor_after(row: Row, filters: TaskFilters, sort: TaskSort) -> str:
    key = getattr(row, sort.field)
    binding = binding_digest(user=BIG_OWNER, filters=filters.binding(), sort=str(sort))
    position = CursorPosition(key.isoformat() if isinstance(key, datetime) else key, row.id)
    return encode_cursor(position, binding=binding, key=CURSOR_KEY)


def positions(walked: Sequence[Row], filters: TaskFilters, sort: TaskSort) -> dict[str, int]:
    """Where pages start: the first page (-1), the middle of the walk, and a few rows before
    each place where the walk goes from one of its pieces to the next."""
    found = {"first page": -1}
    if len(walked) > 2 * LIMIT:
        found["middle"] = len(walked) // 2
    if sort.field == "due_at":
        tail = next((i for i, row in enumerate(walked) if row.due_at is None), None)
        if tail is not None and tail > 5:
            found["into the undated tail"] = tail - 5
            if tail + LIMIT < len(walked):
                found["inside the undated tail"] = tail + LIMIT
    if sort.field == "priority":
        for i in range(6, len(walked)):
            if walked[i].priority != walked[i - 1].priority:
                found[f"into priority {walked[i].priority}"] = i - 5
    return found


FILTERS: dict[str, TaskFilters] = {
    "no filter": TaskFilters(),
    "status": TaskFilters(statuses=("in_progress",)),
    "statuses": TaskFilters(statuses=("todo", "done")),
    "priority": TaskFilters(priorities=(4,)),
    "priorities": TaskFilters(priorities=(1, 3)),
    "status+priority": TaskFilters(statuses=("in_progress",), priorities=(4,)),
    "due range": TaskFilters(
        due_after=datetime(2026, 3, 1, tzinfo=UTC), due_before=datetime(2026, 5, 1, tzinfo=UTC)
    ),
    "due after": TaskFilters(due_after=datetime(2027, 6, 1, tzinfo=UTC)),
    "rare q (title)": TaskFilters(q=RARE_TITLE.upper()),
    "rare q (description)": TaskFilters(q=RARE_DESCRIPTION),
    "common q": TaskFilters(q=COMMON),
}
VIEWS = {"live": False, "trash": True}


# --- plans -----------------------------------------------------------------------------


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def outline(plan: dict[str, Any], depth: int = 0) -> str:
    line = "  " * depth + plan["Node Type"]
    if "Index Name" in plan:
        line += f" using {plan['Index Name']}"
    line += f" (rows {plan.get('Actual Rows')}, buffers {buffers(plan)})"
    return "\n".join([line, *(outline(child, depth + 1) for child in plan.get("Plans", []))])


def buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


# The check that the caller's token is current (app/db/statements/callers.py), which every
# list statement carries: an InitPlan that looks the user up by primary key; and v1's scope,
# the caller's Inbox (app/db/statements/memberships.py): an InitPlan that looks the project
# up by its unique inbox_user_id. Each runs once per statement.
_CALLER_CHECK_INDEX = "pk_users"
_INBOX_INDEX = "uq_projects_inbox_user_id"
_V1_INIT_PLANS = sorted([_CALLER_CHECK_INDEX, _INBOX_INDEX])


def caller_checks(plan: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The plan without its InitPlans, and the InitPlans (run once per statement)."""
    found: list[dict[str, Any]] = []

    def strip(node: dict[str, Any]) -> dict[str, Any]:
        children = []
        for child in node.get("Plans", []):
            if child.get("Parent Relationship") == "InitPlan":
                found.append(child)
            else:
                children.append(strip(child))
        stripped = {key: value for key, value in node.items() if key != "Plans"}
        return {**stripped, "Plans": children} if children else stripped

    return strip(plan), found


def plan_problems(plan: dict[str, Any], *, view: str, sort: TaskSort) -> list[str]:
    """What is wrong with this plan of a list query (empty when nothing is)."""
    problems = []
    plan, checks = caller_checks(plan)
    if len(checks) != len(_V1_INIT_PLANS):
        problems.append(f"{len(checks)} InitPlans, not the caller check and the Inbox lookup")
    lookups = []
    for check in checks:
        indexes = [node["Index Name"] for node in nodes(check) if node.get("Index Name")]
        lookups.extend(indexes)
        if len(indexes) != 1 or any(node["Node Type"] == "Seq Scan" for node in nodes(check)):
            problems.append(f"an InitPlan is not one index lookup: {indexes}")
    if sorted(lookups) != _V1_INIT_PLANS:
        problems.append(f"the InitPlans look up {lookups}, not {_V1_INIT_PLANS}")
    for node in nodes(plan):
        if node["Node Type"] == "Seq Scan":
            problems.append("a Seq Scan")
        index = node.get("Index Name")
        if index and index not in _TRIGRAM_INDEXES and not index.startswith(f"ix_tasks_{view}_"):
            problems.append(f"index {index} is not one of the {view} view's")
    if plan["Node Type"] != "Limit":
        return [*problems, "no Limit on top"]
    [below] = plan["Plans"]
    if below["Node Type"] == "Result" and len(below.get("Plans", [])) == 1:
        [below] = below["Plans"]  # the caller check's gate (a one-time filter): no work
    walk_index = f"ix_tasks_{view}_" + _WALK_INDEX.get(str(sort), _WALK_INDEX[sort.field])
    if below["Node Type"] == "Index Scan" and "Plans" not in below:
        if below["Index Name"] != walk_index:
            problems.append(f"walks {below['Index Name']}, not {walk_index}")
        return problems
    if below["Node Type"] != "Sort":
        return [*problems, f"neither Limit -> Index Scan using {walk_index} nor Limit -> Sort"]
    [sorted_] = below["Plans"]
    if sorted_["Actual Rows"] > SORT_INPUT_BUDGET:
        problems.append(f"the Sort gets {sorted_['Actual Rows']} rows")
    return problems


def literal(value: Any) -> str:
    """A parameter as an SQL literal, for EXECUTE (a statement of our own, values of ours)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    assert isinstance(value, str)
    return "'" + value.replace("'", "''") + "'"


async def explain(
    connection: AsyncConnection, statement: str, parameters: Any, *, generic: bool
) -> dict[str, Any]:
    options = "ANALYZE, BUFFERS, FORMAT JSON"
    if not generic:
        result = await connection.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters)
    else:
        await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        await connection.exec_driver_sql(f"PREPARE listing_probe AS {statement}")
        try:
            arguments = ", ".join(literal(value) for value in parameters)
            result = await connection.exec_driver_sql(
                f"EXPLAIN ({options}) EXECUTE listing_probe({arguments})"
            )
        finally:
            await connection.exec_driver_sql("DEALLOCATE listing_probe")
            await connection.exec_driver_sql("RESET plan_cache_mode")
    document = result.scalar_one()
    document = json.loads(document) if isinstance(document, str) else document
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


def cases() -> Iterator[Any]:
    for view in VIEWS:
        for name in FILTERS:
            for sort in SORTS:
                yield pytest.param(view, name, sort, id=f"{view}-{name}-{sort}")


class TestListingPlans:
    @pytest.mark.parametrize(("view", "filter_name", "sort_text"), list(cases()))
    async def test_every_page_is_an_index_walk(
        self, database: Database, view: str, filter_name: str, sort_text: str
    ) -> None:
        filters = replace(FILTERS[filter_name], deleted=VIEWS[view])
        sort = TaskSort.parse(sort_text)
        walked = walk(database.rows, filters, sort)
        failures = []
        async with (
            AsyncSession(database.engine, expire_on_commit=False) as session,
            database.engine.connect() as probe,
        ):
            for where, start in positions(walked, filters, sort).items():
                cursor = cursor_after(walked[start], filters, sort) if start >= 0 else None
                database.captured.statements.clear()
                database.captured.on = True
                try:
                    page = await task_listing.list_tasks(
                        Db.in_session(session),
                        BIG_CALLER,
                        filters=filters,
                        sort=sort,
                        limit=LIMIT,
                        cursor=cursor,
                        cursor_key=CURSOR_KEY,
                    )
                finally:
                    database.captured.on = False
                listed = [task.id for task in page.items]
                await session.rollback()
                expected = walked[start + 1 : start + 1 + LIMIT]
                assert listed == [row.id for row in expected], where
                assert (page.next_cursor is not None) == (start + 1 + LIMIT < len(walked))
                # The listing's statements (an empty page also asks whether the caller is
                # still current: a lookup by primary key, not a listing).
                selects = [
                    s
                    for s in database.captured.statements
                    if s[0].startswith("SELECT") and "FROM tasks" in s[0]
                ]
                assert 1 <= len(selects) <= 4, where
                for statement, parameters in selects:
                    kinds = [False] if filters.q else [False, True]
                    for generic in kinds:
                        plan = await explain(probe, statement, parameters, generic=generic)
                        problems = plan_problems(plan, view=view, sort=sort)
                        if buffers(plan) > BUFFER_BUDGET:
                            problems.append(f"{buffers(plan)} buffers")
                        if problems:
                            kind = "generic" if generic else "custom"
                            failures.append(
                                f"{where}, {kind} plan: {'; '.join(problems)}\n{outline(plan)}"
                                f"\n{statement}\n{parameters}"
                            )
        assert not failures, "\n\n".join(failures)

    async def test_text_search_plans_stay_custom(self, database: Database) -> None:
        """Which plan is right for `q` depends on how common the text is, which the generic
        plan that a prepared statement switches to after five runs cannot know (on 300,000
        tasks it ANDs the bitmap of the owner's 200,000 with the trigram indexes': 10 to 40 ms
        instead of 0.1). So `q` is always planned with its value: within its request only."""

        async def plan_cache_mode(session: AsyncSession) -> Any:
            return await session.scalar(text("SHOW plan_cache_mode"))

        async with database.engine.connect() as connection:
            session = AsyncSession(bind=connection)
            database.captured.statements.clear()
            database.captured.on = True
            try:
                for _ in range(4):
                    for filters in (TaskFilters(q=RARE_TITLE), TaskFilters(q=COMMON)):
                        await task_listing.list_tasks(
                            Db.in_session(session),
                            BIG_CALLER,
                            filters=filters,
                            sort=TaskSort.parse("-created_at"),
                            limit=LIMIT,
                            cursor=None,
                            cursor_key=CURSOR_KEY,
                        )
                        assert await plan_cache_mode(session) == "force_custom_plan"
                        await session.rollback()  # each request is a transaction of its own
                        assert await plan_cache_mode(session) == "auto"
            finally:
                database.captured.on = False
            [statement] = {s for s, _ in database.captured.statements if "ILIKE" in s}
            result = await connection.exec_driver_sql(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = $1",
                (statement,),
            )
            counts = [tuple(row) for row in result]
            await task_listing.list_tasks(
                Db.in_session(session),
                BIG_CALLER,
                filters=TaskFilters(),
                sort=TaskSort.parse("-created_at"),
                limit=LIMIT,
                cursor=None,
                cursor_key=CURSOR_KEY,
            )
            assert await plan_cache_mode(session) == "auto"
        assert counts == [(0, 8)]

    async def test_the_budget_is_below_a_walk(self, database: Database) -> None:
        """The buffer budget means something: walking all of the owner's tasks reads far more."""
        async with database.engine.connect() as connection:
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await connection.exec_driver_sql(f"SET LOCAL {setting} = off")
            plan = await explain(
                connection,
                "SELECT * FROM tasks WHERE project_id = $1 AND deleted_at IS NULL"
                " ORDER BY created_at DESC, id DESC",
                (database.big_inbox,),
                generic=False,
            )
        assert plan["Index Name"] == "ix_tasks_live_created"
        assert buffers(plan) > 15 * BUFFER_BUDGET


class TestIndexDefinitions:
    async def test_the_models_and_the_migrations_build_the_same_indexes(
        self, tmp_path: Path, database: Database
    ) -> None:
        """Alembic's comparison ignores a partial index's WHERE, USING and operator classes;
        PostgreSQL's own definitions of the migrated indexes and the models' must agree."""

        async def definitions(engine: AsyncEngine) -> dict[str, str]:
            async with engine.connect() as connection:
                result = await connection.execute(
                    text(
                        "SELECT indexname, indexdef FROM pg_indexes"
                        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
                return {str(name): str(definition) for name, definition in result}

        url = await create_database("postgresql", tmp_path)
        engine = create_engine_for(make_settings(url, db_pool_size=1, db_max_overflow=0))
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                await connection.run_sync(Base.metadata.create_all)
            from_models = await definitions(engine)
        finally:
            await engine.dispose()
            await drop_database(url)
        migrated = await definitions(database.engine)
        assert from_models == migrated
        assert "USING gin (title gin_trgm_ops)" in migrated["ix_tasks_title_trgm"]
        assert migrated["ix_tasks_trash_due_desc"].endswith("WHERE (deleted_at IS NOT NULL)")

    async def test_the_searched_columns_have_finer_statistics(self, database: Database) -> None:
        """Set by the migration alone (the models cannot say it): see the migration 0003."""
        async with database.engine.connect() as connection:
            result = await connection.execute(
                text(
                    "SELECT attname, attstattarget FROM pg_attribute"
                    " WHERE attrelid = 'tasks'::regclass AND attname IN ('title', 'description')"
                )
            )
            targets = {str(name): int(target) for name, target in result}
        assert targets == {"title": 1000, "description": 1000}


# --- v2: the tasks of every project of the caller -------------------------------------------
#
# `GET /api/v2/tasks` walks each of the caller's projects on its own walk index (a LATERAL
# subquery per membership, reading the index only) and merges the walks
# (app/db/statements/task_listing.py): a page reads about projects x page size index
# entries, sorts at most that many keys, and fetches its own rows by primary key, however
# deep it is. Checked for a member of one project (BIG_OWNER, whose Inbox holds 30,000 tasks)
# and of TEAM_PROJECTS (about 30,000 tasks among them), on the first page, a page in the
# middle of the walk and the pages that cross from one piece of the walk to the next, with
# v1's filters, an assignee, a label, both, and named projects.

# A statement reads some buffers of its own (the caller check, the memberships, the page's
# rows by primary key, their assignees and labels) and, for each project it walks, its
# membership and a few index pages of its walk (which reads the index alone). An assignee
# or a label is checked on each task the walk reaches, a lookup of up to three buffers: a
# filter keeping a `share` of the tasks means about a page / share of them per walk (half as
# many again for the spread between projects); never the project's tasks. A plain join of a
# member's projects to their tasks reads far more (test_the_team_budget_is_below_a_walk).
TEAM_BUFFER_BUDGET = 200
TEAM_BUFFERS_PER_WALK = 12
LOOKUP_BUFFERS = 3


def team_budget(walks: int, share: float) -> int:
    """The buffers a statement may read: `walks` projects walked, assignee and label filters
    keeping `share` of the tasks (1: no such filter)."""
    lookups = 0 if share == 1 else 1.5 * LOOKUP_BUFFERS * (LIMIT + 1) / share
    return TEAM_BUFFER_BUDGET + walks * int(TEAM_BUFFERS_PER_WALK + lookups)


# (v1 filters, v2 filters as a function of the member, the share of tasks that the assignee
# and label filters keep) by name.
TeamCase = tuple[TaskFilters, Callable[[Member], TeamFilters], float]
TEAM_FILTERS: dict[str, TeamCase] = {
    "no filter": (TaskFilters(), lambda _: TeamFilters(), 1),
    "status": (TaskFilters(statuses=("in_progress",)), lambda _: TeamFilters(), 1),
    "priorities": (TaskFilters(priorities=(1, 3)), lambda _: TeamFilters(), 1),
    "due range": (FILTERS["due range"], lambda _: TeamFilters(), 1),
    "assignee me": (TaskFilters(), lambda m: TeamFilters(assignee=m.claims.user_id), 1 / 4),
    "assignee none": (TaskFilters(), lambda _: TeamFilters(assignee="none"), 1 / 2),
    "assignee teammate": (TaskFilters(), lambda _: TeamFilters(assignee=TEAM_MATE), 1 / 3),
    "label": (TaskFilters(), lambda m: TeamFilters(label_id=m.label_id), 1 / 5),
    "label and assignee": (
        TaskFilters(),
        lambda m: TeamFilters(assignee=m.claims.user_id, label_id=m.label_id),
        1 / 20,
    ),
    # `q` is checked on the row (a heap page each), or found by the trigram indexes.
    "common q": (TaskFilters(q=COMMON), lambda _: TeamFilters(), 1 / 4),
    "rare q": (TaskFilters(q=RARE_TITLE), lambda _: TeamFilters(), 1 / 2),
    "two projects": (
        TaskFilters(),
        lambda m: TeamFilters(project_ids=tuple(m.project_ids[-2:])),
        1,
    ),
}
TEAM_TRASH_FILTERS = ("no filter", "assignee me", "label")


def team_matches(row: TeamRow, team: TeamFilters, member: Member) -> bool:
    if team.project_ids and row.project_id not in team.project_ids:
        return False
    if team.assignee == "none" and row.assignee_ids:
        return False
    if isinstance(team.assignee, int) and team.assignee not in row.assignee_ids:
        return False
    return team.label_id is None or team.label_id in row.label_ids


def team_walk(
    member: Member, filters: TaskFilters, team: TeamFilters, sort: TaskSort
) -> list[TeamRow]:
    kept = [row for row in member.rows if team_matches(row, team, member)]
    return walk(kept, filters, sort)


def team_cursor_after(
    row: Row, member: Member, filters: TaskFilters, team: TeamFilters, sort: TaskSort
) -> str:
    key = getattr(row, sort.field)
    binding = binding_digest(
        user=member.claims.user_id, filters=filters.binding() | team.binding(), sort=str(sort)
    )
    position = CursorPosition(key.isoformat() if isinstance(key, datetime) else key, row.id)
    return encode_cursor(position, binding=binding, key=CURSOR_KEY)


def walked_projects(member: Member, team: TeamFilters) -> int:
    """How many of the member's projects the statement walks."""
    projects = set(team.project_ids or member.project_ids)
    if team.label_id is not None:
        projects &= {row.project_id for row in member.rows if team.label_id in row.label_ids}
    if team.assignee == TEAM_MATE:
        projects = {p for p in projects if p != min(member.project_ids)}  # not in the Inbox
    return len(projects)


def loops(node: dict[str, Any]) -> int:
    return int(node.get("Actual Loops", 1))


def team_plan_problems(
    plan: dict[str, Any], *, view: str, sort: TaskSort, walks: int, text_search: bool
) -> list[str]:
    """What is wrong with this plan of a v2 list query (empty when nothing is).

    - No Seq Scan of anything.
    - tasks is read by the view's indexes only (by its walk index, or by another of the view's
      whose index condition picks a few rows to sort, as a due range does), by the trigram
      indexes for `q`, and by primary key only for the page's own rows.
    - A Sort inside a walk (run once per project) orders at most SORT_INPUT_BUDGET rows, or a
      due range that an index condition picked; the Sort that merges the walks at most a page
      from each walk. Never a Sort of the member's tasks at large.
    """
    problems = []
    walk_index = f"ix_tasks_{view}_" + _WALK_INDEX.get(str(sort), _WALK_INDEX[sort.field])
    for node in nodes(plan):
        kind = node["Node Type"]
        if kind == "Seq Scan":
            problems.append(f"a Seq Scan on {node.get('Relation Name')}")
        if node.get("Relation Name") == "tasks":
            index = node.get("Index Name")
            if index == "pk_tasks":
                # The page's own rows, fetched by id once the walks are merged.
                fetched = loops(node) * int(node["Actual Rows"])
                if fetched > LIMIT + 1:
                    problems.append(f"{fetched} rows fetched by primary key")
            elif index in _TRIGRAM_INDEXES or (kind == "Bitmap Heap Scan" and text_search):
                pass  # a rare `q`: the tasks that contain it, in this project
            elif not (index or "").startswith(f"ix_tasks_{view}_"):
                problems.append(f"tasks read by {kind} {index}, not one of the {view} view's")
            elif index != walk_index and node.get("Parent Relationship") != "Outer":
                problems.append(f"tasks read by {index}, neither the walk nor sorted")
        if kind == "Sort":
            per_loop = sum(int(child["Actual Rows"]) for child in node["Plans"])
            bound = SORT_INPUT_BUDGET
            if loops(node) == 1:  # the Sort that merges the walks
                bound = max(bound, walks * (LIMIT + 1))
            [below] = node["Plans"]
            if below["Node Type"] == "Index Only Scan" and "due_at" in below.get("Index Cond", ""):
                # A due range read from the index alone, then sorted: PostgreSQL's choice when
                # the range holds fewer entries than the walk would step over (a few buffers).
                continue
            if per_loop > bound:
                problems.append(f"a Sort of {per_loop} rows ({loops(node)} loops, {walks} walks)")
    return problems


def team_cases() -> Iterator[Any]:
    for who in (f"{TEAM_PROJECTS} projects", "1 project"):
        for view, names in (("live", list(TEAM_FILTERS)), ("trash", TEAM_TRASH_FILTERS)):
            for name in names:
                for sort in SORTS:
                    yield pytest.param(who, view, name, sort, id=f"{who}-{view}-{name}-{sort}")


class TestTeamListingPlans:
    @pytest.mark.parametrize(("who", "view", "filter_name", "sort_text"), list(team_cases()))
    async def test_every_page_walks_each_project_on_its_index(
        self, team_database: Database, who: str, view: str, filter_name: str, sort_text: str
    ) -> None:
        member = team_database.members[who]
        v1_filters, team_of, share = TEAM_FILTERS[filter_name]
        filters = replace(v1_filters, deleted=VIEWS[view])
        team = team_of(member)
        sort = TaskSort.parse(sort_text)
        walked = team_walk(member, filters, team, sort)
        walks = walked_projects(member, team)
        budget = team_budget(walks, share)
        failures = []
        async with (
            AsyncSession(team_database.engine, expire_on_commit=False) as session,
            team_database.engine.connect() as probe,
        ):
            for where, start in positions(walked, filters, sort).items():
                cursor = None
                if start >= 0:
                    cursor = team_cursor_after(walked[start], member, filters, team, sort)
                team_database.captured.statements.clear()
                team_database.captured.on = True
                try:
                    page = await task_listing.list_team_tasks(
                        Db.in_session(session),
                        member.claims,
                        filters=filters,
                        team=team,
                        sort=sort,
                        limit=LIMIT,
                        cursor=cursor,
                        cursor_key=CURSOR_KEY,
                    )
                finally:
                    team_database.captured.on = False
                await session.rollback()
                expected = walked[start + 1 : start + 1 + LIMIT]
                assert [item.task.id for item in page.items] == [row.id for row in expected], where
                for item, row in zip(page.items, expected, strict=True):
                    assert set(item.assignee_ids) == row.assignee_ids
                    assert set(item.label_ids) == row.label_ids
                assert (page.next_cursor is not None) == (start + 1 + LIMIT < len(walked))
                selects = [
                    s
                    for s in team_database.captured.statements
                    if s[0].startswith("SELECT") and "JOIN LATERAL" in s[0]
                ]
                assert 1 <= len(selects) <= 4, where
                for statement, parameters in selects:
                    for generic in [False] if filters.q else [False, True]:
                        plan = await explain(probe, statement, parameters, generic=generic)
                        problems = team_plan_problems(
                            plan, view=view, sort=sort, walks=walks, text_search=bool(filters.q)
                        )
                        if buffers(plan) > budget:
                            problems.append(f"{buffers(plan)} buffers (budget {budget})")
                        if problems:
                            kind = "generic" if generic else "custom"
                            failures.append(
                                f"{where}, {kind} plan: {'; '.join(problems)}\n{outline(plan)}"
                                f"\n{statement}\n{parameters}"
                            )
        assert not failures, "\n\n".join(failures)

    async def test_the_team_budget_is_below_a_walk(self, team_database: Database) -> None:
        """The budget means something: a plain join of the member's projects to their tasks,
        sorted, reads far more than a page of walks does."""
        member = team_database.members[f"{TEAM_PROJECTS} projects"]
        async with team_database.engine.connect() as connection:
            plan = await explain(
                connection,
                "SELECT t.* FROM project_members m JOIN tasks t ON t.project_id = m.project_id"
                " WHERE m.user_id = $1 AND t.deleted_at IS NULL"
                " ORDER BY t.created_at DESC, t.id DESC LIMIT 21",
                (member.claims.user_id,),
                generic=False,
            )
        assert buffers(plan) > 5 * team_budget(TEAM_PROJECTS, 1)


# --- v2: the history and the change feed ------------------------------------------------------
#
# A database of its own: the team database's projects and TEAM_MATE's Archive, and a log of
# about 250,000 events: each project's creation and each membership's joining, two events of
# each task (created, updated), moves between shared projects, a task of BIG_OWNER's Inbox,
# one of a TEAM_MEMBER's project and one of the Archive with HOT_TASK_EVENTS events and
# HOT_TASK_COMMENTS comments each, and TEAM_MEMBER's joining and leaving projects that are
# no longer theirs. The events of all projects are interleaved in the log, as their times
# interleave, except the Archive's, which all came before some 200,000 others. `xid` is set
# as the writing transactions' would be (a few events each, some committed late: a lower xid
# than an event before them), all below the horizon.

HOT_TASK_EVENTS = 3_000
HOT_TASK_COMMENTS = 1_000
MOVES_EVERY = 30  # one task in so many of the shared projects' is moved out, one moved in
LEFT_PROJECTS = 10  # shared projects TEAM_MEMBER joined and left
# TEAM_MATE's "Archive": ARCHIVE_TASKS tasks (and a hot one) whose events all came in the
# log's first weeks; nothing has happened in it since.
ARCHIVE_TASKS = 1_000
ARCHIVE_FIRST = SHARED_FIRST + SHARED_TASKS

_EVENT_SEED = f"""
INSERT INTO projects (name, inbox_user_id, created_at, updated_at, version)
VALUES ('Archive', NULL, now(), now(), 1);

INSERT INTO project_members (project_id, user_id, role, added_at)
SELECT id, {TEAM_MATE}, {OWNER_RANK}, now() FROM projects WHERE name = 'Archive';

INSERT INTO tasks (project_id, title, description, status, priority, due_at, created_at,
                   updated_at, completed_at, deleted_at, version)
SELECT (SELECT id FROM projects WHERE name = 'Archive'), {_TASK_VALUES}
FROM generate_series({ARCHIVE_FIRST}, {ARCHIVE_FIRST + ARCHIVE_TASKS - 1}) AS n;

CREATE TEMPORARY TABLE hot_tasks AS
SELECT (SELECT min(id) FROM tasks WHERE project_id = {BIG_INBOX_OF}) AS id
UNION ALL
SELECT min(id) FROM tasks WHERE project_id = (
    SELECT min(m.project_id) FROM project_members AS m JOIN projects AS p ON p.id = m.project_id
    WHERE m.user_id = {TEAM_MEMBER} AND p.inbox_user_id IS NULL)
UNION ALL
SELECT min(id) FROM tasks WHERE project_id = (SELECT id FROM projects WHERE name = 'Archive');

-- When each task's events happen: the archive's in its first weeks, the others' over a year.
CREATE TEMPORARY TABLE timed_tasks AS
SELECT t.id, t.project_id, t.title, t.status, coalesce(p.inbox_user_id, {TEAM_MATE}) AS actor_id,
       CASE WHEN p.name = 'Archive' THEN timestamptz '2024-12-02' ELSE timestamptz '2025-01-01'
       END AS start,
       CASE WHEN p.name = 'Archive' THEN 32767 ELSE 524287 END AS spread
FROM tasks AS t JOIN projects AS p ON p.id = t.project_id;

INSERT INTO events (xid, at, actor_id, project_id, from_project_id, entity, entity_id, task_id,
                    action, changes)
SELECT greatest(1, 1 + k * span / total - CASE WHEN k % 7 = 3 THEN 2 ELSE 0 END),
       at, actor_id, project_id, from_project_id, entity, entity_id, task_id, action, changes
FROM (
    SELECT e.*, row_number() OVER (ORDER BY e.at, e.entity, e.entity_id, e.action) AS k,
           count(*) OVER () AS total,
           least(count(*) OVER () / 3,
                 pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 100) AS span
    FROM (
        SELECT timestamptz '2024-12-01' + p.id * interval '1 second' AS at,
               coalesce(p.inbox_user_id, {TEAM_MATE}) AS actor_id, p.id AS project_id,
               NULL::bigint AS from_project_id, 'project' AS entity, p.id AS entity_id,
               NULL::bigint AS task_id, 'created' AS action,
               jsonb_build_object('name', jsonb_build_array(NULL, p.name)) AS changes
        FROM projects AS p
        UNION ALL
        SELECT timestamptz '2024-12-01' + m.project_id * interval '1 second', m.user_id,
               m.project_id, NULL, 'member', m.user_id, NULL, 'joined',
               jsonb_build_object('role', jsonb_build_array(NULL, m.role))
        FROM project_members AS m
        UNION ALL
        SELECT t.start + (hashint4(t.id::int) & t.spread) * interval '1 minute',
               t.actor_id, t.project_id, NULL, 'task', t.id, t.id,
               'created', jsonb_build_object('title', jsonb_build_array(NULL, t.title))
        FROM timed_tasks AS t
        UNION ALL
        SELECT t.start + (hashint4(t.id::int) & t.spread) * interval '1 minute'
                   + (1 + (hashint4(t.id::int + 7) & t.spread / 8)) * interval '1 minute',
               t.actor_id, t.project_id, NULL, 'task', t.id, t.id,
               'updated', jsonb_build_object('status', jsonb_build_array('todo', t.status))
        FROM timed_tasks AS t
        UNION ALL
        SELECT t.start + g * t.spread / {HOT_TASK_EVENTS} * interval '1 minute', {TEAM_MATE},
               t.project_id, NULL, 'task', t.id, t.id, 'updated',
               jsonb_build_object('priority', jsonb_build_array(1 + g % 4, 1 + (g + 1) % 4))
        FROM hot_tasks AS h JOIN timed_tasks AS t ON t.id = h.id
        CROSS JOIN generate_series(1, {HOT_TASK_EVENTS}) AS g
        UNION ALL
        SELECT t.start + (g * t.spread / {HOT_TASK_COMMENTS} + 1) * interval '1 minute',
               {TEAM_MATE}, t.project_id, NULL, 'comment', 1000000 * h.id + g, t.id, 'created',
               jsonb_build_object('body', jsonb_build_array(NULL, 'Comment ' || g))
        FROM hot_tasks AS h JOIN timed_tasks AS t ON t.id = h.id
        CROSS JOIN generate_series(1, {HOT_TASK_COMMENTS}) AS g
        UNION ALL
        SELECT timestamptz '2025-03-01' + (hashint4(t.id::int + 9) & 262143) * interval '1 minute',
               {TEAM_MATE},
               CASE WHEN t.project_id % 2 = 0 THEN t.project_id - 1 ELSE t.project_id + 1 END,
               t.project_id, 'task', t.id, t.id, 'moved',
               jsonb_build_object('project_id', jsonb_build_array(t.project_id, NULL))
        FROM tasks AS t JOIN projects AS p ON p.id = t.project_id
        WHERE p.inbox_user_id IS NULL AND p.name <> 'Archive' AND t.id % {MOVES_EVERY} = 0
        UNION ALL
        SELECT timestamptz '2025-02-01' + (p.id + a.n) * interval '1 day', {TEAM_MEMBER}, p.id,
               NULL, 'member', {TEAM_MEMBER}, NULL, a.action, '{{}}'::jsonb
        FROM (SELECT id FROM projects WHERE inbox_user_id IS NULL AND id % 2 = 1
              ORDER BY id LIMIT {LEFT_PROJECTS}) AS p
        CROSS JOIN (VALUES (0, 'joined'), (1, 'left')) AS a (n, action)
    ) AS e
) AS numbered
ORDER BY k;

DROP TABLE hot_tasks, timed_tasks
"""

TEAM_MATE_CALLER = AccessClaims(TEAM_MATE, token_version=1, issued_at=0, expires_at=2**40)
FEED_CALLERS = {"1 project": BIG_CALLER, f"{TEAM_PROJECTS} projects": TEAM_CALLER}
FEED_LIMITS = (FEED_PAGE_SIZE_MAX, FEED_PAGE_SIZE_DEFAULT)
ACTIVITY_LIMIT = PAGE_SIZE_MAX

# A feed page fetches each of its events by primary key and its actor's name (a few index
# pages and a heap page each), and reads, per membership, a page of its walk's index entries
# and a look at the moves out of it. Reading a membership's events at large instead, or
# the log, is caught by the rows each walk reads (a page at most) before these budgets.
FEED_BUFFER_BUDGET = 100
FEED_BUFFERS_PER_EVENT = 8
FEED_BUFFERS_PER_MEMBERSHIP = 20
# An activity page reads its walk's index and rows and its actors' names, in each of its
# walks (a task: 1; a project: its own events and the tasks moved out of it).
ACTIVITY_BUFFER_BUDGET = 100
ACTIVITY_BUFFERS_PER_EVENT = 5


# Whose activity is read, and by whom: BIG_OWNER's Inbox, TEAM_MEMBER's first shared project
# (tasks move out of it and into it), TEAM_MATE's Archive; each holds a task with
# HOT_TASK_EVENTS events and HOT_TASK_COMMENTS comments.
ACTIVITY_PLACES: dict[str, tuple[AccessClaims, str]] = {
    "Inbox": (BIG_CALLER, BIG_INBOX_OF),
    "shared project": (
        TEAM_CALLER,
        "(SELECT min(m.project_id) FROM project_members AS m JOIN projects AS p"
        f" ON p.id = m.project_id WHERE m.user_id = {TEAM_MEMBER} AND p.inbox_user_id IS NULL)",
    ),
    "Archive": (TEAM_MATE_CALLER, "(SELECT id FROM projects WHERE name = 'Archive')"),
}
ACTIVITY_TARGETS = [
    pytest.param(kind, place, id=f"{kind} in {place}")
    for kind in ("task", "project")
    for place in ACTIVITY_PLACES
]


def feed_budget(memberships: int, page: int) -> int:
    return (
        FEED_BUFFER_BUDGET
        + FEED_BUFFERS_PER_EVENT * page
        + FEED_BUFFERS_PER_MEMBERSHIP * memberships
    )


def activity_budget(walks: int, page: int) -> int:
    return ACTIVITY_BUFFER_BUDGET + ACTIVITY_BUFFERS_PER_EVENT * walks * page


@pytest.fixture(scope="module")
async def history_database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """v2's history: the team database's projects, and the Archive, with their events."""
    async with seeded(tmp_path_factory, _SEED + _TEAM_SEED + _EVENT_SEED, team=False) as found:
        yield found


def history_plan_problems(
    plan: dict[str, Any], *, walks: set[str], page: int, merged: int, by_id: int
) -> list[str]:
    """What is wrong with this plan of a history read (empty when nothing is).

    - No Seq Scan (but of a system catalog).
    - events is read by the walks' indexes, each walk reading at most a page of entries
      (the feed's scan of the whole log, `LOG_INDEX`, at most its budget of a few pages)
      (`page`: what the statement's LIMIT asks for; a loop's, on average, as PostgreSQL
      reports a scan that runs once per membership), and by primary key at most
      `by_id` rows in all (the feed's page, fetched once the walks are merged; the horizon's
      newest id). Nothing else: a walk back along the primary key, filtering, is what a
      quiet project's activity must never be.
    - A Sort or an Aggregate gets at most `merged` rows: the walks' pages, never the events of
      a project (or of all of the caller's) at large.
    """
    problems = []
    fetched = 0
    for node in nodes(plan):
        kind = node["Node Type"]
        # The horizon reads pg_stat_activity, a join with the few rows of pg_database.
        catalog = str(node.get("Relation Name")).startswith("pg_")
        if kind == "Seq Scan" and not catalog:
            problems.append(f"a Seq Scan on {node.get('Relation Name')}")
        if node.get("Relation Name") == "events":
            index = node.get("Index Name")
            read = int(node["Actual Rows"]) + int(node.get("Rows Removed by Filter", 0))
            if index == "pk_events":
                fetched += loops(node) * read
            elif index not in walks:
                problems.append(f"events read by {kind} {index}, not by a walk")
            elif read > (SCAN_BUDGET_PER_ITEM * page if index == LOG_INDEX else page):
                problems.append(f"a walk on {index} read {read} events, not a page ({page})")
        if kind in ("Sort", "Aggregate") and "Plans" in node:
            fed = sum(
                int(child["Actual Rows"])
                for child in node["Plans"]
                if child.get("Parent Relationship") not in {"InitPlan", "SubPlan"}
            )
            if fed > merged:
                problems.append(f"a {kind} of {fed} rows (the walks' pages: {merged})")
    if fetched > by_id:
        problems.append(f"{fetched} events read by primary key (at most {by_id})")
    return problems


@dataclass
class Explained:
    """What is wrong with the plans of a test's history statements, and the buffers each
    page read (its statements' together, by where it starts and the kind of plan)."""

    failures: list[str] = field(default_factory=list)
    buffers: dict[str, int] = field(default_factory=dict)

    def deep_problems(self) -> list[str]:
        """A page deep in the log must cost what the first page costs (a tenth more at most,
        for the index pages that its walks' ranges happen to cross)."""
        problems = []
        for kind in ("custom", "generic"):
            first, deep = self.buffers[f"first page, {kind}"], self.buffers[f"deep, {kind}"]
            if deep > 1.1 * first + 20:
                problems.append(f"the deep page read {deep} buffers, the first {first} ({kind})")
        return problems


async def explain_history(
    probe: AsyncConnection,
    statements: Sequence[tuple[str, Any]],
    where: str,
    explained: Explained,
    *,
    walks: set[str],
    page: int,
    merged: int,
    by_id: int,
    budget: int,
) -> None:
    """EXPLAIN each statement that reads events, custom and generic, into `explained`."""
    for statement, parameters in statements:
        for generic in (False, True):
            plan = await explain(probe, statement, parameters, generic=generic)
            problems = history_plan_problems(
                plan, walks=walks, page=page, merged=merged, by_id=by_id
            )
            if buffers(plan) > budget:
                problems.append(f"{buffers(plan)} buffers (budget {budget})")
            kind = "generic" if generic else "custom"
            read = explained.buffers.get(f"{where}, {kind}", 0)
            explained.buffers[f"{where}, {kind}"] = read + buffers(plan)
            if problems:
                explained.failures.append(
                    f"{where}, {kind} plan: {'; '.join(problems)}\n{outline(plan)}"
                    f"\n{statement}\n{parameters}"
                )


def captured_reads(database: Database) -> list[tuple[str, Any]]:
    """The statements captured that read events."""
    return [s for s in database.captured.statements if "FROM events" in s[0]]


async def capturing(database: Database, read: Awaitable[T]) -> T:
    """`read`'s result, with the statements it sent in `database.captured`."""
    database.captured.statements.clear()
    database.captured.on = True
    try:
        return await read
    finally:
        database.captured.on = False


def history_positions(count: int, limit: int) -> dict[str, int]:
    """Where pages start (the index of the last event covered; -1: none): the first page,
    one deep in the walk, the last page (not full), and (the feed) a poll at the end."""
    return {
        "first page": -1,
        "deep": count // 2,
        "last page": count - 1 - limit // 2,
        "at the end": count - 1,
    }


class TestHistoryPlans:
    @pytest.mark.parametrize("limit", FEED_LIMITS)
    @pytest.mark.parametrize("who", list(FEED_CALLERS))
    async def test_every_feed_page_walks_each_membership_on_its_index(
        self, history_database: Database, who: str, limit: int
    ) -> None:
        """The feed's page, at 1,000 events and at the default 100, for a member of 1 project
        and of 50: a scan of the log from the cursor, bounded by a few pages, answers when the
        caller's events are not rare in it; otherwise each membership's walk (and the moves
        out of it, and the caller's own member events) stops with a page, the walks' pages
        are merged and the page's events fetched by primary key; a page deep in the log costs
        what the first does."""
        claims = FEED_CALLERS[who]
        async with history_database.engine.connect() as connection:
            result = await connection.execute(
                text("SELECT project_id FROM project_members WHERE user_id = :u"),
                {"u": claims.user_id},
            )
            projects = [int(project_id) for (project_id,) in result]
            result = await connection.execute(
                text(
                    "SELECT xid, id FROM events WHERE project_id = ANY(:p)"
                    " OR from_project_id = ANY(:p) OR (entity = 'member' AND entity_id = :u)"
                    " ORDER BY xid, id"
                ),
                {"p": projects, "u": claims.user_id},
            )
            walked = [(int(xid), int(id_)) for xid, id_ in result]
        assert len(projects) == (1 if claims is BIG_CALLER else TEAM_PROJECTS)
        assert len(walked) > 60_000
        page = limit + 1  # the service asks for one more, to know whether there are more
        # The scan of the whole log first (ix_events_log), then, when the caller's events were
        # too rare in it, the walks of their memberships.
        walks = {
            LOG_INDEX,
            "ix_events_project_feed",
            "ix_events_from_project_feed",
            "ix_events_member_feed",
        }
        explained = Explained()
        async with (
            AsyncSession(history_database.engine, expire_on_commit=False) as session,
            history_database.engine.connect() as probe,
        ):
            for where, start in history_positions(len(walked), limit).items():
                cursor = None
                if start >= 0:
                    position = CursorPosition(*walked[start])
                    binding = binding_digest(user=claims.user_id, resource="changes")
                    cursor = encode_cursor(position, binding=binding, key=CURSOR_KEY)
                found = await capturing(
                    history_database,
                    history.changes(
                        Db.in_session(session), claims, limit=limit, cursor=cursor, key=CURSOR_KEY
                    ),
                )
                await session.rollback()
                expected = walked[start + 1 : start + 1 + limit]
                assert [(row.xid, row.id) for row, _ in found.items] == expected, where
                assert found.has_more == (start + 1 + limit < len(walked)), where
                reads = captured_reads(history_database)
                # Besides the horizon (and, on the last page, the newest xid it waits for):
                # the scan, and the walks only when the scan fell short.
                pages = [
                    read
                    for read in reads
                    if "pg_current_snapshot" not in read[0] and "max(events.xid)" not in read[0]
                ]
                assert "JOIN LATERAL" not in pages[0][0], where
                assert [("JOIN LATERAL" in read[0]) for read in pages[1:]] in ([], [True]), where
                await explain_history(
                    probe,
                    reads,
                    where,
                    explained,
                    walks=walks,
                    page=page,
                    merged=max(2 * len(projects) + 1, SCAN_BUDGET_PER_ITEM) * page,
                    by_id=page + 1,
                    budget=feed_budget(len(projects), page),
                )
        failures = explained.failures + explained.deep_problems()
        assert not failures, "\n\n".join(failures)

    async def test_the_feed_budget_is_below_a_walk(self, history_database: Database) -> None:
        """The budget means something: a page of 100 read by a plain join of the member's
        projects to their events, in feed order, reads far more (it reads them all)."""
        async with history_database.engine.connect() as connection:
            for setting in ("enable_seqscan", "enable_bitmapscan"):
                await connection.exec_driver_sql(f"SET LOCAL {setting} = off")
            plan = await explain(
                connection,
                "SELECT e.* FROM project_members m JOIN events e ON e.project_id = m.project_id"
                " WHERE m.user_id = $1 ORDER BY e.xid, e.id LIMIT $2",
                (TEAM_MEMBER, FEED_PAGE_SIZE_DEFAULT + 1),
                generic=False,
            )
        assert buffers(plan) > 5 * feed_budget(TEAM_PROJECTS, FEED_PAGE_SIZE_DEFAULT + 1)

    @pytest.mark.parametrize(("kind", "place"), ACTIVITY_TARGETS)
    async def test_every_activity_page_walks_back_on_its_index(
        self, history_database: Database, kind: str, place: str
    ) -> None:
        """Newest first on the (task_id, id) or (project_id, id) index, the first page and
        a deep one alike; for the Archive, whose events are all behind some 200,000 newer
        ones, too (a walk back along the primary key would read all of those)."""
        claims, project = ACTIVITY_PLACES[place]
        async with history_database.engine.connect() as connection:
            project_id = int(await connection.scalar(text(f"SELECT {project}")))
            # A task: the place's hot task (the one with the smallest id).
            task_id = int(
                await connection.scalar(
                    text("SELECT min(id) FROM tasks WHERE project_id = :p"), {"p": project_id}
                )
            )
            of = "task_id = :t" if kind == "task" else "(project_id = :p OR from_project_id = :p)"
            result = await connection.execute(
                text(f"SELECT id FROM events WHERE {of} ORDER BY id DESC"),
                {"t": task_id, "p": project_id},
            )
            walked = [int(id_) for (id_,) in result]
        assert len(walked) > HOT_TASK_EVENTS
        read: Callable[..., Awaitable[history.EventPage]] = history.task_activity
        ident, binding = task_id, {"task": task_id}
        resource, walks = "task-activity", {"ix_events_task"}
        if kind == "project":
            read, ident, binding = history.project_activity, project_id, {"project": project_id}
            resource, walks = "project-activity", {"ix_events_project", "ix_events_from_project"}
        page = ACTIVITY_LIMIT + 1
        explained = Explained()
        async with (
            AsyncSession(history_database.engine, expire_on_commit=False) as session,
            history_database.engine.connect() as probe,
        ):
            positions = history_positions(len(walked), ACTIVITY_LIMIT)
            del positions["at the end"]  # an empty page: a diagnosis follows, not a walk
            for where, start in positions.items():
                cursor = None
                if start >= 0:
                    digest = binding_digest(user=claims.user_id, resource=resource, **binding)
                    position = CursorPosition(None, walked[start])
                    cursor = encode_cursor(position, binding=digest, key=CURSOR_KEY)
                found = await capturing(
                    history_database,
                    read(
                        Db.in_session(session),
                        claims,
                        ident,
                        limit=ACTIVITY_LIMIT,
                        cursor=cursor,
                        key=CURSOR_KEY,
                    ),
                )
                await session.rollback()
                expected = walked[start + 1 : start + 1 + ACTIVITY_LIMIT]
                assert [row.id for row in found.items] == expected, where
                more = start + 1 + ACTIVITY_LIMIT < len(walked)
                assert (found.next_cursor is not None) == more, where
                reads = captured_reads(history_database)
                assert len(reads) == 1, where
                await explain_history(
                    probe,
                    reads,
                    where,
                    explained,
                    walks=walks,
                    page=page,
                    merged=len(walks) * page,
                    by_id=0,
                    budget=activity_budget(len(walks), page),
                )
        failures = explained.failures + explained.deep_problems()
        assert not failures, "\n\n".join(failures)

    async def test_the_activity_budget_is_below_a_walk_back(
        self, history_database: Database
    ) -> None:
        """The budget means something: the Archive's newest events found by walking the log
        back along the primary key (what PostgreSQL chose for `project_id = $1 ORDER BY id
        DESC` before the walks were written as ranges) read several times more, here where
        some 200,000 events came after them (and more, the longer the log grows)."""
        async with history_database.engine.connect() as connection:
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await connection.exec_driver_sql(f"SET LOCAL {setting} = off")
            plan = await explain(
                connection,
                "SELECT * FROM events WHERE project_id + 0 ="
                " (SELECT id FROM projects WHERE name = 'Archive') ORDER BY id DESC LIMIT $1",
                (ACTIVITY_LIMIT + 1,),
                generic=False,
            )
        assert buffers(plan) > 4 * activity_budget(2, ACTIVITY_LIMIT + 1)
