"""In-app notifications (spec api-v2 section 8), the reminders already sent, and the mail
each notification may owe its user.

A notification is made by a job (`app.jobs`), never by a request: from the event log (the
outbox) or from a task's `remind_at`. `dedupe_key` makes each one exactly once whatever the
number of workers and reruns: `event:<event id>` for one made from an event, `reminder:<task
id>:<remind_at>:<claimed at, µs>` for a reminder (the claim of its `SentReminder` row makes it
once; a `remind_at` set back to a value that fired before is claimed anew); (user_id,
dedupe_key) is unique and every insert is `ON CONFLICT DO NOTHING`.

`mail_status` is NULL when no mail is owed (no `SMTP_URL` when it was made), else `pending`
(due at `mail_next_attempt_at`; once claimed by a worker, that is the end of its lease, and
the mail is claimed again after it), `sending` (its message being handed to the server, until
the lease ends), `sent` or `failed` (given up, or its worker stopped while handing it over:
never sent twice); `mail_attempts` and `mail_next_attempt_at` drive the retries.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, UTCDateTime, utcnow

NOTIFICATION_KINDS = (
    "assigned",
    "invited",
    "commented",
    "reminder",
    "role_changed",
    "removed",
    "webhook_disabled",
)

# Mail owed and due: the mail job's walk.
MAIL_DUE_INDEX = "ix_notifications_mail_due"
# Mail being sent, by the end of its lease: those whose worker stopped are found by it.
MAIL_SENDING_INDEX = "ix_notifications_mail_sending"


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key", name="uq_notifications_user_dedupe"),
        # A user's page, newest first (`unread=true` filters it).
        Index("ix_notifications_user", "user_id", "id"),
        Index(
            MAIL_DUE_INDEX,
            "mail_next_attempt_at",
            postgresql_where=text("mail_status = 'pending'"),
            sqlite_where=text("mail_status = 'pending'"),
        ),
        Index(
            MAIL_SENDING_INDEX,
            "mail_next_attempt_at",
            postgresql_where=text("mail_status = 'sending'"),
            sqlite_where=text("mail_status = 'sending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What it is about; kept without foreign keys: a notification outlives a purged task.
    project_id: Mapped[int | None] = mapped_column(BigInteger)
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(96))
    mail_status: Mapped[str | None] = mapped_column(String(16))
    mail_attempts: Mapped[int] = mapped_column(Integer, default=0)
    mail_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mail_error: Mapped[str | None] = mapped_column(Text)


class SentReminder(Base):
    """A task's `remind_at` whose reminders were made: the reminder job makes them for a
    (task, remind_at) not here, and adds it in the same transaction. A new `remind_at` is a
    new row, which is what arms the reminder again."""

    __tablename__ = "sent_reminders"

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    remind_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
