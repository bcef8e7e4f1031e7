"""The mail notifications owe their users, as the mail job works it (inside transactions).

A claim leases a mail (`mail_next_attempt_at` moved to the lease's end, still `pending`) and
it is sent outside any transaction; just before the message itself is handed over (SMTP's
DATA) it becomes `sending`. Its outcome is written only while the claim's lease is still its
own. When a lease ends without an outcome (the worker stopped), a mail still `pending` had
not reached the server and is due again; one `sending` may have, and is given up, not sent
again: the contract's "at most once" (spec api-v2 section 8), where a webhook message is at
least once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, update

from app.db.access import Db
from app.db.statements.notifications import with_subjects_seen_by
from app.models.notification import Notification
from app.models.project import Project
from app.models.task import Task
from app.models.user import User


class OwedMail(NamedTuple):
    id: int
    email: str
    kind: str
    message: str
    attempts: int
    project_id: int | None
    project_name: str | None
    task_id: int | None
    task_title: str | None


async def claim_due(db: Db, now: datetime, lease_until: datetime, limit: int) -> list[OwedMail]:
    """Lease up to `limit` mails due at `now` until `lease_until` (the claim's token, which
    `mark_sending` and `record_outcome` check); what each owes."""
    due = (
        select(Notification.id)
        .where(Notification.mail_status == "pending", Notification.mail_next_attempt_at <= now)
        .order_by(Notification.mail_next_attempt_at, Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = (
        (
            await db.session.execute(
                update(Notification)
                .where(Notification.id.in_(due.scalar_subquery()))
                .values(mail_next_attempt_at=lease_until)
                .returning(Notification.id)
            )
        )
        .scalars()
        .all()
    )
    if not claimed:
        return []
    # The project and the task as the API shows them to the recipient now: a mail sent
    # (or retried) after a removal names neither, as the notification no longer does.
    owed = select(
        Notification.id,
        User.email,
        Notification.kind,
        Notification.message,
        Notification.mail_attempts,
        Notification.project_id,
        Project.name,
        Notification.task_id,
        Task.title,
    ).join(User, User.id == Notification.user_id)
    rows = await db.session.execute(
        with_subjects_seen_by(owed, Notification.user_id)
        .where(Notification.id.in_(claimed))
        .order_by(Notification.id)
    )
    return [OwedMail._make(row) for row in rows.all()]


async def give_up_unfinished(db: Db, now: datetime) -> int:
    """Give up the mail whose lease has ended while it was being sent (its worker stopped:
    it may have reached the server); how many."""
    given_up = await db.session.execute(
        update(Notification)
        .where(Notification.mail_status == "sending", Notification.mail_next_attempt_at <= now)
        .values(
            mail_status="failed",
            mail_next_attempt_at=None,
            mail_error=UNFINISHED_SEND,
        )
        .returning(Notification.id)
    )
    return len(given_up.all())


# Why a mail whose worker stopped while sending it is not sent again.
UNFINISHED_SEND = "its worker stopped while sending it; not sent again (at most once)"


async def mark_sending(db: Db, notification_id: int, lease_until: datetime, now: datetime) -> bool:
    """The message is about to be handed to the server: from now on it is not sent again.
    Whether the claim that leased it until `lease_until` still holds it at `now` (if not,
    its lease has ended and the mail is the next claim's: it must not be sent; had it been
    marked, a run giving up unfinished mail would give it up while it was being sent)."""
    marked = await db.session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.mail_status == "pending",
            Notification.mail_next_attempt_at == lease_until,
            Notification.mail_next_attempt_at > now,
        )
        .values(mail_status="sending")
        .returning(Notification.id)
    )
    return marked.first() is not None


async def record_outcome(
    db: Db, notification_id: int, lease_until: datetime, values: Mapping[str, Any]
) -> bool:
    """Write a mail's outcome if the claim that leased it until `lease_until` still holds it;
    whether it did."""
    written = await db.session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.mail_status.in_(("pending", "sending")),
            Notification.mail_next_attempt_at == lease_until,
        )
        .values(**values)
        .returning(Notification.id)
    )
    return written.first() is not None
