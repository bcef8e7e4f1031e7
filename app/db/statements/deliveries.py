"""The webhook delivery log as the delivery job works it (inside transactions).

A due attempt is claimed by moving its `next_attempt_at` forward by a lease and noting when
(`attempted_at`; PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers claim different ones), and
is then sent outside any transaction. Until its outcome is written or its lease ends it is in
flight, and a webhook's attempts in flight are capped, so that a backlog of messages to one
slow receiver cannot take every place of the delivery runs from the other webhooks.

The outcome is written only while the attempt is still pending: a worker that died
mid-attempt leaves it pending, due again when the lease ends (the receiver may see the
message twice, with the same `webhook-id`); one that comes back late after that finds it
done and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.core.roles import ProjectRole
from app.db.access import Db
from app.models.project import ProjectMember
from app.models.webhook import Webhook, WebhookDelivery


class DueAttempt(NamedTuple):
    id: int
    webhook_id: int
    project_id: int
    message_id: str
    type: str
    payload: str
    attempt: int
    event_id: int | None
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None


def _pending(*conditions: ColumnElement[bool]) -> list[ColumnElement[bool]]:
    return [WebhookDelivery.status == "pending", *conditions]


def _in_flight(now: datetime, lease_until: datetime) -> list[ColumnElement[bool]]:
    """Claimed, and neither written down nor past its lease (which ends by `lease_until`)."""
    return _pending(
        WebhookDelivery.attempted_at.is_not(None),
        WebhookDelivery.next_attempt_at > now,
        WebhookDelivery.next_attempt_at <= lease_until,
    )


def _due(now: datetime) -> list[ColumnElement[bool]]:
    """Due by `now`, of an active webhook (a ping also of an inactive one)."""
    return _pending(
        WebhookDelivery.next_attempt_at <= now,
        or_(Webhook.active, WebhookDelivery.type == "ping"),
    )


def choose_due_statement(
    dialect: str, now: datetime, lease_until: datetime, limit: int, per_webhook: int
) -> Select[tuple[int]]:
    """The ids of up to `limit` due attempts, each webhook's only while it has fewer than
    `per_webhook` in flight with them, taken fairly: first every webhook's first place (its
    oldest due attempt, if it has none in flight), then every webhook's second, and so on,
    oldest first among equals. So the attempts of webhooks waiting for nobody go before more
    of those whose receivers are slow: several slow receivers with backlogs, taken oldest
    first, filled every place, and a fast webhook's message waited minutes behind them."""
    if dialect == "postgresql":
        # A webhook at a time, on its pending attempts' index: a backlog to one webhook is
        # not read past (nor sorted) to reach the others'.
        in_flight = (
            select(func.count().label("attempts"))
            .where(WebhookDelivery.webhook_id == Webhook.id, *_in_flight(now, lease_until))
            .lateral("in_flight")
        )
        due = (
            select(
                WebhookDelivery.id,
                WebhookDelivery.next_attempt_at,
                func.row_number()
                .over(order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id))
                .label("nth"),
            )
            .where(WebhookDelivery.webhook_id == Webhook.id, *_due(now))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(per_webhook)
            .lateral("due")
        )
        return (
            select(due.c.id)
            .select_from(Webhook)
            .join(in_flight, true())
            .join(due, true())
            .where(due.c.nth + in_flight.c.attempts <= per_webhook)
            .order_by(due.c.nth + in_flight.c.attempts, due.c.next_attempt_at, due.c.id)
            .limit(limit)
        )
    # SQLite has no LATERAL: every due attempt ranked within its webhook (one process, and a
    # backlog of the size a development database holds).
    counted = (
        select(WebhookDelivery.webhook_id, func.count().label("attempts"))
        .where(*_in_flight(now, lease_until))
        .group_by(WebhookDelivery.webhook_id)
        .subquery()
    )
    ranked = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.webhook_id,
            WebhookDelivery.next_attempt_at,
            func.row_number()
            .over(
                partition_by=WebhookDelivery.webhook_id,
                order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id),
            )
            .label("nth"),
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(*_due(now))
        .subquery()
    )
    place = ranked.c.nth + func.coalesce(counted.c.attempts, 0)
    return (
        select(ranked.c.id)
        .outerjoin(counted, counted.c.webhook_id == ranked.c.webhook_id)
        .where(place <= per_webhook)
        .order_by(place, ranked.c.next_attempt_at, ranked.c.id)
        .limit(limit)
    )


async def claim_due(
    db: Db, now: datetime, lease_until: datetime, limit: int, *, per_webhook: int
) -> list[DueAttempt]:
    """Claim up to `limit` pending attempts due by `now` (of active webhooks; a ping also of
    an inactive one), fairly among webhooks and no more than `per_webhook` in flight for a
    webhook (counting those claimed before; `choose_due_statement`), leasing them until
    `lease_until`."""
    chosen = choose_due_statement(db.dialect.name, now, lease_until, limit, per_webhook)
    # Locked at the outer level (FOR UPDATE does not go with a window function): an attempt
    # another worker holds is skipped, and one it claimed meanwhile is no longer due.
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.id.in_(chosen.scalar_subquery()),
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
        )
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    claimed = (
        (
            await db.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=lease_until, attempted_at=now)
                .returning(WebhookDelivery.id)
            )
        )
        .scalars()
        .all()
    )
    if not claimed:
        return []
    rows = await db.session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.webhook_id,
            Webhook.project_id,
            WebhookDelivery.message_id,
            WebhookDelivery.type,
            WebhookDelivery.payload,
            WebhookDelivery.attempt,
            WebhookDelivery.event_id,
            Webhook.url,
            Webhook.secret,
            Webhook.previous_secret,
            Webhook.previous_secret_until,
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id.in_(claimed))
        .order_by(WebhookDelivery.id)
    )
    return [DueAttempt._make(row) for row in rows.all()]


async def lock_webhook(db: Db, webhook_id: int) -> bool:
    """Lock the webhook's row until the transaction ends, as `mark_webhook` will update it
    (`FOR NO KEY UPDATE`: the fan-out's new attempts, which only share its key, need not
    wait); whether it is there."""
    found = await db.session.execute(
        select(Webhook.id).where(Webhook.id == webhook_id).with_for_update(key_share=True)
    )
    return found.first() is not None


async def record_outcome(db: Db, attempt_id: int, values: Mapping[str, Any]) -> bool:
    """Write an attempt's outcome if it is still pending; whether it was."""
    written = await db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == attempt_id, WebhookDelivery.status == "pending")
        .values(**values)
        .returning(WebhookDelivery.id)
    )
    return written.first() is not None


async def add_attempt(db: Db, row: Mapping[str, Any]) -> None:
    """The next attempt of a message (once: (message_id, attempt) is unique)."""
    insert = postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert
    await db.session.execute(
        insert(WebhookDelivery)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["message_id", "attempt"])
    )


async def mark_webhook(
    db: Db, webhook_id: int, *, succeeded: bool, now: datetime
) -> datetime | None:
    """Note a success (no longer failing) or a failure (failing since the first one); the
    time it has been failing since (None: it is not)."""
    values: dict[str, Any] = (
        {"failing_since": None}
        if succeeded
        else {"failing_since": func.coalesce(Webhook.failing_since, now)}
    )
    result = await db.session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(**values)
        .returning(Webhook.failing_since)
    )
    found = result.first()
    return None if found is None else found[0]


async def disable_webhook(db: Db, webhook_id: int, reason: str, now: datetime) -> bool:
    """Disable an active webhook; whether this call did."""
    result = await db.session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.active)
        .values(active=False, disabled_reason=reason, updated_at=now, active_until=now)
        .returning(Webhook.id)
    )
    return result.first() is not None


async def project_admins(db: Db, project_id: int) -> Sequence[int]:
    result = await db.session.execute(
        select(ProjectMember.user_id)
        .where(
            ProjectMember.project_id == project_id,
            ProjectMember.role >= ProjectRole.ADMIN.value,
        )
        .order_by(ProjectMember.user_id)
    )
    return [int(user_id) for user_id in result.scalars().all()]
