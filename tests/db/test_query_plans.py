"""On PostgreSQL every list query is an index walk that stops with its page.

One owner has 30,000 tasks (about 5 % of them in the trash), three others 3,000 each; the
tasks are inserted in creation order, so each owner's rows are spread over the whole table,
then VACUUM ANALYZE. For every supported list query (each sort both ways; no filter, each
filter alone, status and priority together, a due range, a rare and a common `q`; the live
list and the trash; the first page, a page from the middle of the walk, and the pages where
a walk goes from one of its pieces to the next) the service runs on the large owner's tasks,
its page is compared with the same walk done in Python, and every SELECT it sent is
explained with EXPLAIN (ANALYZE, BUFFERS): with its own parameter values, and (except for
`q`, whose plans the service keeps custom) as the generic plan that a prepared statement
switches to after five runs. (The migration's 1,000-entry statistics on title and
description make ANALYZE read all of this table, so no plan here depends on a random
sample.)

What a plan may be (docs/decisions/0016-listing-indexes.md):
- Never a Seq Scan of tasks, nor its primary key: every scan of tasks uses one of the
  listing's indexes for the view asked for (live or trash), or a trigram index.
- Limit -> Index Scan on the walk's own index: the rows come in the walk's order and the
  scan stops with the page. Or Limit -> Sort, if the Sort gets only a few rows that an index
  condition picked: those containing a rare `q` (a bitmap of the trigram indexes), or the
  last few of an index range after the cursor. Never a Sort of the owner's tasks at large.
- Each statement reads a bounded number of buffers: a few index pages and its page's rows,
  not the owner's walk (thousands of buffers).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

import app.models  # noqa: F401 - registers every table on Base.metadata
from app.core.pagination import CursorPosition, binding_digest, encode_cursor
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import Base
from app.db.session import create_engine_for
from app.services import task as task_service
from app.services.task import TaskFilters, TaskSort
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

_SEED = f"""
INSERT INTO users (email, password_hash, role, is_active, token_version, created_at, updated_at)
SELECT 'owner' || g || '@example.com', 'x', 'user', true, 1, now(), now()
FROM generate_series(1, {1 + OTHER_OWNERS + OTHER_USERS}) AS g;

INSERT INTO tasks (owner_id, title, description, status, priority, due_at, created_at,
                   updated_at, completed_at, deleted_at, version)
SELECT
    CASE WHEN n % 13 < 10 THEN {BIG_OWNER} ELSE 2 + n % {OTHER_OWNERS} END,
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
    1
FROM generate_series(1, {(BIG_OWNER_TASKS + OTHER_OWNERS * OTHER_OWNER_TASKS)}) AS n;
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


@dataclass
class Captured:
    statements: list[tuple[str, Any]] = field(default_factory=list)
    on: bool = False


@dataclass
class Database:
    engine: AsyncEngine
    rows: list[Row]
    captured: Captured


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """A new, migrated PostgreSQL database with the tasks above; dropped afterwards."""
    url = await create_database("postgresql", tmp_path_factory.mktemp("plans"))
    try:
        run_alembic(url)
        engine = create_engine_for(make_settings(url, db_pool_size=2, db_max_overflow=0))
        try:
            async with engine.begin() as connection:
                for statement in _SEED.split(";\n\n"):
                    await connection.exec_driver_sql(statement)
                assert await connection.scalar(
                    text("SELECT count(*) FROM tasks WHERE owner_id = :o"), {"o": BIG_OWNER}
                ) == pytest.approx(BIG_OWNER_TASKS, rel=0.01)
            autocommit = await engine.connect()
            try:
                await autocommit.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql("VACUUM ANALYZE tasks")
                await autocommit.exec_driver_sql("ANALYZE users")
            finally:
                await autocommit.close()
            async with engine.connect() as connection:
                result = await connection.execute(
                    text(
                        "SELECT id, title, description, status, priority, due_at, created_at,"
                        " updated_at, deleted_at FROM tasks WHERE owner_id = :o"
                    ),
                    {"o": BIG_OWNER},
                )
                rows = [Row(*row) for row in result]
            captured = Captured()

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def _capture(
                _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any
            ) -> None:
                if captured.on:
                    captured.statements.append((statement, parameters))

            yield Database(engine, rows, captured)
        finally:
            await engine.dispose()
    finally:
        await drop_database(url)


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


def walk(rows: list[Row], filters: TaskFilters, sort: TaskSort) -> list[Row]:
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


def positions(walked: list[Row], filters: TaskFilters, sort: TaskSort) -> dict[str, int]:
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
# list statement carries: an InitPlan that looks the user up by primary key.
_CALLER_CHECK_INDEX = "pk_users"


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
    if len(checks) != 1:
        problems.append(f"{len(checks)} InitPlans, not the one caller check")
    for check in checks:
        lookups = [node for node in nodes(check) if node.get("Index Name")]
        if [node.get("Index Name") for node in lookups] != [_CALLER_CHECK_INDEX] or any(
            node["Node Type"] == "Seq Scan" for node in nodes(check)
        ):
            problems.append(f"the caller check is not a lookup by {_CALLER_CHECK_INDEX}")
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
                    page = await task_service.list_tasks(
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
                        await task_service.list_tasks(
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
            await task_service.list_tasks(
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
                "SELECT * FROM tasks WHERE owner_id = $1 AND deleted_at IS NULL"
                " ORDER BY created_at DESC, id DESC",
                (BIG_OWNER,),
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
