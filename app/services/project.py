"""Project rules: create, read, list, change, trash and restore a project.

The statements (`app.db.statements.projects`) carry the authorization; when one matches
nothing, `explain_miss` turns its diagnosis into the answer, in the order of spec api-v2
section 2: a token no longer current (401), a project the caller may not see (404: unknown,
not a member, or in the trash), a role too low (403 with `role` and `required_role`), a rule
of the project's state such as the Inbox (409), a version `If-Match` did not name (412).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from app.core.errors import AppError, Conflict, NotFound, PreconditionFailed
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.roles import Permission, ProjectRole, least_role, role_required
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import outbox as reminders
from app.db.statements import projects as statements
from app.db.statements import tasks as task_statements
from app.db.statements.projects import Diagnosis, ProjectRecord
from app.schemas.project import ProjectCreate, ProjectUpdate
from app.services import retries
from app.services.task import token_revoked


class ProjectNotFound(NotFound):
    default_detail = "Project not found."


class InboxConflict(Conflict):
    default_detail = "The Inbox cannot be shared, left or deleted."


async def explain_miss(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    required: ProjectRole,
    *,
    inbox_conflicts: bool = False,
    expected_versions: list[int] | None = None,
) -> None:
    """Raise why a statement on a project needing `required` matched nothing; return only
    when nothing explains it (the caller may act, and the project is as expected)."""
    _explain(
        await statements.diagnose(db, caller, project_id),
        required,
        inbox_conflicts=inbox_conflicts,
        expected_versions=expected_versions,
    )


def _explain(
    found: Diagnosis,
    required: ProjectRole,
    *,
    inbox_conflicts: bool = False,
    expected_versions: list[int] | None = None,
) -> None:
    """`explain_miss` of a diagnosis already read."""
    if not found.current:
        raise token_revoked()
    if found.role is None:
        raise ProjectNotFound()
    if found.role < required:
        raise role_required(found.role, required)
    if inbox_conflicts and found.is_inbox:
        raise InboxConflict()
    if expected_versions is not None and found.version not in expected_versions:
        raise PreconditionFailed()


async def create_project(db: Db, caller: AccessClaims, data: ProjectCreate) -> ProjectRecord:
    """A new project, the caller its owner, and their events (one transaction)."""
    created = await statements.insert_project(db, caller, data.name, data.description, utcnow())
    if created is None:
        raise token_revoked()
    return created


async def get_project(db: Db, caller: AccessClaims, project_id: int) -> ProjectRecord:
    found = await statements.fetch(db, caller, project_id)
    if found is not None:
        return found
    await explain_miss(db, caller, project_id, least_role(Permission.PROJECT_READ))
    raise ProjectNotFound()


async def update_project(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    data: ProjectUpdate,
    *,
    expected_versions: frozenset[int] | None = None,
) -> ProjectRecord:
    """Change the name or description (an admin); a change that changes nothing keeps the
    version. `expected_versions`: the versions `If-Match` named (None: no If-Match)."""
    changes = data.model_dump(exclude_unset=True)
    expected = sorted(expected_versions) if expected_versions is not None else None
    required = least_role(Permission.PROJECT_UPDATE)
    if changes and expected != []:  # If-Match naming no strong tag of ours matches nothing
        updated = await statements.update_project(
            db, caller, project_id, changes, now=utcnow(), expected_versions=expected
        )
        if updated is not None:
            return updated
    # Nothing to change, or a miss: the same checks decide, in the same order.
    await explain_miss(db, caller, project_id, required, expected_versions=expected)
    return await get_project(db, caller, project_id)


async def delete_project(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    *,
    expected_versions: frozenset[int] | None = None,
) -> None:
    """To the trash with its tasks (an owner); never the Inbox (409)."""
    expected = sorted(expected_versions) if expected_versions is not None else None
    if expected != [] and await statements.trash_project(
        db, caller, project_id, now=utcnow(), expected_versions=expected
    ):
        return
    await explain_miss(
        db,
        caller,
        project_id,
        least_role(Permission.PROJECT_DELETE),
        inbox_conflicts=True,
        expected_versions=expected,
    )
    raise ProjectNotFound()  # unreachable but for a project trashed meanwhile


async def restore_project(db: Db, caller: AccessClaims, project_id: int) -> ProjectRecord:
    """Out of the trash with its members, roles and tasks (an owner); restoring a live
    project returns it unchanged. A trashed project is a 404 to anyone but its owners."""
    required = least_role(Permission.PROJECT_RESTORE)

    async def restore() -> ProjectRecord | None:
        async with db.transaction():
            now = utcnow()
            restored = await statements.restore_project(db, caller, project_id, now=now)
            if restored is not None:
                # Its tasks' reminders that came while it was in the trash are not sent late.
                await reminders.spend_passed_reminders(db, now, project_id=project_id)
                return restored
        found = await statements.diagnose(db, caller, project_id)
        if found.current and found.owned_in_trash:
            return None  # live when the restore looked, trashed since: made again
        _explain(found, required)  # 401, 404, 403
        # Live: returned unchanged (None: trashed since the diagnosis, made again too).
        return await statements.fetch(db, caller, project_id)

    async def refusal() -> AppError | None:
        return None  # `restore` raised what refuses it; what is left is a delete meanwhile

    return await retries.made_again_while_allowed(restore, refusal)


def _pack_name(name: str) -> str:
    """A name as a cursor holds it: its UTF-8 in base64. The cursor's JSON would escape
    each character beyond ASCII in 6 to 12 characters, and a name of 100 emoji would make a
    cursor longer than any cursor a client may send back."""
    return base64.urlsafe_b64encode(name.encode()).decode("ascii")


def _unpack_name(packed: str) -> str:
    try:
        return base64.urlsafe_b64decode(packed.encode("ascii")).decode()
    except (ValueError, UnicodeError) as exc:  # not possible: the cursor is signed
        raise InvalidCursor() from exc


@dataclass(frozen=True, slots=True)
class ProjectPage:
    items: list[ProjectRecord]
    next_cursor: str | None


async def list_projects(
    db: Db,
    caller: AccessClaims,
    *,
    deleted: bool,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> ProjectPage:
    """The caller's projects by name (case-insensitive), then id, as keyset pages."""
    binding = binding_digest(user=caller.user_id, resource="projects", sort="name", deleted=deleted)
    after = None
    if cursor is not None:
        position = decode_cursor(cursor, binding=binding, key=cursor_key)
        if not isinstance(position.key, str):
            raise InvalidCursor()
        after = (_unpack_name(position.key), position.last_id)
    rows = await statements.list_projects(db, caller, deleted=deleted, after=after, limit=limit + 1)
    if not rows:
        if not await task_statements.caller_is_still_current(db, caller):
            raise token_revoked()  # nothing listed: an empty page, or a dead token
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last, key = rows[-1]
        next_cursor = encode_cursor(
            CursorPosition(_pack_name(key), last.id), binding=binding, key=cursor_key
        )
    return ProjectPage([project for project, _ in rows], next_cursor)
