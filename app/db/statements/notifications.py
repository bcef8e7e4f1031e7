"""The notification statements: a user's notifications read (a page, one, the unread count)
and marked read, each with the owner inside.

Every statement names the caller in its `WHERE` (`user_id` of the token) together with the
check that the token is still current (`callers.caller_is_current`): another user's
notification is never read or written, and is a miss as an unknown id is. When a statement
matches nothing, `caller_state` tells the service whether the token was the cause.

What a notification is about (its project, task and actor) is looked up as it is now, by
outer joins on the ids it keeps: a renamed task shows its new title, and a row that is gone
(a purged task, a deleted user) shows as null. Notifications are made by the jobs
(`app.jobs`), never here.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from app.core.roles import Permission, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import user_may
from app.db.statements.tasks import caller_params
from app.models.notification import Notification
from app.models.project import Invitation, Project
from app.models.task import Task
from app.models.user import User

# The actor under a name of its own: `caller_is_current` is an EXISTS on `users`, which would
# otherwise be correlated with the joined actor's row instead of reading the caller's.
_Actor = aliased(User, name="actor")
# The invitee's address, read under a name of its own (never correlated with a joined user).
_Invitee = aliased(User, name="invitee")
_Select = TypeVar("_Select", bound=Select[*tuple[Any, ...]])


class NotificationRow(NamedTuple):
    id: int
    kind: str
    created_at: datetime
    read_at: datetime | None
    project_id: int | None
    project_name: str | None
    task_id: int | None
    task_title: str | None
    actor_id: int | None
    actor_full_name: str | None
    message: str


_COLUMNS = (
    Notification.id,
    Notification.kind,
    Notification.created_at,
    Notification.read_at,
    Project.id,
    Project.name,
    Task.id,
    Task.title,
    _Actor.id,
    _Actor.full_name,
    Notification.message,
)


def _user() -> Any:
    return bindparam("user_id", type_=BigInteger)


def _mine() -> list[ColumnElement[bool]]:
    """The caller's own notifications, while the caller's token is current."""
    return [Notification.user_id == _user(), caller_is_current()]


def _invited(user_id: Any) -> ColumnElement[bool]:
    """EXISTS an invitation of `user_id`'s address to the statement's project, still
    pending: the invitee sees the project in their invitations, and in its notification."""
    return exists().where(
        Invitation.project_id == Project.id,
        _Invitee.id == user_id,
        Invitation.email == _Invitee.email,
    )


def with_subjects_seen_by(statement: _Select, user_id: Any) -> _Select:
    """`statement` (FROM notifications) with the notification's project and task joined as
    they are now, each only while `user_id` (a bind parameter, or the notification's own
    user) may still see it (a member; for the project, also its invitee while the invitation
    is pending): someone removed from a project does not learn its later names through old
    notifications, in the API or in a mail sent after the removal."""
    return statement.outerjoin(
        Project,
        and_(
            Project.id == Notification.project_id,
            or_(
                user_may(Project.id, user_id, least_role(Permission.PROJECT_READ)),
                and_(Project.deleted_at.is_(None), _invited(user_id)),
            ),
        ),
    ).outerjoin(
        Task,
        and_(
            Task.id == Notification.task_id,
            user_may(
                Task.project_id, user_id, least_role(Permission.TASK_READ), own_project_row=True
            ),
        ),
    )


def _with_subjects(*extra: Any) -> Any:
    """SELECT of a notification with its project, task and actor as they are now, the
    project and the task only while the caller may still see them."""
    return with_subjects_seen_by(
        select(*_COLUMNS, *extra).select_from(Notification), bindparam("user_id")
    ).outerjoin(_Actor, _Actor.id == Notification.actor_id)


def _unread_count() -> Any:
    return (
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == _user(), Notification.read_at.is_(None))
        .scalar_subquery()
    )


@cache
def _page_statement(before: bool, unread: bool, dialect: str) -> Statement:
    """A page of the caller's notifications, newest first, each row with the unread count.

    On PostgreSQL the user is a range (`user_id BETWEEN u AND u`) ordered by (user_id, id), as
    the activity walks do (`events._walk_back`): with `=` the planner may walk the primary key
    back filtering on the user, reading every newer notification of everyone until a page is
    full. SQLite picks the (user_id, id) index for the equality, and seeks to the cursor."""
    if dialect == "postgresql":
        conditions = [Notification.user_id.between(_user(), _user()), caller_is_current()]
        newest_first: tuple[Any, ...] = (Notification.user_id.desc(), Notification.id.desc())
    else:
        conditions = _mine()
        newest_first = (Notification.id.desc(),)
    if unread:
        conditions.append(Notification.read_at.is_(None))
    if before:
        conditions.append(Notification.id < bindparam("before_id", type_=BigInteger))
    statement = (
        _with_subjects(_unread_count().label("unread_count"))
        .where(*conditions)
        .order_by(*newest_first)
        .limit(bindparam("limit", type_=Integer))
    )
    return Statement(statement)


@cache
def _one_statement() -> Statement:
    return Statement(
        _with_subjects().where(
            Notification.id == bindparam("notification_id", type_=BigInteger), *_mine()
        )
    )


# Set to itself besides `read_at`: through SQLAlchemy, the bind parameter `user_id` (the
# caller's) would otherwise be taken for a new value of the column of that name.
_READ_NOW: dict[str, Any] = {
    "read_at": bindparam("now", type_=Notification.read_at.type),
    "user_id": Notification.user_id,
}


@cache
def _mark_read_statement() -> Statement:
    """Read now, if unread: a notification read before keeps its first `read_at`."""
    return Statement(
        update(Notification)
        .where(
            Notification.id == bindparam("notification_id", type_=BigInteger),
            Notification.read_at.is_(None),
            *_mine(),
        )
        .values(_READ_NOW)
        .returning(Notification.id)
    )


@cache
def _mark_all_read_statement() -> Statement:
    return Statement(
        update(Notification)
        .where(Notification.read_at.is_(None), *_mine())
        .values(_READ_NOW)
        .returning(Notification.id)
    )


@cache
def _caller_state_statement() -> Statement:
    """(is the caller's token current, how many of their notifications are unread)."""
    return Statement(select(caller_is_current(), _unread_count()))


def _row(row: Row) -> NotificationRow:
    return NotificationRow._make(row[: len(_COLUMNS)])


async def page(
    db: Db, claims: AccessClaims, *, unread: bool, before_id: int | None, limit: int
) -> tuple[list[NotificationRow], int | None]:
    """Up to `limit` of the caller's notifications older than `before_id`, newest first, and
    the caller's unread count (None when no row came back: read it with `caller_state`)."""
    rows = await db.rows(
        _page_statement(before_id is not None, unread, db.dialect.name),
        caller_params(claims, before_id=before_id, limit=limit),
    )
    count = int(rows[0][len(_COLUMNS)]) if rows else None
    return [_row(row) for row in rows], count


async def one(db: Db, claims: AccessClaims, notification_id: int) -> NotificationRow | None:
    found = await db.first(_one_statement(), caller_params(claims, notification_id=notification_id))
    return None if found is None else _row(found)


async def mark_read(db: Db, claims: AccessClaims, notification_id: int, now: datetime) -> bool:
    """Mark one of the caller's notifications read, if it was unread; whether it was."""
    params = caller_params(claims, notification_id=notification_id, now=now)
    return await db.first(_mark_read_statement(), params) is not None


async def mark_all_read(db: Db, claims: AccessClaims, now: datetime) -> int:
    """Mark every unread notification of the caller read, in one statement; how many."""
    return len(await db.rows(_mark_all_read_statement(), caller_params(claims, now=now)))


async def caller_state(db: Db, claims: AccessClaims) -> tuple[bool, int]:
    """(is the caller's token current, their unread count)."""
    found = await db.first(_caller_state_statement(), caller_params(claims))
    assert found is not None
    return bool(found[0]), int(found[1])
