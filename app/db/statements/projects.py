"""The project statements: one project at a time, the caller's projects, and the lock that
serializes a project's membership changes.

Every statement carries the caller's token check (`caller_is_current`) and the membership
condition of its action (`caller_may` with the action's least role) in its `WHERE`, so a
project the caller may not see is never read or written, and one that they may see but not
change is not changed. When a statement matches nothing, `diagnose` reads why (token, role,
trash, Inbox, version), and the service answers from that (spec api-v2 section 2's order).
Writes bump `version` in the database, which makes `If-Match` a compare-and-set.

Every write appends its event in its own transaction (spec api-v2 section 7): a new project
its `created` and its owner's `joined`; a change, a trashing or a restoring, when it moved
the version, its `updated`, `deleted` or `restored`, with the old values read from the row
locked just before the write (`_locked_statement`), so they are the ones the write replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    ScalarSelect,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)

from app.core.roles import Permission, ProjectRole, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements import events
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may, caller_role
from app.db.statements.tasks import caller_params
from app.db.statements.turns import take_project_turn
from app.models.project import Project, ProjectMember


class ProjectRecord(NamedTuple):
    """A project as the caller sees it: its columns and the caller's role in it."""

    id: int
    name: str
    description: str | None
    inbox_user_id: int | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    version: int
    role: int


PROJECT_COLUMNS = tuple(Project.__table__.c[name] for name in ProjectRecord._fields[:-1])


def _record(row: Row) -> ProjectRecord:
    return ProjectRecord._make(row[: len(ProjectRecord._fields)])


def _this_project() -> ColumnElement[bool]:
    return Project.id == bindparam("project_id")


def _owned(project_id: Any) -> ColumnElement[bool]:
    """The caller owns `project_id`, in the trash or not: who may restore or list a trashed
    project (`caller_may` sees live projects only)."""
    return exists().where(
        ProjectMember.project_id == project_id,
        ProjectMember.user_id == bindparam("user_id"),
        ProjectMember.role >= least_role(Permission.PROJECT_RESTORE),
    )


def _owned_role(project_id: Any) -> ScalarSelect[int]:
    return (
        select(ProjectMember.role)
        .where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == bindparam("user_id")
        )
        .scalar_subquery()
    )


def _role_returned(role_of: Callable[[Any], ScalarSelect[int]]) -> ScalarSelect[int]:
    """The caller's role, in the RETURNING of a write of the project: by the bind parameter,
    not correlated (SQLite renders RETURNING's columns unqualified, and a correlated
    subquery there reads NULL)."""
    return role_of(bindparam("project_id")).correlate(None)


# --- one project ---------------------------------------------------------------------------


@cache
def _select_statement() -> Statement:
    least = least_role(Permission.PROJECT_READ)
    return Statement(
        select(*PROJECT_COLUMNS, caller_role(Project.id)).where(
            _this_project(), caller_may(Project.id, least), caller_is_current()
        )
    )


@cache
def _insert_statement() -> Statement:
    now = bindparam("now", type_=Project.created_at.type)
    row = select(
        bindparam("new_name", type_=Project.name.type),
        bindparam("new_description", type_=Project.description.type),
        literal(None, Project.inbox_user_id.type),
        now,
        now,
        literal(None, Project.deleted_at.type),
        literal(1, Integer),
    ).where(caller_is_current())
    columns = [column.name for column in PROJECT_COLUMNS[1:]]
    inserted = insert(Project).from_select(columns, row)
    return Statement(inserted.returning(*PROJECT_COLUMNS, literal(int(ProjectRole.OWNER))))


@cache
def _insert_owner_statement() -> Statement:
    return Statement(
        insert(ProjectMember)
        .values(
            project_id=bindparam("project_id"),
            user_id=bindparam("user_id"),
            role=int(ProjectRole.OWNER),
            added_at=bindparam("now", type_=ProjectMember.added_at.type),
        )
        .returning(ProjectMember.role)  # `Db` reads a result of every statement
    )


@cache
def _update_statement(fields: tuple[str, ...], expected: int) -> Statement:
    """UPDATE ... RETURNING of `fields` by an admin (`expected` -1: no If-Match). A change
    that changes nothing matches, but keeps `version` and `updated_at`."""
    values: dict[str, Any] = {
        field: bindparam(f"new_{field}", type_=Project.__table__.c[field].type) for field in fields
    }
    changed = or_(*(Project.__table__.c[field].is_distinct_from(values[field]) for field in fields))
    values["version"] = Project.version + case((changed, 1), else_=0)
    values["updated_at"] = case(
        (changed, bindparam("now", type_=Project.updated_at.type)), else_=Project.updated_at
    )
    conditions = [
        _this_project(),
        caller_may(Project.id, least_role(Permission.PROJECT_UPDATE)),
        caller_is_current(),
    ]
    if expected > 0:
        conditions.append(
            Project.version.in_([bindparam(f"expected_{n}") for n in range(expected)])
        )
    return Statement(
        update(Project)
        .where(*conditions)
        .values(values)
        .returning(*PROJECT_COLUMNS, _role_returned(caller_role))
    )


@cache
def _trash_statement(expected: int) -> Statement:
    """To the trash, by an owner; never an Inbox."""
    conditions = [
        _this_project(),
        Project.inbox_user_id.is_(None),
        caller_may(Project.id, least_role(Permission.PROJECT_DELETE)),
        caller_is_current(),
    ]
    if expected > 0:
        conditions.append(
            Project.version.in_([bindparam(f"expected_{n}") for n in range(expected)])
        )
    now = bindparam("now", type_=Project.deleted_at.type)
    return Statement(
        update(Project)
        .where(*conditions)
        .values(deleted_at=now, updated_at=now, version=Project.version + 1)
        .returning(*PROJECT_COLUMNS)
    )


@cache
def _restore_statement() -> Statement:
    """Out of the trash, by an owner (who is still its member while it is there)."""
    return Statement(
        update(Project)
        .where(
            _this_project(),
            Project.deleted_at.is_not(None),
            _owned(Project.id),
            caller_is_current(),
        )
        .values(
            deleted_at=None,
            updated_at=bindparam("now", type_=Project.updated_at.type),
            version=Project.version + 1,
        )
        .returning(*PROJECT_COLUMNS, _role_returned(_owned_role))
    )


@cache
def _locked_statement() -> Statement:
    """The project's row as the write that follows will find it, locked until the
    transaction ends (PostgreSQL: FOR NO KEY UPDATE, which the UPDATE would take anyway;
    SQLite's transaction is exclusive already), if the caller is current and a member of it,
    live or in the trash (every write of a project needs that, so nobody else locks it)."""
    member = exists().where(
        ProjectMember.project_id == Project.id, ProjectMember.user_id == bindparam("user_id")
    )
    return Statement(
        select(*PROJECT_COLUMNS)
        .where(_this_project(), member, caller_is_current())
        .with_for_update(key_share=True, of=Project)
    )


@cache
def _lock_statement() -> Statement:
    """The live project's row, locked until the transaction ends, if the caller sees it.

    FOR NO KEY UPDATE: it waits for (and holds off) every other membership change of the
    project, without blocking the inserts of tasks that reference it (FOR KEY SHARE)."""
    least = least_role(Permission.PROJECT_READ)
    return Statement(
        select(Project.id)
        .where(_this_project(), caller_may(Project.id, least), caller_is_current())
        .with_for_update(key_share=True)
    )


class Diagnosis(NamedTuple):
    """Why a statement on a project matched nothing."""

    current: bool  # the caller's token is current
    role: int | None  # the caller's role in the live project; None: not visible
    owned_in_trash: bool  # the project is in the trash and the caller owns it
    is_inbox: bool
    version: int | None


@cache
def _diagnosis_statement() -> Statement:
    project_id = bindparam("project_id", type_=Project.id.type)
    this = Project.id == project_id
    return Statement(
        select(
            caller_is_current(),
            caller_role(project_id),
            select(Project.id)
            .where(this, Project.deleted_at.is_not(None), _owned(Project.id))
            .exists(),
            select(Project.id).where(this, Project.inbox_user_id.is_not(None)).exists(),
            select(Project.version).where(this).scalar_subquery(),
        )
    )


async def fetch(db: Db, claims: AccessClaims, project_id: int) -> ProjectRecord | None:
    found = await db.first(_select_statement(), caller_params(claims, project_id=project_id))
    return _record(found) if found is not None else None


def _columns(row: Row) -> dict[str, Any]:
    """A project's columns by name (the role, if the row has it, left out)."""
    return dict(zip(ProjectRecord._fields[:-1], row, strict=False))


async def insert_project(
    db: Db, claims: AccessClaims, name: str, description: str | None, now: datetime
) -> ProjectRecord | None:
    """A new project with the caller as its owner, and their events (four statements, in
    one transaction); None when the caller is not current (nothing is written then)."""
    params = caller_params(claims, now=now, new_name=name, new_description=description)
    async with db.transaction():
        created = await db.first(_insert_statement(), params)
        if created is None:
            return None
        project = _record(created)
        owner = caller_params(claims, now=now, project_id=project.id)
        await db.rows(_insert_owner_statement(), owner)
        event = {"at": now, "actor_id": claims.user_id, "project_id": project.id}
        await events.append(
            db,
            **event,
            entity="project",
            entity_id=project.id,
            action="created",
            changes=events.column_changes("project", None, _columns(created)),
        )
        await events.append(
            db,
            **event,
            entity="member",
            entity_id=claims.user_id,
            action="joined",
            changes=events.column_changes("member", None, {"role": int(ProjectRole.OWNER)}),
        )
    return project


async def _logged_write(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    statement: Statement,
    params: dict[str, Any],
    *,
    action: str,
    now: datetime,
) -> Row | None:
    """`statement` (a write of the project returning its columns) and, when it moved the
    version, its event, in one transaction; the written row, or None when it matched
    nothing (no event then)."""
    async with db.transaction():
        await take_project_turn(db, project_id)
        before = await db.first(_locked_statement(), caller_params(claims, project_id=project_id))
        if before is None:  # not a member, or not current: the write cannot match
            return None
        written = await db.first(statement, params)
        if written is None:
            return None
        old, new = _columns(before), _columns(written)
        if new["version"] != old["version"]:
            await events.append(
                db,
                at=now,
                actor_id=claims.user_id,
                project_id=project_id,
                entity="project",
                entity_id=project_id,
                action=action,
                changes=events.column_changes("project", old, new),
            )
    return written


async def update_project(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    changes: dict[str, Any],
    *,
    now: datetime,
    expected_versions: list[int] | None,
) -> ProjectRecord | None:
    params = caller_params(
        claims,
        project_id=project_id,
        now=now,
        **{f"new_{field}": value for field, value in changes.items()},
        **{f"expected_{n}": version for n, version in enumerate(expected_versions or ())},
    )
    expected = -1 if expected_versions is None else len(expected_versions)
    statement = _update_statement(tuple(sorted(changes)), expected)
    updated = await _logged_write(
        db, claims, project_id, statement, params, action="updated", now=now
    )
    return _record(updated) if updated is not None else None


async def trash_project(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    *,
    now: datetime,
    expected_versions: list[int] | None,
) -> bool:
    params = caller_params(
        claims,
        project_id=project_id,
        now=now,
        **{f"expected_{n}": version for n, version in enumerate(expected_versions or ())},
    )
    expected = -1 if expected_versions is None else len(expected_versions)
    trashed = await _logged_write(
        db, claims, project_id, _trash_statement(expected), params, action="deleted", now=now
    )
    return trashed is not None


async def restore_project(
    db: Db, claims: AccessClaims, project_id: int, *, now: datetime
) -> ProjectRecord | None:
    params = caller_params(claims, project_id=project_id, now=now)
    restored = await _logged_write(
        db, claims, project_id, _restore_statement(), params, action="restored", now=now
    )
    return _record(restored) if restored is not None else None


async def lock(db: Db, claims: AccessClaims, project_id: int) -> bool:
    """Lock the live project's row for a membership change (in a transaction), after its
    turn; False when the caller may not see it or is not current (nothing is locked then)."""
    await take_project_turn(db, project_id)
    return bool(await db.rows(_lock_statement(), caller_params(claims, project_id=project_id)))


async def diagnose(db: Db, claims: AccessClaims, project_id: int) -> Diagnosis:
    found = await db.first(_diagnosis_statement(), caller_params(claims, project_id=project_id))
    assert found is not None
    return Diagnosis(bool(found[0]), found[1], bool(found[2]), bool(found[3]), found[4])


# --- the caller's projects -------------------------------------------------------------------


@cache
def _list_statement(deleted: bool, after: bool) -> Statement:
    """A page of the caller's projects by lower(name), then id: the live ones they are a
    member of, or (`deleted`) the trashed ones they own."""
    sort_key = func.lower(Project.name)
    conditions: list[ColumnElement[bool]] = [
        ProjectMember.user_id == bindparam("user_id"),
        caller_is_current(),
    ]
    if deleted:
        conditions += [
            Project.deleted_at.is_not(None),
            ProjectMember.role >= least_role(Permission.PROJECT_RESTORE),
        ]
    else:
        conditions.append(Project.deleted_at.is_(None))
    if after:
        position = tuple_(
            bindparam("after_key", type_=Project.name.type),
            bindparam("after_id", type_=Project.id.type),
        )
        conditions.append(tuple_(sort_key, Project.id) > position)
    return Statement(
        select(*PROJECT_COLUMNS, ProjectMember.role, sort_key)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(*conditions)
        .order_by(sort_key, Project.id)
        .limit(bindparam("limit", type_=Integer))
    )


async def list_projects(
    db: Db,
    claims: AccessClaims,
    *,
    deleted: bool,
    after: tuple[str, int] | None,
    limit: int,
) -> list[tuple[ProjectRecord, str]]:
    """Up to `limit` projects after `after` (a sort key and id), each with its sort key."""
    params = caller_params(claims, limit=limit)
    if after is not None:
        params |= {"after_key": after[0], "after_id": after[1]}
    rows = await db.rows(_list_statement(deleted, after is not None), params)
    return [(_record(row), row[-1]) for row in rows]
