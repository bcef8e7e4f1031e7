"""The task statements: one task at a time, and the keyset listing's planner.

Every statement is scoped to the caller's Inbox (`in_callers_inbox`: v1's tasks are the
Inbox's, spec api-v2 section 1) and carries the check that the caller's token is still
current (`caller_is_current`, docs/decisions/0017), so a task of someone else is
indistinguishable from one that does not exist, and a revoked token changes nothing. Writes
are single `UPDATE ... RETURNING` statements that bump `version` in the database, which makes
`If-Match` a compare-and-set rather than a read-then-write race. Each statement is built and
compiled once per shape, every value of a request a bind parameter: per request there is no
statement to build and, on PostgreSQL, no SQLAlchemy execution, only asyncpg's.

The rules (what a change means, which error a miss is) are `app.services.task`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import in_callers_inbox, inbox_of
from app.models.task import INSERT_COLUMNS, TASK_COLUMNS, Task, TaskRecord

# The columns a write may set (their types are the table's).
WRITABLE = ("title", "description", "status", "priority", "due_at", "deleted_at")

Completion = Literal["keep-first", "clear"] | None
"""What a write does to `completed_at`: set it unless already set, clear it, or leave it."""


def record(row: Row) -> TaskRecord:
    """A task row as a record, its due_at made UTC if the driver returned it naive.

    asyncpg stores the first and last instants Python has (0001-01-01T00:00:00Z,
    9999-12-31T23:59:59.999999Z) as PostgreSQL's -infinity and infinity, and reads those
    back as naive datetimes; `Db.rows` hands them on without SQLAlchemy's result processing
    (`UTCDateTime`), which would make them UTC. due_at is the only timestamp of a task that a
    client chooses, so the only one to check.
    """
    task = TaskRecord._make(row)
    if task.due_at is not None and task.due_at.tzinfo is None:
        return task._replace(due_at=task.due_at.replace(tzinfo=UTC))
    return task


def caller_params(claims: AccessClaims, **values: Any) -> dict[str, Any]:
    """The bind parameters of a statement made on behalf of `claims`."""
    return {"user_id": claims.user_id, "token_version": claims.token_version, **values}


# --- one task ------------------------------------------------------------------------------


def _this_task(*, in_trash: bool) -> list[ColumnElement[bool]]:
    return [
        Task.id == bindparam("task_id"),
        in_callers_inbox(Task.project_id),
        Task.deleted_at.is_not(None) if in_trash else Task.deleted_at.is_(None),
    ]


@cache
def _select_statement() -> Statement:
    return Statement(select(*TASK_COLUMNS).where(*_this_task(in_trash=False), caller_is_current()))


@cache
def _diagnosis_statement(in_trash: bool) -> Statement:
    version = select(Task.version).where(*_this_task(in_trash=in_trash)).scalar_subquery()
    return Statement(select(caller_is_current().label("current"), version.label("version")))


@cache
def _caller_statement() -> Statement:
    return Statement(select(caller_is_current().label("current")))


@cache
def _insert_statement() -> Statement:
    values: dict[str, Any] = {
        name: bindparam(f"new_{name}", type_=Task.__table__.c[name].type)
        for name in ("title", "description", "status", "priority", "due_at", "completed_at")
    }
    values |= {
        "project_id": inbox_of(bindparam("user_id")),
        "created_at": bindparam("now", type_=Task.created_at.type),
        "updated_at": bindparam("now", type_=Task.updated_at.type),
        "deleted_at": literal(None, Task.deleted_at.type),
        "version": literal(1, Integer),
        "remind_at": literal(None, Task.remind_at.type),
    }
    row = select(*(values[name] for name in INSERT_COLUMNS)).where(caller_is_current())
    inserted = insert(Task).from_select(list(INSERT_COLUMNS), row)
    return Statement(inserted.returning(*TASK_COLUMNS))


@cache
def _update_statement(
    fields: tuple[str, ...], completion: Completion, in_trash: bool, expected: int
) -> Statement:
    """UPDATE ... RETURNING for one shape of change (which fields, how many If-Match tags;
    `expected` -1: no If-Match).

    A write that changes nothing is still the one statement, and still matches (so `If-Match`
    and the caller check answer as for any write), but leaves `version`, `updated_at` and
    `completed_at` as they were: every one of them is kept unless some field IS DISTINCT FROM
    its new value. The fields themselves are set either way (to what they already hold when
    nothing changes).
    """
    values: dict[str, Any] = {
        field: bindparam(f"new_{field}", type_=Task.__table__.c[field].type) for field in fields
    }
    changed = or_(*(Task.__table__.c[field].is_distinct_from(values[field]) for field in fields))
    now = bindparam("now", type_=Task.updated_at.type)
    if completion == "keep-first":
        values["completed_at"] = case(
            (changed, func.coalesce(Task.completed_at, now)), else_=Task.completed_at
        )
    elif completion == "clear":
        values["completed_at"] = case((changed, None), else_=Task.completed_at)
    values["version"] = Task.version + case((changed, 1), else_=0)
    values["updated_at"] = case((changed, now), else_=Task.updated_at)
    conditions = [*_this_task(in_trash=in_trash), caller_is_current()]
    if expected > 0:
        conditions.append(Task.version.in_([bindparam(f"expected_{n}") for n in range(expected)]))
    return Statement(update(Task).where(*conditions).values(values).returning(*TASK_COLUMNS))


async def fetch(db: Db, claims: AccessClaims, task_id: int) -> TaskRecord | None:
    """The live task of the caller, if the caller is current and it is there."""
    found = await db.first(_select_statement(), caller_params(claims, task_id=task_id))
    return record(found) if found is not None else None


async def insert_task(
    db: Db, claims: AccessClaims, values: dict[str, Any], now: datetime
) -> TaskRecord | None:
    """A new task of the caller with `values` (title, description, status, priority, due_at,
    completed_at); None if the caller is not current (nothing is written then)."""
    params = caller_params(
        claims, now=now, **{f"new_{name}": value for name, value in values.items()}
    )
    created = await db.first(_insert_statement(), params)
    return record(created) if created is not None else None


async def update_task(
    db: Db,
    claims: AccessClaims,
    task_id: int,
    changes: dict[str, Any],
    *,
    now: datetime,
    completion: Completion = None,
    in_trash: bool,
    expected_versions: list[int] | None,
) -> TaskRecord | None:
    """Apply `changes` and bump the version in one statement, if the task is there (in the
    trash or not, as asked), at one of `expected_versions` (when given), and the caller is
    current; None otherwise (nothing is written then). When every field already holds its
    new value, the task comes back as it was: same version, same `updated_at`."""
    params = caller_params(
        claims,
        task_id=task_id,
        now=now,
        **{f"new_{field}": value for field, value in changes.items()},
        **{f"expected_{n}": version for n, version in enumerate(expected_versions or ())},
    )
    expected = -1 if expected_versions is None else len(expected_versions)
    statement = _update_statement(tuple(sorted(changes)), completion, in_trash, expected)
    updated = await db.first(statement, params)
    return record(updated) if updated is not None else None


async def diagnose(
    db: Db, claims: AccessClaims, task_id: int, *, in_trash: bool = False
) -> tuple[bool, int | None]:
    """Why a statement on a task matched nothing: (is the caller current, the task's version
    or None when it is not there for this caller)."""
    found = await db.first(_diagnosis_statement(in_trash), caller_params(claims, task_id=task_id))
    assert found is not None
    return bool(found[0]), found[1]


async def caller_is_still_current(db: Db, claims: AccessClaims) -> bool:
    found = await db.first(_caller_statement(), caller_params(claims))
    return found is not None and bool(found[0])
