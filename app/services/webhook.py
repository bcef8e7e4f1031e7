"""Webhook rules (spec api-v2 section 9, docs/decisions/0033): who manages a project's
webhooks, where a webhook may point, and what a ping or a redelivery writes for the delivery
job to send.

- Only the project's admins and owners (`webhook.manage`); a non-member, a project in the
  trash, an unknown webhook or one of another project get the same 404; a member below admin
  a 403 naming both roles. Those checks come before the URL is resolved, so nobody else can
  make the server look names up.
- A URL is parsed and resolved when it is saved (creation, or a PATCH that changes it): it
  must be http(s) and every address its host resolves to must be public, or inside
  `WEBHOOK_ALLOWED_NETWORKS` (`app.core.destinations`); otherwise a 422 whose `errors` item
  points at `url` and says why. The delivery job checks the address it connects to again.
- At most `WEBHOOKS_PER_PROJECT_MAX` webhooks per project (409 `webhook-limit-reached`).
- The secret (`whsec_...`) is made here and shown only in the answer that made it (creation,
  rotation). A rotation keeps the previous secret signing for
  `WEBHOOK_PREVIOUS_SECRET_HOURS`.
- A ping or a redelivery writes a pending attempt, due now; the delivery job sends it. A
  disabled webhook still gets its pings (to try the receiver before enabling it again), but
  no other message: redelivering an event to it is a 409. Redelivering a message whose retry
  is waiting makes that retry due now rather than adding a second attempt in flight; one
  being sent is left alone (due again, it would be sent once more beside itself).
- Webhook changes are not events of the history (section 7 names its entities): nothing is
  appended to the log, and so no secret can reach an event.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.core.bounds import WEBHOOK_PREVIOUS_SECRET_HOURS, WEBHOOKS_PER_PROJECT_MAX
from app.core.destinations import (
    BlockedDestination,
    InvalidWebhookUrl,
    IPNetwork,
    Resolver,
    UnresolvableDestination,
    resolve_destination,
)
from app.core.errors import AppError, Conflict, NotFound, ValidationFailed, error_item
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.roles import Permission, least_role
from app.core.security import AccessClaims
from app.core.webhook_signing import new_secret
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import webhooks as statements
from app.db.statements.webhooks import DeliveryRecord, WebhookRecord
from app.schemas.webhook import WebhookCreate, WebhookUpdate
from app.services import retries
from app.services.project import explain_miss

__all__ = [
    "DeliveryNotFound",
    "DeliveryPage",
    "DestinationPolicy",
    "WebhookDisabled",
    "WebhookLimitReached",
    "WebhookNotFound",
    "WebhookPage",
    "check_url",
    "create_webhook",
    "delete_webhook",
    "get_webhook",
    "list_deliveries",
    "list_webhooks",
    "new_message_id",
    "ping_payload",
    "ping_webhook",
    "prepare_create",
    "redeliver",
    "rotate_secret",
    "update_webhook",
]

# A name that does not resolve within this many seconds is refused (the system resolver has
# no deadline of its own, and the request waits for it).
RESOLVE_TIMEOUT_SECONDS = 5.0


class WebhookNotFound(NotFound):
    default_detail = "Webhook not found."


class DeliveryNotFound(NotFound):
    default_detail = "Delivery not found."


class WebhookLimitReached(Conflict):
    slug = "webhook-limit-reached"
    title = "Webhook limit reached"
    default_detail = (
        f"A project has at most {WEBHOOKS_PER_PROJECT_MAX} webhooks: delete one before "
        "adding another."
    )


class WebhookDisabled(Conflict):
    slug = "webhook-disabled"
    title = "Webhook disabled"
    default_detail = (
        "The webhook is disabled: it is sent pings only. Enable it (PATCH `active: true`) "
        "to send it events again."
    )


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Where webhooks may point: the allowed non-public networks, and the resolver of host
    names (None: the system's)."""

    allowed: tuple[IPNetwork, ...] = ()
    resolver: Resolver | None = None
    timeout_seconds: float = RESOLVE_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class WebhookPage:
    items: list[WebhookRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[DeliveryRecord]
    next_cursor: str | None


_MANAGE = least_role(Permission.WEBHOOK_MANAGE)


async def _authorize(db: Db, caller: AccessClaims, project_id: int) -> None:
    """Raise unless the caller may manage the project's webhooks (401, 404, 403)."""
    await explain_miss(db, caller, project_id, _MANAGE)


async def _refusal(db: Db, caller: AccessClaims, project_id: int) -> NotFound:
    """Why a statement on a webhook matched nothing: raised from `explain_miss` when the
    caller may not manage the project's webhooks; else the webhook is not under the project."""
    await _authorize(db, caller, project_id)
    return WebhookNotFound()


async def check_url(url: str, policy: DestinationPolicy) -> None:
    """Raise a 422 pointing at `url` unless webhooks may be sent there now."""
    try:
        async with asyncio.timeout(policy.timeout_seconds):
            await resolve_destination(url, policy.allowed, policy.resolver)
    except InvalidWebhookUrl as exc:
        raise _url_refused(str(exc), "webhook_url_invalid") from None
    # The refusals name neither the host nor what it resolves to: a problem never repeats what
    # the client sent, and any user may own a project, so naming the address would tell anyone
    # what the server's own resolver says of internal names (docs/decisions/0033).
    except BlockedDestination:
        raise _url_refused(
            "The webhook URL's host is not a public address, nor in a network this server "
            "lets webhooks reach.",
            "webhook_url_blocked",
        ) from None
    except UnresolvableDestination:
        raise _url_refused(
            "The webhook URL's host could not be resolved.", "webhook_url_unresolvable"
        ) from None
    except TimeoutError:
        raise _url_refused(
            "The webhook URL's host could not be resolved in time.", "webhook_url_unresolvable"
        ) from None


def _url_refused(message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(
        "The webhook URL cannot be used; see `errors`.",
        errors=[error_item(["body", "url"], message, kind)],
    )


def _binding(caller: AccessClaims, project_id: int, webhook_id: int | None = None) -> str:
    if webhook_id is None:
        return binding_digest(user=caller.user_id, project=project_id, sort="id")
    return binding_digest(user=caller.user_id, project=project_id, webhook=webhook_id, sort="-id")


def _after(cursor: str | None, binding: str, key: bytes) -> int | None:
    if cursor is None:
        return None
    position = decode_cursor(cursor, binding=binding, key=key)
    if position.key is not None:
        raise InvalidCursor()
    return position.last_id


def _next_cursor(last_id: int, binding: str, key: bytes) -> str:
    return encode_cursor(CursorPosition(None, last_id), binding=binding, key=key)


# --- webhooks ----------------------------------------------------------------------------------


async def list_webhooks(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    *,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> WebhookPage:
    """A page of the project's webhooks, oldest first (by id)."""
    binding = _binding(caller, project_id)
    after = _after(cursor, binding, cursor_key)
    rows = await statements.list_rows(db, caller, project_id, after, limit + 1)
    if not rows:
        await _authorize(db, caller, project_id)  # empty, or not the caller's to see
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _next_cursor(rows[-1].id, binding, cursor_key)
    return WebhookPage(rows, next_cursor)


async def get_webhook(
    db: Db, caller: AccessClaims, project_id: int, webhook_id: int
) -> WebhookRecord:
    found = await statements.fetch(db, caller, project_id, webhook_id)
    if found is not None:
        return found
    raise await _refusal(db, caller, project_id)


async def prepare_create(
    db: Db, caller: AccessClaims, project_id: int, data: WebhookCreate, policy: DestinationPolicy
) -> None:
    """What a creation checks before it writes (and before a replayed `Idempotency-Key` is
    looked up): the caller may manage the webhooks, and the URL may be used."""
    await _authorize(db, caller, project_id)
    await check_url(data.url, policy)


async def create_webhook(
    db: Db, caller: AccessClaims, project_id: int, data: WebhookCreate
) -> tuple[WebhookRecord, str]:
    """The new webhook and its secret (to be shown this once). The URL was checked by
    `prepare_create`."""
    secret = new_secret()
    now = utcnow()
    values: dict[str, Any] = {
        "url": data.url,
        "events": list(data.events),
        "active": data.active,
        "description": data.description,
        "created_at": now,
        "updated_at": now,
        "active_until": None if data.active else now,
        "secret": secret,
    }

    async def insert() -> WebhookRecord | None:
        created = await statements.insert_webhook(
            db, caller, project_id, values, most=WEBHOOKS_PER_PROJECT_MAX
        )
        if isinstance(created, int):
            raise WebhookLimitReached()
        return created

    async def refusal() -> AppError | None:
        await _authorize(db, caller, project_id)  # raises when the caller may not
        return None  # allowed now: the project or the membership changed meanwhile

    return await retries.made_again_while_allowed(insert, refusal), secret


async def update_webhook(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    webhook_id: int,
    data: WebhookUpdate,
    policy: DestinationPolicy,
) -> WebhookRecord:
    """Change the fields sent. A new URL is checked (after the caller's right to manage the
    webhook, and resets the record of failures: they were the old URL's); `active: true`
    re-enables the webhook, clearing why it was disabled and since when it failed."""
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if "events" in changes:
        changes["events"] = list(changes["events"])
    current = await get_webhook(db, caller, project_id, webhook_id)
    if "url" in changes and changes["url"] != current.url:
        await check_url(changes["url"], policy)
        changes["failing_since"] = None
    if changes.get("active") is True:
        changes["disabled_reason"] = None
        changes["failing_since"] = None
    if not changes:
        return current
    updated = await statements.update_webhook(db, caller, project_id, webhook_id, changes, utcnow())
    if updated is not None:
        return updated
    raise await _refusal(db, caller, project_id)


async def rotate_secret(
    db: Db, caller: AccessClaims, project_id: int, webhook_id: int
) -> tuple[WebhookRecord, str]:
    """A new secret (shown this once); the one before it signs beside it for
    `WEBHOOK_PREVIOUS_SECRET_HOURS` more."""
    secret = new_secret()
    now = utcnow()
    until = now + timedelta(hours=WEBHOOK_PREVIOUS_SECRET_HOURS)
    rotated = await statements.rotate_secret(db, caller, project_id, webhook_id, secret, until, now)
    if rotated is not None:
        return rotated, secret
    raise await _refusal(db, caller, project_id)


async def delete_webhook(db: Db, caller: AccessClaims, project_id: int, webhook_id: int) -> None:
    """Delete the webhook and its delivery log (nothing more is sent to it)."""
    if not await statements.delete_webhook(db, caller, project_id, webhook_id):
        raise await _refusal(db, caller, project_id)


# --- deliveries -------------------------------------------------------------------------------


def new_message_id() -> str:
    """A Standard Webhooks `webhook-id` for a message of our own making (a ping)."""
    return "msg_" + secrets.token_urlsafe(18)


def ping_payload(webhook_id: int, now: datetime) -> str:
    """The body of a ping: `{"type": "ping", "timestamp", "data": {"webhook_id"}}`."""
    timestamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    document = {"type": "ping", "timestamp": timestamp, "data": {"webhook_id": webhook_id}}
    return json.dumps(document, separators=(",", ":"))


async def ping_webhook(
    db: Db, caller: AccessClaims, project_id: int, webhook_id: int
) -> DeliveryRecord:
    """A pending ping of the webhook, due now (the delivery job sends it, also to a disabled
    webhook: a way to try the receiver before enabling it again)."""
    now = utcnow()

    def ping(webhook: WebhookRecord) -> dict[str, Any]:
        return {
            "event_id": None,
            "message_id": new_message_id(),
            "type": "ping",
            "payload": ping_payload(webhook.id, now),
            "attempt": 1,
            "status": "pending",
            "created_at": now,
            "next_attempt_at": now,
        }

    found = await statements.insert_ping(db, caller, project_id, webhook_id, ping)
    if found is None:
        raise await _refusal(db, caller, project_id)
    return found[1]


async def list_deliveries(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    webhook_id: int,
    *,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> DeliveryPage:
    """A page of the webhook's delivery log, newest attempt first."""
    binding = _binding(caller, project_id, webhook_id)
    after = _after(cursor, binding, cursor_key)
    rows = await statements.list_deliveries(db, caller, project_id, webhook_id, after, limit + 1)
    if not rows:
        await get_webhook(db, caller, project_id, webhook_id)  # empty, or not there
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _next_cursor(rows[-1].id, binding, cursor_key)
    return DeliveryPage(rows, next_cursor)


async def redeliver(
    db: Db, caller: AccessClaims, project_id: int, webhook_id: int, delivery_id: int
) -> DeliveryRecord:
    """The delivery's message sent again now (same `webhook-id` and body): a new attempt, or
    the pending retry of it made due now."""
    found = await statements.redeliver(db, caller, project_id, webhook_id, delivery_id, utcnow())
    if found.webhook is None:
        raise await _refusal(db, caller, project_id)
    if found.delivery is None:
        raise DeliveryNotFound()
    if found.attempt is None:
        raise WebhookDisabled()
    return found.attempt
