"""What the entities of a page of events are now, as the caller may see them: the `object`
of each item of the change feed (spec api-v2 section 7).

One statement per kind of entity on the page, for all of its ids at once, each with the
conditions of that entity's own v2 GET (the role of its read, the project live, the task
live), so an object is exactly what a GET would show the caller, or nothing (`null`: gone,
or no longer theirs to see). The id lists are an array on PostgreSQL (`= ANY($n)`, one
prepared statement whatever their length) and JSON text on SQLite (`json_each`).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, BindParameter, ColumnElement, bindparam, select
from sqlalchemy.ext.compiler import compiles

from app.core.roles import Permission, least_role
from app.db.access import Db, Statement
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


@cache
def _tasks_statement() -> Statement:
    return Statement(
        select(*DETAIL_COLUMNS).where(
            _AnyOf(Task.id, "ids"),
            Task.deleted_at.is_(None),
            caller_may(Task.project_id, least_role(Permission.TASK_READ)),
            caller_is_current(),
        )
    )


@cache
def _projects_statement() -> Statement:
    return Statement(
        select(*PROJECT_COLUMNS, caller_role(Project.id)).where(
            _AnyOf(Project.id, "ids"),
            caller_may(Project.id, least_role(Permission.PROJECT_READ)),
            caller_is_current(),
        )
    )


@cache
def _members_statement() -> Statement:
    return Statement(
        members_with_user()
        .add_columns(ProjectMember.project_id)
        .where(
            _AnyOf(ProjectMember.project_id, "project_ids"),
            _AnyOf(ProjectMember.user_id, "ids"),
            caller_may(ProjectMember.project_id, least_role(Permission.MEMBER_READ)),
            caller_is_current(),
        )
    )


@cache
def _invitations_statement() -> Statement:
    return Statement(
        invitations_with_project().where(
            _AnyOf(Invitation.id, "ids"),
            caller_may(Invitation.project_id, least_role(Permission.INVITATION_READ)),
            caller_is_current(),
        )
    )


@cache
def _labels_statement() -> Statement:
    return Statement(
        select(*LABEL_COLUMNS).where(
            _AnyOf(Label.id, "ids"),
            caller_may(Label.project_id, least_role(Permission.LABEL_READ)),
            caller_is_current(),
        )
    )


@cache
def _comments_statement() -> Statement:
    return Statement(
        select(*COMMENT_COLUMNS)
        .join(CommentAuthor, CommentAuthor.id == Comment.author_id)
        .join(Task, Task.id == Comment.task_id)
        .where(
            _AnyOf(Comment.id, "ids"),
            Task.deleted_at.is_(None),
            caller_may(Task.project_id, least_role(Permission.COMMENT_READ)),
            caller_is_current(),
        )
    )


EntityObject = (
    TaskDetail | ProjectRecord | MemberRecord | InvitationRecord | LabelRecord | CommentRecord
)


def object_key(entity: str, project_id: int, entity_id: int) -> tuple[str, int, int]:
    """Which object an event is about: a member is a user in a project; every other entity
    is its id alone (a task keeps its id when it moves)."""
    return (entity, project_id if entity == "member" else 0, entity_id)


async def objects(
    db: Db, params: dict[str, Any], wanted: dict[str, set[tuple[int, int]]]
) -> dict[tuple[str, int, int], EntityObject]:
    """The objects of `wanted` ({entity: {(project_id, entity_id)}}) the caller may see now,
    by `object_key`; what is missing is gone for the caller."""
    found: dict[tuple[str, int, int], EntityObject] = {}
    for entity, keys in wanted.items():
        if not keys:
            continue
        ids = {entity_id for _project_id, entity_id in keys}
        values = {**params, "ids": _ids(db, ids)}
        if entity == "task":
            for row in await db.rows(_tasks_statement(), values):
                task = detail(row)
                found["task", 0, task.task.id] = task
        elif entity == "project":
            for row in await db.rows(_projects_statement(), values):
                project = ProjectRecord._make(row)
                found["project", 0, project.id] = project
        elif entity == "member":
            projects = {project_id for project_id, _entity_id in keys}
            values["project_ids"] = _ids(db, projects)
            for row in await db.rows(_members_statement(), values):
                member = MemberRecord._make(row[:-1])
                found["member", row[-1], member.user_id] = member
        elif entity == "invitation":
            for row in await db.rows(_invitations_statement(), values):
                invitation = InvitationRecord._make(row)
                found["invitation", 0, invitation.id] = invitation
        elif entity == "label":
            for row in await db.rows(_labels_statement(), values):
                label = LabelRecord._make(row)
                found["label", 0, label.id] = label
        elif entity == "comment":
            for row in await db.rows(_comments_statement(), values):
                comment = CommentRecord._make(row)
                found["comment", 0, comment.id] = comment
    return found
