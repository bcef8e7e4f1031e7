"""The webhook statements: a project's webhooks and their delivery logs, read and written by
its admins, with the authorization inside.

Every statement names the project of the path and carries the caller's membership of it at
the least role of `webhook.manage` (`memberships.caller_may`) and the check that the caller's
token is still current (`callers.caller_is_current`): a webhook of a project the caller may
not manage is never read or written, and another project's webhook (or another webhook's
delivery) under this project's path is a miss. When a statement matches nothing, the service
asks `app.services.project.explain_miss` why (404 or 403, spec api-v2 section 2).

Every function runs its statements in one transaction (`Db.transaction`), so they go through
SQLAlchemy on both databases (the JSON column `events` is bound and read by its type).

Webhooks are not entities of the history (spec api-v2 section 7): no event is appended, and
so no secret can reach one. `WebhookRecord` holds no secret either: a secret is read only
where it is made (creation, rotation) and by the delivery job.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    not_,
    null,
    select,
    update,
)

from app.core.roles import Permission, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may
from app.db.statements.tasks import caller_params
from app.models.project import Project
from app.models.webhook import Webhook, WebhookDelivery


class WebhookRecord(NamedTuple):
    id: int
    project_id: int
    url: str
    events: list[str]
    active: bool
    description: str | None
    created_at: datetime
    disabled_reason: str | None


class DeliveryRecord(NamedTuple):
    id: int
    webhook_id: int
    event_id: int | None
    message_id: str
    type: str
    attempt: int
    status: str
    response_status: int | None
    duration_ms: int | None
    error: str | None
    created_at: datetime
    next_attempt_at: datetime | None


WEBHOOK_COLUMNS = (
    Webhook.id,
    Webhook.project_id,
    Webhook.url,
    Webhook.events,
    Webhook.active,
    Webhook.description,
    Webhook.created_at,
    Webhook.disabled_reason,
)
DELIVERY_COLUMNS = (
    WebhookDelivery.id,
    WebhookDelivery.webhook_id,
    WebhookDelivery.event_id,
    WebhookDelivery.message_id,
    WebhookDelivery.type,
    WebhookDelivery.attempt,
    WebhookDelivery.status,
    WebhookDelivery.response_status,
    WebhookDelivery.duration_ms,
    WebhookDelivery.error,
    WebhookDelivery.created_at,
    WebhookDelivery.next_attempt_at,
)
# The fields a PATCH may set (besides `updated_at`), each bound as `new_<field>`.
UPDATABLE = ("url", "events", "description", "active", "disabled_reason", "failing_since")


def _project() -> Any:
    # Not `project_id`: SQLAlchemy keeps the names of columns for the values of a write.
    return bindparam("in_project", type_=BigInteger)


def _webhook_id() -> Any:
    return bindparam("the_webhook", type_=BigInteger)


def _this_webhook() -> list[ColumnElement[bool]]:
    """The webhook of the path, under the project of the path (another project's is a miss)."""
    return [Webhook.id == _webhook_id(), Webhook.project_id == _project()]


def _allowed() -> list[ColumnElement[bool]]:
    return [caller_may(_project(), least_role(Permission.WEBHOOK_MANAGE)), caller_is_current()]


@cache
def _list_statement(after: bool) -> Statement:
    conditions = [Webhook.project_id == _project(), *_allowed()]
    if after:
        conditions.append(Webhook.id > bindparam("after_id", type_=BigInteger))
    return Statement(
        select(*WEBHOOK_COLUMNS)
        .where(*conditions)
        .order_by(Webhook.id)
        .limit(bindparam("limit", type_=Integer))
    )


@cache
def _select_statement() -> Statement:
    return Statement(select(*WEBHOOK_COLUMNS).where(*_this_webhook(), *_allowed()))


@cache
def _locked_statement() -> Statement:
    """The webhook of the path, locked until the transaction ends, if the caller may manage
    it: writes of one webhook (a rotation, a redelivery) then come one after the other."""
    return Statement(
        select(*WEBHOOK_COLUMNS).where(*_this_webhook(), *_allowed()).with_for_update(of=Webhook)
    )


@cache
def _lock_project_statement() -> Statement:
    """The live project, locked against another creation of a webhook (which takes the same
    lock) until the transaction ends, if the caller may manage its webhooks. SQLite's write
    transaction is exclusive already."""
    return Statement(
        select(Project.id)
        .where(Project.id == _project(), *_allowed())
        .with_for_update(key_share=True, of=Project)
    )


@cache
def _count_statement() -> Statement:
    """How many webhooks the project has. A statement of its own, after the lock: in READ
    COMMITTED each statement reads a new snapshot, so this one sees the webhook a creation
    that held the lock before us committed (a subquery of the locking statement would not)."""
    return Statement(
        select(func.count()).select_from(Webhook).where(Webhook.project_id == _project())
    )


@cache
def _insert_statement() -> Statement:
    return Statement(insert(Webhook).returning(*WEBHOOK_COLUMNS))


@cache
def _update_statement(fields: tuple[str, ...]) -> Statement:
    values: dict[str, Any] = {
        field: bindparam(f"new_{field}", type_=Webhook.__table__.c[field].type) for field in fields
    }
    now = bindparam("now", type_=Webhook.updated_at.type)
    values["updated_at"] = now
    if "active" in fields:
        # Its period of being active, when `active` changes (read from the row as it is, so
        # that two PATCHes at once agree): enabled, it starts now; disabled, it ends now.
        enabled = values["active"]
        values["active_from"] = case(
            (and_(enabled, not_(Webhook.active)), now), else_=Webhook.active_from
        )
        values["active_until"] = case(
            (enabled, null()), (Webhook.active, now), else_=Webhook.active_until
        )
    return Statement(
        update(Webhook)
        .where(*_this_webhook(), *_allowed())
        .values(values)
        .returning(*WEBHOOK_COLUMNS)
    )


@cache
def _rotate_statement() -> Statement:
    """The secret becomes the previous one (signing beside the new one until `until`): every
    SET reads the row as it was."""
    return Statement(
        update(Webhook)
        .where(*_this_webhook(), *_allowed())
        .values(
            previous_secret=Webhook.secret,
            previous_secret_until=bindparam("until", type_=Webhook.previous_secret_until.type),
            secret=bindparam("new_secret", type_=Webhook.secret.type),
            updated_at=bindparam("now", type_=Webhook.updated_at.type),
        )
        .returning(*WEBHOOK_COLUMNS)
    )


@cache
def _delete_statements() -> tuple[Statement, Statement]:
    # The log first, explicitly (not left to the foreign key's cascade): the same order on
    # every database.
    log = delete(WebhookDelivery).where(WebhookDelivery.webhook_id == _webhook_id())
    webhook = delete(Webhook).where(Webhook.id == _webhook_id())
    return Statement(log.returning(WebhookDelivery.id)), Statement(webhook.returning(Webhook.id))


@cache
def _insert_delivery_statement() -> Statement:
    return Statement(insert(WebhookDelivery).returning(*DELIVERY_COLUMNS))


def _under_this_webhook() -> list[ColumnElement[bool]]:
    """Deliveries of the webhook of the path, if it is under the project of the path."""
    return [
        WebhookDelivery.webhook_id == _webhook_id(),
        exists().where(*_this_webhook()),
        *_allowed(),
    ]


@cache
def _deliveries_statement(after: bool) -> Statement:
    conditions = _under_this_webhook()
    if after:
        conditions.append(WebhookDelivery.id < bindparam("after_id", type_=BigInteger))
    return Statement(
        select(*DELIVERY_COLUMNS)
        .where(*conditions)
        .order_by(WebhookDelivery.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )


@cache
def _delivery_statement() -> Statement:
    """One delivery of the webhook of the path, with its body."""
    return Statement(
        select(*DELIVERY_COLUMNS, WebhookDelivery.payload).where(
            WebhookDelivery.id == bindparam("delivery_id", type_=BigInteger),
            *_under_this_webhook(),
        )
    )


def _message() -> ColumnElement[bool]:
    return WebhookDelivery.message_id == bindparam("message", type_=WebhookDelivery.message_id.type)


@cache
def _highest_attempt_statement() -> Statement:
    return Statement(select(func.max(WebhookDelivery.attempt)).where(_message()))


@cache
def _hurry_statement() -> Statement:
    """The message's pending attempt: due now if it is a retry waiting for its time; left as
    it is if a worker has claimed it (`attempted_at`) and is sending it, since due again it
    would be claimed and sent once more beside it (a black-box run's repeated clicks got 23
    copies at once). One claimed by a worker that stopped is due when its lease ends."""
    now = bindparam("now", type_=WebhookDelivery.next_attempt_at.type)
    return Statement(
        update(WebhookDelivery)
        .where(_message(), WebhookDelivery.status == "pending")
        .values(
            next_attempt_at=case(
                (WebhookDelivery.attempted_at.is_(None), now),
                else_=WebhookDelivery.next_attempt_at,
            )
        )
        .returning(*DELIVERY_COLUMNS)
    )


def _record(row: Row) -> WebhookRecord:
    return WebhookRecord(row[0], row[1], row[2], list(row[3]), bool(row[4]), row[5], row[6], row[7])


def _delivery(row: Row) -> DeliveryRecord:
    return DeliveryRecord(*row[:12])


def _params(claims: AccessClaims, project_id: int, **values: Any) -> dict[str, Any]:
    return caller_params(claims, in_project=project_id, **values)


# --- webhooks --------------------------------------------------------------------------------


async def list_rows(
    db: Db, claims: AccessClaims, project_id: int, after_id: int | None, limit: int
) -> list[WebhookRecord]:
    """Up to `limit` webhooks of the project after `after_id`, by id; none when the caller may
    not manage them (or is not current)."""
    params = _params(claims, project_id, limit=limit)
    if after_id is not None:
        params["after_id"] = after_id
    async with db.transaction():
        rows = await db.rows(_list_statement(after_id is not None), params)
    return [_record(row) for row in rows]


async def fetch(
    db: Db, claims: AccessClaims, project_id: int, webhook_id: int
) -> WebhookRecord | None:
    async with db.transaction():
        found = await db.first(
            _select_statement(), _params(claims, project_id, the_webhook=webhook_id)
        )
    return _record(found) if found is not None else None


async def insert_webhook(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    values: dict[str, Any],
    *,
    most: int,
) -> WebhookRecord | int | None:
    """The new webhook (`values`: its columns, secret included); None when the caller may not
    manage the project's webhooks, or the number it has when that is `most` already (nothing
    written either way)."""
    async with db.transaction():
        if await db.first(_lock_project_statement(), _params(claims, project_id)) is None:
            return None
        counted = await db.first(_count_statement(), {"in_project": project_id})
        assert counted is not None
        if counted[0] >= most:
            return int(counted[0])
        row = await db.first(_insert_statement(), {"project_id": project_id, **values})
    assert row is not None
    return _record(row)


async def update_webhook(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    webhook_id: int,
    changes: dict[str, Any],
    now: datetime,
) -> WebhookRecord | None:
    """The webhook with `changes` (fields of `UPDATABLE`) applied; None when the caller may
    not manage it (nothing written)."""
    params = _params(
        claims,
        project_id,
        the_webhook=webhook_id,
        now=now,
        **{f"new_{field}": value for field, value in changes.items()},
    )
    async with db.transaction():
        found = await db.first(_update_statement(tuple(sorted(changes))), params)
    return _record(found) if found is not None else None


async def rotate_secret(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    webhook_id: int,
    secret: str,
    until: datetime,
    now: datetime,
) -> WebhookRecord | None:
    """Sign with `secret` from now on, and with the one before it too until `until`; None
    when the caller may not manage the webhook (nothing written)."""
    params = _params(
        claims, project_id, the_webhook=webhook_id, new_secret=secret, until=until, now=now
    )
    async with db.transaction():
        found = await db.first(_rotate_statement(), params)
    return _record(found) if found is not None else None


async def delete_webhook(db: Db, claims: AccessClaims, project_id: int, webhook_id: int) -> bool:
    """Delete the webhook and its delivery log; False when the caller may not (nothing
    deleted)."""
    params = _params(claims, project_id, the_webhook=webhook_id)
    log, webhook = _delete_statements()
    async with db.transaction():
        if await db.first(_locked_statement(), params) is None:
            return False
        await db.rows(log, {"the_webhook": webhook_id})
        await db.rows(webhook, {"the_webhook": webhook_id})
    return True


# --- deliveries ------------------------------------------------------------------------------


async def insert_ping(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    webhook_id: int,
    make: Any,
) -> tuple[WebhookRecord, DeliveryRecord] | None:
    """A pending ping of the webhook, due now; `make(webhook)` gives the delivery's columns.
    None when the caller may not manage the webhook."""
    params = _params(claims, project_id, the_webhook=webhook_id)
    async with db.transaction():
        found = await db.first(_locked_statement(), params)
        if found is None:
            return None
        webhook = _record(found)
        row = await db.first(
            _insert_delivery_statement(), {"webhook_id": webhook_id, **make(webhook)}
        )
    assert row is not None
    return webhook, _delivery(row)


async def list_deliveries(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    webhook_id: int,
    after_id: int | None,
    limit: int,
) -> list[DeliveryRecord]:
    """Up to `limit` attempts of the webhook older than `after_id`, newest first; none when
    the caller may not manage the webhook (or it is not under the project)."""
    params = _params(claims, project_id, the_webhook=webhook_id, limit=limit)
    if after_id is not None:
        params["after_id"] = after_id
    async with db.transaction():
        rows = await db.rows(_deliveries_statement(after_id is not None), params)
    return [_delivery(row) for row in rows]


class Redelivery(NamedTuple):
    """What a redelivery found: the webhook and the delivery (None: not there), and the
    attempt of its message now due (None: nothing written, the webhook is disabled)."""

    webhook: WebhookRecord | None
    delivery: DeliveryRecord | None
    attempt: DeliveryRecord | None


async def redeliver(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    webhook_id: int,
    delivery_id: int,
    now: datetime,
) -> Redelivery:
    """Send the delivery's message again now. When an attempt of it is pending (a retry
    waiting for its time), that attempt is made due now, unless it is being sent
    (`_hurry_statement`); otherwise a new pending attempt is
    written, due now: same message id, type, event and body, the next attempt number. Nothing
    is written when the webhook is disabled and the message is not a ping (the delivery job
    sends a disabled webhook its pings only). The webhook's row is locked meanwhile, so two
    redeliveries of one webhook come one after the other."""
    params = _params(claims, project_id, the_webhook=webhook_id, delivery_id=delivery_id)
    async with db.transaction():
        found = await db.first(_locked_statement(), params)
        if found is None:
            return Redelivery(None, None, None)
        webhook = _record(found)
        row = await db.first(_delivery_statement(), params)
        if row is None:
            return Redelivery(webhook, None, None)
        delivery = _delivery(row)
        if not (webhook.active or delivery.type == "ping"):
            return Redelivery(webhook, delivery, None)
        message = {"message": delivery.message_id, "now": now}
        hurried = await db.rows(_hurry_statement(), message)
        if hurried:
            return Redelivery(webhook, delivery, _delivery(max(hurried, key=lambda r: r[5])))
        highest = await db.first(_highest_attempt_statement(), message)
        values = {
            "webhook_id": webhook_id,
            "event_id": delivery.event_id,
            "message_id": delivery.message_id,
            "type": delivery.type,
            "payload": row[12],
            "attempt": int(highest[0] if highest and highest[0] else delivery.attempt) + 1,
            "status": "pending",
            "created_at": now,
            "next_attempt_at": now,
        }
        created = await db.first(_insert_delivery_statement(), values)
    assert created is not None
    return Redelivery(webhook, delivery, _delivery(created))
