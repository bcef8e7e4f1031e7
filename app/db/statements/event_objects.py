"""What the entities of a page of events are now, as the caller may see them (the `object`
of each item of the change feed, spec api-v2 section 7), or as an admin of each event's
project sees them (the `object` of a webhook's payload, section 9).

One statement per kind of entity on the page, for all of its ids at once, each with the
conditions of that entity's own v2 GET (the role of its read, the project live, the task
live), so an object is exactly what a GET would show the caller, or nothing (`null`: gone,
or no longer theirs to see). Without a caller (`objects_for_project_admin`) the same
statements read the same columns with the reader's conditions left out: an admin holds every
read, so what remains is the project live (and the task, for a task or a comment). The id
lists are an array on PostgreSQL (`= ANY($n)`, one prepared statement whatever their length)
and JSON text on SQLite (`json_each`).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import cache
from typing import Any, Final

from sqlalchemy import BigInteger, BindParameter, ColumnElement, bindparam, false, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased

from app.core.roles import Permission, ProjectRole, least_role
from app.db.access import Db, Statement
from app.db.base import utcnow
from app.db.statements.callers import caller_is_current
from app.db.statements.comments import COMMENT_COLUMNS, CommentAuthor, CommentRecord
from app.db.statements.invitations import InvitationRecord, invitations_with_project
from app.db.statements.labels import LABEL_COLUMNS, LabelRecord
from app.db.statements.members import MemberRecord, members_with_user
from app.db.statements.memberships import caller_may, caller_role
from app.db.statements.projects import PROJECT_COLUMNS, ProjectRecord
from app.db.statements.tasks import DETAIL_COLUMNS, TaskDetail, detail
from app.models.comment import Comment
from app.models.label import Label
from app.models.project import Invitation, Project, ProjectMember
from app.models.task import Task


class _AnyOf(ColumnElement[bool]):
    """`column` is one of the ids bound to `name` (see the module docstring)."""

    __visit_name__ = "any_of"
    inherit_cache = True
    type = BigInteger()  # type: ignore[assignment]

    def __init__(self, column: Any, name: str) -> None:
        self.column = column
        self.parameter: BindParameter[Any] = bindparam(name)

    _traverse_internals: Any = []


@compiles(_AnyOf, "postgresql")
def _any_of_postgresql(element: _AnyOf, compiler: Any, **kw: Any) -> str:
    column, ids = compiler.process(element.column, **kw), compiler.process(element.parameter, **kw)
    return f"{column} = ANY({ids})"


@compiles(_AnyOf)
def _any_of(element: _AnyOf, compiler: Any, **kw: Any) -> str:
    return (
        f"{compiler.process(element.column, **kw)} IN "
        f"(SELECT value FROM json_each({compiler.process(element.parameter, **kw)}))"
    )


def _ids(db: Db, ids: Collection[int]) -> Any:
    return sorted(ids) if db.dialect.name == "postgresql" else json.dumps(sorted(ids))


# The role the system reads as when no caller does (a webhook's payload): a project's admin.
SYSTEM_READER: Final = ProjectRole.ADMIN

# The project of a `_readable` without a caller, under a name of its own so that it is a
# subquery of its own in a statement that reads `projects` itself (it never correlates).
_LiveProject = aliased(Project, name="live_project")


def _readable(project_id: Any, permission: Permission, caller: bool) -> list[ColumnElement[bool]]:
    """Who reads the rows of project `project_id`: the caller (a membership of the live
    project at the least role of `permission`, and a current token; bind parameters
    `user_id` and `token_version`), or without one `SYSTEM_READER` (the project live)."""
    if caller:
        return [caller_may(project_id, least_role(permission)), caller_is_current()]
    if least_role(permission) > SYSTEM_READER:
        return [false()]
    live = select(_LiveProject.id).where(
        _LiveProject.id == project_id, _LiveProject.deleted_at.is_(None)
    )
    return [live.exists()]


@cache
def _projects_with_role_statement(least: ProjectRole) -> Statement:
    return Statement(
        select(ProjectMember.project_id).where(
            _AnyOf(ProjectMember.project_id, "ids"),
            ProjectMember.user_id == bindparam("user_id"),
            ProjectMember.role >= least,
        )
    )


async def projects_with_role(
    db: Db, params: dict[str, Any], least: ProjectRole, project_ids: Collection[int]
) -> set[int]:
    """Which of `project_ids` the caller is a member of at `least` or above (the project live
    or in the trash: what their role let them read when the events were written)."""
    values = {**params, "ids": _ids(db, project_ids)}
    return {row[0] for row in await db.rows(_projects_with_role_statement(least), values)}


@cache
def _tasks_statement(caller: bool) -> Statement:
    return Statement(
        select(*DETAIL_COLUMNS).where(
            _AnyOf(Task.id, "ids"),
            Task.deleted_at.is_(None),
            *_readable(Task.project_id, Permission.TASK_READ, caller),
        )
    )


@cache
def _projects_statement(caller: bool) -> Statement:
    role = caller_role(Project.id) if caller else literal(int(SYSTEM_READER))
    return Statement(
        select(*PROJECT_COLUMNS, role).where(
            _AnyOf(Project.id, "ids"),
            *_readable(Project.id, Permission.PROJECT_READ, caller),
        )
    )


@cache
def _members_statement(caller: bool) -> Statement:
    # The memberships first, who reads them outside: `caller_may` reads `project_members`,
    # which the memberships' own FROM would correlate it to (the row's member taken for the
    # caller: only the caller's own membership would be found).
    members = (
        members_with_user()
        .add_columns(ProjectMember.project_id)
        .where(
            _AnyOf(ProjectMember.project_id, "project_ids"),
            _AnyOf(ProjectMember.user_id, "ids"),
        )
        .subquery("wanted_members")
    )
    return Statement(
        select(*members.c).where(*_readable(members.c.project_id, Permission.MEMBER_READ, caller))
    )


@cache
def _invitations_statement(caller: bool) -> Statement:
    """Pending invitations only: an expired one is in no list any more (until the cleanup
    job removes it, or an invitation of the address renews it), so it is gone."""
    return Statement(
        invitations_with_project().where(
            _AnyOf(Invitation.id, "ids"),
            Invitation.expires_at > bindparam("now", type_=Invitation.expires_at.type),
            *_readable(Invitation.project_id, Permission.INVITATION_READ, caller),
        )
    )


@cache
def _labels_statement(caller: bool) -> Statement:
    return Statement(
        select(*LABEL_COLUMNS).where(
            _AnyOf(Label.id, "ids"),
            *_readable(Label.project_id, Permission.LABEL_READ, caller),
        )
    )


@cache
def _comments_statement(caller: bool) -> Statement:
    # Then the task's project: where the comment is now (`_found`).
    return Statement(
        select(*COMMENT_COLUMNS, Task.project_id)
        .join(CommentAuthor, CommentAuthor.id == Comment.author_id)
        .join(Task, Task.id == Comment.task_id)
        .where(
            _AnyOf(Comment.id, "ids"),
            Task.deleted_at.is_(None),
            *_readable(Task.project_id, Permission.COMMENT_READ, caller),
        )
    )


EntityObject = (
    TaskDetail | ProjectRecord | MemberRecord | InvitationRecord | LabelRecord | CommentRecord
)


def object_key(entity: str, project_id: int, entity_id: int) -> tuple[str, int, int]:
    """Which object an event is about: a member is a user in a project; every other entity
    is its id alone (a task keeps its id when it moves)."""
    return (entity, project_id if entity == "member" else 0, entity_id)


async def _found(
    db: Db, params: dict[str, Any] | None, wanted: dict[str, set[tuple[int, int]]]
) -> list[tuple[str, int, int, EntityObject]]:
    """The objects of `wanted` ({entity: {(project_id, entity_id)}}) readable now, by the
    caller of `params` (None: `SYSTEM_READER`), each as (entity, the project it is in now,
    entity_id, object)."""
    caller = params is not None
    found: list[tuple[str, int, int, EntityObject]] = []
    for entity, keys in wanted.items():
        if not keys:
            continue
        ids = {entity_id for _project_id, entity_id in keys}
        values = {**(params or {}), "ids": _ids(db, ids)}
        if entity == "task":
            for row in await db.rows(_tasks_statement(caller), values):
                task = detail(row)
                found.append(("task", task.task.project_id, task.task.id, task))
        elif entity == "project":
            for row in await db.rows(_projects_statement(caller), values):
                project = ProjectRecord._make(row)
                found.append(("project", project.id, project.id, project))
        elif entity == "member":
            projects = {project_id for project_id, _entity_id in keys}
            values["project_ids"] = _ids(db, projects)
            for row in await db.rows(_members_statement(caller), values):
                member = MemberRecord._make(row[:-1])
                found.append(("member", row[-1], member.user_id, member))
        elif entity == "invitation":
            values["now"] = utcnow()
            for row in await db.rows(_invitations_statement(caller), values):
                invitation = InvitationRecord._make(row)
                found.append(("invitation", invitation.project_id, invitation.id, invitation))
        elif entity == "label":
            for row in await db.rows(_labels_statement(caller), values):
                label = LabelRecord._make(row)
                found.append(("label", label.project_id, label.id, label))
        elif entity == "comment":
            for row in await db.rows(_comments_statement(caller), values):
                comment = CommentRecord._make(row[:-1])
                found.append(("comment", row[-1], comment.id, comment))
    return found


async def objects(
    db: Db, params: dict[str, Any], wanted: dict[str, set[tuple[int, int]]]
) -> dict[tuple[str, int, int], EntityObject]:
    """The objects of `wanted` ({entity: {(project_id, entity_id)}}) the caller may see now,
    by `object_key`; what is missing is gone for the caller."""
    return {
        object_key(entity, project_id, entity_id): found
        for entity, project_id, entity_id, found in await _found(db, params, wanted)
    }


async def objects_for_project_admin(
    db: Db, wanted: dict[str, set[tuple[int, int]]]
) -> dict[tuple[str, int, int], EntityObject]:
    """The objects of `wanted` ({entity: {(project_id, entity_id)}}) as an admin of
    `project_id` sees them now (a project's `my_role` is "admin"), by (entity, project_id,
    entity_id): only what is live and still in that live project (a task moved out since,
    or its comment, is missing for the project it left); what is missing is gone for it."""
    return {
        (entity, project_id, entity_id): found
        for entity, project_id, entity_id, found in await _found(db, None, wanted)
        if (project_id, entity_id) in wanted[entity]
    }
