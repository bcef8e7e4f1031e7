"""The label statements: a project's labels, read and written with the authorization inside.

Every statement names the project of the path and carries the caller's membership of it, at
the least role of the action (`memberships.caller_may`, ranks from `app.core.roles`), and the
check that the caller's token is still current (`callers.caller_is_current`): a label of a
project the caller may not see (or may not change) is never read or written. When a statement
matches nothing, `diagnose` tells the service why (spec api-v2 section 2). The unique index
`uq_labels_project_name` (project, lower(name)) keeps names unique without regard to case,
also between two requests at once; the service turns its refusal into a 409.
"""

from __future__ import annotations

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
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may, caller_role
from app.db.statements.tasks import caller_params
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


@cache
def _lock_tasks_statement() -> Statement:
    """The tasks that carry the label, locked in id order (so that two deletions sharing
    tasks, or a deletion and a task write, never wait on each other in a circle), if the
    caller may delete it."""
    return Statement(
        select(Task.id)
        .where(
            Task.id.in_(_carrying()),
            exists().where(*_this_label()),
            *_allowed(Permission.LABEL_DELETE),
        )
        .order_by(Task.id)
        .with_for_update(key_share=True)
    )


@cache
def _lock_statement() -> Statement:
    """The label to delete, locked: from here on no task can be given it (the foreign key
    of a new link waits for this transaction, then fails), so the next statement sees every
    task that carries it."""
    return Statement(
        select(Label.id).where(*_this_label(), *_allowed(Permission.LABEL_DELETE)).with_for_update()
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
    """The new label, or None when the caller may not create one there (nothing written);
    an IntegrityError when the project has the name already."""
    params = caller_params(claims, in_project=project_id, new_name=name, new_color=color, now=now)
    created = await db.first(_insert_statement(), params)
    return _record(created) if created is not None else None


async def update_label(
    db: Db, claims: AccessClaims, project_id: int, label_id: int, changes: dict[str, Any]
) -> LabelRecord | None:
    params = caller_params(
        claims,
        in_project=project_id,
        label_id=label_id,
        **{f"new_{field}": value for field, value in changes.items()},
    )
    updated = await db.first(_update_statement(tuple(sorted(changes))), params)
    return _record(updated) if updated is not None else None


async def delete_label(
    db: Db, claims: AccessClaims, project_id: int, label_id: int, now: datetime
) -> list[int] | None:
    """Delete the label, taking it off its tasks, each of which gets a new version; the ids
    of those tasks, or None when the caller may not delete it (nothing written). The
    statements must share the request's transaction (the route's `TransactionDb`).

    Locks are taken tasks first, then the label: the order a task write that labels a task
    takes them in (its task row, then its link's foreign key on the label). A task labelled
    between the first two statements is found by the bump, which runs once the label is
    locked.
    """
    params = caller_params(claims, in_project=project_id, label_id=label_id)
    await db.rows(_lock_tasks_statement(), params)
    if await db.first(_lock_statement(), params) is None:
        return None  # the request's transaction is rolled back: nothing stays locked
    bumped = await db.rows(_bump_statement(), {"label_id": label_id, "now": now})
    unlink, remove = _delete_statements()
    await db.rows(unlink, {"label_id": label_id})
    await db.rows(remove, {"label_id": label_id})
    return sorted(row[0] for row in bumped)


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
