"""The keyset listing of tasks: its filters and sorts, and the statements that read a page.

A page is read by one statement, or a few when the walk is cut into pieces (`_segments`).
What picks a plan stays literal in the SQL: `deleted_at IS [NOT] NULL`, which names the
view's partial indexes, and the ORDER BY of the walk (docs/decisions/0016-listing-indexes.md).
Every statement is scoped like the single-task statements (`app.db.statements.tasks`): to
the caller's Inbox, with the caller's token checked inside it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import ColumnElement, Integer, String, and_, bindparam, or_, select, text, tuple_
from sqlalchemy.sql import Select

from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import in_callers_inbox
from app.db.statements.tasks import caller_params, record
from app.db.text_search import contains_insensitive, contains_pattern
from app.models.task import TASK_COLUMNS, Task, TaskRecord

SORT_FIELDS = ("created_at", "updated_at", "due_at", "priority")
DEFAULT_SORT = "-created_at"


@dataclass(frozen=True, slots=True)
class TaskFilters:
    """What a listing keeps: statuses and priorities (any of), a due window, a text, a view."""

    statuses: tuple[str, ...] = ()
    priorities: tuple[int, ...] = ()
    due_before: datetime | None = None
    due_after: datetime | None = None
    q: str | None = None
    deleted: bool = False

    def binding(self) -> dict[str, Any]:
        """The filters as a cursor is bound to them (the same set in any order is the same)."""
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
class Position:
    """Where a page starts: after the task with this sort key and id."""

    key: Any  # a datetime, a priority, or None (an undated task, sorting by due_at)
    last_id: int


_SORT_COLUMNS = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "due_at": Task.due_at,
    "priority": Task.priority,
}

Segment = Literal["all", "after", "undated", "undated-after", "priority", "priority-after"]
"""Which piece of the walk a statement reads (see `_segments`): all of it (no cursor); the rows
after the cursor; for `due_at`, the undated tail after the dated tasks, or the rest of it after
an undated cursor; for `priority` filtered by priorities, one of them, or the rest of it after
a cursor in it."""

# Shapes: 8 sorts x 2 views x the filters given (and how many values they name) x the piece:
# finite, but more than ever occur together. The cache keeps those in use.
_LIST_SHAPES = 512


def _segment_condition(
    field: str, descending: bool, segment: Segment
) -> ColumnElement[bool] | None:
    """The condition of a piece of the walk; binds `after_key`, `after_id`, `piece_priority`."""
    if segment == "all":
        return None
    column = _SORT_COLUMNS[field]
    if segment == "undated":
        return column.is_(None)
    after_id = bindparam("after_id", type_=Task.id.type)
    if segment == "undated-after":
        # Already in the NULL tail: only later ids among the undated tasks remain.
        return and_(column.is_(None), Task.id < after_id if descending else Task.id > after_id)
    row = tuple_(column, Task.id)
    position = tuple_(bindparam("after_key", type_=column.type), after_id)
    after = row < position if descending else row > position
    if segment == "after":
        return after
    piece_priority = bindparam("piece_priority", type_=Task.priority.type)
    piece = Task.priority.between(piece_priority, piece_priority)
    return piece if segment == "priority" else and_(piece, after)


@lru_cache(maxsize=_LIST_SHAPES)
def _list_statement(
    field: str,
    descending: bool,
    deleted: bool,
    statuses: int,
    priorities: int,
    due_before: bool,
    due_after: bool,
    q: bool,
    segment: Segment,
) -> Statement:
    """The SELECT of one shape of list query (the arguments: which sort, view and filters, how
    many statuses and priorities, which piece of the walk); its values are the bind
    parameters that `_list_params` and `list_rows` give."""
    conditions = [
        in_callers_inbox(Task.project_id),
        Task.deleted_at.is_not(None) if deleted else Task.deleted_at.is_(None),
    ]
    if statuses:
        status_type = Task.status.type
        conditions.append(
            Task.status.in_([bindparam(f"status_{n}", type_=status_type) for n in range(statuses)])
        )
    if priorities:
        priority_type = Task.priority.type
        conditions.append(
            Task.priority.in_(
                [bindparam(f"priority_{n}", type_=priority_type) for n in range(priorities)]
            )
        )
    if due_before:
        conditions.append(Task.due_at < bindparam("due_before", type_=Task.due_at.type))
    if due_after:
        conditions.append(Task.due_at >= bindparam("due_after", type_=Task.due_at.type))
    if q:
        pattern = bindparam("pattern", type_=String())
        conditions.append(
            or_(
                contains_insensitive(Task.title, pattern),
                contains_insensitive(Task.description, pattern),
            )
        )
    conditions.append(caller_is_current())
    piece = _segment_condition(field, descending, segment)
    if piece is not None:
        conditions.append(piece)
    statement = _ordered(select(*TASK_COLUMNS).where(*conditions), field, descending)
    return Statement(statement.limit(bindparam("limit", type_=Integer)))


def _ordered(statement: Select[Any], field: str, descending: bool) -> Select[Any]:
    column = _SORT_COLUMNS[field]
    if field == "due_at":
        # Tasks without a due date come last in both directions.
        ordered = column.desc().nulls_last() if descending else column.asc().nulls_last()
        return statement.order_by(ordered, Task.id.desc() if descending else Task.id.asc())
    if descending:
        return statement.order_by(column.desc(), Task.id.desc())
    return statement.order_by(column.asc(), Task.id.asc())


def _list_params(
    claims: AccessClaims, filters: TaskFilters, sort: TaskSort, position: Position | None
) -> tuple[dict[str, Any], tuple[str, ...], tuple[int, ...]]:
    """(the values of a list query's statements, its statuses, its priorities).

    The statuses and priorities are those the statements name one by one (each value once,
    in the order given); sorted by priority, the walk goes through the chosen priorities in
    turn instead (`_segments`), each piece binding its own `piece_priority`.
    """
    params = caller_params(claims)
    statuses = tuple(dict.fromkeys(filters.statuses))
    priorities = () if sort.field == "priority" else tuple(dict.fromkeys(filters.priorities))
    for n, status in enumerate(statuses):
        params[f"status_{n}"] = status
    for n, priority in enumerate(priorities):
        params[f"priority_{n}"] = priority
    if filters.due_before is not None:
        params["due_before"] = filters.due_before
    if filters.due_after is not None:
        params["due_after"] = filters.due_after
    if filters.q:
        params["pattern"] = contains_pattern(filters.q)
    if position is not None:
        params["after_key"] = position.key
        params["after_id"] = position.last_id
    return params, statuses, priorities


def _segments(
    sort: TaskSort, filters: TaskFilters, position: Position | None
) -> list[tuple[Segment, int | None]]:
    """The rest of the walk as consecutive pieces in walk order: (which piece, its priority).

    Each piece is one contiguous range of the walk's index, so each query is an index walk
    that stops after a page, however deep the cursor (docs/decisions/0016). Two walks are not
    one range, and are cut into pieces that are queried in turn until the page is full:
    - `due_at` after a dated cursor: the dated tasks after it, then the undated tail (an OR
      of the two would make PostgreSQL walk the index from its start and filter);
    - `priority` filtered by priorities: one piece per chosen priority (before PostgreSQL 17
      a multi-value IN on the second column of (project_id, priority, id) is no ordered range).
      A piece says `BETWEEN p AND p`, not `= p`: with an equality PostgreSQL drops priority
      from the ORDER BY, and may then walk the primary key in id order, skipping every other
      project's tasks, instead of this project's index.
    """
    if sort.field == "priority" and filters.priorities:
        values = sorted(set(filters.priorities), reverse=sort.descending)
        pieces: list[tuple[Segment, int | None]] = []
        for value in values:
            segment: Segment = "priority"
            if position is not None:
                if value == position.key:
                    segment = "priority-after"
                elif (value > position.key) if sort.descending else (value < position.key):
                    continue  # already walked
            pieces.append((segment, value))
        return pieces
    if position is None:
        return [("all", None)]
    if sort.field == "due_at":
        if position.key is None:
            return [("undated-after", None)]
        # Undated tasks cannot match a due_at bound; otherwise they follow the dated ones.
        if filters.due_before is None and filters.due_after is None:
            return [("after", None), ("undated", None)]
    return [("after", None)]


async def list_rows(
    db: Db,
    claims: AccessClaims,
    filters: TaskFilters,
    sort: TaskSort,
    position: Position | None,
    count: int,
) -> list[TaskRecord]:
    """Up to `count` of the caller's tasks matching `filters`, in `sort` order, after
    `position`; nothing when the caller is not current."""
    params, statuses, priorities = _list_params(claims, filters, sort, position)
    shape = (
        sort.field,
        sort.descending,
        filters.deleted,
        len(statuses),
        len(priorities),
        filters.due_before is not None,
        filters.due_after is not None,
        bool(filters.q),
    )
    rows: list[Row] = []
    async with db.transaction() if filters.q else nullcontext():
        if filters.q and db.dialect.name == "postgresql":
            # Whether the trigram indexes or the project's walk is the faster plan depends on
            # how common the text is, which a prepared statement's generic plan cannot know.
            await db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        for segment, piece_priority in _segments(sort, filters, position):
            params["limit"] = count - len(rows)
            params["piece_priority"] = piece_priority
            rows.extend(await db.rows(_list_statement(*shape, segment), params))
            if len(rows) >= count:
                break
    return [record(row) for row in rows]


def sort_key(task: TaskRecord, sort: TaskSort) -> Any:
    """The value of `task` the walk is ordered by."""
    return getattr(task, sort.field)
