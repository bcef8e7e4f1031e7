"""The outbox jobs: what the event log makes, read past a cursor of their own.

`fan_out` reads the next events the feed's horizon allows (so it never passes an event whose
transaction commits late: the change feed's guarantee, docs/decisions/0030) and, in one
transaction with the cursor's move, makes:

- the **notifications** of spec section 8: `assigned` (someone else assigned you),
  `invited`, `commented` (on a task you created or are assigned to, by someone else),
  `role_changed` and `removed` (by someone else), each keyed `event:<id>` so it is made once;
- the first attempt of each **webhook message** (spec section 9): one per webhook of the
  event's project (and, for a move, of the project the task left) whose `events` name it and
  that was active when the event happened (decision 0033).

`send_reminders` makes the `reminder` notifications of the tasks whose `remind_at` has come:
each (task, remind_at) is claimed in `sent_reminders` in the same transaction, so it is sent
once whatever the number of workers; a new `remind_at` is a new claim. A reminder goes to
the task's assignees; without any, to its creator; without a creator who is still a member,
to the project's owners.

A deactivated account gets no notification (`add_notifications`), and so no mail.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog

from app.core.roles import ProjectRole
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import events
from app.db.statements import outbox as statements
from app.db.statements.events import EventRow, Position
from app.jobs.runtime import JobRuntime
from app.schemas.webhook import subscribed
from app.services.history import event_documents

log = structlog.get_logger("app.jobs")

# The outbox cursor's name (migration 0007 starts it at the end of the log it found).
OUTBOX = "outbox"
# Events read per transaction: a long backlog is worked through in several.
FAN_OUT_BATCH = 500
REMINDER_BATCH = 200
# How long a run makes new batches of reminders: thousands due at once are all made within
# the contract's 10 seconds (a black-box run with 2,400 saw a batch per run and 24 s), and a
# worker's graceful stop still waits at most this for the run.
REMINDING_SECONDS = 5.0
# A reminder missed while no worker ran is still sent when one starts, unless it is more
# than this late (spec section 8).
REMINDER_LATEST = timedelta(days=1)


def _microseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _changes(row: EventRow) -> dict[str, list[Any]]:
    loaded: dict[str, list[Any]] = orjson.loads(row.changes)
    return loaded


def _role(rank: Any) -> str:
    try:
        return ProjectRole(int(rank)).label
    except (TypeError, ValueError):
        return "member"


class _Made:
    """The notifications made from one batch, with what their messages name."""

    def __init__(self, now: datetime, mail: bool) -> None:
        self.now, self.mail = now, mail
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        user_id: int,
        kind: str,
        message: str,
        dedupe_key: str,
        *,
        project_id: int | None,
        task_id: int | None,
        actor_id: int | None,
    ) -> None:
        self.rows.append(
            statements.notification_row(
                user_id=user_id,
                kind=kind,
                message=message,
                dedupe_key=dedupe_key,
                now=self.now,
                mail=self.mail,
                project_id=project_id,
                task_id=task_id,
                actor_id=actor_id,
            )
        )


def _renews_an_invitation(row: EventRow) -> bool:
    """An invitation made again with another role (its addressee is told the new one)."""
    return row.entity == "invitation" and row.action == "updated" and "role" in _changes(row)


async def _notifications(db: Db, rows: list[EventRow], made: _Made) -> None:
    """The notifications of spec section 8 that `rows` call for."""
    actors = {row.actor_id for row in rows if row.actor_id is not None}
    # An invitation made, or made again with another role (the address is in the `changes`
    # of the first, in the invitation itself for the second).
    renewed = await statements.invitation_emails(
        db, {row.entity_id for row in rows if _renews_an_invitation(row)}
    )
    addressed = {
        row.id: str(_changes(row).get("email", [None, None])[1])
        if row.action == "created"
        else renewed.get(row.entity_id, "")
        for row in rows
        if row.entity == "invitation" and (row.action == "created" or _renews_an_invitation(row))
    }
    invited = {email for email in addressed.values() if email}
    commented = {row.task_id for row in rows if row.entity == "comment" and row.action == "created"}
    names = await statements.user_names(db, actors)
    projects = await statements.project_names(db, {row.project_id for row in rows})
    titles = await statements.task_titles(db, {row.task_id for row in rows if row.task_id})
    # Messages name a project and a task as they were when the event happened: a name given
    # later (after the recipient was removed, say) is not theirs to learn. Looked up for the
    # events whose messages name them (memberships and invitations name the project;
    # assignments and comments the task), from the first of those on.
    naming = {(row.project_id, row.id) for row in rows if row.entity in ("member", "invitation")}
    titling = {
        (row.task_id, row.id)
        for row in rows
        if row.task_id
        and (row.entity == "comment" or (row.entity == "task" and "assignee_ids" in _changes(row)))
    }
    renamed = await statements.names_before(db, "project", "name", naming)
    retitled = await statements.names_before(db, "task", "title", titling)
    accounts = await statements.users_by_email(db, invited)
    followers = await statements.task_followers(db, {t for t in commented if t is not None})

    for row in rows:
        actor = names.get(row.actor_id or 0, "Someone")
        project = statements.name_at(
            row.id, projects.get(row.project_id, "a project"), renamed.get(row.project_id, ())
        )
        title = statements.name_at(
            row.id, titles.get(row.task_id or 0, "a task"), retitled.get(row.task_id or 0, ())
        )
        key = f"event:{row.id}"
        about = {"project_id": row.project_id, "task_id": row.task_id, "actor_id": row.actor_id}
        changes = _changes(row)
        if row.entity == "task" and "assignee_ids" in changes:
            old, new = changes["assignee_ids"]
            for user_id in sorted(set(new or ()) - set(old or ()) - {row.actor_id}):
                made.add(user_id, "assigned", f"{actor} assigned you to “{title}”", key, **about)
        elif row.entity == "comment" and row.action == "created" and row.task_id is not None:
            for user_id in sorted(followers.get(row.task_id, set()) - {row.actor_id}):
                made.add(user_id, "commented", f"{actor} commented on “{title}”", key, **about)
        elif row.id in addressed:
            role = changes.get("role", [None, None])[1]
            user_id = accounts.get(addressed[row.id])
            if user_id is not None and user_id != row.actor_id and role is not None:
                message = f"{actor} invited you to {project} as {_role(role)}"
                made.add(user_id, "invited", message, key, **about)
        # Not a member's own leaving, nor the system's removals when it purges a project:
        # that project went to the trash a retention period before, and is not named now.
        elif row.entity == "member" and row.actor_id not in (None, row.entity_id):
            if row.action == "role_changed":
                role = changes.get("role", [None, None])[1]
                message = f"{actor} changed your role in {project} to {_role(role)}"
                made.add(row.entity_id, "role_changed", message, key, **about)
            elif row.action == "removed":
                message = f"{actor} removed you from {project}"
                made.add(row.entity_id, "removed", message, key, **about)


async def _webhook_messages(db: Db, rows: list[EventRow], now: datetime) -> int:
    projects = {row.project_id for row in rows} | {
        row.from_project_id for row in rows if row.from_project_id is not None
    }
    hooks = await statements.webhooks_active_since(db, projects, min(row.at for row in rows))
    if not hooks:
        return 0
    # (event, webhook, the webhook's project): a move is sent to the webhooks of both
    # projects, each showing the task as an admin of its own project sees it now.
    wanted: list[tuple[EventRow, int, int]] = []
    for row in rows:
        event_type = f"{row.entity}.{row.action}"
        for hook in hooks:
            # A webhook gets what happened while it was active (from its creation or its
            # last enabling, until its disabling), however late this run comes to it: not
            # the project's past, nor what happened while it was off. Made while it is off,
            # an attempt waits for it to be enabled again (`app.jobs.deliveries`).
            if (
                hook.project_id in (row.project_id, row.from_project_id)
                and hook.covers(row.at)
                and subscribed(hook.events, event_type)
            ):
                wanted.append((row, hook.webhook_id, hook.project_id))
    if not wanted:
        return 0
    documents: dict[tuple[int, int], dict[str, Any]] = {}
    for seen_from in {project_id for _, _, project_id in wanted}:
        needed = list({row.id: row for row, _, p in wanted if p == seen_from}.values())
        made = await event_documents(db, needed, seen_from=seen_from)
        documents.update(((seen_from, row.id), doc) for row, doc in zip(needed, made, strict=True))
    attempts = []
    for row, webhook_id, project_id in wanted:
        document = documents[project_id, row.id]
        body = {"type": f"{row.entity}.{row.action}", "timestamp": document["at"], "data": document}
        attempts.append(
            {
                "webhook_id": webhook_id,
                "event_id": row.id,
                "message_id": f"msg_{row.id}_{webhook_id}",
                "type": body["type"],
                "payload": orjson.dumps(body).decode(),
                "attempt": 1,
                "status": "pending",
                "created_at": now,
                "next_attempt_at": now,
            }
        )
    return await statements.add_first_attempts(db, attempts)


async def fan_out(runtime: JobRuntime) -> int:
    """Make what the next events call for; how many events were passed. Runs batches until
    it has caught up with the horizon."""
    passed = 0
    while True:
        async with runtime.transaction() as db:
            # The horizon first: read before this transaction holds a transaction id of its
            # own (taking the cursor's lock gives it one).
            upto = await events.horizon(db)
            after = await statements.lock_cursor(db, OUTBOX)
            if after is None:
                return passed  # another run is on it
            if after > upto and after > await events.horizon(db):
                # Not a run that moved the cursor since this one took its horizon (read again
                # now, it covers what that run covered): positions only grow, so the log is a
                # copy restored since the cursor moved (a backup, or a dump in a cluster whose
                # transaction ids start lower; see docs/deploying.md), and its new events
                # would wait until it caught up.
                log.error("outbox_cursor_ahead_of_the_log", cursor=after, horizon=upto)
            if not after < upto:
                return passed
            rows = await statements.log_after(db, after, upto, FAN_OUT_BATCH)
            now = utcnow()
            made = _Made(now, mail=runtime.settings.smtp_url is not None)
            if rows:
                await _notifications(db, rows, made)
                await statements.add_notifications(db, made.rows)
                await _webhook_messages(db, rows, now)
            reached = Position(rows[-1].xid, rows[-1].id) if len(rows) == FAN_OUT_BATCH else upto
            await statements.move_cursor(db, OUTBOX, reached)
            passed += len(rows)
        if len(rows) < FAN_OUT_BATCH:
            return passed


async def send_reminders(runtime: JobRuntime) -> int:
    """Make the reminders whose time has come, a batch per transaction until none is left
    (or `REMINDING_SECONDS` have passed: the next run goes on); how many notifications."""
    made_count = 0
    reminding_until = asyncio.get_running_loop().time() + REMINDING_SECONDS
    while True:
        made, due = await _remind_a_batch(runtime)
        made_count += made
        if due < REMINDER_BATCH or asyncio.get_running_loop().time() >= reminding_until:
            return made_count


async def _remind_a_batch(runtime: JobRuntime) -> tuple[int, int]:
    """The reminders of the next `REMINDER_BATCH` due tasks: how many notifications were made,
    and how many tasks were due."""
    now = utcnow()
    async with runtime.transaction() as db:
        due = await statements.due_reminders(db, now, now - REMINDER_LATEST, REMINDER_BATCH)
        if not due:
            return 0, 0
        task_ids = {task_id for task_id, _, _, _ in due}
        assignees = await statements.assignees_of(db, task_ids)
        creators = dict(await statements.task_creators(db, task_ids))
        owners = await statements.project_owners(db, {project for _, _, project, _ in due})
        active = await statements.active_among(
            db,
            {user for users in (*assignees.values(), *owners.values()) for user in users}
            | set(creators.values()),
        )
        made = _Made(now, mail=runtime.settings.smtp_url is not None)
        for task_id, remind_at, project_id, title in due:
            if not await statements.claim_reminder(db, task_id, remind_at, now):
                continue
            # Its assignees; without any, its creator; a creator no longer a member (they
            # left, or the task was moved to a project of others) cannot see it: the
            # project's owners then, who can and may act on it. Deactivated accounts are
            # passed over (they are notified of nothing): the next in line, never nobody.
            in_line = (
                assignees.get(task_id, []),
                [creators[task_id]] if task_id in creators else [],
                owners.get(project_id, []),
            )
            recipients = next(
                (kept for users in in_line if (kept := [u for u in users if u in active])), []
            )
            # The claim's time tells this arming of the value from an earlier one's.
            key = f"reminder:{task_id}:{remind_at.isoformat()}:{_microseconds(now)}"
            for user_id in recipients:
                made.add(
                    user_id,
                    "reminder",
                    f"Reminder: “{title}”",
                    key,
                    project_id=project_id,
                    task_id=task_id,
                    actor_id=None,
                )
        return await statements.add_notifications(db, made.rows), len(due)
