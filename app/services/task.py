"""Task rules: ownership in every statement, versioned writes, soft delete, keyset listing.

Every statement carries `owner_id = :me`, so a task of someone else is indistinguishable from
one that does not exist. Writes are single `UPDATE ... RETURNING` statements that bump
`version` in the database, which makes `If-Match` a compare-and-set rather than a
read-then-write race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from app.core.errors import NotFound, PreconditionFailed
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.db.base import UTCDateTime, utcnow
from app.db.text_search import contains_insensitive
from app.models.task import Task, TaskPriority, TaskStatus
from app.schemas.task import TaskCreate, TaskUpdate

SORT_FIELDS = ("created_at", "updated_at", "due_at", "priority")
DEFAULT_SORT = "-created_at"


class TaskNotFound(NotFound):
    default_detail = "Task not found."


@dataclass(frozen=True, slots=True)
class TaskFilters:
    statuses: tuple[str, ...] = ()
    priorities: tuple[int, ...] = ()
    due_before: datetime | None = None
    due_after: datetime | None = None
    q: str | None = None
    deleted: bool = False

    def binding(self) -> dict[str, Any]:
        return {
            "status": sorted(self.statuses),
            "priority": sorted(self.priorities),
            "due_before": self.due_before.isoformat() if self.due_before else None,
            "due_after": self.due_after.isoformat() if self.due_after else None,
            "q": self.q,
            "deleted": self.deleted,
        }


@dataclass(frozen=True, slots=True)
class TaskSort:
    field: str
    descending: bool

    @classmethod
    def parse(cls, value: str) -> TaskSort:
        descending = value.startswith("-")
        field = value[1:] if descending else value
        if field not in SORT_FIELDS:
            raise ValueError(f"must be one of {', '.join(SORT_FIELDS)}, optionally prefixed by -")
        return cls(field, descending)

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.field


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: list[Task]
    next_cursor: str | None


def _owned(owner_id: int, task_id: int) -> ColumnElement[bool]:
    return and_(Task.id == task_id, Task.owner_id == owner_id)


async def create_task(session: AsyncSession, owner_id: int, data: TaskCreate) -> Task:
    now = utcnow()
    task = Task(
        owner_id=owner_id,
        title=data.title,
        description=data.description,
        status=data.status,
        priority=TaskPriority.from_label(data.priority).value,
        due_at=data.due_at,
        created_at=now,
        updated_at=now,
        completed_at=now if data.status == TaskStatus.DONE.value else None,
        deleted_at=None,
        version=1,
    )
    session.add(task)
    await session.flush()
    return task


async def get_task(session: AsyncSession, owner_id: int, task_id: int) -> Task:
    """A live task of this owner; TaskNotFound for missing, trashed or foreign ones."""
    task = await session.scalar(
        select(Task).where(_owned(owner_id, task_id), Task.deleted_at.is_(None))
    )
    if task is None:
        raise TaskNotFound()
    return task


async def _versioned_update(
    session: AsyncSession,
    owner_id: int,
    task_id: int,
    values: dict[str, Any],
    *,
    in_trash: bool,
    expected_versions: frozenset[int] | None,
) -> Task:
    """Apply `values` and bump the version in one statement; 404 or 412 when nothing matched."""
    now = utcnow()
    conditions = [
        _owned(owner_id, task_id),
        Task.deleted_at.is_not(None) if in_trash else Task.deleted_at.is_(None),
    ]
    if expected_versions is not None:
        conditions.append(Task.version.in_(expected_versions))
    statement = (
        update(Task)
        .where(*conditions)
        .values(**values, version=Task.version + 1, updated_at=now)
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    task = (await session.scalars(statement)).one_or_none()
    if task is not None:
        return task
    if expected_versions is not None:
        # Tell a stale tag (412) from a task that is not there for this caller (404).
        exists = await session.scalar(select(Task.id).where(*conditions[:2]))
        if exists is not None:
            raise PreconditionFailed()
    raise TaskNotFound()


async def update_task(
    session: AsyncSession,
    owner_id: int,
    task_id: int,
    data: TaskUpdate,
    *,
    expected_versions: frozenset[int] | None = None,
) -> Task:
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        # Nothing to change: no new version, but the precondition still applies.
        task = await get_task(session, owner_id, task_id)
        if expected_versions is not None and task.version not in expected_versions:
            raise PreconditionFailed()
        return task
    values: dict[str, Any] = {}
    for field in ("title", "description", "due_at"):
        if field in changes:
            values[field] = changes[field]
    if "priority" in changes:
        values["priority"] = TaskPriority.from_label(changes["priority"]).value
    if "status" in changes:
        values["status"] = changes["status"]
        if changes["status"] == TaskStatus.DONE.value:
            # Keep the first completion time when a done task is marked done again.
            values["completed_at"] = func.coalesce(
                Task.completed_at, literal(utcnow(), UTCDateTime)
            )
        else:
            values["completed_at"] = None
    return await _versioned_update(
        session, owner_id, task_id, values, in_trash=False, expected_versions=expected_versions
    )


async def delete_task(
    session: AsyncSession,
    owner_id: int,
    task_id: int,
    *,
    expected_versions: frozenset[int] | None = None,
) -> Task:
    """Move a live task to the trash."""
    return await _versioned_update(
        session,
        owner_id,
        task_id,
        {"deleted_at": utcnow()},
        in_trash=False,
        expected_versions=expected_versions,
    )


async def restore_task(session: AsyncSession, owner_id: int, task_id: int) -> Task:
    """Take a task out of the trash; restoring a live task returns it unchanged."""
    try:
        return await _versioned_update(
            session, owner_id, task_id, {"deleted_at": None}, in_trash=True, expected_versions=None
        )
    except TaskNotFound:
        return await get_task(session, owner_id, task_id)


# --- listing ---------------------------------------------------------------------------

_SORT_COLUMNS = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "due_at": Task.due_at,
    "priority": Task.priority,
}


def _filtered(owner_id: int, filters: TaskFilters) -> Select[Task]:
    statement = select(Task).where(
        Task.owner_id == owner_id,
        Task.deleted_at.is_not(None) if filters.deleted else Task.deleted_at.is_(None),
    )
    if filters.statuses:
        statement = statement.where(Task.status.in_(filters.statuses))
    if filters.priorities:
        statement = statement.where(Task.priority.in_(filters.priorities))
    if filters.due_before is not None:
        statement = statement.where(Task.due_at < filters.due_before)
    if filters.due_after is not None:
        statement = statement.where(Task.due_at >= filters.due_after)
    if filters.q:
        statement = statement.where(
            or_(
                contains_insensitive(Task.title, filters.q),
                contains_insensitive(Task.description, filters.q),
            )
        )
    return statement


def _ordered(statement: Select[Task], sort: TaskSort) -> Select[Task]:
    column = _SORT_COLUMNS[sort.field]
    if sort.field == "due_at":
        # Tasks without a due date come last in both directions.
        ordered = column.desc().nulls_last() if sort.descending else column.asc().nulls_last()
        return statement.order_by(ordered, Task.id.desc() if sort.descending else Task.id.asc())
    if sort.descending:
        return statement.order_by(column.desc(), Task.id.desc())
    return statement.order_by(column.asc(), Task.id.asc())


def _after(sort: TaskSort, position: CursorPosition) -> ColumnElement[bool]:
    """Rows strictly after `position` in the walk's order."""
    column = _SORT_COLUMNS[sort.field]
    key, last_id = position.key, position.last_id
    if sort.field == "due_at" and key is None:
        # Already in the NULL tail: only later ids among the undated tasks remain.
        id_after = Task.id < last_id if sort.descending else Task.id > last_id
        return and_(column.is_(None), id_after)
    row = tuple_(column, Task.id)
    after = (
        row < tuple_(literal(key, column.type), literal(last_id))
        if sort.descending
        else (row > tuple_(literal(key, column.type), literal(last_id)))
    )
    if sort.field == "due_at":
        return or_(after, column.is_(None))
    return after


def _cursor_key(task: Task, sort: TaskSort) -> Any:
    value = getattr(task, sort.field)
    return value.isoformat() if isinstance(value, datetime) else value


def _position_from_cursor(position: CursorPosition, sort: TaskSort) -> CursorPosition:
    """Turn the JSON key back into a typed value; anything unexpected is a bad cursor."""
    key = position.key
    if sort.field == "priority":
        if not isinstance(key, int) or isinstance(key, bool):
            raise InvalidCursor()
        return position
    if key is None and sort.field == "due_at":
        return position
    if not isinstance(key, str):
        raise InvalidCursor()
    try:
        parsed = datetime.fromisoformat(key)
    except ValueError as exc:
        raise InvalidCursor() from exc
    if parsed.tzinfo is None:
        raise InvalidCursor()
    return CursorPosition(parsed, position.last_id)


async def list_tasks(
    session: AsyncSession,
    owner_id: int,
    *,
    filters: TaskFilters,
    sort: TaskSort,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> TaskPage:
    binding = binding_digest(user=owner_id, filters=filters.binding(), sort=str(sort))
    statement = _ordered(_filtered(owner_id, filters), sort)
    if cursor is not None:
        position = _position_from_cursor(
            decode_cursor(cursor, binding=binding, key=cursor_key), sort
        )
        statement = statement.where(_after(sort, position))
    rows = list((await session.scalars(statement.limit(limit + 1))).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            CursorPosition(_cursor_key(last, sort), last.id), binding=binding, key=cursor_key
        )
    return TaskPage(rows, next_cursor)
