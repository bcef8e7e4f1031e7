"""The keyset listing of tasks: its filters and sorts, and the statements that read a page.

A page is read by one statement, or a few when the walk is cut into pieces (`_segments`).
What picks a plan stays literal in the SQL: `deleted_at IS [NOT] NULL`, which names the
view's partial indexes, and the ORDER BY of the walk (docs/decisions/0016-listing-indexes.md).
v1's statements are scoped like the single-task statements (`app.db.statements.tasks`): to
the caller's Inbox, with the caller's token checked inside it. v2's (`list_team_rows`) list
the tasks of every live project the caller is a member of, or of those named, with the same
filters, walks and pieces, plus assignee and label filters; the memberships and the token
check are in the statement too. On PostgreSQL the statement walks each membership's project
on its own walk index and merges the walks (`_team_statement`), so that a page costs about
projects x page size index entries, however deep it is.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select

from app.core.roles import Permission, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may, in_callers_inbox
from app.db.statements.tasks import DETAIL_COLUMNS, TaskDetail, caller_params, detail, record
from app.db.text_search import contains_insensitive, contains_pattern
from app.models.label import Label, TaskLabel
from app.models.project import Project, ProjectMember
from app.models.task import TASK_COLUMNS, Task, TaskAssignee, TaskRecord

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


@dataclass(frozen=True, slots=True)
class TeamFilters:
    """What v2's listing adds to `TaskFilters`: which projects (none named: every project the
    caller is a member of), whose tasks (a user id, or "none" for tasks without assignees),
    and which label."""

    project_ids: tuple[int, ...] = ()
    assignee: int | Literal["none"] | None = None
    label_id: int | None = None

    def binding(self) -> dict[str, Any]:
        """The filters as a cursor is bound to them (the same projects in any order are the
        same)."""
        return {
            "project_id": sorted(set(self.project_ids)),
            "assignee": self.assignee,
            "label_id": self.label_id,
        }


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


def _filter_conditions(
    deleted: bool,
    statuses: int,
    priorities: int,
    due_before: bool,
    due_after: bool,
    q: bool,
) -> list[ColumnElement[bool]]:
    """The view and the filters of a listing, on `tasks` (the bind parameters are those
    `_list_params` gives)."""
    conditions: list[ColumnElement[bool]] = [
        Task.deleted_at.is_not(None) if deleted else Task.deleted_at.is_(None)
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
    return conditions


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
        *_filter_conditions(deleted, statuses, priorities, due_before, due_after, q),
        caller_is_current(),
    ]
    piece = _segment_condition(field, descending, segment)
    if piece is not None:
        conditions.append(piece)
    statement = _ordered(select(*TASK_COLUMNS).where(*conditions), field, descending)
    return Statement(statement.limit(bindparam("limit", type_=Integer)))


def _order(key: Any, task_id: Any, field: str, descending: bool) -> tuple[Any, Any]:
    """The ORDER BY of a walk on `(key, task_id)`: ties on id, in the same direction."""
    if field == "due_at":
        # Tasks without a due date come last in both directions.
        ordered = key.desc().nulls_last() if descending else key.asc().nulls_last()
        return ordered, task_id.desc() if descending else task_id.asc()
    if descending:
        return key.desc(), task_id.desc()
    return key.asc(), task_id.asc()


def _ordered(statement: Select[Any], field: str, descending: bool) -> Select[Any]:
    return statement.order_by(*_order(_SORT_COLUMNS[field], Task.id, field, descending))


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


# --- v2: the tasks of the caller's projects --------------------------------------------------

AssigneeFilter = Literal["", "user", "me", "none"]
"""The assignee filter's shape: none, tasks assigned to `assignee_id` (another user, or the
caller), tasks without any."""

_TASK_READER = least_role(Permission.TASK_READ)
_LABEL_READER = least_role(Permission.LABEL_READ)


def _callers_projects(member: Any, project: Any, projects: int) -> list[ColumnElement[bool]]:
    """The caller's (bind parameter `user_id`) memberships of live projects that let them read
    tasks, among `project_0` ... when `projects` are named (`member` joined to `project`)."""
    conditions = [
        member.user_id == bindparam("user_id"),
        member.role >= _TASK_READER,
        project.deleted_at.is_(None),
    ]
    if projects:
        project_type = ProjectMember.project_id.type
        conditions.append(
            member.project_id.in_(
                [bindparam(f"project_{n}", type_=project_type) for n in range(projects)]
            )
        )
    return conditions


def _worth_walking(member: Any, assignee: AssigneeFilter, label: bool) -> list[ColumnElement[bool]]:
    """Which of the caller's projects can hold a match, so that the others are not walked (a
    walk that finds nothing reads all of its project's tasks): a label's own project; the
    projects the assignee is a member of (assignees are members of the task's project: a
    removed member's assignments go, spec api-v2 sections 4 and 5)."""
    conditions: list[ColumnElement[bool]] = []
    if label:
        labels_project = (
            select(Label.project_id)
            .where(Label.id == bindparam("label_id", type_=Label.id.type))
            .scalar_subquery()
        )
        conditions.append(member.project_id == labels_project)
    if assignee == "user":  # the caller is a member of every project walked already
        assignees = aliased(ProjectMember, name="assignees_membership")
        conditions.append(
            exists().where(
                assignees.project_id == member.project_id,
                assignees.user_id == bindparam("assignee_id", type_=ProjectMember.user_id.type),
            )
        )
    return conditions


def _guards(projects: int, label: bool) -> list[ColumnElement[bool]]:
    """What makes a v2 list query a 422 rather than a page: a named project the caller may not
    see (`project_count` of them must be), a label the caller may not see. Each is one
    uncorrelated subquery, evaluated once per statement; when one fails the statement lists
    nothing, and `team_diagnosis` tells why."""
    guards: list[ColumnElement[bool]] = []
    if projects:
        seen = (
            select(func.count())
            .select_from(ProjectMember)
            .join(Project, Project.id == ProjectMember.project_id)
            .where(*_callers_projects(ProjectMember, Project, projects))
            .correlate(None)
            .scalar_subquery()
        )
        guards.append(seen == bindparam("project_count", type_=Integer))
    if label:
        guards.append(
            exists()
            .where(
                Label.id == bindparam("label_id", type_=Label.id.type),
                caller_may(Label.project_id, _LABEL_READER),
            )
            .correlate(None)
        )
    return guards


def _checked_per_row(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """EXISTS a row of the subquery on `conditions`, checked for each task the walk reaches.

    `OFFSET 0` keeps PostgreSQL from turning the EXISTS into a join (or a hashed subplan):
    joined, it would read every task of the project with the label (or every task of the
    project) and sort them, a cost that grows with the project; checked per row by primary
    key, a page reads only the rows its walk reaches, however deep it is.
    """
    return exists(select(literal_column("1")).where(*conditions).offset(literal_column("0")))


def _team_conditions(assignee: AssigneeFilter, label: bool) -> list[ColumnElement[bool]]:
    """The assignee and label filters on a task (`assignee_id`, `label_id`): lookups by the
    primary keys of task_assignees and task_labels, inside the walk."""
    conditions: list[ColumnElement[bool]] = []
    if assignee in ("user", "me"):
        conditions.append(
            _checked_per_row(
                TaskAssignee.task_id == Task.id,
                TaskAssignee.user_id == bindparam("assignee_id", type_=TaskAssignee.user_id.type),
            )
        )
    elif assignee == "none":
        conditions.append(~_checked_per_row(TaskAssignee.task_id == Task.id))
    if label:
        conditions.append(
            _checked_per_row(
                TaskLabel.task_id == Task.id,
                TaskLabel.label_id == bindparam("label_id", type_=TaskLabel.label_id.type),
            )
        )
    return conditions


@lru_cache(maxsize=_LIST_SHAPES)
def _team_statement(
    dialect: str,
    field: str,
    descending: bool,
    deleted: bool,
    statuses: int,
    priorities: int,
    due_before: bool,
    due_after: bool,
    q: bool,
    projects: int,
    assignee: AssigneeFilter,
    label: bool,
    segment: Segment,
) -> Statement:
    """The SELECT of one shape of v2 list query: v1's shape, and how many projects are named,
    the assignee filter and whether a label is; on PostgreSQL, a walk per membership.

    PostgreSQL: `FROM project_members m JOIN projects p CROSS JOIN LATERAL (the first `limit`
    task ids and keys of m's project, in the walk's order, on its walk index) ORDER BY key, id
    LIMIT limit`, then the page's rows by primary key. Each lateral walk is v1's one-project
    walk (the same filters and pieces), reads only the index (every column it needs is in
    it, but for `q`'s) and stops after a page, so a page reads about projects x page size
    index entries and `limit` rows, however deep it is, and sorts at most projects x `limit`
    keys. A plain join of tasks to the memberships would sort every visible task; DISTINCT or
    an IN would lose the index order. The projects that cannot hold a match are not walked
    (`_worth_walking`); tests/db/test_query_plans.py holds the plans to this.

    Elsewhere (SQLite, which has no LATERAL): `project_id IN (the caller's projects)`, in the
    walk's order.
    """
    limit = bindparam("limit", type_=Integer)
    conditions = [
        *_filter_conditions(deleted, statuses, priorities, due_before, due_after, q),
        *_team_conditions(assignee, label),
    ]
    piece = _segment_condition(field, descending, segment)
    if piece is not None:
        conditions.append(piece)
    checks = [*_guards(projects, label), caller_is_current()]
    key = _SORT_COLUMNS[field]
    if dialect != "postgresql":
        visible = (
            select(ProjectMember.project_id)
            .join(Project, Project.id == ProjectMember.project_id)
            .where(
                *_callers_projects(ProjectMember, Project, projects),
                *_worth_walking(ProjectMember, assignee, label),
            )
        )
        statement = select(*DETAIL_COLUMNS).where(
            Task.project_id.in_(visible), *conditions, *checks
        )
        return Statement(_ordered(statement, field, descending).limit(limit))
    member = aliased(ProjectMember, name="m")
    project = aliased(Project, name="p")
    walk = (
        select(Task.id.label("id"), key.label("key"))
        .where(Task.project_id == member.project_id, *conditions)
        .order_by(*_order(key, Task.id, field, descending))
        .limit(limit)
        .lateral("walk")
    )
    page = (
        select(walk.c.id, walk.c.key)
        .select_from(member)
        .join(project, project.id == member.project_id)
        .join(walk, true())
        .where(
            *_callers_projects(member, project, projects),
            *_worth_walking(member, assignee, label),
            *checks,
        )
        .order_by(*_order(walk.c.key, walk.c.id, field, descending))
        .limit(limit)
        .subquery("page")
    )
    statement = (
        select(*DETAIL_COLUMNS)
        .join_from(Task, page, Task.id == page.c.id)
        .order_by(*_order(page.c.key, page.c.id, field, descending))
    )
    return Statement(statement)


def _team_params(
    claims: AccessClaims,
    filters: TaskFilters,
    team: TeamFilters,
    sort: TaskSort,
    position: Position | None,
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """(the values of a v2 list query's statements, its shape but for the piece)."""
    params, statuses, priorities = _list_params(claims, filters, sort, position)
    projects = tuple(dict.fromkeys(team.project_ids))
    for n, project_id in enumerate(projects):
        params[f"project_{n}"] = project_id
    if projects:
        params["project_count"] = len(projects)
    assignee: AssigneeFilter = ""
    if team.assignee == "none":
        assignee = "none"
    elif team.assignee is not None:
        assignee = "me" if team.assignee == claims.user_id else "user"
        params["assignee_id"] = team.assignee
    if team.label_id is not None:
        params["label_id"] = team.label_id
    shape = (
        sort.field,
        sort.descending,
        filters.deleted,
        len(statuses),
        len(priorities),
        filters.due_before is not None,
        filters.due_after is not None,
        bool(filters.q),
        len(projects),
        assignee,
        team.label_id is not None,
    )
    return params, shape


async def list_team_rows(
    db: Db,
    claims: AccessClaims,
    filters: TaskFilters,
    team: TeamFilters,
    sort: TaskSort,
    position: Position | None,
    count: int,
) -> list[TaskDetail]:
    """Up to `count` tasks of the caller's live projects (of those `team` names) matching
    `filters` and `team`, in `sort` order, after `position`; nothing when the caller is not
    current, or names a project or label they may not see (`team_diagnosis` tells which)."""
    params, shape = _team_params(claims, filters, team, sort, position)
    dialect = db.dialect.name
    rows: list[Row] = []
    async with db.transaction() if filters.q else nullcontext():
        if filters.q and dialect == "postgresql":
            # As in `list_rows`: the plan depends on how common the text is.
            await db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        for segment, piece_priority in _segments(sort, filters, position):
            params["limit"] = count - len(rows)
            params["piece_priority"] = piece_priority
            rows.extend(await db.rows(_team_statement(dialect, *shape, segment), params))
            if len(rows) >= count:
                break
    return [detail(row) for row in rows]


@lru_cache(maxsize=64)
def _team_diagnosis_statement(projects: int, label: bool) -> Statement:
    guards = _guards(projects, label)
    project_guard = guards.pop(0) if projects else true()
    label_guard = guards.pop(0) if label else true()
    return Statement(
        select(
            caller_is_current().label("current"),
            project_guard.label("projects_seen"),
            label_guard.label("label_seen"),
        )
    )


async def team_diagnosis(
    db: Db, claims: AccessClaims, team: TeamFilters
) -> tuple[bool, bool, bool]:
    """Why a v2 list query listed nothing: (is the caller current, may they see every project
    named, may they see the label named); an empty page when all three hold."""
    projects = tuple(dict.fromkeys(team.project_ids))
    params = caller_params(claims)
    for n, project_id in enumerate(projects):
        params[f"project_{n}"] = project_id
    if projects:
        params["project_count"] = len(projects)
    if team.label_id is not None:
        params["label_id"] = team.label_id
    found = await db.first(
        _team_diagnosis_statement(len(projects), team.label_id is not None), params
    )
    assert found is not None
    return bool(found[0]), bool(found[1]), bool(found[2])
