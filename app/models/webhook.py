"""Webhooks (spec api-v2 section 9): a project's endpoints, and the log of every attempt to
deliver a message to one.

A message is one event (or a ping) for one webhook; `message_id` is its Standard Webhooks
`webhook-id`, the same on every attempt. Each attempt is a row: the next one is inserted
`pending` (with `next_attempt_at`) when the one before failed, so the log shows them all.
(message_id, attempt) is unique, and a message for an event is made once per webhook
((webhook_id, event_id) of attempt 1), so the job that fans events out may run twice.

`secret` signs; after a rotation `previous_secret` signs too until `previous_secret_until`.
Neither is ever shown after the response that created it, logged, or put in an event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, UTCDateTime, utcnow

DELIVERY_STATUSES = ("pending", "succeeded", "failed", "abandoned")

# Attempts due: the delivery job's walk.
DELIVERY_DUE_INDEX = "ix_webhook_deliveries_due"
# A webhook's pending attempts: those due, and those in flight (the cap per webhook).
DELIVERY_PENDING_BY_WEBHOOK_INDEX = "ix_webhook_deliveries_pending_by_webhook"
# Attempts by age: the cleanup's walk (the log is kept as long as the history).
DELIVERY_CREATED_INDEX = "ix_webhook_deliveries_created"


class Webhook(Base):
    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_project", "project_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(Text)
    # "<entity>.<action>" names of spec section 7, or "*".
    events: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its deliveries started failing without a success since (auto-disable).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Its last period of being active: from when (its last enabling; NULL: its creation), and
    # until when (its disabling; NULL while active). An event goes to it when it happened
    # within (app.jobs.outbox), whenever the fan-out comes to it.
    active_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "attempt", name="uq_webhook_deliveries_attempt"),
        # A webhook's log, newest first.
        Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
        # One message per (webhook, event): the fan-out's guard.
        Index(
            "uq_webhook_deliveries_event",
            "webhook_id",
            "event_id",
            unique=True,
            postgresql_where=text("attempt = 1 AND event_id IS NOT NULL"),
            sqlite_where=text("attempt = 1 AND event_id IS NOT NULL"),
        ),
        Index(
            DELIVERY_DUE_INDEX,
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # The cleanup's walk of the attempts older than the history kept.
        Index(DELIVERY_CREATED_INDEX, "created_at"),
        Index(
            DELIVERY_PENDING_BY_WEBHOOK_INDEX,
            "webhook_id",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhooks.id", ondelete="CASCADE")
    )
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(40))
    # The body sent on every attempt of the message (JSON text).
    payload: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    response_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The receiver's answer, truncated (app.core.bounds.WEBHOOK_RESPONSE_KEPT_BYTES).
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Pending: when it is due (a worker that claims it moves this forward by a lease, so a
    # worker that dies mid-attempt only delays it). Failed: when the next attempt is due.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
