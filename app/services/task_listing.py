"""Listing tasks: keyset pages of the caller's tasks, filtered and sorted.

v1 (`list_tasks`) lists the caller's Inbox; v2 (`list_team_tasks`) the tasks of every live
project the caller is a member of, or of those named, with assignee and label filters too
(spec api-v2 section 5, Listing). A cursor names the last task of the previous page (its sort
key and id), signed and bound to the caller, the filters and the sort (docs/decisions/0004).
The statements are `app.db.statements.task_listing`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.errors import ErrorItem, ValidationFailed, error_item
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.statements import task_listing as statements
from app.db.statements import tasks as task_statements
from app.db.statements.task_listing import (
    DEFAULT_SORT,
    SORT_FIELDS,
    Position,
    TaskFilters,
    TaskSort,
    TeamFilters,
)
from app.db.statements.tasks import TaskDetail
from app.models.task import TaskRecord
from app.services.task import token_revoked

__all__ = [
    "DEFAULT_SORT",
    "SORT_FIELDS",
    "TaskFilters",
    "TaskPage",
    "TaskSort",
    "TeamFilters",
    "TaskDetail",
    "TeamTaskPage",
    "list_tasks",
    "list_team_tasks",
]


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: list[TaskRecord]
    next_cursor: str | None


def _cursor_key(task: TaskRecord, sort: TaskSort) -> Any:
    value = statements.sort_key(task, sort)
    return value.isoformat() if isinstance(value, datetime) else value


def _position(position: CursorPosition, sort: TaskSort) -> Position:
    """The cursor's JSON key as a typed value; anything unexpected is a bad cursor."""
    key = position.key
    if sort.field == "priority":
        if not isinstance(key, int) or isinstance(key, bool):
            raise InvalidCursor()
        return Position(key, position.last_id)
    if key is None and sort.field == "due_at":
        return Position(None, position.last_id)
    if not isinstance(key, str):
        raise InvalidCursor()
    try:
        parsed = datetime.fromisoformat(key)
    except ValueError as exc:
        raise InvalidCursor() from exc
    if parsed.tzinfo is None:
        raise InvalidCursor()
    return Position(parsed, position.last_id)


def _start(cursor: str | None, sort: TaskSort, binding: str, cursor_key: bytes) -> Position | None:
    """Where the page starts: after the cursor's task, or at the beginning."""
    if cursor is None:
        return None
    return _position(decode_cursor(cursor, binding=binding, key=cursor_key), sort)


def _next_cursor(last: TaskRecord, sort: TaskSort, binding: str, cursor_key: bytes) -> str:
    position = CursorPosition(_cursor_key(last, sort), last.id)
    return encode_cursor(position, binding=binding, key=cursor_key)


async def list_tasks(
    db: Db,
    caller: AccessClaims,
    *,
    filters: TaskFilters,
    sort: TaskSort,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> TaskPage:
    binding = binding_digest(user=caller.user_id, filters=filters.binding(), sort=str(sort))
    position = _start(cursor, sort, binding, cursor_key)
    tasks = await statements.list_rows(db, caller, filters, sort, position, limit + 1)
    if not tasks and not await task_statements.caller_is_still_current(db, caller):
        # Nothing listed: an empty page, or a token that is no longer current (401).
        raise token_revoked()
    next_cursor = None
    if len(tasks) > limit:
        tasks = tasks[:limit]
        next_cursor = _next_cursor(tasks[-1], sort, binding, cursor_key)
    return TaskPage(tasks, next_cursor)


# --- v2 ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TeamTaskPage:
    items: list[TaskDetail]
    next_cursor: str | None


def _unseen(projects_seen: bool, label_seen: bool) -> list[ErrorItem]:
    """The 422 items of a project or label filter naming what the caller may not see: the
    same whether it does not exist, is another team's, or is in the trash."""
    errors = []
    if not projects_seen:
        errors.append(
            error_item(
                ["query", "project_id"],
                "Names a project that does not exist or that you may not see",
                "project_not_found",
            )
        )
    if not label_seen:
        errors.append(
            error_item(
                ["query", "label_id"],
                "Names a label that does not exist or that you may not see",
                "label_not_found",
            )
        )
    return errors


async def list_team_tasks(
    db: Db,
    caller: AccessClaims,
    *,
    filters: TaskFilters,
    team: TeamFilters,
    sort: TaskSort,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> TeamTaskPage:
    """A page of the tasks of the caller's live projects (those `team` names, if any), in
    one statement (a few when the walk is cut into pieces). Who may see what is decided
    by that statement at the moment it runs: a member removed between two pages no longer
    sees the project on the next one. Only an empty page asks why (a token no longer
    current: 401; a project or label the caller may not see: 422)."""
    binding = binding_digest(
        user=caller.user_id,
        filters=filters.binding() | team.binding(),
        sort=str(sort),
    )
    position = _start(cursor, sort, binding, cursor_key)
    listed = await statements.list_team_rows(db, caller, filters, team, sort, position, limit + 1)
    if not listed:
        current, projects_seen, label_seen = await statements.team_diagnosis(db, caller, team)
        if not current:
            raise token_revoked()
        errors = _unseen(projects_seen, label_seen)
        if errors:
            raise ValidationFailed(errors=errors)
    next_cursor = None
    if len(listed) > limit:
        listed = listed[:limit]
        next_cursor = _next_cursor(listed[-1].task, sort, binding, cursor_key)
    return TeamTaskPage(listed, next_cursor)
