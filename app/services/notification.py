"""Notification rules (spec api-v2 section 8): a user reads and marks read their own
notifications, and only those.

- A page is newest first, keyset by id, its cursor bound to the user and to `unread`; each
  page also says how many of the user's notifications are unread (the sidebar's count).
- Marking one read keeps its first `read_at` (marking it again changes nothing); marking all
  read is one statement over the caller's unread ones.
- Another user's notification is a 404, as an unknown id is; a token no longer current is a
  401 (the statements match nothing for it, and `caller_state` says why).

Notifications are made by the jobs (`app.jobs`) from the event log and from reminders;
nothing here makes one.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import AppError, NotFound
from app.core.pagination import CursorPosition, binding_digest, decode_cursor, encode_cursor
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import notifications as statements
from app.db.statements.notifications import NotificationRow
from app.services.task import token_revoked

__all__ = [
    "NotificationNotFound",
    "NotificationPage",
    "NotificationRow",
    "list_notifications",
    "mark_all_read",
    "mark_read",
]


class NotificationNotFound(NotFound):
    default_detail = "Notification not found."


@dataclass(frozen=True, slots=True)
class NotificationPage:
    items: list[NotificationRow]
    next_cursor: str | None
    unread_count: int


def _binding(caller: AccessClaims, unread: bool) -> str:
    return binding_digest(user=caller.user_id, resource="notifications", unread=unread)


async def list_notifications(
    db: Db,
    caller: AccessClaims,
    *,
    unread: bool,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> NotificationPage:
    """A page of the caller's notifications (only the unread with `unread`), newest first."""
    binding = _binding(caller, unread)
    before_id = (
        None if cursor is None else decode_cursor(cursor, binding=binding, key=cursor_key).last_id
    )
    rows, unread_count = await statements.page(
        db, caller, unread=unread, before_id=before_id, limit=limit + 1
    )
    if unread_count is None:
        # An empty page, or a caller whose token is no longer current.
        current, unread_count = await statements.caller_state(db, caller)
        if not current:
            raise token_revoked()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(
            CursorPosition(None, rows[-1].id), binding=binding, key=cursor_key
        )
    return NotificationPage(rows, next_cursor, unread_count)


async def _missing(db: Db, caller: AccessClaims) -> AppError:
    current, _ = await statements.caller_state(db, caller)
    return NotificationNotFound() if current else token_revoked()


async def mark_read(db: Db, caller: AccessClaims, notification_id: int) -> NotificationRow:
    """Mark one of the caller's notifications read (once: its first `read_at` stays)."""
    await statements.mark_read(db, caller, notification_id, utcnow())
    found = await statements.one(db, caller, notification_id)
    if found is None:
        raise await _missing(db, caller)
    return found


async def mark_all_read(db: Db, caller: AccessClaims) -> int:
    """Mark every unread notification of the caller read; how many were."""
    marked = await statements.mark_all_read(db, caller, utcnow())
    if marked == 0:
        current, _ = await statements.caller_state(db, caller)
        if not current:
            raise token_revoked()
    return marked
