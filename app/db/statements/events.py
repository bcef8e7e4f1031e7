"""The event statements: appending an event with its change, and reading the log back (a
task's or a project's activity, the change feed).

**Writing.** Every write of a project, member, invitation, task, label or comment appends its
event in the same transaction (spec api-v2 section 7). Most writes do it with `append`, one
more statement in their transaction, with the `changes` the service computed. The hot task
writes do it in the write's own statement on PostgreSQL (`logged_insert`, `logged_update`:
data-modifying CTEs, so the event costs no round trip); on SQLite, where a statement cannot
write two tables, the same writes run in a transaction with `append` (one writer at a time:
nothing can come between the statements).

**The feed's order** (docs/decisions/0030). Events are walked by `(xid, id)`. On PostgreSQL
`xid` is the writing transaction's id; a read first takes a *horizon*, the position before
the oldest transaction still running (`pg_snapshot_xmin`), then reads only up to it. Every
transaction below the horizon has ended, and any that commits later has a higher xid, so an
event can never appear behind a cursor already issued. On SQLite `xid` is 0 and the horizon
is the newest id: one writer at a time commits ids in order.

`changes` is bound and read as JSON text on both databases, so the asyncpg path and the Core
path (which would serialise a JSON type's value itself) pass the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime
from functools import cache
from typing import Any, Final, Literal, NamedTuple, get_args

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union,
    union_all,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from app.core.roles import Permission, least_role
from app.db.access import Db, Row, Statement
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may
from app.models.event import Event, EventRetention
from app.models.project import ProjectMember
from app.models.task import Task
from app.models.user import User

# Every entity and action the log knows (spec api-v2 section 7); the API's schema names them
# by these types.
Entity = Literal["project", "member", "invitation", "task", "label", "comment"]
Action = Literal[
    "created",
    "updated",
    "moved",
    "deleted",
    "restored",
    "purged",
    "joined",
    "left",
    "removed",
    "role_changed",
]
ENTITIES: Final = get_args(Entity)
ACTIONS: Final = get_args(Action)

# The columns whose changes an event records, per entity: the one list, so nothing else (no
# secret, no bookkeeping column) can reach `changes`. Tasks also record `assignee_ids` and
# `label_ids`, which are not columns (their services add them).
AUDITED: Final[Mapping[str, tuple[str, ...]]] = {
    "project": ("name", "description", "deleted_at"),
    "member": ("role",),
    "invitation": ("email", "role", "expires_at"),
    "task": (
        "project_id",
        "title",
        "description",
        "status",
        "priority",
        "due_at",
        "completed_at",
        "deleted_at",
        "remind_at",
    ),
    "label": ("name", "color"),
    "comment": ("body",),
}

# The highest id a position can have: an inclusive horizon (xid, MAX_POSITION_ID) covers
# every event of that xid.
MAX_POSITION_ID: Final = 2**63 - 1


class Position(NamedTuple):
    """A place in the log: (xid, id). A cursor is the last position a reader has covered."""

    xid: int
    id: int


START: Final = Position(-1, 0)


class EventRow(NamedTuple):
    """An event as the statements read it (`changes` still JSON text)."""

    id: int
    xid: int
    at: datetime
    actor_id: int | None
    actor_name: str | None
    project_id: int
    from_project_id: int | None
    entity: str
    entity_id: int
    task_id: int | None
    action: str
    changes: str


def json_value(value: Any) -> Any:
    """A column's value as `changes` holds it (timestamps as ISO text)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def changes_json(changes: Mapping[str, tuple[Any, Any] | list[Any]]) -> str:
    """`changes` ({field: [old, new]}) as the JSON text the statements bind."""
    return json.dumps(
        {field: [json_value(old), json_value(new)] for field, (old, new) in changes.items()},
        separators=(",", ":"),
    )


def column_changes(
    entity: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """{column: (old, new)} for each audited column of `entity` that differs (before None:
    a creation, every audited column that is set)."""
    changed: dict[str, tuple[Any, Any]] = {}
    for column in AUDITED[entity]:
        if column not in after:
            continue
        old = None if before is None else before.get(column)
        if old != after[column]:
            changed[column] = (old, after[column])
    return changed


# --- JSON text on both databases ---------------------------------------------------------------


class _JsonText(FunctionElement[Any]):
    """A JSON text bind parameter stored into `events.changes` (PostgreSQL: `CAST(... AS
    JSONB)`; SQLite keeps the text)."""

    inherit_cache = True
    type = Event.changes.type


@compiles(_JsonText, "postgresql")
def _json_text_postgresql(element: _JsonText, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS JSONB)"


@compiles(_JsonText)
def _json_text(element: _JsonText, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


def _changes_parameter(name: str = "event_changes") -> Any:
    return _JsonText(bindparam(name, type_=Text()))


# --- appending ----------------------------------------------------------------------------------

# The bind parameters of an event, in `events`' column order (xid and id come by default).
_EVENT_FIELDS = (
    "at",
    "actor_id",
    "project_id",
    "from_project_id",
    "entity",
    "entity_id",
    "task_id",
    "action",
    "changes",
)


def _event_values() -> dict[str, Any]:
    values: dict[str, Any] = {
        name: bindparam(f"event_{name}", type_=Event.__table__.c[name].type)
        for name in _EVENT_FIELDS
        if name != "changes"
    }
    values["changes"] = _changes_parameter()
    return values


@cache
def append_statement() -> Statement:
    return Statement(insert(Event).values(_event_values()).returning(Event.id))


def event_params(
    *,
    at: datetime,
    actor_id: int | None,
    project_id: int,
    entity: str,
    entity_id: int,
    action: str,
    changes: Mapping[str, tuple[Any, Any] | list[Any]] | None = None,
    from_project_id: int | None = None,
    task_id: int | None = None,
) -> dict[str, Any]:
    """The bind parameters of one event (`append`, or a logged write's)."""
    assert entity in ENTITIES, entity
    assert action in ACTIONS, action
    return {
        "event_at": at,
        "event_actor_id": actor_id,
        "event_project_id": project_id,
        "event_from_project_id": from_project_id,
        "event_entity": entity,
        "event_entity_id": entity_id,
        "event_task_id": task_id,
        "event_action": action,
        "event_changes": changes_json(changes or {}),
    }


async def append(db: Db, **event: Any) -> None:
    """Append one event (`event_params`' arguments) in the current transaction: call it
    inside `Db.transaction()` or a transaction-mode `Db`, after the write it records."""
    await db.rows(append_statement(), event_params(**event))


# --- a write and its event in one statement (PostgreSQL) ---------------------------------------


def logged(write: Any, event: Mapping[str, Any], *, columns: int, when: Any = None) -> Any:
    """`write` (an INSERT or UPDATE ... RETURNING) with its event appended by the same
    statement: `WITH written AS (write), logged AS (INSERT INTO events SELECT <event> FROM
    written [WHERE when]) SELECT <the first `columns` columns> FROM written`. `event` maps
    each event column to a bind parameter (`event_binds()`) or a function of `written`'s
    columns; `when` too (no row, no event)."""
    written = write.cte("written")
    values = {name: _resolve(event[name], written) for name in _EVENT_FIELDS}
    row = select(*(values[name] for name in _EVENT_FIELDS)).select_from(written)
    if when is not None:
        row = row.where(_resolve(when, written))
    appended = insert(Event).from_select(list(_EVENT_FIELDS), row).cte("logged")
    return select(*list(written.c)[:columns]).add_cte(appended)


def sql_changes(pairs: Mapping[str, tuple[Any, Any]], *, extra: Any) -> Any:
    """`changes` computed by the statement (PostgreSQL): `{column: [old, new]}` for each of
    `pairs` whose values differ, merged with `extra` (JSON the service computed)."""
    empty: ColumnElement[Any] = literal_column("'{}'::jsonb")
    merged = extra
    for name, (old, new) in pairs.items():
        # The name is one of AUDITED's, written into the SQL (a parameter's type would be
        # unknown to jsonb_build_object).
        entry = func.jsonb_build_object(
            literal_column(f"'{name}'"), func.jsonb_build_array(old, new)
        )
        merged = case((old.is_distinct_from(new), entry), else_=empty).op("||")(merged)
    return merged


def _resolve(value: Any, written: Any) -> Any:
    return value(written.c) if callable(value) else value


def event_binds() -> dict[str, Any]:
    """Each event column's bind parameter (`event_params`' names), for `logged`'s `event`."""
    return _event_values()


# --- reading: the caller's view ------------------------------------------------------------------


def _event_columns() -> tuple[Any, ...]:
    return (
        Event.id,
        Event.xid,
        Event.at,
        Event.actor_id,
        User.full_name,
        Event.project_id,
        Event.from_project_id,
        Event.entity,
        Event.entity_id,
        Event.task_id,
        Event.action,
        cast(Event.changes, Text),
    )


def _events() -> Any:
    return select(*_event_columns()).outerjoin(User, User.id == Event.actor_id)


def event_select() -> Any:
    """A SELECT of `EventRow`'s columns (the actor's name joined), to add conditions to."""
    return _events()


def _row(row: Row) -> EventRow:
    return EventRow._make(row)


def _walk_back(
    column: Any, value: Any, dialect: str
) -> tuple[ColumnElement[bool], tuple[Any, ...]]:
    """The condition `column` is `value`, and the order (newest first) of a walk back on the
    (column, id) index.

    PostgreSQL: a range, `column BETWEEN value AND value`, ordered by (column, id). With
    `column = value` it drops the constant `column` from the order, and then walking the
    primary key back while filtering on `column` gives the order too. Its statistics make
    that look cheap for a common value (a project or task holding a few percent of the log),
    but the walk reads every newer event until it has a page: the whole log after a project
    or task quiet since long (tests/db/test_query_plans.py, the Archive). Ordered by (column,
    id), only the (column, id) index gives the order; the scan still starts at the cursor.
    SQLite keeps `=`: it picks the index for an equality, and seeks to the cursor only after
    one."""
    if dialect == "postgresql":
        return column.between(value, value), (column.desc(), Event.id.desc())
    return column == value, (Event.id.desc(),)


@cache
def _task_activity_statement(before: bool, dialect: str) -> Statement:
    """A page of a task's events (its comments' too), newest first, if the caller may read
    the task's project (live task or in the trash)."""
    visible = (
        select(Task.id)
        .where(
            Task.id == bindparam("task_id"),
            caller_may(Task.project_id, least_role(Permission.TASK_READ)),
        )
        .exists()
    )
    walk, newest_first = _walk_back(Event.task_id, bindparam("task_id"), dialect)
    conditions = [walk, visible, caller_is_current()]
    if before:
        conditions.append(Event.id < bindparam("before_id"))
    return Statement(_events().where(*conditions).order_by(*newest_first).limit(bindparam("limit")))


@cache
def _project_activity_statement(before: bool, dialect: str) -> Statement:
    """A page of a project's events (a task moved out included), newest first, if the
    caller may read the project."""
    project_id = bindparam("project_id", type_=BigInteger())
    visible = caller_may(project_id, least_role(Permission.PROJECT_READ))
    conditions: list[ColumnElement[bool]] = [visible, caller_is_current()]
    if before:
        conditions.append(Event.id < bindparam("before_id"))
    walks = [
        _walk_back(Event.project_id, project_id, dialect),
        _walk_back(Event.from_project_id, project_id, dialect),
    ]
    ordered = [
        _events()
        .where(walk, *conditions)
        .order_by(*newest_first)
        .limit(bindparam("limit"))
        .subquery()
        for walk, newest_first in walks
    ]
    both = union(*(select(*page.c) for page in ordered)).subquery()
    return Statement(select(*both.c).order_by(both.c.id.desc()).limit(bindparam("limit")))


async def task_activity(
    db: Db, params: dict[str, Any], task_id: int, *, before_id: int | None, limit: int
) -> list[EventRow]:
    rows = await db.rows(
        _task_activity_statement(before_id is not None, db.dialect.name),
        {**params, "task_id": task_id, "before_id": before_id, "limit": limit},
    )
    return [_row(row) for row in rows]


async def project_activity(
    db: Db, params: dict[str, Any], project_id: int, *, before_id: int | None, limit: int
) -> list[EventRow]:
    rows = await db.rows(
        _project_activity_statement(before_id is not None, db.dialect.name),
        {**params, "project_id": project_id, "before_id": before_id, "limit": limit},
    )
    return [_row(row) for row in rows]


# --- reading: by id (no caller) ------------------------------------------------------------------


@cache
def _by_ids_statement() -> Statement:
    return Statement(
        _events()
        .where(Event.id.in_(bindparam("ids", expanding=True)))
        .order_by(Event.xid, Event.id)
    )


async def events_by_ids(db: Db, ids: Collection[int]) -> list[EventRow]:
    """The events of `ids` still kept (retention removes old ones), in log order, whoever
    may see them (the jobs' reads: a webhook's retry of an event)."""
    if not ids:
        return []
    # An expanding IN, which SQLAlchemy renders per call: through Core, in a transaction.
    async with db.transaction():
        rows = await db.rows(_by_ids_statement(), {"ids": sorted(set(ids))})
    return [_row(row) for row in rows]


# --- reading: the change feed ---------------------------------------------------------------------


class _Horizon(FunctionElement[int]):
    """PostgreSQL: an xid below which every transaction of this database has ended; SQLite:
    unused (its horizon is the newest id)."""

    inherit_cache = True
    type = BigInteger()


# The least of: the next xid as of the statement's snapshot (every transaction with a lower
# one had begun by then), and the xid of each transaction of this database still running
# when pg_stat_activity is read, after the snapshot (so each transaction below the result
# had ended by then, committed or not, and the next statement's snapshot sees it). Only this
# database's transactions can write its events: another database's long transaction must
# not hold the feed back (snapshots' own xmin counts the whole cluster). pg_stat_activity
# gives 32-bit xids; each is placed in the snapshot's epoch by its signed distance from it.
_POSTGRESQL_HORIZON = """(SELECT LEAST(s.next_xid, min(
    s.next_xid - 2147483648 + (a.backend_xid::text::bigint - s.next_xid % 4294967296
      + 6442450944) % 4294967296))
  FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid) AS s
  LEFT JOIN pg_stat_activity AS a
    ON a.datname = current_database() AND a.backend_xid IS NOT NULL
  GROUP BY s.next_xid)"""


@compiles(_Horizon, "postgresql")
def _horizon_postgresql(element: _Horizon, compiler: Any, **kw: Any) -> str:  # noqa: ARG001
    return _POSTGRESQL_HORIZON


@compiles(_Horizon)
def _horizon_other(element: _Horizon, compiler: Any, **kw: Any) -> str:  # noqa: ARG001
    return "1"


@cache
def _horizon_statement() -> Statement:
    """The last position a read may cover now (inclusive): PostgreSQL, every event of a
    transaction older than the oldest running one; SQLite, every event so far, and at least
    what retention removed through (when it removed every event, the position it hands out
    must not be before its own mark: a 410 for a cursor just given; ids are never reused,
    decision 0035, so the next event comes after it)."""
    ids = union_all(
        select(func.max(Event.id).label("id")),
        select(EventRetention.removed_through_id.label("id")).where(EventRetention.id == 1),
    ).subquery()
    newest = select(func.coalesce(func.max(ids.c.id), 0)).scalar_subquery()
    return Statement(select((_Horizon() - 1).label("xid"), newest.label("id")))


async def horizon(db: Db) -> Position:
    found = await db.first(_horizon_statement(), {})
    assert found is not None
    xid, newest = int(found[0]), int(found[1])
    if db.dialect.name == "postgresql":
        return Position(xid, MAX_POSITION_ID)
    return Position(0, newest)


@cache
def _newest_xid_statement() -> Statement:
    next_xid: ColumnElement[int] = literal_column(
        "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
    )
    return Statement(select(func.coalesce(func.max(Event.xid), -1), next_xid))


async def newest_xid(db: Db) -> int | None:
    """PostgreSQL: the highest xid of the events committed now (the log index's last entry;
    -1 when the log is empty), or None when it is not below the next xid to be handed out:
    a log restored from another cluster, whose events no transaction of this one holds back
    (docs/deploying.md, "Backups and restores"). SQLite: None (one writer at a time)."""
    if db.dialect.name != "postgresql":
        return None
    found = await db.first(_newest_xid_statement(), {})
    assert found is not None
    newest, next_xid = int(found[0]), int(found[1])
    return newest if newest < next_xid else None


def _in_range() -> list[ColumnElement[bool]]:
    position = tuple_(Event.xid, Event.id)
    return [
        position > tuple_(bindparam("after_xid"), bindparam("after_id")),
        position <= tuple_(bindparam("upto_xid"), bindparam("upto_id")),
    ]


def _member_walk(column: Any) -> Any:
    """The caller's projects' events by `column` (project_id or from_project_id), one short
    walk per membership (PostgreSQL: LATERAL on the (column, xid, id) index)."""
    walk = (
        select(Event.id, Event.xid)
        .where(column == ProjectMember.project_id, *_in_range())
        .order_by(Event.xid, Event.id)
        .limit(bindparam("limit"))
        .lateral()
    )
    return (
        select(walk.c.id, walk.c.xid)
        .select_from(ProjectMember)
        .join(walk, true())
        .where(ProjectMember.user_id == bindparam("user_id"))
    )


# The caller's own member events: `entity` written into the SQL, not bound, so that a plan
# made without the parameters' values (a prepared statement's generic plan) can still use the
# partial index ix_events_member_feed (WHERE entity = 'member'); with a parameter it read the
# whole log.
_MEMBER_EVENT: Final = Event.entity == literal_column("'member'")


@cache
def _feed_statement(dialect: str) -> Statement:
    """A page of the caller's feed within (after, upto], in (xid, id) order: the events of
    the projects they are a member of now, and their own membership events."""
    own = (
        select(Event.id, Event.xid)
        .where(_MEMBER_EVENT, Event.entity_id == bindparam("user_id"), *_in_range())
        .order_by(Event.xid, Event.id)
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        walks = union(
            _member_walk(Event.project_id), _member_walk(Event.from_project_id), own
        ).subquery()
    else:
        projects = select(ProjectMember.project_id).where(
            ProjectMember.user_id == bindparam("user_id")
        )
        walks = (
            select(Event.id, Event.xid)
            .where(
                or_(
                    Event.project_id.in_(projects),
                    Event.from_project_id.in_(projects),
                    and_(_MEMBER_EVENT, Event.entity_id == bindparam("user_id")),
                ),
                *_in_range(),
            )
            .order_by(Event.xid, Event.id)
            .limit(bindparam("limit"))
            .subquery()
        )
    page = select(walks.c.id).order_by(walks.c.xid, walks.c.id).limit(bindparam("limit"))
    return Statement(
        _events()
        .where(Event.id.in_(page.scalar_subquery()), caller_is_current())
        .order_by(Event.xid, Event.id)
    )


# How many events of the log a feed read looks at in order, per event it may return, before it
# walks the caller's projects one by one instead (`feed`).
SCAN_BUDGET_PER_ITEM: Final = 4


@cache
def _scan_statement() -> Statement:
    """The caller's first `limit` events among the next `budget` events of the whole log in
    (after, upto], in feed order, each row also saying how many events were looked at and
    the last one's position (a row of NULL events when none is the caller's).

    One walk of the log's (xid, id) index, its visibility checked on the index's own
    columns: for a member of the projects where most things happen, a page reads about a
    page of the log, whatever the number of projects (the walks per membership read a page
    from each)."""
    scan = (
        select(
            Event.id,
            Event.xid,
            Event.project_id,
            Event.from_project_id,
            Event.entity,
            Event.entity_id,
        )
        .where(*_in_range())
        .order_by(Event.xid, Event.id)
        .limit(bindparam("budget"))
        .cte("scan")
    )
    projects = select(ProjectMember.project_id).where(ProjectMember.user_id == bindparam("user_id"))
    mine = (
        select(scan.c.id)
        .where(
            or_(
                scan.c.project_id.in_(projects),
                scan.c.from_project_id.in_(projects),
                and_(
                    scan.c.entity == literal_column("'member'"),
                    scan.c.entity_id == bindparam("user_id"),
                ),
            )
        )
        .order_by(scan.c.xid, scan.c.id)
        .limit(bindparam("limit"))
    )
    last = select(scan.c.xid, scan.c.id).order_by(scan.c.xid.desc(), scan.c.id.desc()).limit(1)
    summary = select(
        select(func.count()).select_from(scan).scalar_subquery().label("scanned"),
        last.with_only_columns(scan.c.xid).scalar_subquery().label("last_xid"),
        last.with_only_columns(scan.c.id).scalar_subquery().label("last_id"),
    ).subquery("summary")
    page = _events().where(Event.id.in_(mine), caller_is_current()).subquery("page")
    return Statement(
        select(summary.c.scanned, *page.c)
        .select_from(summary.outerjoin(page, true()))
        .order_by(page.c.xid, page.c.id)
    )


async def feed(
    db: Db, params: dict[str, Any], *, after: Position, upto: Position, limit: int
) -> list[EventRow]:
    """The caller's first `limit` events in (after, upto], in feed order.

    First one scan of the log from the cursor (`_scan_statement`), which answers whenever the
    caller's events are not rare in it; when a scan of `SCAN_BUDGET_PER_ITEM` x `limit` events
    found fewer than `limit` of theirs and did not reach `upto`, the walks of the caller's
    projects (`_feed_statement`) answer instead, each bounded by the page."""
    values = {
        **params,
        "after_xid": after.xid,
        "after_id": after.id,
        "upto_xid": upto.xid,
        "upto_id": upto.id,
        "limit": limit,
    }
    budget = SCAN_BUDGET_PER_ITEM * limit
    scanned = await db.rows(_scan_statement(), values | {"budget": budget})
    rows = [_row(row[1:]) for row in scanned if row[1] is not None]
    if len(rows) >= limit or int(scanned[0][0]) < budget:
        return rows
    walked = await db.rows(_feed_statement(db.dialect.name), values)
    return [_row(row) for row in walked]


# --- retention -----------------------------------------------------------------------------------


@cache
def _removed_through_statement() -> Statement:
    return Statement(
        select(EventRetention.removed_through_xid, EventRetention.removed_through_id).where(
            EventRetention.id == 1
        )
    )


async def removed_through(db: Db) -> Position | None:
    """How far retention has removed events (None: never)."""
    found = await db.first(_removed_through_statement(), {})
    return Position(int(found[0]), int(found[1])) if found is not None else None


@cache
def _newest_expired_statement() -> Statement:
    """The newest position among the events older than `cutoff` (no row: none)."""
    old = select(Event.xid, Event.id).where(Event.at < bindparam("cutoff", type_=Event.at.type))
    return Statement(old.order_by(Event.xid.desc(), Event.id.desc()).limit(1))


@cache
def _remove_through_statement() -> Statement:
    return Statement(
        delete(Event)
        .where(tuple_(Event.xid, Event.id) <= tuple_(bindparam("mark_xid"), bindparam("mark_id")))
        .returning(Event.id)
    )


async def remove_older_than(db: Db, cutoff: datetime, *, not_past: Position | None = None) -> int:
    """Remove the events older than `cutoff`, and every event before them in the log, but
    none past `not_past` (where given), and move the retention mark to the newest removed
    (inside a transaction); how many were removed. Nothing kept lies before the mark, so a
    cursor the feed handed out from what is kept is never taken for one from before the
    removal."""
    newest = await db.first(_newest_expired_statement(), {"cutoff": cutoff})
    if newest is None:
        return 0
    mark = Position(int(newest[0]), int(newest[1]))
    if not_past is not None:
        mark = min(mark, not_past)
        if mark <= START:
            return 0
    removed = await db.rows(_remove_through_statement(), {"mark_xid": mark.xid, "mark_id": mark.id})
    previous = await removed_through(db)
    if previous is None:
        await db.rows(_mark_insert_statement(), {"mark_xid": mark.xid, "mark_id": mark.id})
    elif previous < mark:
        await db.rows(_mark_update_statement(), {"mark_xid": mark.xid, "mark_id": mark.id})
    return len(removed)


@cache
def _mark_insert_statement() -> Statement:
    return Statement(
        insert(EventRetention)
        .values(
            id=1, removed_through_xid=bindparam("mark_xid"), removed_through_id=bindparam("mark_id")
        )
        .returning(EventRetention.id)
    )


@cache
def _mark_update_statement() -> Statement:
    return Statement(
        update(EventRetention)
        .where(EventRetention.id == 1)
        .values(removed_through_xid=bindparam("mark_xid"), removed_through_id=bindparam("mark_id"))
        .returning(EventRetention.id)
    )


__all__ = [
    "ACTIONS",
    "AUDITED",
    "ENTITIES",
    "EventRow",
    "Position",
    "START",
    "append",
    "append_statement",
    "changes_json",
    "column_changes",
    "event_binds",
    "event_params",
    "event_select",
    "events_by_ids",
    "feed",
    "horizon",
    "logged",
    "project_activity",
    "remove_older_than",
    "removed_through",
    "sql_changes",
    "task_activity",
]
