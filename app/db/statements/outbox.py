"""The event log read as the jobs' outbox, and what the jobs make from it (inside a
transaction): notifications (each once per user and `dedupe_key`), the reminders claimed,
and the first attempt of each webhook message (each once per webhook and event).

Every insert here is `ON CONFLICT DO NOTHING` on the row's natural key, so a job run twice,
or on two workers at once, makes each row once; the cursor moves in the same transaction as
what was made from the events it passed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.core.roles import ProjectRole
from app.db.access import Db, Statement
from app.db.statements import events
from app.db.statements.events import EventRow, Position
from app.models.event import Event
from app.models.job import OutboxCursor
from app.models.notification import Notification, SentReminder
from app.models.project import Invitation, Project, ProjectMember
from app.models.task import Task, TaskAssignee, TaskStatus
from app.models.user import User
from app.models.webhook import Webhook, WebhookDelivery


def _insert(db: Db, table: Any) -> Any:
    return (postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert)(table)


# --- the cursor ----------------------------------------------------------------------------


async def lock_cursor(db: Db, name: str) -> Position | None:
    """The outbox cursor `name`, locked until the transaction ends (made at the log's start
    the first time); None while another run holds it. A run does not wait for another: one
    whose worker froze holding the lock (a paused machine, a cut connection) held back every
    worker's runs, which queued behind it, until it went on."""
    await db.session.execute(
        _insert(db, OutboxCursor)
        .values(name=name, xid=events.START.xid, id=events.START.id)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = (
        await db.session.execute(
            select(OutboxCursor.xid, OutboxCursor.id)
            .where(OutboxCursor.name == name)
            .with_for_update(skip_locked=True)
        )
    ).first()
    return None if row is None else Position(int(row[0]), int(row[1]))


async def cursor(db: Db, name: str) -> Position:
    """Where the outbox cursor `name` stands (the log's start before its first run)."""
    found = (
        await db.session.execute(
            select(OutboxCursor.xid, OutboxCursor.id).where(OutboxCursor.name == name)
        )
    ).first()
    return events.START if found is None else Position(int(found[0]), int(found[1]))


async def move_cursor(db: Db, name: str, position: Position) -> None:
    await db.session.execute(
        update(OutboxCursor)
        .where(OutboxCursor.name == name)
        .values(xid=position.xid, id=position.id)
    )


async def log_after(db: Db, after: Position, upto: Position, limit: int) -> list[EventRow]:
    """The first `limit` events of the whole log in (after, upto], in log order."""
    position = tuple_(Event.xid, Event.id)
    result = await db.session.execute(
        events.event_select()
        .where(
            position > tuple_(literal(after.xid), literal(after.id)),
            position <= tuple_(literal(upto.xid), literal(upto.id)),
        )
        .order_by(Event.xid, Event.id)
        .limit(limit)
    )
    return [EventRow._make(row) for row in result.all()]


# --- what the notifications name -------------------------------------------------------------


async def user_names(db: Db, ids: Collection[int]) -> dict[int, str]:
    """Each user's name as a message shows it: the full name, else the email."""
    if not ids:
        return {}
    result = await db.session.execute(
        select(User.id, func.coalesce(User.full_name, User.email)).where(User.id.in_(ids))
    )
    return {int(user_id): str(name) for user_id, name in result.all()}


async def users_by_email(db: Db, emails: Collection[str]) -> dict[str, int]:
    """Active accounts by (folded, as stored) email."""
    if not emails:
        return {}
    result = await db.session.execute(
        select(User.email, User.id).where(User.email.in_(emails), User.is_active)
    )
    return {str(email): int(user_id) for email, user_id in result.all()}


async def invitation_emails(db: Db, ids: Collection[int]) -> dict[int, str]:
    """The address of each invitation of `ids` still there (an answered or revoked one is
    gone)."""
    if not ids:
        return {}
    result = await db.session.execute(
        select(Invitation.id, Invitation.email).where(Invitation.id.in_(ids))
    )
    return {int(invitation_id): str(email) for invitation_id, email in result.all()}


async def project_names(db: Db, ids: Collection[int]) -> dict[int, str]:
    if not ids:
        return {}
    result = await db.session.execute(select(Project.id, Project.name).where(Project.id.in_(ids)))
    return {int(project_id): str(name) for project_id, name in result.all()}


async def task_titles(db: Db, ids: Collection[int]) -> dict[int, str]:
    if not ids:
        return {}
    result = await db.session.execute(select(Task.id, Task.title).where(Task.id.in_(ids)))
    return {int(task_id): str(title) for task_id, title in result.all()}


async def names_before(
    db: Db, entity: str, field: str, named_at: Collection[tuple[int, int]]
) -> dict[int, list[tuple[int, str]]]:
    """For each entity named by an event of `named_at` ((entity id, event id); `entity`:
    "project" or "task"), the changes of its `field` (a name, a title) that the log holds
    after the first of those events: (the change's event id, the value it replaced), oldest
    first. What a message names as it was when its event happened: the value a later change
    replaced, else the current one (`name_at`)."""
    if not named_at:
        return {}
    ids = {entity_id for entity_id, _ in named_at}
    after_id = min(event_id for _, event_id in named_at)
    # A project's events and a task's are indexed by (project_id, id) and (task_id, id): the
    # read walks the events of these few after `after_id`, not the log's tail.
    owner = Event.task_id if entity == "task" else Event.project_id
    rows = await db.session.execute(
        select(Event.entity_id, Event.id, Event.changes)
        .where(
            owner.in_(ids), Event.id > after_id, Event.entity == entity, Event.entity_id.in_(ids)
        )
        .order_by(Event.id)
    )
    before: dict[int, list[tuple[int, str]]] = {}
    for entity_id, event_id, changes in rows.all():
        if field in changes:
            before.setdefault(int(entity_id), []).append((int(event_id), str(changes[field][0])))
    return before


def name_at(event_id: int, current: str, later: Sequence[tuple[int, str]]) -> str:
    """The name as it was at event `event_id`: replaced by the first later change, or current."""
    return next((old for changed_at, old in later if changed_at > event_id), current)


async def task_followers(db: Db, task_ids: Collection[int]) -> dict[int, set[int]]:
    """Who follows each task for its comments: its assignees, and whoever created it (the
    actor of its `created` event, while the log keeps it), if still a member."""
    if not task_ids:
        return {}
    followers: dict[int, set[int]] = {task_id: set() for task_id in task_ids}
    assigned = await db.session.execute(
        select(TaskAssignee.task_id, TaskAssignee.user_id).where(TaskAssignee.task_id.in_(task_ids))
    )
    for task_id, user_id in assigned.all():
        followers[int(task_id)].add(int(user_id))
    for task_id, user_id in await task_creators(db, task_ids):
        followers[task_id].add(user_id)
    return followers


async def task_creators(db: Db, task_ids: Collection[int]) -> list[tuple[int, int]]:
    """(task, creator) for the tasks whose creator is known and still a member of the
    task's project."""
    if not task_ids:
        return []
    result = await db.session.execute(
        select(Task.id, Task.creator_id).where(
            Task.id.in_(task_ids),
            exists().where(
                ProjectMember.project_id == Task.project_id,
                ProjectMember.user_id == Task.creator_id,
            ),
        )
    )
    return [(int(task), int(actor)) for task, actor in result.all() if task and actor]


# --- making notifications ---------------------------------------------------------------------


def notification_row(
    *,
    user_id: int,
    kind: str,
    message: str,
    dedupe_key: str,
    now: datetime,
    mail: bool,
    project_id: int | None,
    task_id: int | None,
    actor_id: int | None,
) -> dict[str, Any]:
    """A new notification's columns; `mail`: a mail is owed for it (SMTP_URL is set)."""
    return {
        "user_id": user_id,
        "kind": kind,
        "created_at": now,
        "read_at": None,
        "project_id": project_id,
        "task_id": task_id,
        "actor_id": actor_id,
        "message": message,
        "dedupe_key": dedupe_key,
        "mail_status": "pending" if mail else None,
        "mail_attempts": 0,
        "mail_next_attempt_at": now if mail else None,
        "mail_error": None,
    }


async def active_among(db: Db, user_ids: Collection[int]) -> set[int]:
    """Those of `user_ids` whose account is active (not deactivated by an admin)."""
    if not user_ids:
        return set()
    result = await db.session.execute(select(User.id).where(User.id.in_(user_ids), User.is_active))
    return {int(user_id) for user_id in result.scalars()}


async def add_notifications(db: Db, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert notifications (each a dict of Notification's columns), skipping any whose
    (user_id, dedupe_key) exists already, and any for an account an admin deactivated (who
    cannot sign in to read it, and whose address is no longer ours to mail); how many were
    new."""
    if not rows:
        return 0
    active = await active_among(db, {row["user_id"] for row in rows})
    rows = [row for row in rows if row["user_id"] in active]
    if not rows:
        return 0
    result = await db.session.execute(
        _insert(db, Notification)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
        .returning(Notification.id)
    )
    return len(result.all())


# --- reminders --------------------------------------------------------------------------------


async def due_reminders(
    db: Db, now: datetime, not_before: datetime, limit: int
) -> list[tuple[int, datetime, int, str]]:
    """(task, remind_at, project, title) of live, unfinished tasks of live projects whose
    `remind_at` is in [not_before, now] and not yet sent, oldest first."""
    result = await db.session.execute(
        select(Task.id, Task.remind_at, Task.project_id, Task.title)
        .join(Project, Project.id == Task.project_id)
        .where(
            Task.remind_at.is_not(None),
            Task.deleted_at.is_(None),
            Task.remind_at <= now,
            Task.remind_at >= not_before,
            Task.status != TaskStatus.DONE.value,
            Project.deleted_at.is_(None),
            ~exists().where(
                SentReminder.task_id == Task.id, SentReminder.remind_at == Task.remind_at
            ),
        )
        .order_by(Task.remind_at, Task.id)
        .limit(limit)
    )
    return [(int(a), b, int(c), str(d)) for a, b, c, d in result.all() if b is not None]


async def claim_reminder(db: Db, task_id: int, remind_at: datetime, now: datetime) -> bool:
    """Record that this (task, remind_at) is being sent; False if another run did (on
    PostgreSQL a concurrent claim waits for the first to commit, then finds it)."""
    result = await db.session.execute(
        _insert(db, SentReminder)
        .values(task_id=task_id, remind_at=remind_at, sent_at=now)
        .on_conflict_do_nothing(index_elements=["task_id", "remind_at"])
        .returning(SentReminder.task_id)
    )
    return result.first() is not None


async def spend_passed_reminders(
    db: Db, now: datetime, *, task_id: int | None = None, project_id: int | None = None
) -> None:
    """Record as made the reminders whose time passed while their task could have none (in
    the trash, done, or its project in the trash), as it comes back (the task `task_id`, or
    the live tasks of the project `project_id`): it was not reminded then, and is not
    reminded late now (spec api-v2 section 8). Inside the write's transaction, after it."""
    scope = (
        Task.id == task_id
        if task_id is not None
        else and_(Task.project_id == project_id, Task.deleted_at.is_(None))
    )
    passed = select(Task.id, Task.remind_at, literal(now, type_=SentReminder.sent_at.type)).where(
        scope, Task.remind_at <= now
    )
    await db.execute(
        _insert(db, SentReminder)
        .from_select(["task_id", "remind_at", "sent_at"], passed)
        .on_conflict_do_nothing(index_elements=["task_id", "remind_at"])
    )


_DONE_TASKS_REMIND_AT = Statement(
    select(Task.remind_at).where(
        Task.id == bindparam("task_id"), Task.status == TaskStatus.DONE.value
    )
)


async def remind_at_while_done(db: Db, task_id: int) -> datetime | None:
    """The task's `remind_at` if the task is `done` now (None otherwise, or without one):
    read before a write that may take it out of `done`, on its own, outside the write's
    transaction (a read takes no transaction id, and the write keeps its one statement
    unless the task was done)."""
    found = await db.first(_DONE_TASKS_REMIND_AT, {"task_id": task_id})
    return found[0] if found is not None else None


async def forget_other_reminders(db: Db, task_id: int) -> None:
    """Forget the reminders made for the task's other `remind_at` values, after a write that
    set it: a change arms it again, also back to a value that fired before (spec api-v2
    section 8), while setting the same value again is no change and keeps its record. Inside
    the write's transaction."""
    current = select(Task.remind_at).where(Task.id == task_id).scalar_subquery()
    await db.execute(
        delete(SentReminder).where(
            SentReminder.task_id == task_id, SentReminder.remind_at.is_distinct_from(current)
        )
    )


async def assignees_of(db: Db, task_ids: Collection[int]) -> dict[int, list[int]]:
    if not task_ids:
        return {}
    found: dict[int, list[int]] = {}
    result = await db.session.execute(
        select(TaskAssignee.task_id, TaskAssignee.user_id)
        .where(TaskAssignee.task_id.in_(task_ids))
        .order_by(TaskAssignee.task_id, TaskAssignee.user_id)
    )
    for task_id, user_id in result.all():
        found.setdefault(int(task_id), []).append(int(user_id))
    return found


async def project_owners(db: Db, project_ids: Collection[int]) -> dict[int, list[int]]:
    """The owners of each project (an Inbox's is its user), by user id."""
    if not project_ids:
        return {}
    found: dict[int, list[int]] = {}
    result = await db.session.execute(
        select(ProjectMember.project_id, ProjectMember.user_id)
        .where(
            ProjectMember.project_id.in_(project_ids),
            ProjectMember.role == int(ProjectRole.OWNER),
        )
        .order_by(ProjectMember.project_id, ProjectMember.user_id)
    )
    for project_id, user_id in result.all():
        found.setdefault(int(project_id), []).append(int(user_id))
    return found


# --- webhook messages -------------------------------------------------------------------------


class ActivePeriod(NamedTuple):
    """A webhook's last period of being active (`until` None: it still is)."""

    webhook_id: int
    project_id: int
    events: list[str]
    since: datetime
    until: datetime | None

    def covers(self, moment: datetime) -> bool:
        return self.since <= moment and (self.until is None or moment < self.until)


async def webhooks_active_since(
    db: Db, project_ids: Collection[int], oldest: datetime
) -> list[ActivePeriod]:
    """The projects' webhooks that have been active at some moment since `oldest` (the
    oldest event of a batch), with their last period of being active."""
    if not project_ids:
        return []
    result = await db.session.execute(
        select(
            Webhook.id,
            Webhook.project_id,
            Webhook.events,
            func.coalesce(Webhook.active_from, Webhook.created_at),
            Webhook.active_until,
        )
        .where(
            Webhook.project_id.in_(project_ids),
            or_(Webhook.active_until.is_(None), Webhook.active_until > oldest),
        )
        .order_by(Webhook.id)
    )
    return [ActivePeriod(int(a), int(b), list(c), d, e) for a, b, c, d, e in result.all()]


async def add_first_attempts(db: Db, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert the first attempt of webhook messages, skipping those made already."""
    if not rows:
        return 0
    result = await db.session.execute(
        _insert(db, WebhookDelivery)
        .values(list(rows))
        .on_conflict_do_nothing(
            index_elements=["webhook_id", "event_id"],
            index_where=and_(WebhookDelivery.attempt == 1, WebhookDelivery.event_id.is_not(None)),
        )
        .returning(WebhookDelivery.id)
    )
    return len(result.all())
