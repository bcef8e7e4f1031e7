"""Listing tasks: keyset pages of the caller's tasks, filtered and sorted.

A cursor names the last task of the previous page (its sort key and id), signed and bound to
the caller, the filters and the sort (docs/decisions/0004). The statements are
`app.db.statements.task_listing`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
)
from app.models.task import TaskRecord
from app.services.task import token_revoked

__all__ = ["DEFAULT_SORT", "SORT_FIELDS", "TaskFilters", "TaskPage", "TaskSort", "list_tasks"]


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
    position = None
    if cursor is not None:
        position = _position(decode_cursor(cursor, binding=binding, key=cursor_key), sort)
    tasks = await statements.list_rows(db, caller, filters, sort, position, limit + 1)
    if not tasks and not await task_statements.caller_is_still_current(db, caller):
        # Nothing listed: an empty page, or a token that is no longer current (401).
        raise token_revoked()
    next_cursor = None
    if len(tasks) > limit:
        tasks = tasks[:limit]
        last = tasks[-1]
        next_cursor = encode_cursor(
            CursorPosition(_cursor_key(last, sort), last.id), binding=binding, key=cursor_key
        )
    return TaskPage(tasks, next_cursor)
