"""Task rules: ownership in every statement, versioned writes, soft delete, keyset listing.

Every statement carries `owner_id = :me`, so a task of someone else is indistinguishable from
one that does not exist. Writes are single `UPDATE ... RETURNING` statements that bump
`version` in the database, which makes `If-Match` a compare-and-set rather than a
read-then-write race.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    SmallInteger,
    String,
    Text,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from app.core.errors import NotFound, PreconditionFailed, Unauthorized
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.security import AccessClaims
from app.db.base import UTCDateTime, utcnow
from app.db.direct import Db, Row, Statement
from app.db.text_search import contains_insensitive, contains_pattern
from app.models.task import TASK_INSERT_COLUMNS, Task, TaskPriority, TaskStatus
from app.models.user import User
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
    items: list[Any]  # rows: the columns of `tasks` in the table's order, read by position
    next_cursor: str | None


# --- one task: one statement each, the caller's authentication folded in ------------------
#
# Each route below sends one statement, which also checks that the caller's access token is
# still current (docs/decisions/0017-authenticated-read-round-trips.md). Only when it
# matches nothing does a second, read-only statement tell 401 from 404 from 412.

Caller = AccessClaims | int
"""Who acts: a verified access token, checked against the users table inside each statement,
or an owner id the caller has already authenticated (the CLI, tests): no check."""


class TaskRecord(NamedTuple):
    """A task as a statement returned it: the columns of `tasks`, in the table's order (so a
    row of `select(Task)` or of `RETURNING` them is one as it is)."""

    id: int
    owner_id: int
    title: str
    description: str | None
    status: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    version: int


_COLUMNS = tuple(Task.__table__.c)
assert tuple(column.name for column in _COLUMNS) == TaskRecord._fields


def _record(row: Row) -> TaskRecord:
    """A task row as a record, its due_at made UTC if the driver returned it naive.

    asyncpg stores the first and last instants Python has (0001-01-01T00:00:00Z,
    9999-12-31T23:59:59.999999Z) as PostgreSQL's -infinity and infinity, and reads those
    back as naive datetimes; `Db.rows` hands them on without SQLAlchemy's result processing
    (`UTCDateTime`), which would make them UTC. due_at is the only timestamp of a task that a
    client chooses, so the only one to check.
    """
    task = TaskRecord(*row)
    if task.due_at is not None and task.due_at.tzinfo is None:
        return task._replace(due_at=task.due_at.replace(tzinfo=UTC))
    return task


def _authorized() -> ColumnElement[bool]:
    """The token is current: its user exists, is active, and has not bumped token_version.

    Takes the bind parameters `user_id` and `token_version` (see `_params`).
    """
    return exists().where(
        User.id == bindparam("user_id"),
        User.is_active,
        User.token_version == bindparam("token_version"),
    )


_AUTHORIZED = _authorized()


@cache
def _caller_statement() -> Statement:
    return Statement(select(_authorized().label("authorized")))


def _params(caller: Caller, **values: Any) -> tuple[bool, dict[str, Any]]:
    if isinstance(caller, AccessClaims):
        return True, {"user_id": caller.user_id, "token_version": caller.token_version, **values}
    return False, {"user_id": caller, **values}


def _as_db(db: Db | AsyncSession) -> Db:
    return Db.joining(db) if isinstance(db, AsyncSession) else db


def _this_task(*, in_trash: bool) -> list[ColumnElement[bool]]:
    return [
        Task.id == bindparam("task_id"),
        Task.owner_id == bindparam("user_id"),
        Task.deleted_at.is_not(None) if in_trash else Task.deleted_at.is_(None),
    ]


@cache
def _select_statement(checked: bool) -> Statement:
    conditions = _this_task(in_trash=False)
    if checked:
        conditions.append(_authorized())
    return Statement(select(*_COLUMNS).where(*conditions))


@cache
def _diagnosis_statement(checked: bool, in_trash: bool) -> Statement:
    """Why a statement matched nothing: is the caller current, and which version is there."""
    version = select(Task.version).where(*_this_task(in_trash=in_trash)).scalar_subquery()
    authorized = _authorized() if checked else literal(True)
    return Statement(select(authorized.label("authorized"), version.label("version")))


async def _diagnose(
    db: Db, params: dict[str, Any], checked: bool, *, in_trash: bool = False
) -> int | None:
    """The task's current version (None: not there for this caller); 401 if not current."""
    found = await db.first(_diagnosis_statement(checked, in_trash), params)
    assert found is not None
    if not found[0]:  # authorized
        raise Unauthorized("The access token is invalid or expired.", invalid_token=True)
    version: int | None = found[1]
    return version


@cache
def _insert_statement(checked: bool) -> Statement:
    values = select(
        bindparam("user_id", type_=BigInteger),
        bindparam("new_title", type_=String),
        bindparam("new_description", type_=Text),
        bindparam("new_status", type_=String),
        bindparam("new_priority", type_=SmallInteger),
        bindparam("new_due_at", type_=UTCDateTime),
        bindparam("now", type_=UTCDateTime),
        bindparam("now", type_=UTCDateTime),
        bindparam("new_completed_at", type_=UTCDateTime),
        literal(None, UTCDateTime),
        literal(1, Integer),
    )
    if checked:
        values = values.where(_authorized())
    inserted = insert(Task).from_select(list(TASK_INSERT_COLUMNS), values)
    return Statement(inserted.returning(*_COLUMNS))


async def create_task(db: Db | AsyncSession, caller: Caller, data: TaskCreate) -> TaskRecord:
    now = utcnow()
    checked, params = _params(
        caller,
        new_title=data.title,
        new_description=data.description,
        new_status=data.status,
        new_priority=TaskPriority.from_label(data.priority).value,
        new_due_at=data.due_at,
        now=now,
        new_completed_at=now if data.status == TaskStatus.DONE.value else None,
    )
    created = await _as_db(db).first(_insert_statement(checked), params)
    if created is None:  # the one thing that stops this insert: the caller is not current
        raise Unauthorized("The access token is invalid or expired.", invalid_token=True)
    return _record(created)


async def get_task(db: Db | AsyncSession, caller: Caller, task_id: int) -> TaskRecord:
    """A live task of this owner; TaskNotFound for missing, trashed or foreign ones."""
    db = _as_db(db)
    checked, params = _params(caller, task_id=task_id)
    found = await db.first(_select_statement(checked), params)
    if found is None:
        await _diagnose(db, params, checked)
        raise TaskNotFound()
    return _record(found)


# The columns a write may set, with the types of their new values.
_WRITABLE: dict[str, Any] = {
    "title": String(),
    "description": Text(),
    "status": String(),
    "priority": SmallInteger(),
    "due_at": UTCDateTime(),
    "deleted_at": UTCDateTime(),
}


@cache
def _update_statement(
    fields: tuple[str, ...], completion: str | None, in_trash: bool, expected: int, checked: bool
) -> Statement:
    """UPDATE ... RETURNING for one shape of change (which fields, how many If-Match tags).

    `completion`: "keep-first" sets completed_at unless already set, "clear" clears it.
    `expected`: how many acceptable versions If-Match named (-1: no If-Match).
    """
    values: dict[str, Any] = {
        field: bindparam(f"new_{field}", type_=_WRITABLE[field]) for field in fields
    }
    if completion == "keep-first":
        values["completed_at"] = func.coalesce(
            Task.completed_at, bindparam("now", type_=UTCDateTime)
        )
    elif completion == "clear":
        values["completed_at"] = None
    values["version"] = Task.version + 1
    values["updated_at"] = bindparam("now", type_=UTCDateTime)
    conditions = _this_task(in_trash=in_trash)
    if expected > 0:
        conditions.append(Task.version.in_([bindparam(f"expected_{n}") for n in range(expected)]))
    if checked:
        conditions.append(_authorized())
    return Statement(update(Task).where(*conditions).values(values).returning(*_COLUMNS))


async def _versioned_update(
    db: Db,
    caller: Caller,
    task_id: int,
    changes: dict[str, Any],
    *,
    completion: str | None = None,
    in_trash: bool,
    expected_versions: frozenset[int] | None,
) -> TaskRecord:
    """Apply `changes` and bump the version in one statement; 401, 404 or 412 when it
    matched nothing."""
    expected = sorted(expected_versions) if expected_versions is not None else None
    checked, params = _params(
        caller,
        task_id=task_id,
        now=utcnow(),
        **{f"new_{field}": value for field, value in changes.items()},
        **{f"expected_{n}": version for n, version in enumerate(expected or ())},
    )
    statement = _update_statement(
        tuple(sorted(changes)),
        completion,
        in_trash,
        -1 if expected is None else len(expected),
        checked,
    )
    # If-Match naming no strong tag of ours can match nothing: no write is even tried.
    updated = await db.first(statement, params) if expected != [] else None
    if updated is not None:
        return _record(updated)
    current = await _diagnose(db, params, checked, in_trash=in_trash)
    if current is not None and expected is not None:
        raise PreconditionFailed()  # there, but not at a version If-Match named
    raise TaskNotFound()


async def update_task(
    db: Db | AsyncSession,
    caller: Caller,
    task_id: int,
    data: TaskUpdate,
    *,
    expected_versions: frozenset[int] | None = None,
) -> TaskRecord:
    db = _as_db(db)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        # Nothing to change: no new version, but the precondition still applies.
        task = await get_task(db, caller, task_id)
        if expected_versions is not None and task.version not in expected_versions:
            raise PreconditionFailed()
        return task
    completion = None
    if "priority" in changes:
        changes["priority"] = TaskPriority.from_label(changes["priority"]).value
    if "status" in changes:
        # Marking a done task done again keeps the first completion time.
        completion = "keep-first" if changes["status"] == TaskStatus.DONE.value else "clear"
    return await _versioned_update(
        db,
        caller,
        task_id,
        changes,
        completion=completion,
        in_trash=False,
        expected_versions=expected_versions,
    )


async def delete_task(
    db: Db | AsyncSession,
    caller: Caller,
    task_id: int,
    *,
    expected_versions: frozenset[int] | None = None,
) -> TaskRecord:
    """Move a live task to the trash."""
    return await _versioned_update(
        _as_db(db),
        caller,
        task_id,
        {"deleted_at": utcnow()},
        in_trash=False,
        expected_versions=expected_versions,
    )


async def restore_task(db: Db | AsyncSession, caller: Caller, task_id: int) -> TaskRecord:
    """Take a task out of the trash; restoring a live task returns it unchanged."""
    db = _as_db(db)
    try:
        return await _versioned_update(
            db, caller, task_id, {"deleted_at": None}, in_trash=True, expected_versions=None
        )
    except TaskNotFound:
        return await get_task(db, caller, task_id)


# --- listing ---------------------------------------------------------------------------
#
# A page is read by one statement, or a few when the walk is cut into pieces (`_segments`).
# As for one task, each statement is built and compiled once per shape (`_list_statement`)
# and every value of a request is a bind parameter (`_list_params`): per request there is no
# statement to build and, on PostgreSQL, no SQLAlchemy execution, only asyncpg's (except for
# `q`, whose statements run in a transaction of their own, through Core). What picks a plan
# stays literal in the SQL: `deleted_at IS [NOT] NULL`, which names the view's partial
# indexes, and the ORDER BY of the walk (docs/decisions/0016-listing-indexes.md). Rows come
# back as asyncpg Records or SQLAlchemy Rows: they are read by position, never by name.

_SORT_COLUMNS = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "due_at": Task.due_at,
    "priority": Task.priority,
}

# Where a row's values are (rows are the columns of `tasks`, in the table's order).
_POSITIONS = {name: position for position, name in enumerate(TaskRecord._fields)}
_ID = _POSITIONS["id"]
_DUE_AT = _POSITIONS["due_at"]

Segment = Literal["all", "after", "undated", "undated-after", "priority", "priority-after"]
"""Which piece of the walk a statement reads (see `_segments`): all of it (no cursor); the rows
after the cursor; for `due_at`, the undated tail after the dated tasks, or the rest of it after
an undated cursor; for `priority` filtered by priorities, one of them, or the rest of it after
a cursor in it."""

# Shapes: 8 sorts x 2 views x the filters given (and how many values they name) x the piece
# x checked or not: finite, but more than ever occur together. The cache keeps those in use.
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
    checked: bool,
) -> Statement:
    """The SELECT of one shape of list query (the arguments: which sort, view and filters, how
    many statuses and priorities, which piece of the walk); its values are the bind
    parameters that `_list_params` and `list_tasks` give."""
    conditions = [
        Task.owner_id == bindparam("user_id"),
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
    if checked:
        conditions.append(_AUTHORIZED)  # see "one task" above
    piece = _segment_condition(field, descending, segment)
    if piece is not None:
        conditions.append(piece)
    statement = _ordered(select(*_COLUMNS).where(*conditions), field, descending)
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
    caller: Caller, filters: TaskFilters, sort: TaskSort, position: CursorPosition | None
) -> tuple[bool, dict[str, Any], tuple[str, ...], tuple[int, ...]]:
    """(checked, the values of a list query's statements, its statuses, its priorities).

    The statuses and priorities are those the statements name one by one (each value once,
    in the order given); sorted by priority, the walk goes through the chosen priorities in
    turn instead (`_segments`), each piece binding its own `piece_priority`.
    """
    checked, params = _params(caller)
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
    return checked, params, statuses, priorities


def _segments(
    sort: TaskSort, filters: TaskFilters, position: CursorPosition | None
) -> list[tuple[Segment, int | None]]:
    """The rest of the walk as consecutive pieces in walk order: (which piece, its priority).

    Each piece is one contiguous range of the walk's index, so each query is an index walk
    that stops after a page, however deep the cursor (docs/decisions/0016). Two walks are not
    one range, and are cut into pieces that are queried in turn until the page is full:
    - `due_at` after a dated cursor: the dated tasks after it, then the undated tail (an OR
      of the two would make PostgreSQL walk the index from its start and filter);
    - `priority` filtered by priorities: one piece per chosen priority (before PostgreSQL 17
      a multi-value IN on the second column of (owner_id, priority, id) is no ordered range).
      A piece says `BETWEEN p AND p`, not `= p`: with an equality PostgreSQL drops priority
      from the ORDER BY, and may then walk the primary key in id order, skipping every other
      owner's tasks, instead of this owner's index.
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


def _aware_due_at(rows: list[Row]) -> list[Row]:
    """`rows`, each with a naive due_at made UTC (see `_record`)."""
    for n, row in enumerate(rows):
        due_at = row[_DUE_AT]
        if due_at is not None and due_at.tzinfo is None:
            rows[n] = _record(row)
    return rows


def _cursor_key(row: Row, sort: TaskSort) -> Any:
    value = row[_POSITIONS[sort.field]]
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
    db: Db | AsyncSession,
    caller: Caller,
    *,
    filters: TaskFilters,
    sort: TaskSort,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> TaskPage:
    db = _as_db(db)
    owner_id = caller.user_id if isinstance(caller, AccessClaims) else caller
    binding = binding_digest(user=owner_id, filters=filters.binding(), sort=str(sort))
    position = None
    if cursor is not None:
        position = _position_from_cursor(
            decode_cursor(cursor, binding=binding, key=cursor_key), sort
        )
    checked, params, statuses, priorities = _list_params(caller, filters, sort, position)
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
    rows: list[Row] = []  # the columns of `tasks`, in the table's order
    async with db.transaction() if filters.q else nullcontext():
        if filters.q and db.dialect.name == "postgresql":
            # Whether the trigram indexes or the owner's walk is the faster plan depends on
            # how common the text is, which a prepared statement's generic plan cannot know.
            await db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        for segment, piece_priority in _segments(sort, filters, position):
            params["limit"] = limit + 1 - len(rows)
            params["piece_priority"] = piece_priority
            rows.extend(await db.rows(_list_statement(*shape, segment, checked), params))
            if len(rows) > limit:
                break
    if not rows and checked:
        # Nothing listed: an empty page, or a token that is no longer current (401)?
        found = await db.first(_caller_statement(), params)
        if found is None or not found[0]:  # authorized
            raise Unauthorized("The access token is invalid or expired.", invalid_token=True)
    more = len(rows) > limit
    rows = _aware_due_at(rows[:limit])
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = encode_cursor(
            CursorPosition(_cursor_key(last, sort), last[_ID]), binding=binding, key=cursor_key
        )
    return TaskPage(rows, next_cursor)
