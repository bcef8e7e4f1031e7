"""The task statements: one task at a time, for v1 and v2 alike, differing by scope.

A statement finds its task in a *scope*: `INBOX`, the caller's Inbox (v1's tasks are the
Inbox's, spec api-v2 section 1), or a `ProjectRole`, any live project in which the caller's
membership has at least that role (v2: the least role of the action, `app.core.roles`). The
scope is part of the statement's `WHERE`, beside the check that the caller's token is still
current (`caller_is_current`, docs/decisions/0017), so a task the caller may not see is
indistinguishable from one that does not exist, and a revoked token changes nothing. Writes
are single `UPDATE ... RETURNING` statements that bump `version` in the database, which makes
`If-Match` a compare-and-set rather than a read-then-write race. Each statement is built and
compiled once per shape, every value of a request a bind parameter: per request there is no
statement to build and, on PostgreSQL, no SQLAlchemy execution, only asyncpg's.

v2 statements also return the task's assignees and labels (`DETAIL_COLUMNS`): correlated
subqueries in the same statement (`OrderedIds`), so that a read is still one round trip. A
write that changes them runs in one transaction (`Db.transaction`): the task row is locked
first (`lock_detail`), the ids of the body are checked against the project with their rows
locked (`members_among`, `labels_among`: a member removed meanwhile either waits for this
transaction or is no longer found), then the links and the task are written.

The rules (what a change means, which error a miss is) are `app.services.task`'s.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final, Literal, NamedTuple

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType

from app.core.roles import ProjectRole
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements import events
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import (
    caller_role,
    caller_role_now,
    in_callers_inbox,
    inbox_of,
)
from app.db.statements.turns import new_task_turn, task_write_turns, write_turn
from app.models.event import Event
from app.models.label import Label, TaskLabel
from app.models.project import Project, ProjectMember
from app.models.task import INSERT_COLUMNS, TASK_COLUMNS, Task, TaskAssignee, TaskRecord

# The columns a write may set (their types are the table's); v1 writes the first six.
WRITABLE = (
    "title",
    "description",
    "status",
    "priority",
    "due_at",
    "deleted_at",
    "project_id",
    "remind_at",
)

Completion = Literal["keep-first", "clear"] | None
"""What a write does to `completed_at`: set it unless already set, clear it, or leave it."""

INBOX: Final = "inbox"
Scope = ProjectRole | Literal["inbox"]
"""Where a statement finds its task: the caller's Inbox (v1), or a live project where the
caller's role is at least this one (v2)."""

View = Literal["live", "trash", "any"]


def record(row: Row) -> TaskRecord:
    """A task row as a record, its client-chosen timestamps made UTC if the driver returned
    them naive.

    asyncpg stores the first and last instants Python has (0001-01-01T00:00:00Z,
    9999-12-31T23:59:59.999999Z) as PostgreSQL's -infinity and infinity, and reads those
    back as naive datetimes; `Db.rows` hands them on without SQLAlchemy's result processing
    (`UTCDateTime`), which would make them UTC. due_at and remind_at are the only timestamps
    of a task that a client chooses, so the only ones to check.
    """
    task = TaskRecord._make(row)
    if task.due_at is not None and task.due_at.tzinfo is None:
        task = task._replace(due_at=task.due_at.replace(tzinfo=UTC))
    if task.remind_at is not None and task.remind_at.tzinfo is None:
        task = task._replace(remind_at=task.remind_at.replace(tzinfo=UTC))
    return task


def caller_params(claims: AccessClaims, **values: Any) -> dict[str, Any]:
    """The bind parameters of a statement made on behalf of `claims`."""
    return {"user_id": claims.user_id, "token_version": claims.token_version, **values}


# --- a task with its assignees and labels (v2) ----------------------------------------------


class OrderedIds(ColumnElement[Any]):
    """The ids in `column` of the rows that match `where` (correlated to the enclosing
    statement's row), ascending: a PostgreSQL array, or on SQLite a comma-separated text
    (`group_concat`, whose order SQLite does not promise: `ids` sorts it)."""

    __visit_name__ = "ordered_ids"
    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("where", InternalTraversal.dp_clauseelement),
    ]
    # The driver's value is read by `ids`, never by a SQLAlchemy type.
    type = NullType()

    def __init__(self, column: Any, where: ColumnElement[bool]) -> None:
        self.column = column
        self.where = where


def _subquery_arguments(kw: dict[str, Any]) -> dict[str, Any]:
    # A RETURNING clause on SQLite renders its columns without their table; the subquery's
    # own columns must keep theirs (they name two tables).
    return {key: value for key, value in kw.items() if key != "include_table"}


@compiles(OrderedIds, "postgresql")
def _ordered_ids_postgresql(element: OrderedIds, compiler: SQLCompiler, **kw: Any) -> str:
    query = select(element.column).where(element.where).order_by(element.column)
    return f"ARRAY({compiler.process(query, **_subquery_arguments(kw))})"


@compiles(OrderedIds)
def _ordered_ids(element: OrderedIds, compiler: SQLCompiler, **kw: Any) -> str:
    query = select(func.group_concat(element.column)).where(element.where).scalar_subquery()
    return compiler.process(query, **_subquery_arguments(kw))


def ids(value: Collection[int] | str | None) -> tuple[int, ...]:
    """An `OrderedIds` value as the driver returns it, as ascending ids."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(sorted(int(part) for part in value.split(",")))
    return tuple(value)


ASSIGNEE_IDS = OrderedIds(TaskAssignee.user_id, TaskAssignee.task_id == Task.id)
LABEL_IDS = OrderedIds(TaskLabel.label_id, TaskLabel.task_id == Task.id)
# A v2 task: its columns, then its assignees' and its labels' ids.
DETAIL_COLUMNS = (
    *TASK_COLUMNS,
    ASSIGNEE_IDS.label("assignee_ids"),
    LABEL_IDS.label("label_ids"),
)


class TaskDetail(NamedTuple):
    """A task as v2 shows it: its columns, its assignees and its labels (ids ascending)."""

    task: TaskRecord
    assignee_ids: tuple[int, ...]
    label_ids: tuple[int, ...]


_TASK_WIDTH = len(TaskRecord._fields)


def detail(row: Row) -> TaskDetail:
    """A row of `DETAIL_COLUMNS` as a `TaskDetail`."""
    values = tuple(row)
    return TaskDetail(
        record(values[:_TASK_WIDTH]), ids(values[_TASK_WIDTH]), ids(values[_TASK_WIDTH + 1])
    )


# --- one task ------------------------------------------------------------------------------


def _in_scope(scope: Scope) -> ColumnElement[bool]:
    if isinstance(scope, ProjectRole):
        # The role in the task's project as a scalar subquery, not `caller_may`'s EXISTS:
        # PostgreSQL turns an EXISTS into a semi-join, and when a write waited for a writer
        # that moved the task, it re-checks the moved row against the membership row the
        # join had found in the old project (READ COMMITTED's EvalPlanQual does not search
        # the other tables again): a task moved meanwhile was "not found". A subquery is run
        # again on the row as the lock finds it.
        in_scope: ColumnElement[bool] = caller_role(Task.project_id) >= scope
        return in_scope
    return in_callers_inbox(Task.project_id)


def _columns(scope: Scope) -> tuple[Any, ...]:
    return DETAIL_COLUMNS if isinstance(scope, ProjectRole) else TASK_COLUMNS


def _in_view(view: View) -> list[ColumnElement[bool]]:
    if view == "any":
        return []
    return [Task.deleted_at.is_not(None) if view == "trash" else Task.deleted_at.is_(None)]


# The task read for its project's turn, under a name of its own so that it never correlates to
# the statement's own `tasks`.
_TurnsTask = aliased(Task, name="turns_task")


def _this_tasks_turns(scope: Scope) -> ColumnElement[bool]:
    """The turn of the task `:task_id` (`write_turn`), in the WHERE clause of a statement that
    locks it, then (a project's task) the shared turn of its project (`task_write_turns`; an
    Inbox has no members to change). Of the bind parameter, not the row's column: whichever
    plan the statement gets, and in whatever order it tests its conditions, the one task
    turn taken is that task's (a scan that tested it before `id = :task_id` would take it
    again for each row it reads)."""
    task_id = bindparam("task_id", type_=BigInteger)
    if isinstance(scope, ProjectRole):
        return task_write_turns(task_id, _turns_project())
    return write_turn(task_id)


def _turns_project() -> ColumnElement[Any]:
    """The project whose shared turn a write of the task `:task_id` takes: read by an
    uncorrelated subquery, not the row's column, so PostgreSQL runs it once, in the
    statement's snapshot. A column would be read again when the row lock finds the task
    moved by the writer this one waited for, and the new project's turn then waited for with
    the row locked: a deadlock with a removal or label deletion of that project waiting for
    the row."""
    task_id = bindparam("task_id", type_=BigInteger)
    return select(_TurnsTask.project_id).where(_TurnsTask.id == task_id).scalar_subquery()


def _in_scope_after_turns(scope: Scope, *, refused_if_moved: bool) -> ColumnElement[bool]:
    """The task's turns (`_this_tasks_turns`), then the scope, for a statement that writes or
    locks the task. A project's scope is then read as whoever held the project's turn left
    it (`caller_role_now`): the statement's snapshot was taken before it waited, and a
    removal, demotion or trash that committed meanwhile must refuse the write, not follow
    it. The CASE makes the order certain: the membership's rows are not locked before the
    turn is granted (a removal holding the turn and then deleting the row would wait for
    this statement, which waits for its turn: a deadlock).

    Only the rows of the project whose turn the statement holds are locked. When the row
    lock finds the task moved meanwhile (by the writer it waited for), its new project's
    role cannot be read as it is now: locking that project's row without its turn, then
    waiting for the turn in the transaction's next write of the task, would deadlock with a
    change of that project (which holds the turn and waits for the row); and the snapshot's
    role there predates a removal, demotion or trash committed while the statement waited (a
    black-box run saw a removed member's edit land after their removal in a third of the
    rounds where a move and the removal overlapped). So a write of one statement is then
    refused (`refused_if_moved`), and the service makes it again in a statement of its own,
    which takes the new project's turn; a transaction's lock (`lock_detail`) finds the row
    and starts its transaction again (`MovedMeanwhile`)."""
    turns = _this_tasks_turns(scope)
    if isinstance(scope, ProjectRole):
        role = case(
            (Task.project_id == _turns_project(), caller_role_now(Task.project_id)),
            else_=None if refused_if_moved else caller_role(Task.project_id),
        )
        in_scope: ColumnElement[bool] = case((turns, role)) >= scope
        return in_scope
    return and_(turns, in_callers_inbox(Task.project_id))


def _this_task(*, in_trash: bool, scope: Scope = INBOX) -> list[ColumnElement[bool]]:
    return [
        Task.id == bindparam("task_id"),
        _in_scope(scope),
        *_in_view("trash" if in_trash else "live"),
    ]


def _this_task_to_write(
    *, in_trash: bool, scope: Scope, refused_if_moved: bool
) -> list[ColumnElement[bool]]:
    """`_this_task`, with its turns taken first (`_in_scope_after_turns`)."""
    return [
        Task.id == bindparam("task_id"),
        _in_scope_after_turns(scope, refused_if_moved=refused_if_moved),
        *_in_view("trash" if in_trash else "live"),
    ]


@cache
def _select_statement(scope: Scope = INBOX) -> Statement:
    return Statement(
        select(*_columns(scope)).where(
            *_this_task(in_trash=False, scope=scope), caller_is_current()
        )
    )


@cache
def _lock_statement(scope: ProjectRole) -> Statement:
    """The live task in scope, its row locked until the transaction ends (a write that
    depends on what it holds: assignees, labels). `FOR NO KEY UPDATE`, as an UPDATE of the
    row would take: rows that only reference the task (a comment) are not held up. Its
    second column: whether the locked row is in the project whose turn the statement took
    (`MovedMeanwhile`)."""
    in_turns_project = Task.project_id == _turns_project()
    return Statement(
        select(Task.id, in_turns_project)
        .where(
            *_this_task_to_write(in_trash=False, scope=scope, refused_if_moved=False),
            caller_is_current(),
        )
        .with_for_update(key_share=True, of=Task)
    )


@cache
def _diagnosis_statement(in_trash: bool) -> Statement:
    version = select(Task.version).where(*_this_task(in_trash=in_trash)).scalar_subquery()
    return Statement(select(caller_is_current().label("current"), version.label("version")))


@cache
def _role_diagnosis_statement(view: View) -> Statement:
    """Why a v2 statement on a task matched nothing: is the caller current, the task's
    version, and the caller's role in its project (NULL: they may not see it)."""
    this = [Task.id == bindparam("task_id"), *_in_view(view)]
    version = select(Task.version).where(*this).scalar_subquery()
    role = select(caller_role(Task.project_id)).where(*this).scalar_subquery()
    return Statement(
        select(caller_is_current().label("current"), version.label("version"), role.label("role"))
    )


@cache
def _caller_statement() -> Statement:
    return Statement(select(caller_is_current().label("current")))


def _new_values() -> dict[str, Any]:
    return {
        name: bindparam(f"new_{name}", type_=Task.__table__.c[name].type)
        for name in ("title", "description", "status", "priority", "due_at", "completed_at")
    } | {
        "created_at": bindparam("now", type_=Task.created_at.type),
        "updated_at": bindparam("now", type_=Task.updated_at.type),
        "deleted_at": literal(None, Task.deleted_at.type),
        "version": literal(1, Integer),
        "creator_id": bindparam("user_id"),
    }


def _created_event() -> dict[str, Any]:
    """A new task's event, over the columns the insert returned."""
    return events.event_binds() | {
        "project_id": lambda written: written.project_id,
        "entity_id": lambda written: written.id,
        "task_id": lambda written: written.id,
    }


def _written(write: Any, *, logged: bool, columns: int) -> Statement:
    """`write`, with its event in the same statement when `logged` (PostgreSQL)."""
    if not logged:
        return Statement(write)
    return Statement(events.logged(write, _created_event(), columns=columns))


@cache
def _insert_statement(logged: bool = False) -> Statement:
    values = _new_values() | {
        "project_id": inbox_of(bindparam("user_id")),
        "remind_at": literal(None, Task.remind_at.type),
    }
    row = select(*(values[name] for name in INSERT_COLUMNS)).where(caller_is_current())
    inserted = insert(Task).from_select(list(INSERT_COLUMNS), row)
    return _written(inserted.returning(*TASK_COLUMNS), logged=logged, columns=len(TASK_COLUMNS))


def _callers_membership(project_id: Any, least: ProjectRole | None) -> list[ColumnElement[bool]]:
    """The caller's (bind parameter `user_id`) membership of the live project `project_id`,
    with at least the role `least`, as conditions on `project_members` and `projects`."""
    conditions = [
        ProjectMember.project_id == project_id,
        ProjectMember.user_id == bindparam("user_id"),
        Project.id == ProjectMember.project_id,
        Project.deleted_at.is_(None),
    ]
    if least is not None:
        conditions.append(ProjectMember.role >= least)
    return conditions


def _project_id(in_inbox: bool) -> Any:
    return inbox_of(bindparam("user_id")) if in_inbox else bindparam("project_id", BigInteger)


@cache
def _insert_into_project_statement(
    least: ProjectRole, in_inbox: bool, logged: bool = False
) -> Statement:
    """A new task in a project where the caller has at least `least`, read from the caller's
    membership row with `FOR SHARE`: a removal or demotion of the caller that is under way
    waits for this insert's transaction, and one that committed first leaves no row to read
    (PostgreSQL re-checks a locked row): the task is never created after the removal."""
    values = _new_values() | {
        "project_id": ProjectMember.project_id,
        "remind_at": bindparam("new_remind_at", type_=Task.remind_at.type),
    }
    row = (
        select(*(values[name] for name in INSERT_COLUMNS))
        .select_from(ProjectMember)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(*_callers_membership(_project_id(in_inbox), least), caller_is_current())
        # The project's row too (`caller_role_now`): a trash that committed while this
        # insert waited for its turn is seen. An Inbox is never trashed, nor waited for.
        .with_for_update(read=True, of=ProjectMember if in_inbox else (ProjectMember, Project))
    )
    if not in_inbox:
        row = row.where(new_task_turn(bindparam("project_id", BigInteger)))
    inserted = insert(Task).from_select(list(INSERT_COLUMNS), row)
    # A new task has no links yet (and SQLAlchemy would not correlate their subqueries to
    # the row an INSERT returns).
    return _written(inserted.returning(*TASK_COLUMNS), logged=logged, columns=len(TASK_COLUMNS))


@cache
def _project_role_statement(in_inbox: bool) -> Statement:
    """Is the caller current, and their role in the live project (NULL: they may not see
    it): why an insert into a project wrote nothing."""
    role = caller_role(_project_id(in_inbox))
    return Statement(select(caller_is_current().label("current"), role.label("role")))


@cache
def _locked_project_statement() -> Statement:
    """The live project `:project_id`, its row held `FOR SHARE`: first, as the writers of its
    members lock it before their rows (`locked_role`)."""
    return Statement(
        select(Project.id)
        .where(Project.id == bindparam("project_id", BigInteger), Project.deleted_at.is_(None))
        .with_for_update(read=True)
    )


@cache
def _locked_role_statement() -> Statement:
    return Statement(
        select(ProjectMember.role)
        .select_from(ProjectMember)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(*_callers_membership(bindparam("project_id", BigInteger), None))
        .with_for_update(read=True, of=ProjectMember)
    )


@cache
def _update_statement(
    fields: tuple[str, ...],
    completion: Completion,
    in_trash: bool,
    expected: int,
    scope: Scope = INBOX,
    linked: bool = False,
    logged: bool = False,
) -> Statement:
    """UPDATE ... RETURNING for one shape of change (which fields, how many If-Match tags;
    `expected` -1: no If-Match; `linked`: the bind parameter `links_changed` says whether
    the request changed assignees or labels, which counts as a change of the task).

    A write that changes nothing is still the one statement, and still matches (so `If-Match`
    and the caller check answer as for any write), but leaves `version`, `updated_at` and
    `completed_at` as they were: every one of them is kept unless some field IS DISTINCT FROM
    its new value. The fields themselves are set either way (to what they already hold when
    nothing changes).

    `logged` (PostgreSQL): the same write with its event in the same statement. The task is
    first locked by a `before` CTE that reads it as it is when the lock is granted (after any
    writer it waited for), so the event's old values are the ones this write replaced; the
    UPDATE joins it, and the event is appended only when the version moved.
    """
    values: dict[str, Any] = {
        field: bindparam(f"new_{field}", type_=Task.__table__.c[field].type) for field in fields
    }
    differences = [Task.__table__.c[field].is_distinct_from(values[field]) for field in fields]
    if linked:
        differences.append(bindparam("links_changed", type_=Boolean()))
    changed = or_(*differences)
    now = bindparam("now", type_=Task.updated_at.type)
    if completion == "keep-first":
        values["completed_at"] = case(
            (changed, func.coalesce(Task.completed_at, now)), else_=Task.completed_at
        )
    elif completion == "clear":
        values["completed_at"] = case((changed, None), else_=Task.completed_at)
    values["version"] = Task.version + case((changed, 1), else_=0)
    values["updated_at"] = case((changed, now), else_=Task.updated_at)
    conditions: list[ColumnElement[bool]] = [caller_is_current()]
    if expected > 0:
        conditions.append(Task.version.in_([bindparam(f"expected_{n}") for n in range(expected)]))
    returned = list(_columns(scope))
    if not logged:
        this_task = _this_task(in_trash=in_trash, scope=scope)
        return Statement(
            update(Task).where(*this_task, *conditions).values(values).returning(*returned)
        )
    if isinstance(scope, ProjectRole):
        # The version this statement's snapshot saw (its subqueries read that snapshot, not
        # the row as a writer it waited for left it): see `update_detail`. PostgreSQL only:
        # on SQLite a write waits for no writer once its transaction has begun.
        seen = aliased(Task)
        returned.append(
            select(seen.version).where(seen.id == Task.id).scalar_subquery().label("seen")
        )
    audited = [name for name in events.AUDITED["task"] if name in values or name == "project_id"]
    before = (
        select(Task.id, Task.version, *(Task.__table__.c[name] for name in audited))
        .where(
            *_this_task_to_write(in_trash=in_trash, scope=scope, refused_if_moved=True),
            *conditions,
        )
        .with_for_update(key_share=True, of=Task)
        .cte("before")
    )
    olds = [before.c[name].label(f"old_{name}") for name in audited]
    write = (
        update(Task)
        .where(Task.id == before.c.id)
        .values(values)
        .returning(*returned, *olds, before.c.version.label("old_version"))
    )
    event = events.event_binds() | {
        "project_id": lambda written: written.project_id,
        "from_project_id": lambda written: case(
            (written.old_project_id != written.project_id, written.old_project_id)
        ),
        "entity_id": lambda written: written.id,
        "task_id": lambda written: written.id,
        "changes": lambda written: events.sql_changes(
            {name: (written[f"old_{name}"], written[name]) for name in audited},
            extra=events.event_binds()["changes"],
        ),
    }
    return Statement(
        events.logged(
            write,
            event,
            columns=len(returned),
            when=lambda written: written.version != written.old_version,
        )
    )


@cache
def _purge_statement() -> Statement:
    # A task being restored at this moment (its row locked by the restore) is skipped, not
    # waited for: a restore racing the purge wins (PostgreSQL; SQLite has one writer).
    expired = (
        select(Task.id)
        .where(
            Task.deleted_at.is_not(None),
            Task.deleted_at < bindparam("cutoff", type_=Task.deleted_at.type),
        )
        .with_for_update(skip_locked=True)
    )
    return Statement(
        delete(Task)
        .where(Task.id.in_(expired.scalar_subquery()))
        .returning(Task.id, Task.project_id, Task.title)
    )


async def purge_trashed(db: Db, cutoff: datetime, now: datetime) -> int:
    """Delete for good the tasks trashed before `cutoff`, each leaving a `purged` event by
    the system (inside a transaction); how many."""
    purged = await db.rows(_purge_statement(), {"cutoff": cutoff})
    for task_id, project_id, title in purged:
        await events.append(
            db,
            at=now,
            actor_id=None,
            project_id=project_id,
            entity="task",
            entity_id=task_id,
            task_id=task_id,
            action="purged",
            changes={"title": (title, None)},
        )
    return len(purged)


# --- ids of a body, and the links they make (inside a transaction) --------------------------
#
# These take lists of ids (`IN` with an expanding parameter), which SQLAlchemy renders per
# call: they run inside `Db.transaction`, where statements go through Core.


@cache
def _members_among_statement() -> Statement:
    """Which of `ids` are members of `project_id`, their membership rows held (`FOR KEY
    SHARE`: a removal waits for this transaction; a role change does not matter here)."""
    return Statement(
        select(ProjectMember.user_id)
        .where(
            ProjectMember.project_id == bindparam("project_id", BigInteger),
            ProjectMember.user_id.in_(bindparam("ids", expanding=True)),
        )
        .with_for_update(read=True, key_share=True, of=ProjectMember)
    )


@cache
def _labels_among_statement() -> Statement:
    """Which of `ids` are labels of `project_id`, their rows held until the links are in."""
    return Statement(
        select(Label.id)
        .where(
            Label.project_id == bindparam("project_id", BigInteger),
            Label.id.in_(bindparam("ids", expanding=True)),
        )
        .with_for_update(read=True, key_share=True, of=Label)
    )


@cache
def _link_statements(kind: Literal["assignees", "labels"]) -> tuple[Statement, Statement]:
    """(add the links to `ids`, remove the links to `ids`) of the task `task_id`."""
    table, column = (
        (TaskAssignee, TaskAssignee.user_id)
        if kind == "assignees"
        else (TaskLabel, TaskLabel.label_id)
    )
    source, source_id = (
        (ProjectMember, ProjectMember.user_id) if kind == "assignees" else (Label, Label.id)
    )
    task_id: Any = bindparam("task_id", BigInteger)
    # Typed in the select list too (PostgreSQL would not infer a BIGINT there).
    as_bigint = cast(task_id, BigInteger)
    added = insert(table).from_select(
        ["task_id", column.key],
        select(as_bigint, source_id).where(
            source.project_id == bindparam("project_id", BigInteger),
            source_id.in_(bindparam("ids", expanding=True)),
        ),
    )
    removed = delete(table).where(
        table.task_id == task_id, column.in_(bindparam("ids", expanding=True))
    )
    return Statement(added.returning(column)), Statement(removed.returning(column))


# --- the statements, run ---------------------------------------------------------------------


async def fetch(db: Db, claims: AccessClaims, task_id: int) -> TaskRecord | None:
    """The live task of the caller's Inbox, if the caller is current and it is there."""
    found = await db.first(_select_statement(), caller_params(claims, task_id=task_id))
    return record(found) if found is not None else None


async def fetch_detail(
    db: Db, claims: AccessClaims, task_id: int, least: ProjectRole
) -> TaskDetail | None:
    """The live task, with its links, if the caller is current and has at least `least`
    in its (live) project."""
    found = await db.first(_select_statement(least), caller_params(claims, task_id=task_id))
    return detail(found) if found is not None else None


class MovedMeanwhile(Exception):  # noqa: N818 (a signal between layers, not a client's error)
    """`lock_detail` found the task, once its row was locked, in another project than the
    one whose turn its statement took: a move committed while the statement waited for the
    task's turn. The transaction's next statements would wait for the new project's turn
    while holding the task's row, and a change of that project holding the turn and waiting
    for the row (a removal of a member assigned to the task) would then wait for them in a
    circle: a deadlock (decision 0036). Nothing is written yet; the caller rolls the
    transaction back and starts it again, which takes the new project's turn first."""


async def lock_detail(
    db: Db, claims: AccessClaims, task_id: int, least: ProjectRole
) -> TaskDetail | None:
    """`fetch_detail`, its row locked until the transaction ends (inside `Db.transaction`);
    `MovedMeanwhile` when the lock found the task moved to another project meanwhile.

    The task is read again once locked, by a statement of its own: a lock that had to wait
    for another writer re-reads the locked row as that writer left it, but subqueries of the
    same statement (the links) would still show what was there before it committed; the
    next statement (READ COMMITTED) sees it all."""
    params = caller_params(claims, task_id=task_id)
    locked = await db.first(_lock_statement(least), params)
    if locked is None:
        return None
    if not locked[1]:
        raise MovedMeanwhile
    return await fetch_detail(db, claims, task_id, least)


def _logs_in_statement(db: Db) -> bool:
    """Whether a write's event goes in the write's own statement (PostgreSQL), or in a
    statement after it in the same transaction (SQLite: one writer at a time)."""
    return db.dialect.name == "postgresql"


def _event(claims: AccessClaims, now: datetime, action: str, **event: Any) -> dict[str, Any]:
    """The bind parameters of a task event by the caller (the ids that a logged statement
    takes from the row it wrote are placeholders here)."""
    return events.event_params(
        at=now,
        actor_id=claims.user_id,
        entity="task",
        action=action,
        **({"project_id": 0, "entity_id": 0} | event),
    )


async def _insert_logged(
    db: Db,
    plain: Statement,
    logged: Statement,
    params: dict[str, Any],
    event: dict[str, Any],
) -> TaskRecord | None:
    """A task insert and its `created` event, in one statement or one transaction."""
    if _logs_in_statement(db):
        created = await db.first(logged, params | event)
        return record(created) if created is not None else None
    async with db.transaction():
        found = await db.first(plain, params)
        if found is None:
            return None
        created = record(found)
        event |= {
            "event_project_id": created.project_id,
            "event_entity_id": created.id,
            "event_task_id": created.id,
        }
        await db.rows(events.append_statement(), event)
    return created


async def insert_task(
    db: Db, claims: AccessClaims, values: dict[str, Any], now: datetime
) -> TaskRecord | None:
    """A new task in the caller's Inbox with `values` (title, description, status,
    priority, due_at, completed_at), and its event; None if the caller is not current
    (nothing is written then)."""
    params = caller_params(
        claims, now=now, **{f"new_{name}": value for name, value in values.items()}
    )
    event = _event(claims, now, "created", changes=events.column_changes("task", None, values))
    return await _insert_logged(db, _insert_statement(), _insert_statement(True), params, event)


async def insert_into_project(
    db: Db,
    claims: AccessClaims,
    project_id: int | None,
    values: dict[str, Any],
    now: datetime,
    *,
    least: ProjectRole,
    links: dict[str, tuple[Any, Any]] | None = None,
) -> TaskRecord | None:
    """A new task in `project_id` (None: the caller's Inbox) with `values` (those of
    `insert_task`, and remind_at), and its event (`links`: its assignees' and labels'
    changes); None, with nothing written, unless the caller is current and has at least
    `least` in that live project."""
    params = caller_params(
        claims,
        now=now,
        project_id=project_id,
        **{f"new_{name}": value for name, value in values.items()},
    )
    changes = events.column_changes("task", None, values) | (links or {})
    event = _event(claims, now, "created", changes=changes)
    in_inbox = project_id is None
    return await _insert_logged(
        db,
        _insert_into_project_statement(least, in_inbox),
        _insert_into_project_statement(least, in_inbox, True),
        params,
        event,
    )


async def project_role(
    db: Db, claims: AccessClaims, project_id: int | None
) -> tuple[bool, int | None]:
    """(is the caller current, their role in the live project `project_id` (None: the
    Inbox), None when they may not see it)."""
    found = await db.first(
        _project_role_statement(project_id is None),
        caller_params(claims, project_id=project_id),
    )
    assert found is not None
    return bool(found[0]), found[1]


async def locked_role(db: Db, claims: AccessClaims, project_id: int) -> int | None:
    """The caller's role in the live project `project_id` (None: they may not see it), the
    project's row and their membership row held `FOR SHARE` until the transaction ends
    (inside `Db.transaction`): the target of a move, whose turn the move does not take. A
    change of it that has written its rows is waited for, and a trash is seen (the task
    never lands in a trashed project); one that holds the project's turn but has not written
    yet waits for the move instead (its order in the feed: decision 0030's limits).

    The project's row first, in a statement of its own: the writers of a project's members
    lock that row, then the membership's (`projects.lock`). Locking both in one
    statement took the membership's first, and a removal or demotion of the caller holding
    the project's row waited for it in a circle (a deadlock, found by a black-box run)."""
    params = caller_params(claims, project_id=project_id)
    if await db.first(_locked_project_statement(), params) is None:
        return None
    found = await db.first(_locked_role_statement(), params)
    return found[0] if found is not None else None


@cache
def _before_statement(in_trash: bool, scope: Scope) -> Statement:
    """The task as a write is about to find it (SQLite, inside the write's transaction)."""
    return Statement(select(*TASK_COLUMNS).where(*_this_task(in_trash=in_trash, scope=scope)))


def _action(changes: dict[str, Any]) -> str:
    """What a write of `changes` is, as an event's action."""
    if "deleted_at" in changes:
        return "deleted" if changes["deleted_at"] is not None else "restored"
    return "moved" if "project_id" in changes else "updated"


async def _update_row(
    db: Db,
    claims: AccessClaims,
    task_id: int,
    changes: dict[str, Any],
    *,
    now: datetime,
    completion: Completion,
    in_trash: bool,
    expected_versions: list[int] | None,
    scope: Scope,
    links_changed: bool | None = None,
    links: dict[str, tuple[Any, Any]] | None = None,
) -> Row | None:
    """The UPDATE of one shape, and its event when the version moved (`links`: the
    assignees' and labels' changes, when the request changed them)."""
    params = caller_params(
        claims,
        task_id=task_id,
        now=now,
        **{f"new_{field}": value for field, value in changes.items()},
        **{f"expected_{n}": version for n, version in enumerate(expected_versions or ())},
    )
    if links_changed is not None:
        params["links_changed"] = links_changed
    expected = -1 if expected_versions is None else len(expected_versions)
    shape = (
        tuple(sorted(changes)),
        completion,
        in_trash,
        expected,
        scope,
        links_changed is not None,
    )
    event = _event(claims, now, _action(changes), changes=links or {})
    if _logs_in_statement(db):
        return await db.first(_update_statement(*shape, logged=True), params | event)
    async with db.transaction():
        before = await db.first(_before_statement(in_trash, scope), {"task_id": task_id, **params})
        updated = await db.first(_update_statement(*shape), params)
        if updated is None or before is None:
            return updated
        old, new = record(before[:_TASK_WIDTH]), record(updated[:_TASK_WIDTH])
        if new.version != old.version:
            column_changes = events.column_changes("task", old._asdict(), new._asdict())
            event |= {
                "event_project_id": new.project_id,
                "event_from_project_id": (
                    old.project_id if old.project_id != new.project_id else None
                ),
                "event_entity_id": task_id,
                "event_task_id": task_id,
                "event_changes": events.changes_json(column_changes | (links or {})),
            }
            await db.rows(events.append_statement(), event)
    return updated


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
    """Apply `changes` to a task of the caller's Inbox and bump the version in one
    statement, if the task is there (in the trash or not, as asked), at one of
    `expected_versions` (when given), and the caller is current; None otherwise (nothing is
    written then). When every field already holds its new value, the task comes back as it
    was: same version, same `updated_at`."""
    updated = await _update_row(
        db,
        claims,
        task_id,
        changes,
        now=now,
        completion=completion,
        in_trash=in_trash,
        expected_versions=expected_versions,
        scope=INBOX,
    )
    return record(updated) if updated is not None else None


async def update_detail(
    db: Db,
    claims: AccessClaims,
    task_id: int,
    changes: dict[str, Any],
    *,
    least: ProjectRole,
    now: datetime,
    completion: Completion = None,
    in_trash: bool,
    expected_versions: list[int] | None,
    links_changed: bool | None = None,
    links: dict[str, tuple[Any, Any]] | None = None,
) -> TaskDetail | None:
    """`update_task` on a task of a project where the caller has at least `least`, returned
    with its links; `links_changed` (when not None) counts as a change of the task.

    When the UPDATE had to wait for another writer of the task (PostgreSQL re-reads the row
    that writer committed, and applies the change to it), the links its RETURNING reads are
    still those of the statement's snapshot, from before that writer: they are then read
    again. Such a wait shows as a version the snapshot did not see: neither the one the
    UPDATE returns, nor the one before it when the UPDATE changed the task (its `updated_at`
    is then `now`). The answer is always the version this UPDATE wrote, its columns from its
    RETURNING: a writer that came after it may have committed before the read again, and its
    version is not this request's to show (a client takes the ETag for its next `If-Match`;
    a black-box run, 2026-12-07, got other requests' versions in 22 of 90 answers). Its
    links too (`links_of_version`): read after the commit, with what later writers committed
    meanwhile undone."""
    updated = await _update_row(
        db,
        claims,
        task_id,
        changes,
        now=now,
        completion=completion,
        in_trash=in_trash,
        expected_versions=expected_versions,
        scope=least,
        links_changed=links_changed,
        links=links,
    )
    if updated is None:
        return None
    found = detail(updated)
    if not _logs_in_statement(db):
        # SQLite: the transaction held the only write lock from its first statement, so its
        # RETURNING is the task as written. (A read after the commit could also wait for
        # the lock and fail although the change was made.)
        return found
    seen, version = updated[-1], found.task.version
    if seen == version or (seen == version - 1 and found.task.updated_at == now):
        return found
    written = await links_of_version(db, task_id, version)
    if written is None:
        return found
    return found._replace(assignee_ids=written[0], label_ids=written[1])


# How many of a task's newest events `links_of_version` reads: the writes committed after
# the version it is asked for, in the moment between that write's commit and its read.
_LATER_WRITES_READ: Final = 16


@cache
def _links_now_statement() -> Statement:
    """The task's version and links now, beside the changes of its newest events, newest
    first (a row each; one row of NULL changes when none): one statement, so one snapshot.
    The events' walk back on ix_events_task as `app.db.statements.events` walks it (a range
    on `task_id`, ordered by it, so that the index gives the order)."""
    newest = (
        select(Event.id.label("event_id"), Event.changes.label("changes"))
        .where(
            Event.task_id.between(bindparam("task_id"), bindparam("task_id")),
            Event.entity == "task",
        )
        .order_by(Event.task_id.desc(), Event.id.desc())
        .limit(bindparam("later"))
        .lateral("newest")
    )
    return Statement(
        select(Task.version, ASSIGNEE_IDS, LABEL_IDS, newest.c.changes)
        .select_from(Task)
        .outerjoin(newest, true())
        .where(Task.id == bindparam("task_id"))
        .order_by(newest.c.event_id.desc())
    )


async def links_of_version(
    db: Db, task_id: int, version: int
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The task's (assignee ids, label ids) as `version` left them (PostgreSQL): read now,
    with what the writes committed since changed of them undone. Each write of a task makes
    one version and one event of it, so its newest events are those writes, and the first
    of them to change a link holds its value at `version` as its old value. (A write that
    waited for another reads the links again after its commit; a third writer may have
    committed in between: a black-box run got links of another version in 14 of 5,676
    answers.) None when the task is gone; the links now when more writes came since than
    are read back (`_LATER_WRITES_READ`)."""
    rows = await db.rows(_links_now_statement(), {"task_id": task_id, "later": _LATER_WRITES_READ})
    if not rows:
        return None
    now_version, assignee_ids, label_ids = int(rows[0][0]), ids(rows[0][1]), ids(rows[0][2])
    since = [_changes(row[3]) for row in rows[: now_version - version] if row[3] is not None]
    if len(since) != now_version - version:
        return assignee_ids, label_ids
    return _undone(since, "assignee_ids", assignee_ids), _undone(since, "label_ids", label_ids)


def _undone(since: list[dict[str, Any]], field: str, now: tuple[int, ...]) -> tuple[int, ...]:
    """`field`'s value before the writes whose changes are `since` (newest first): the old
    value of the first of them to change it, else its value `now`."""
    for change in reversed(since):
        if field in change:
            return tuple(sorted(int(value) for value in change[field][0] or ()))
    return now


def _changes(value: Any) -> dict[str, Any]:
    """An event's `changes` as the driver returns it (JSON text, or decoded)."""
    return dict(orjson.loads(value) if isinstance(value, str | bytes) else value)


async def diagnose(
    db: Db, claims: AccessClaims, task_id: int, *, in_trash: bool = False
) -> tuple[bool, int | None]:
    """Why a statement on a task of the caller's Inbox matched nothing: (is the caller
    current, the task's version or None when it is not there for this caller)."""
    found = await db.first(_diagnosis_statement(in_trash), caller_params(claims, task_id=task_id))
    assert found is not None
    return bool(found[0]), found[1]


async def diagnose_role(
    db: Db, claims: AccessClaims, task_id: int, *, view: View
) -> tuple[bool, int | None, int | None]:
    """Why a v2 statement on a task matched nothing: (is the caller current, the task's
    version (in `view`), the caller's role in its project or None when they may not see
    it)."""
    found = await db.first(_role_diagnosis_statement(view), caller_params(claims, task_id=task_id))
    assert found is not None
    return bool(found[0]), found[1], found[2]


async def caller_is_still_current(db: Db, claims: AccessClaims) -> bool:
    found = await db.first(_caller_statement(), caller_params(claims))
    return found is not None and bool(found[0])


async def members_among(db: Db, project_id: int, user_ids: Collection[int]) -> set[int]:
    """Those of `user_ids` who are members of `project_id`, held until the transaction ends
    (inside `Db.transaction`)."""
    if not user_ids:
        return set()
    found = await db.rows(
        _members_among_statement(), {"project_id": project_id, "ids": list(user_ids)}
    )
    return {row[0] for row in found}


async def labels_among(db: Db, project_id: int, label_ids: Collection[int]) -> set[int]:
    """Those of `label_ids` that are labels of `project_id`, held until the transaction ends
    (inside `Db.transaction`)."""
    if not label_ids:
        return set()
    found = await db.rows(
        _labels_among_statement(), {"project_id": project_id, "ids": list(label_ids)}
    )
    return {row[0] for row in found}


async def relink(
    db: Db,
    kind: Literal["assignees", "labels"],
    task_id: int,
    project_id: int,
    *,
    add: Collection[int],
    remove: Collection[int],
) -> None:
    """Link the task to `add` (members, or labels, of `project_id`, checked and held by
    `members_among` / `labels_among` in this transaction) and unlink it from `remove`."""
    added, removed = _link_statements(kind)
    if remove:
        await db.rows(removed, {"task_id": task_id, "ids": list(remove)})
    if add:
        await db.rows(added, {"task_id": task_id, "project_id": project_id, "ids": list(add)})
