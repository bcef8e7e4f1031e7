"""The member statements: a project's members, a change of role, a removal.

Reads carry the caller's token check and the viewer's membership condition. A change or a
removal runs in a transaction that first locks the project's row (`projects.lock`), so the
membership changes of one project are serialized (two owners demoting each other cannot both
see the other still an owner); it then reads the state the rules of spec api-v2 section 2
need (`state`), and writes with the least role those rules asked for inside the statement's
`WHERE` (`caller_may`), with the target's role it read and the last-owner rule as guards.

Each write appends its events in the caller's transaction (spec api-v2 section 7): the member's
`role_changed`, `removed` or `left` (entity_id the member's user id), and for a removal, an
`updated` of each task of the project they were assigned to (its `assignee_ids`).

The statements here select from or write `project_members` themselves, so the membership
condition is not correlated with their own rows (`_caller_may`): it is about the caller's
membership, whichever row the statement is on.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Exists,
    Integer,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from app.core.roles import Permission, ProjectRole, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Statement
from app.db.statements import events
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may, caller_role
from app.db.statements.tasks import caller_params
from app.db.statements.turns import turns_of
from app.models.project import Project, ProjectMember
from app.models.task import Task, TaskAssignee
from app.models.user import User


class MemberRecord(NamedTuple):
    user_id: int
    email: str
    full_name: str | None
    role: int
    added_at: datetime


_MEMBER_COLUMNS = (
    ProjectMember.user_id,
    User.email,
    User.full_name,
    ProjectMember.role,
    ProjectMember.added_at,
)


def _caller_may(least: ProjectRole | ColumnElement[Any]) -> Exists:
    """The caller's membership of the project `:project_id` at `least`, uncorrelated."""
    condition = caller_may(bindparam("project_id"), least)
    assert isinstance(condition, Exists)
    return condition.correlate(None)


def _this_project() -> ColumnElement[bool]:
    return ProjectMember.project_id == bindparam("project_id")


def _target() -> list[ColumnElement[bool]]:
    return [_this_project(), ProjectMember.user_id == bindparam("target_id")]


def members_with_user() -> Any:
    """SELECT of `MemberRecord`s: memberships with their users (reads here, and the change
    feed's objects)."""
    return select(*_MEMBER_COLUMNS).join(User, User.id == ProjectMember.user_id)


# --- reads -----------------------------------------------------------------------------------


@cache
def _select_statement() -> Statement:
    least = least_role(Permission.MEMBER_READ)
    return Statement(members_with_user().where(*_target(), _caller_may(least), caller_is_current()))


@cache
def _list_statement(after: bool) -> Statement:
    """A page of members, owners first: role descending, then user id."""
    conditions = [
        _this_project(),
        _caller_may(least_role(Permission.MEMBER_READ)),
        caller_is_current(),
    ]
    if after:
        after_role = bindparam("after_role", type_=ProjectMember.role.type)
        after_id = bindparam("after_id", type_=ProjectMember.user_id.type)
        conditions.append(
            or_(
                ProjectMember.role < after_role,
                and_(ProjectMember.role == after_role, ProjectMember.user_id > after_id),
            )
        )
    return Statement(
        members_with_user()
        .where(*conditions)
        .order_by(ProjectMember.role.desc(), ProjectMember.user_id)
        .limit(bindparam("limit", type_=Integer))
    )


async def fetch(db: Db, claims: AccessClaims, project_id: int, user_id: int) -> MemberRecord | None:
    params = caller_params(claims, project_id=project_id, target_id=user_id)
    found = await db.first(_select_statement(), params)
    return MemberRecord._make(found) if found is not None else None


async def list_members(
    db: Db, claims: AccessClaims, project_id: int, *, after: tuple[int, int] | None, limit: int
) -> list[MemberRecord]:
    params = caller_params(claims, project_id=project_id, limit=limit)
    if after is not None:
        params |= {"after_role": after[0], "after_id": after[1]}
    rows = await db.rows(_list_statement(after is not None), params)
    return [MemberRecord._make(row) for row in rows]


# --- what a change of membership depends on ---------------------------------------------------


class MemberState(NamedTuple):
    """Read after the project's row is locked: what the rules of section 2 decide on."""

    caller_role: int | None  # None: the caller may not see the project
    target_role: int | None  # None: the target is not a member
    owners: int
    is_inbox: bool


@cache
def _state_statement() -> Statement:
    project_id = bindparam("project_id", type_=ProjectMember.project_id.type)
    target_role = select(ProjectMember.role).where(*_target()).scalar_subquery()
    owners = (
        select(func.count())
        .select_from(ProjectMember)
        .where(_this_project(), ProjectMember.role == int(ProjectRole.OWNER))
        .scalar_subquery()
    )
    inbox = select(Project.id).where(Project.id == project_id, Project.inbox_user_id.is_not(None))
    return Statement(select(caller_role(project_id), target_role, owners, inbox.exists()))


async def state(db: Db, claims: AccessClaims, project_id: int, user_id: int) -> MemberState:
    params = caller_params(claims, project_id=project_id, target_id=user_id)
    found = await db.first(_state_statement(), params)
    assert found is not None
    return MemberState(found[0], found[1], int(found[2]), bool(found[3]))


# --- writes ----------------------------------------------------------------------------------


def _write_conditions() -> list[ColumnElement[bool]]:
    """The target at the role read (`:seen_role`), the caller at the role the rules asked for
    (`:required`), the caller's token current, and never the last owner demoted or removed."""
    other = aliased(ProjectMember)
    another_owner = exists().where(
        other.project_id == bindparam("project_id"),
        other.user_id != bindparam("target_id"),
        other.role == int(ProjectRole.OWNER),
    )
    keeps_an_owner = or_(
        ProjectMember.role < int(ProjectRole.OWNER),
        bindparam("new_role", type_=ProjectMember.role.type) >= int(ProjectRole.OWNER),
        another_owner,
    )
    return [
        *_target(),
        ProjectMember.role == bindparam("seen_role", type_=ProjectMember.role.type),
        _caller_may(bindparam("required", type_=ProjectMember.role.type)),
        caller_is_current(),
        keeps_an_owner,
    ]


@cache
def _update_role_statement() -> Statement:
    return Statement(
        update(ProjectMember)
        .where(*_write_conditions())
        .values(
            role=bindparam("new_role", type_=ProjectMember.role.type),
            # Set to themselves: through SQLAlchemy, a parameter named as a column of the
            # table an UPDATE writes (`user_id`, the caller's, and `project_id`) would
            # otherwise be taken for a new value of that column.
            user_id=ProjectMember.user_id,
            project_id=ProjectMember.project_id,
        )
        .returning(ProjectMember.user_id)
    )


@cache
def _delete_statement() -> Statement:
    # Removing is never demoting to a role: the last-owner guard sees "no role" as below owner.
    not_inbox = ~exists().where(
        Project.id == bindparam("project_id"), Project.inbox_user_id.is_not(None)
    )
    return Statement(
        delete(ProjectMember)
        .where(*_write_conditions(), not_inbox)
        .returning(ProjectMember.user_id)
    )


@cache
def _assigned_tasks_turns_statement() -> Statement:
    """The turns of the project's tasks `:target_id` is assigned to (`turns_of`), for a
    caller who is a member of the project."""
    return turns_of(
        select(Task.id)
        .join(TaskAssignee, TaskAssignee.task_id == Task.id)
        .where(
            Task.project_id == bindparam("project_id"),
            TaskAssignee.user_id == bindparam("target_id"),
            caller_may(Task.project_id, ProjectRole.VIEWER),
        )
    )


async def take_assigned_tasks_turns(
    db: Db, claims: AccessClaims, project_id: int, user_id: int
) -> None:
    """Before a member's removal writes or locks anything (PostgreSQL): the turns of the
    tasks they are assigned to, which the removal takes them off. So a task write under way
    is waited for before the removal takes its xid (the removal comes after it in the feed),
    and an assignment of the member that holds a task and then reads the membership cannot
    wait in a circle with a removal that deleted the membership and then waits for that
    task (a deadlock: decision 0036)."""
    if db.dialect.name == "postgresql":
        params = caller_params(claims, project_id=project_id, target_id=user_id)
        await db.rows(_assigned_tasks_turns_statement(), params)


@cache
def _bump_assigned_tasks_statement() -> Statement:
    assigned = select(TaskAssignee.task_id).where(TaskAssignee.user_id == bindparam("target_id"))
    return Statement(
        update(Task)
        .where(Task.project_id == bindparam("project_id"), Task.id.in_(assigned))
        .values(
            version=Task.version + 1,
            updated_at=bindparam("now", type_=Task.updated_at.type),
            project_id=Task.project_id,  # as in `_update_role_statement`
        )
        .returning(Task.id)
    )


@cache
def _assignees_statement() -> Statement:
    """Every assignee of the project's tasks that `:target_id` is assigned to (read before
    they are taken off: each task's event says who its assignees were)."""
    in_project = select(Task.id).where(Task.project_id == bindparam("project_id"))
    theirs = select(TaskAssignee.task_id).where(
        TaskAssignee.user_id == bindparam("target_id"), TaskAssignee.task_id.in_(in_project)
    )
    return Statement(
        select(TaskAssignee.task_id, TaskAssignee.user_id)
        .where(TaskAssignee.task_id.in_(theirs))
        .order_by(TaskAssignee.task_id, TaskAssignee.user_id)
    )


@cache
def _unassign_statement() -> Statement:
    in_project = select(Task.id).where(Task.project_id == bindparam("project_id"))
    return Statement(
        delete(TaskAssignee)
        .where(TaskAssignee.user_id == bindparam("target_id"), TaskAssignee.task_id.in_(in_project))
        .returning(TaskAssignee.task_id)
    )


def _write_params(
    claims: AccessClaims,
    project_id: int,
    user_id: int,
    *,
    seen_role: int,
    required: ProjectRole,
    new_role: int,
) -> dict[str, Any]:
    return caller_params(
        claims,
        project_id=project_id,
        target_id=user_id,
        seen_role=seen_role,
        required=int(required),
        new_role=new_role,
    )


async def change_role(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    user_id: int,
    *,
    seen_role: int,
    required: ProjectRole,
    new_role: int,
    now: datetime,
) -> bool:
    """Give the member `new_role`, if the guards hold (see `_write_conditions`), and record
    it (in the caller's transaction)."""
    params = _write_params(
        claims, project_id, user_id, seen_role=seen_role, required=required, new_role=new_role
    )
    if not await db.rows(_update_role_statement(), params):
        return False
    await events.append(
        db,
        at=now,
        actor_id=claims.user_id,
        project_id=project_id,
        entity="member",
        entity_id=user_id,
        action="role_changed",
        changes=events.column_changes("member", {"role": seen_role}, {"role": new_role}),
    )
    return True


async def remove(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    user_id: int,
    *,
    seen_role: int,
    required: ProjectRole,
    now: datetime,
) -> bool:
    """Remove the member, if the guards hold, and take them off the assignees of the
    project's tasks, each of which gets a new version; record it all (the member `left` when
    they are the caller, else `removed`; each task `updated`), in the caller's transaction."""
    # `new_role` 0: below every role, so the last-owner guard applies as to a demotion.
    params = _write_params(
        claims, project_id, user_id, seen_role=seen_role, required=required, new_role=0
    )
    if not await db.rows(_delete_statement(), params):
        return False
    event = {"at": now, "actor_id": claims.user_id, "project_id": project_id}
    await events.append(
        db,
        **event,
        entity="member",
        entity_id=user_id,
        action="left" if user_id == claims.user_id else "removed",
        changes=events.column_changes("member", {"role": seen_role}, {"role": None}),
    )
    # The removal above authorized these, in this transaction (the caller may have just left).
    params = {"project_id": project_id, "target_id": user_id, "now": now}
    await db.rows(_bump_assigned_tasks_statement(), params)
    # Read with those tasks locked by the bump: no other write changes their assignees now.
    assignees: dict[int, list[int]] = {}
    for task_id, assignee_id in await db.rows(_assignees_statement(), params):
        assignees.setdefault(task_id, []).append(assignee_id)
    await db.rows(_unassign_statement(), params)
    for task_id, old in assignees.items():
        new = [assignee for assignee in old if assignee != user_id]
        await events.append(
            db,
            **event,
            entity="task",
            entity_id=task_id,
            task_id=task_id,
            action="updated",
            changes={"assignee_ids": (old, new)},
        )
    return True
