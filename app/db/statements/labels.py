"""The label statements: a project's labels, read and written with the authorization inside.

Every statement names the project of the path and carries the caller's membership of it, at
the least role of the action (`memberships.caller_may`, ranks from `app.core.roles`), and the
check that the caller's token is still current (`callers.caller_is_current`): a label of a
project the caller may not see (or may not change) is never read or written. When a statement
matches nothing, `diagnose` tells the service why (spec api-v2 section 2). The unique index
`uq_labels_project_name` (project, lower(name)) keeps names unique without regard to case,
also between two requests at once; the service turns its refusal into a 409.

Every write appends its event (`events.append`, spec api-v2 section 7) in the write's
transaction, and only when it wrote something: a label's `created`, `updated` (with the name
and colour it had, read locked in the same transaction) and `deleted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
)

from app.core.roles import Permission, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements import events
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may, caller_role
from app.db.statements.tasks import caller_params
from app.db.statements.turns import take_project_turn, turns_of
from app.models.label import Label, TaskLabel
from app.models.task import Task


class LabelRecord(NamedTuple):
    id: int
    project_id: int
    name: str
    color: str


LABEL_COLUMNS = (Label.id, Label.project_id, Label.name, Label.color)
# The walk's order: by name without regard to case, then id. The key is the database's own
# lower(name), so that the cursor compares as the ORDER BY does.
_SORT_NAME = func.lower(Label.name)


def _project() -> Any:
    # Not `project_id`: SQLAlchemy keeps the names of columns for the values of a write.
    return bindparam("in_project", type_=BigInteger)


def _this_label() -> list[ColumnElement[bool]]:
    """The label of the path, under the project of the path (another project's is a miss)."""
    return [Label.id == bindparam("label_id", type_=BigInteger), Label.project_id == _project()]


def _allowed(permission: Permission) -> list[ColumnElement[bool]]:
    return [caller_may(_project(), least_role(permission)), caller_is_current()]


@cache
def _list_statement(after: bool) -> Statement:
    conditions = [Label.project_id == _project(), *_allowed(Permission.LABEL_READ)]
    if after:
        position = tuple_(
            bindparam("after_name", type_=String()), bindparam("after_id", type_=BigInteger)
        )
        conditions.append(tuple_(_SORT_NAME, Label.id) > position)
    statement = (
        select(*LABEL_COLUMNS, _SORT_NAME.label("sort_name"))
        .where(*conditions)
        .order_by(_SORT_NAME, Label.id)
        .limit(bindparam("limit", type_=Integer))
    )
    return Statement(statement)


@cache
def _select_statement() -> Statement:
    return Statement(select(*LABEL_COLUMNS).where(*_this_label(), *_allowed(Permission.LABEL_READ)))


@cache
def _insert_statement() -> Statement:
    row = select(
        _project(),
        bindparam("new_name", type_=Label.name.type),
        bindparam("new_color", type_=Label.color.type),
        bindparam("now", type_=Label.created_at.type),
    ).where(*_allowed(Permission.LABEL_CREATE))
    inserted = insert(Label).from_select(["project_id", "name", "color", "created_at"], row)
    return Statement(inserted.returning(*LABEL_COLUMNS))


@cache
def _locked_statement() -> Statement:
    """The label to update as it is now, locked until the update (`FOR NO KEY UPDATE`: a
    task write that links the label still may), if the caller may update it."""
    return Statement(
        select(*LABEL_COLUMNS)
        .where(*_this_label(), *_allowed(Permission.LABEL_UPDATE))
        .with_for_update(key_share=True)
    )


@cache
def _update_statement(fields: tuple[str, ...]) -> Statement:
    """UPDATE of the fields sent; with none, the statement still runs (and authorizes) but
    sets the name to itself."""
    values: dict[str, Any] = {
        field: bindparam(f"new_{field}", type_=Label.__table__.c[field].type) for field in fields
    } or {"name": Label.name}
    statement = (
        update(Label)
        .where(*_this_label(), *_allowed(Permission.LABEL_UPDATE))
        .values(values)
        .returning(*LABEL_COLUMNS)
    )
    return Statement(statement)


def _carrying() -> Any:
    """The ids of the tasks that carry the label of the path."""
    return select(TaskLabel.task_id).where(
        TaskLabel.label_id == bindparam("label_id", type_=BigInteger)
    )


def _carrying_tasks_to_delete() -> list[ColumnElement[bool]]:
    """The tasks that carry the label, if the caller may delete it."""
    return [
        Task.id.in_(_carrying()),
        exists().where(*_this_label()),
        *_allowed(Permission.LABEL_DELETE),
    ]


@cache
def _tasks_turns_statement() -> Statement:
    """The turns of the tasks that carry the label (`turns_of`): taken before the deletion
    locks or writes anything, so a write of one of them under way is waited for before the
    deletion takes its xid, and comes before it in the feed."""
    return turns_of(select(Task.id).where(*_carrying_tasks_to_delete()))


@cache
def _lock_tasks_statement() -> Statement:
    """The tasks that carry the label, locked in id order (so that two deletions sharing
    tasks, or a deletion and a task write, never wait on each other in a circle), if the
    caller may delete it."""
    return Statement(
        select(Task.id)
        .where(*_carrying_tasks_to_delete())
        .order_by(Task.id)
        .with_for_update(key_share=True)
    )


@cache
def _lock_statement() -> Statement:
    """The label to delete, locked: from here on no task can be given it (the foreign key
    of a new link waits for this transaction, then fails), so the next statement sees every
    task that carries it."""
    return Statement(
        select(*LABEL_COLUMNS)
        .where(*_this_label(), *_allowed(Permission.LABEL_DELETE))
        .with_for_update()
    )


@cache
def _bump_statement() -> Statement:
    """The tasks that carry the label get a new version: losing it is a change to each."""
    return Statement(
        update(Task)
        .where(Task.id.in_(_carrying()))
        .values(version=Task.version + 1, updated_at=bindparam("now", type_=Task.updated_at.type))
        .returning(Task.id)
    )


@cache
def _links_of_statement() -> Statement:
    """The labels the tasks `ids` carry (inside the deletion's transaction: an expanding IN)."""
    return Statement(
        select(TaskLabel.task_id, TaskLabel.label_id).where(
            TaskLabel.task_id.in_(bindparam("ids", expanding=True))
        )
    )


@cache
def _delete_statements() -> tuple[Statement, Statement]:
    label_id = bindparam("label_id", type_=BigInteger)
    # The links first, explicitly (not left to the foreign key's cascade): the order is then
    # the same on every database.
    unlink = delete(TaskLabel).where(TaskLabel.label_id == label_id)
    remove = delete(Label).where(Label.id == label_id)
    return Statement(unlink.returning(TaskLabel.task_id)), Statement(remove.returning(Label.id))


@cache
def _diagnosis_statement(with_label: bool) -> Statement:
    columns: list[Any] = [
        caller_is_current().label("current"),
        caller_role(_project()).label("role"),
    ]
    if with_label:
        columns.append(exists().where(*_this_label()).label("found"))
    return Statement(select(*columns))


def _record(row: Row) -> LabelRecord:
    return LabelRecord(row[0], row[1], row[2], row[3])


async def _append(
    db: Db,
    claims: AccessClaims,
    now: datetime,
    action: str,
    label: LabelRecord,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
) -> None:
    """The label's event by the caller, in the write's transaction."""
    await events.append(
        db,
        at=now,
        actor_id=claims.user_id,
        project_id=label.project_id,
        entity="label",
        entity_id=label.id,
        action=action,
        changes=events.column_changes("label", before, after),
    )


async def list_rows(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    after: tuple[str, int] | None,
    limit: int,
) -> list[tuple[LabelRecord, str]]:
    """Up to `limit` labels of the project after `after` (sort name, id), each with its sort
    name; none when the caller may not see the project or is not current."""
    params = caller_params(claims, in_project=project_id, limit=limit)
    if after is not None:
        params |= {"after_name": after[0], "after_id": after[1]}
    rows = await db.rows(_list_statement(after is not None), params)
    return [(_record(row), row[4]) for row in rows]


async def fetch(db: Db, claims: AccessClaims, project_id: int, label_id: int) -> LabelRecord | None:
    found = await db.first(
        _select_statement(), caller_params(claims, in_project=project_id, label_id=label_id)
    )
    return _record(found) if found is not None else None


async def insert_label(
    db: Db, claims: AccessClaims, project_id: int, name: str, color: str, now: datetime
) -> LabelRecord | None:
    """The new label and its event, or None when the caller may not create one there
    (nothing written); an IntegrityError when the project has the name already."""
    params = caller_params(claims, in_project=project_id, new_name=name, new_color=color, now=now)
    async with db.transaction():
        # The project's turn, as for the label's other writes: a removal, demotion or trash
        # under way commits first, and the insert (its own statement) then sees it.
        await take_project_turn(db, project_id)
        found = await db.first(_insert_statement(), params)
        if found is None:
            return None
        created = _record(found)
        await _append(db, claims, now, "created", created, None, created._asdict())
    return created


async def update_label(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    label_id: int,
    changes: dict[str, Any],
    now: datetime,
) -> LabelRecord | None:
    """The label with `changes` applied and, if that changed it, its `updated` event; None
    when the caller may not update it (nothing written); an IntegrityError when another
    label of the project has the new name."""
    params = caller_params(
        claims,
        in_project=project_id,
        label_id=label_id,
        **{f"new_{field}": value for field, value in changes.items()},
    )
    async with db.transaction():
        await take_project_turn(db, project_id)
        found = await db.first(_locked_statement(), params)
        if found is None:
            return None
        written = await db.first(_update_statement(tuple(sorted(changes))), params)
        if written is None:
            return None
        before, updated = _record(found), _record(written)
        if updated != before:  # a body that changes nothing leaves no event
            await _append(db, claims, now, "updated", updated, before._asdict(), updated._asdict())
    return updated


async def delete_label(
    db: Db, claims: AccessClaims, project_id: int, label_id: int, now: datetime
) -> list[int] | None:
    """Delete the label, taking it off its tasks, each of which gets a new version, and
    append its `deleted` event (the name and colour it had, each to null); the ids of those
    tasks, or None when the caller may not delete it (nothing written). The statements must
    share the request's transaction (the route's `TransactionDb`).

    Locks are taken tasks first (their turns, then their rows), then the label: the order a
    task write that labels a task takes them in (its turn and its task row, then its link's
    foreign key on the label). A task labelled after the tasks were found is found by the
    bump, which runs once the label is locked.
    """
    params = caller_params(claims, in_project=project_id, label_id=label_id)
    if db.dialect.name == "postgresql":
        await db.rows(_tasks_turns_statement(), params)
    await take_project_turn(db, project_id)
    await db.rows(_lock_tasks_statement(), params)
    found = await db.first(_lock_statement(), params)
    if found is None:
        return None  # the request's transaction is rolled back: nothing stays locked
    label = _record(found)
    bumped = sorted(
        row[0] for row in await db.rows(_bump_statement(), {"label_id": label_id, "now": now})
    )
    carried: dict[int, list[int]] = {task_id: [] for task_id in bumped}
    if bumped:
        for task_id, carried_id in await db.rows(_links_of_statement(), {"ids": bumped}):
            carried[task_id].append(carried_id)
    unlink, remove = _delete_statements()
    await db.rows(unlink, {"label_id": label_id})
    await db.rows(remove, {"label_id": label_id})
    # Each task that carried it got a new version, so each records its change too: a client
    # that keeps a copy by the feed sees every version of a task.
    for task_id, label_ids in carried.items():
        await events.append(
            db,
            at=now,
            actor_id=claims.user_id,
            project_id=label.project_id,
            entity="task",
            entity_id=task_id,
            task_id=task_id,
            action="updated",
            changes={"label_ids": (sorted(label_ids), sorted(set(label_ids) - {label_id}))},
        )
    gone = dict.fromkeys(events.AUDITED["label"])
    await _append(db, claims, now, "deleted", label, label._asdict(), gone)
    return bumped


async def diagnose(
    db: Db, claims: AccessClaims, project_id: int, label_id: int | None = None
) -> tuple[bool, int | None, bool]:
    """Why a statement matched nothing: (is the caller current, their role in the live
    project or None, is the label there under that project (True when no label is named))."""
    params = caller_params(claims, in_project=project_id)
    if label_id is not None:
        params["label_id"] = label_id
    found = await db.first(_diagnosis_statement(label_id is not None), params)
    assert found is not None
    return bool(found[0]), found[1], bool(found[2]) if label_id is not None else True
