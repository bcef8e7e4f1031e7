"""Who may see and do what in a project, as SQL: the conditions every v2 statement folds into
its own `WHERE`, and the Inbox that v1's statements are scoped to.

A project is visible to its members while it is not in the trash; an action is allowed when
the caller's membership has at least the action's least role (`app.core.roles`). Statements
put these conditions beside their own, so a row the caller may not see or change is never
read or written, and a miss is diagnosed afterwards by a read-only statement
(`caller_role`) that tells 404 from 403 (spec api-v2 section 2).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, bindparam, exists, select
from sqlalchemy.orm import aliased

from app.core.roles import ProjectRole
from app.models.project import Project, ProjectMember


def inbox_of(user_id: Any) -> ScalarSelect[int]:
    """The id of the Inbox of `user_id` (a bind parameter or column)."""
    return select(Project.id).where(Project.inbox_user_id == user_id).scalar_subquery()


def in_callers_inbox(project_id: Any) -> ColumnElement[bool]:
    """v1's scope: `project_id` is the Inbox of the caller (bind parameter `user_id`)."""
    scoped: ColumnElement[bool] = project_id == inbox_of(bindparam("user_id"))
    return scoped


def _membership(project_id: Any, user_id: Any, project: Any = Project) -> list[ColumnElement[bool]]:
    return [
        ProjectMember.project_id == project_id,
        ProjectMember.user_id == user_id,
        project.id == ProjectMember.project_id,
        project.deleted_at.is_(None),
    ]


def caller_may(project_id: Any, least: ProjectRole | ColumnElement[Any]) -> ColumnElement[bool]:
    """EXISTS the caller's (bind parameter `user_id`) membership of the live project
    `project_id` with a role of at least `least` (a role, or a bind parameter of a rank)."""
    return user_may(project_id, bindparam("user_id"), least)


def user_may(
    project_id: Any,
    user_id: Any,
    least: ProjectRole | ColumnElement[Any],
    *,
    own_project_row: bool = False,
) -> ColumnElement[bool]:
    """`caller_may` for the user `user_id` (a column, where a statement reads for many users:
    the mail job). The project's row is the statement's own `projects` when it has one (the
    EXISTS correlates with it); `own_project_row` reads a row of its own instead, for a
    `project_id` that need not be the statement's project (a task's, beside a notification's
    project)."""
    project = aliased(Project) if own_project_row else Project
    return exists().where(*_membership(project_id, user_id, project), ProjectMember.role >= least)


def caller_role(project_id: Any) -> ScalarSelect[int]:
    """The caller's role in the live project `project_id`, NULL when they may not see it: the
    diagnosis of a statement that matched nothing (NULL: 404; below the least role: 403)."""
    return (
        select(ProjectMember.role)
        .where(*_membership(project_id, bindparam("user_id")))
        .scalar_subquery()
    )


def caller_role_now(project_id: Any) -> ScalarSelect[int]:
    """`caller_role` for a write that may have waited for its turn in the same statement
    (PostgreSQL): the membership and project rows are read `FOR SHARE`, and a locked read
    finds a row as its last writer committed it, where a plain one would see the statement's
    snapshot, taken before the wait. So a removal, a demotion or a trash of the project that
    committed while the write waited is seen: the write is refused, never applied after it.
    (A lock that only keys would take, `FOR KEY SHARE`, is granted on the old row: a demotion
    or a trash would not be seen.) SQLite renders no lock; its writers come one at a time."""
    return (
        select(ProjectMember.role)
        .where(*_membership(project_id, bindparam("user_id")))
        .with_for_update(read=True, of=(ProjectMember, Project))
        .scalar_subquery()
    )


def is_member(project_id: Any, user_id: Any) -> ColumnElement[bool]:
    """EXISTS a membership of `user_id` in `project_id` (live or not): for ids in a body."""
    return exists().where(
        and_(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
    )
