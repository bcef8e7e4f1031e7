"""History rules (spec api-v2 section 7): a task's and a project's activity, the change feed,
and retention.

- Activity is newest first, keyset pages by event id, for anyone who may read the task's (or
  the project's) activity; a task's includes its comments' events, a project's includes the
  tasks that were moved out of it. A task or project the caller may not see is a 404, as an
  unknown id is.
- The feed walks the caller's events in log order (`app.db.statements.events`: (xid, id),
  read only up to the horizon), so from any cursor every event committed after it comes
  exactly once (docs/decisions/0030). Its cursor is always given, so a client can poll from
  it; `has_more` says whether to read on at once. A cursor from before what retention has
  removed is a 410: the client may have missed events, and starts over; so is one ahead of
  the log (the database restored from a copy since).
- An invitation's address is shown only to those who may read the project's invitations
  (admins, as `GET .../invitations`): other members get its events without `email` in
  `changes`, as their `object` is null (docs/decisions/0030).
- A move seen from the project the task left, by someone who may not read the project it
  entered, shows only `project_id` in `changes`: the rest is what the task became there.
- A webhook's payload (section 9) is a feed item too, its entity as an admin of the event's
  project sees it now (`event_documents`: no caller; the jobs build payloads from it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from app.core.errors import Gone
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.roles import Permission, least_role
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.statements import event_objects, events
from app.db.statements import tasks as task_statements
from app.db.statements.event_objects import EntityObject, object_key
from app.db.statements.events import EventRow, Position
from app.db.statements.tasks import caller_params
from app.schemas.event import feed_items_json
from app.services.project import explain_miss
from app.services.task import TaskNotFound, token_revoked

# How long a feed page that reached the horizon waits for transactions still running that
# hold back events committed after them (decision 0030), and how often it looks again (from
# every 10 ms to every 100 ms): a request's or a job's transaction lasts milliseconds; a
# session left idle in a transaction is not waited for past this.
CATCH_UP_SECONDS = 2.0
CATCH_UP_FIRST_PAUSE_SECONDS = 0.01
CATCH_UP_MAX_PAUSE_SECONDS = 0.1


class FeedCursorExpired(Gone):
    default_detail = (
        "Events after this cursor have been removed (older than the retention period): "
        "start over without a cursor."
    )


class FeedCursorAhead(Gone):
    default_detail = (
        "This cursor is ahead of the change log (the database was restored from a copy "
        "since it was given): start over without a cursor."
    )


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[EventRow]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FeedPage:
    items: list[tuple[EventRow, EntityObject | None]]
    next_cursor: str
    has_more: bool


# The fields of an invitation's `changes` only those who may read the project's invitations
# see: the address invited (a person who need not be a member, nor have an account).
_INVITEE_FIELDS = ("email",)
# What a move shows from the project the task left to those who may not read the project it
# entered: that it went, and where. Its other changes (a title, assignees or labels changed
# by the same request, or dropped by the move) are what it became there.
_MOVED_OUT_FIELDS = ("project_id",)


def _changes_kept(row: EventRow, keep: Callable[[str], bool]) -> EventRow:
    changes = orjson.loads(row.changes)
    kept = {field: change for field, change in changes.items() if keep(field)}
    return row._replace(changes=orjson.dumps(kept).decode())


def _seen_from_the_project_left(row: EventRow) -> EventRow:
    return _changes_kept(row, lambda field: field in _MOVED_OUT_FIELDS)


async def _as_the_caller_may_read(
    db: Db, params: dict[str, Any], rows: list[EventRow]
) -> list[EventRow]:
    """`rows`, their `changes` without what the caller may not read: an invitation's address
    below the role that reads invitations, and a move's changes but its project to those who
    see it only from the project the task left."""
    invited_in = {row.project_id for row in rows if row.entity == "invitation"}
    moved_to = {row.project_id for row in rows if row.from_project_id is not None}
    if not invited_in and not moved_to:
        return rows
    reads_invitations = (
        await event_objects.projects_with_role(
            db, params, least_role(Permission.INVITATION_READ), invited_in
        )
        if invited_in
        else set()
    )
    reads_destination = (
        await event_objects.projects_with_role(
            db, params, least_role(Permission.ACTIVITY_READ), moved_to
        )
        if moved_to
        else set()
    )

    def shown(row: EventRow) -> EventRow:
        if row.entity == "invitation" and row.project_id not in reads_invitations:
            return _changes_kept(row, lambda field: field not in _INVITEE_FIELDS)
        if row.from_project_id is not None and row.project_id not in reads_destination:
            return _seen_from_the_project_left(row)
        return row

    return [shown(row) for row in rows]


def _before_id(cursor: str | None, binding: str, key: bytes) -> int | None:
    return None if cursor is None else decode_cursor(cursor, binding=binding, key=key).last_id


def _page(rows: list[EventRow], limit: int, binding: str, key: bytes) -> EventPage:
    if len(rows) <= limit:
        return EventPage(rows, None)
    rows = rows[:limit]
    cursor = encode_cursor(CursorPosition(None, rows[-1].id), binding=binding, key=key)
    return EventPage(rows, cursor)


async def task_activity(
    db: Db, caller: AccessClaims, task_id: int, *, limit: int, cursor: str | None, key: bytes
) -> EventPage:
    """A page of a task's events, newest first (the task live or in the trash)."""
    binding = binding_digest(user=caller.user_id, resource="task-activity", task=task_id)
    rows = await events.task_activity(
        db,
        caller_params(caller),
        task_id,
        before_id=_before_id(cursor, binding, key),
        limit=limit + 1,
    )
    if not rows:
        current, _version, role = await task_statements.diagnose_role(
            db, caller, task_id, view="any"
        )
        if not current:
            raise token_revoked()
        if role is None or role < least_role(Permission.ACTIVITY_READ):
            raise TaskNotFound()
    return _page(rows, limit, binding, key)


async def project_activity(
    db: Db, caller: AccessClaims, project_id: int, *, limit: int, cursor: str | None, key: bytes
) -> EventPage:
    """A page of a project's events, newest first."""
    binding = binding_digest(user=caller.user_id, resource="project-activity", project=project_id)
    before_id = _before_id(cursor, binding, key)
    async with db.one_turn():
        rows = await events.project_activity(
            db, caller_params(caller), project_id, before_id=before_id, limit=limit + 1
        )
        if not rows:
            await explain_miss(db, caller, project_id, least_role(Permission.ACTIVITY_READ))
        rows = await _as_the_caller_may_read(db, caller_params(caller), rows)
    return _page(rows, limit, binding, key)


def _feed_binding(caller: AccessClaims) -> str:
    return binding_digest(user=caller.user_id, resource="changes")


def _feed_position(cursor: str, caller: AccessClaims, key: bytes) -> Position:
    position = decode_cursor(cursor, binding=_feed_binding(caller), key=key)
    if not isinstance(position.key, int) or isinstance(position.key, bool):
        raise InvalidCursor()
    return Position(position.key, position.last_id)


def _feed_cursor(position: Position, caller: AccessClaims, key: bytes) -> str:
    return encode_cursor(
        CursorPosition(position.xid, position.id), binding=_feed_binding(caller), key=key
    )


async def changes(
    db: Db, caller: AccessClaims, *, limit: int, cursor: str | None, key: bytes
) -> FeedPage:
    """The caller's next events after `cursor` (from the oldest kept without one: what
    retention removed is gone), each with its entity as the caller may see it now (None:
    gone for them)."""
    after = events.START if cursor is None else _feed_position(cursor, caller, key)
    from_a_cursor = cursor is not None
    async with db.one_turn():
        page, upto = await _feed_page(db, caller, after, limit, from_a_cursor, key)
    if page.has_more:
        return page
    target = await events.newest_xid(db)
    if target is None or target <= upto.xid:
        return page
    # Events already committed wait behind a transaction still running (another request's
    # write, a job's): a client that has its answers reads them before it is told it has
    # caught up (decision 0030, "The last page waits").
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + CATCH_UP_SECONDS, CATCH_UP_FIRST_PAUSE_SECONDS
    while (await events.horizon(db)).xid < target:
        if loop.time() >= deadline:
            return page
        await asyncio.sleep(pause)
        pause = min(pause * 2, CATCH_UP_MAX_PAUSE_SECONDS)
    return (await _feed_page(db, caller, after, limit, from_a_cursor, key))[0]


async def _feed_page(
    db: Db, caller: AccessClaims, after: Position, limit: int, from_a_cursor: bool, key: bytes
) -> tuple[FeedPage, Position]:
    """`changes`' reads, which take one turn together where the database serves one
    transaction at a time; the page, and the horizon it was read under."""
    upto = await events.horizon(db)
    params = caller_params(caller)
    rows = await events.feed(db, params, after=after, upto=upto, limit=limit + 1)
    # A page holds rows only for a current caller (the statement checks); an empty one asks.
    if not rows and not await task_statements.caller_is_still_current(db, caller):
        raise token_revoked()
    if after > upto:
        # Positions only grow, and a cursor is never past the horizon it was read under: this
        # log is not the one it was given from but a copy restored since, whose events after
        # the copy the client may have seen and whose new ones it would skip.
        raise FeedCursorAhead()
    if from_a_cursor:
        # Read after the page: retention removes events and moves its mark in one transaction,
        # so a page that missed removed events is followed by a mark past the cursor.
        removed = await events.removed_through(db)
        if removed is not None and after < removed:
            raise FeedCursorExpired()
    has_more = len(rows) > limit
    rows = await _as_the_caller_may_read(db, params, rows[:limit])
    reached = Position(rows[-1].xid, rows[-1].id) if has_more else max(upto, after)
    wanted: dict[str, set[tuple[int, int]]] = {}
    for row in rows:
        wanted.setdefault(row.entity, set()).add((row.project_id, row.entity_id))
    found = await event_objects.objects(db, params, wanted)
    items = [
        (row, found.get(object_key(row.entity, row.project_id, row.entity_id))) for row in rows
    ]
    return FeedPage(items, _feed_cursor(reached, caller, key), has_more), upto


async def event_documents(
    db: Db, rows: list[EventRow], *, seen_from: int | None = None
) -> list[dict[str, Any]]:
    """Each event of `rows`, in their order, as the change feed shows it now to an admin of
    the project `seen_from` (by default, of each event's own project): the event with its
    entity's v2 document (None once gone, or moved out of that project), each entity
    rendered once. No caller: the jobs' view, for the `data` of a webhook's payload (spec
    api-v2 section 9; a webhook of the project a task moved out of sees it from there)."""

    def viewer(row: EventRow) -> int:
        return row.project_id if seen_from is None else seen_from

    wanted: dict[str, set[tuple[int, int]]] = {}
    for row in rows:
        wanted.setdefault(row.entity, set()).add((viewer(row), row.entity_id))
    found = await event_objects.objects_for_project_admin(db, wanted)
    return feed_items_json(
        (
            row if viewer(row) == row.project_id else _seen_from_the_project_left(row),
            found.get((row.entity, viewer(row), row.entity_id)),
        )
        for row in rows
    )


async def remove_expired(
    db: Db, now: datetime, retention_days: int, *, not_past: Position | None = None
) -> int:
    """Remove the events older than the retention period, none past `not_past` (inside a
    transaction); how many."""
    return await events.remove_older_than(
        db, now - timedelta(days=retention_days), not_past=not_past
    )
