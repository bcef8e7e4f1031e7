"""The comment statements: a task's comments, read and written with the authorization inside.

A task's comments are there for a caller who may see the task: a member, at the action's least
role (`app.core.roles`), of the task's live project, the task not in the trash
(`_task_visible`). Every statement carries that condition and the check that the caller's
token is still current (`callers.caller_is_current`), and names the task of the path: a
comment under another task is a miss like one that does not exist. When a statement matches
nothing, `diagnose` tells the service why (spec api-v2 section 2).

A comment does not change its task: no statement here touches `tasks`.

Every write appends its event (`events.append`, spec api-v2 section 7) in the write's
transaction, and only when it wrote something: a comment's `created`, `updated` (with the body
it had, read locked in the same transaction) and `deleted`, in the task's project and with
the task's id (a task's history includes its comments).
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
    bindparam,
    case,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from app.core.roles import Permission, ProjectRole, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements import events
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may, caller_role
from app.db.statements.tasks import caller_params
from app.db.statements.turns import take_task_turns
from app.models.comment import Comment
from app.models.task import Task
from app.models.user import User


class CommentRecord(NamedTuple):
    id: int
    task_id: int
    author_id: int
    author_full_name: str | None
    body: str
    created_at: datetime
    updated_at: datetime


# The author under another name: `caller_is_current` reads `users` in a subquery, which
# would otherwise correlate to the author's row instead of reading the caller's.
CommentAuthor = aliased(User, name="author")


def _task_id() -> Any:
    # Not `task_id`: SQLAlchemy keeps the names of columns for the values of a write.
    return bindparam("on_task", type_=BigInteger)


def _caller_full_name() -> Any:
    """The caller's name: the author of what the caller writes."""
    return (
        select(User.full_name)
        .where(User.id == bindparam("user_id", type_=BigInteger))
        .scalar_subquery()
    )


def _task_visible(least: ProjectRole) -> ColumnElement[bool]:
    """The task of the path is live, in a live project where the caller has `least`."""
    return exists().where(
        Task.id == _task_id(), Task.deleted_at.is_(None), caller_may(Task.project_id, least)
    )


def _this_comment() -> list[ColumnElement[bool]]:
    return [Comment.id == bindparam("comment_id", type_=BigInteger), Comment.task_id == _task_id()]


def _task_project() -> Any:
    """The project of the task of the path: where a write's event goes."""
    return select(Task.project_id).where(Task.id == _task_id()).scalar_subquery()


def _own_and_may_comment() -> list[ColumnElement[bool]]:
    """The comment of the path is the caller's, and they may still comment there."""
    return [
        *_this_comment(),
        Comment.author_id == bindparam("user_id", type_=BigInteger),
        _task_visible(least_role(Permission.COMMENT_UPDATE_OWN)),
        caller_is_current(),
    ]


COMMENT_COLUMNS = (
    Comment.id,
    Comment.task_id,
    Comment.author_id,
    CommentAuthor.full_name,
    Comment.body,
    Comment.created_at,
    Comment.updated_at,
)
# What a write returns: the same, the author being the caller, then the task's project.
_WRITE_COLUMNS = (
    Comment.id,
    Comment.task_id,
    Comment.author_id,
    _caller_full_name(),
    Comment.body,
    Comment.created_at,
    Comment.updated_at,
    _task_project(),
)


def _readable() -> list[ColumnElement[bool]]:
    return [_task_visible(least_role(Permission.COMMENT_READ)), caller_is_current()]


@cache
def _list_statement(after: bool) -> Statement:
    """A page of a task's comments, oldest first (ids grow with time: the index's order)."""
    conditions = [Comment.task_id == _task_id(), *_readable()]
    if after:
        conditions.append(Comment.id > bindparam("after_id", type_=BigInteger))
    statement = (
        select(*COMMENT_COLUMNS)
        .join_from(Comment, CommentAuthor, CommentAuthor.id == Comment.author_id)
        .where(*conditions)
        .order_by(Comment.id)
        .limit(bindparam("limit", type_=Integer))
    )
    return Statement(statement)


@cache
def _select_statement() -> Statement:
    return Statement(
        select(*COMMENT_COLUMNS)
        .join_from(Comment, CommentAuthor, CommentAuthor.id == Comment.author_id)
        .where(*_this_comment(), *_readable())
    )


@cache
def _insert_statement() -> Statement:
    now = bindparam("now", type_=Comment.created_at.type)
    row = select(
        _task_id(),
        bindparam("user_id", type_=BigInteger),
        bindparam("new_body", type_=Comment.body.type),
        now,
        now,
    ).where(_task_visible(least_role(Permission.COMMENT_CREATE)), caller_is_current())
    inserted = insert(Comment).from_select(
        ["task_id", "author_id", "body", "created_at", "updated_at"], row
    )
    return Statement(inserted.returning(*_WRITE_COLUMNS))


@cache
def _locked_statement() -> Statement:
    """The body of the comment to update as it is now, locked until the update, if the
    caller may update it."""
    return Statement(
        select(Comment.body).where(*_own_and_may_comment()).with_for_update(key_share=True)
    )


@cache
def _update_statement() -> Statement:
    """The author's own comment, while they may still comment; `updated_at` moves only when
    the body changes."""
    body = bindparam("new_body", type_=Comment.body.type)
    now = bindparam("now", type_=Comment.updated_at.type)
    statement = (
        update(Comment)
        .where(*_own_and_may_comment())
        .values(
            body=body,
            updated_at=case((Comment.body.is_distinct_from(body), now), else_=Comment.updated_at),
        )
        .returning(*_WRITE_COLUMNS)
    )
    return Statement(statement)


@cache
def _delete_statement() -> Statement:
    """Its author while they may still comment, or anyone who may delete any comment."""
    own = Comment.author_id == bindparam("user_id", type_=BigInteger)
    allowed = or_(
        own & _task_visible(least_role(Permission.COMMENT_DELETE_OWN)),
        _task_visible(least_role(Permission.COMMENT_DELETE_ANY)),
    )
    return Statement(
        delete(Comment)
        .where(*_this_comment(), allowed, caller_is_current())
        .returning(Comment.id, Comment.body, _task_project())
    )


@cache
def _diagnosis_statement(with_comment: bool) -> Statement:
    role = (
        select(caller_role(Task.project_id))
        .where(Task.id == _task_id(), Task.deleted_at.is_(None))
        .scalar_subquery()
    )
    columns: list[Any] = [caller_is_current().label("current"), role.label("role")]
    if with_comment:
        author = select(Comment.author_id).where(*_this_comment()).scalar_subquery()
        columns.append(author.label("author_id"))
    return Statement(select(*columns))


def _record(row: Row) -> CommentRecord:
    return CommentRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


async def _append(
    db: Db,
    claims: AccessClaims,
    now: datetime,
    action: str,
    where: tuple[int, int, int],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
) -> None:
    """The comment's event by the caller, in the write's transaction; `where`: the comment's
    (id, task id, the task's project id)."""
    comment_id, task_id, project_id = where
    await events.append(
        db,
        at=now,
        actor_id=claims.user_id,
        project_id=project_id,
        entity="comment",
        entity_id=comment_id,
        task_id=task_id,
        action=action,
        changes=events.column_changes("comment", before, after),
    )


async def list_rows(
    db: Db, claims: AccessClaims, task_id: int, after_id: int | None, limit: int
) -> list[CommentRecord]:
    """Up to `limit` comments of the task after the comment `after_id`; none when the caller
    may not see the task or is not current."""
    params = caller_params(claims, on_task=task_id, limit=limit)
    if after_id is not None:
        params["after_id"] = after_id
    return [_record(row) for row in await db.rows(_list_statement(after_id is not None), params)]


async def fetch(
    db: Db, claims: AccessClaims, task_id: int, comment_id: int
) -> CommentRecord | None:
    found = await db.first(
        _select_statement(), caller_params(claims, on_task=task_id, comment_id=comment_id)
    )
    return _record(found) if found is not None else None


async def insert_comment(
    db: Db, claims: AccessClaims, task_id: int, body: str, now: datetime
) -> CommentRecord | None:
    """The new comment and its event, or None when the caller may not comment there
    (nothing written)."""
    params = caller_params(claims, on_task=task_id, new_body=body, now=now)
    async with db.transaction():
        await take_task_turns(db, task_id)
        found = await db.first(_insert_statement(), params)
        if found is None:
            return None
        created = _record(found)
        where = (created.id, task_id, found[7])
        await _append(db, claims, now, "created", where, None, {"body": created.body})
    return created


async def update_comment(
    db: Db, claims: AccessClaims, task_id: int, comment_id: int, body: str, now: datetime
) -> CommentRecord | None:
    """The comment with its new body and, if that changed it, its `updated` event; None when
    the caller may not change it (nothing written)."""
    params = caller_params(claims, on_task=task_id, comment_id=comment_id, new_body=body, now=now)
    async with db.transaction():
        await take_task_turns(db, task_id)
        locked = await db.first(_locked_statement(), params)
        if locked is None:
            return None
        found = await db.first(_update_statement(), params)
        if found is None:
            return None
        updated, old_body = _record(found), locked[0]
        if updated.body != old_body:  # the same body again leaves no event
            where = (comment_id, task_id, found[7])
            await _append(db, claims, now, "updated", where, {"body": old_body}, {"body": body})
    return updated


async def delete_comment(
    db: Db, claims: AccessClaims, task_id: int, comment_id: int, now: datetime
) -> bool:
    """Delete the comment and append its `deleted` event (the body it had, to null); False
    when the caller may not delete it (nothing written)."""
    params = caller_params(claims, on_task=task_id, comment_id=comment_id)
    async with db.transaction():
        await take_task_turns(db, task_id)
        found = await db.first(_delete_statement(), params)
        if found is None:
            return False
        where = (comment_id, task_id, found[2])
        await _append(db, claims, now, "deleted", where, {"body": found[1]}, {"body": None})
    return True


async def diagnose(
    db: Db, claims: AccessClaims, task_id: int, comment_id: int | None = None
) -> tuple[bool, int | None, int | None]:
    """Why a statement matched nothing: (is the caller current, their role in the project of
    the live task or None when they may not see it, the author of the comment under that task
    or None when there is none (or no comment was named))."""
    params = caller_params(claims, on_task=task_id)
    if comment_id is not None:
        params["comment_id"] = comment_id
    found = await db.first(_diagnosis_statement(comment_id is not None), params)
    assert found is not None
    return bool(found[0]), found[1], found[2] if comment_id is not None else None
