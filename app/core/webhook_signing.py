"""Webhook secrets and signatures: the Standard Webhooks scheme, by its own library.

Spec api-v2 section 9: every delivery carries `webhook-id` (the same on every retry of one
event), `webhook-timestamp` (integer seconds, per attempt) and `webhook-signature`, one
`v1,<base64 HMAC-SHA256>` of `id.timestamp.body` per secret, space-separated: after a
rotation the new secret and the previous one both sign for a while, so a receiver that still
holds the old secret keeps verifying. Signing is left to `standardwebhooks.Webhook.sign`, so
what we send is exactly what `Webhook(secret).verify` accepts.

Secrets are never logged or put in error messages here; a malformed secret raises the
library's error, whose message does not contain it.
"""

from __future__ import annotations

import base64
import secrets as random_source
from collections.abc import Sequence
from datetime import UTC, datetime
from math import floor

from standardwebhooks import Webhook

from app.core.bounds import WEBHOOK_SECRET_BYTES

__all__ = ["SECRET_PREFIX", "USER_AGENT", "headers", "new_secret", "signature_header"]

SECRET_PREFIX = "whsec_"
USER_AGENT = "tasks-api-webhooks/1.0 (Standard Webhooks)"


def new_secret() -> str:
    """A fresh signing secret: "whsec_" and base64 of WEBHOOK_SECRET_BYTES random bytes."""
    key = random_source.token_bytes(WEBHOOK_SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def _utc(timestamp: datetime) -> datetime:
    # The library reads a naive datetime as UTC; so does the header, so both always agree.
    return timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)


def signature_header(
    message_id: str, timestamp: datetime, body: bytes | str, secrets: Sequence[str]
) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per distinct secret, space-separated."""
    distinct = list(dict.fromkeys(secrets))
    if not distinct:
        raise ValueError("a webhook needs at least one secret to sign with")
    moment = _utc(timestamp)
    return " ".join(Webhook(secret).sign(message_id, moment, body) for secret in distinct)


def headers(
    message_id: str, timestamp: datetime, body: bytes | str, secrets: Sequence[str]
) -> dict[str, str]:
    """Every header of a delivery but Host and Content-Length (the sender sets those)."""
    moment = _utc(timestamp)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(moment.timestamp())),
        "webhook-signature": signature_header(message_id, moment, body, secrets),
    }
