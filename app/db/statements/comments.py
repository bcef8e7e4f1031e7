"""The comment statements: a task's comments, read and written with the authorization inside.

A task's comments are there for a caller who may see the task: a member, at the action's least
role (`app.core.roles`), of the task's live project, the task not in the trash
(`_task_visible`). Every statement carries that condition and the check that the caller's
token is still current (`callers.caller_is_current`), and names the task of the path: a
comment under another task is a miss like one that does not exist. When a statement matches
nothing, `diagnose` tells the service why (spec api-v2 section 2).

A comment does not change its task: no statement here touches `tasks`.
"""

from __future__ import annotations

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
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may, caller_role
from app.db.statements.tasks import caller_params
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
_Author = aliased(User, name="author")


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


_READ_COLUMNS = (
    Comment.id,
    Comment.task_id,
    Comment.author_id,
    _Author.full_name,
    Comment.body,
    Comment.created_at,
    Comment.updated_at,
)
# What a write returns: the same, the author being the caller.
_WRITE_COLUMNS = (
    Comment.id,
    Comment.task_id,
    Comment.author_id,
    _caller_full_name(),
    Comment.body,
    Comment.created_at,
    Comment.updated_at,
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
        select(*_READ_COLUMNS)
        .join_from(Comment, _Author, _Author.id == Comment.author_id)
        .where(*conditions)
        .order_by(Comment.id)
        .limit(bindparam("limit", type_=Integer))
    )
    return Statement(statement)


@cache
def _select_statement() -> Statement:
    return Statement(
        select(*_READ_COLUMNS)
        .join_from(Comment, _Author, _Author.id == Comment.author_id)
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
def _update_statement() -> Statement:
    """The author's own comment, while they may still comment; `updated_at` moves only when
    the body changes."""
    body = bindparam("new_body", type_=Comment.body.type)
    now = bindparam("now", type_=Comment.updated_at.type)
    statement = (
        update(Comment)
        .where(
            *_this_comment(),
            Comment.author_id == bindparam("user_id", type_=BigInteger),
            _task_visible(least_role(Permission.COMMENT_UPDATE_OWN)),
            caller_is_current(),
        )
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
        delete(Comment).where(*_this_comment(), allowed, caller_is_current()).returning(Comment.id)
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
    """The new comment, or None when the caller may not comment there (nothing written)."""
    params = caller_params(claims, on_task=task_id, new_body=body, now=now)
    created = await db.first(_insert_statement(), params)
    return _record(created) if created is not None else None


async def update_comment(
    db: Db, claims: AccessClaims, task_id: int, comment_id: int, body: str, now: datetime
) -> CommentRecord | None:
    params = caller_params(claims, on_task=task_id, comment_id=comment_id, new_body=body, now=now)
    updated = await db.first(_update_statement(), params)
    return _record(updated) if updated is not None else None


async def delete_comment(db: Db, claims: AccessClaims, task_id: int, comment_id: int) -> bool:
    params = caller_params(claims, on_task=task_id, comment_id=comment_id)
    return await db.first(_delete_statement(), params) is not None


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
