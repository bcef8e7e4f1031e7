"""`app.core.webhook_signing`: what a receiver verifying with `standardwebhooks` accepts."""

from __future__ import annotations

import base64
import hmac
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.core.bounds import WEBHOOK_SECRET_BYTES
from app.core.webhook_signing import USER_AGENT, headers, new_secret, signature_header

BODY = json.dumps(
    {"type": "task.updated", "data": {"object": {"id": 7, "title": "Ünïcode"}}}, ensure_ascii=False
)
MESSAGE_ID = "msg_2Kx9c1"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_new_secret_is_whsec_and_base64_of_the_configured_size() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == (
        WEBHOOK_SECRET_BYTES
    )
    assert len({new_secret() for _ in range(50)}) == 50


def test_headers_carry_the_standard_webhooks_fields() -> None:
    moment = now()
    sent = headers(MESSAGE_ID, moment, BODY, [new_secret()])
    assert sent["webhook-id"] == MESSAGE_ID
    assert sent["webhook-timestamp"] == str(int(moment.timestamp()))
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", sent["webhook-signature"])
    assert sent["content-type"] == "application/json"
    assert "tasks-api" in sent["user-agent"] == USER_AGENT
    assert set(sent) == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "user-agent",
    }


def test_receiver_verifies_with_the_library() -> None:
    secret = new_secret()
    sent = headers(MESSAGE_ID, now(), BODY.encode(), [secret])
    assert Webhook(secret).verify(BODY.encode(), sent) == json.loads(BODY)
    # Receivers often pass the header names as sent over HTTP; any case verifies.
    assert Webhook(secret).verify(BODY, {name.title(): v for name, v in sent.items()})


def test_after_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    sent = headers(MESSAGE_ID, now(), BODY, [new, old])
    assert len(sent["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(BODY, sent)
    assert Webhook(old).verify(BODY, sent)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_secret()).verify(BODY, sent)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.replace("Ünïcode", "Unicode"),
        lambda body: body + " ",
        lambda body: body.replace('"id": 7', '"id": 8'),
    ],
)
def test_tampered_body_is_refused(tamper: Callable[[str], str]) -> None:
    secret = new_secret()
    sent = headers(MESSAGE_ID, now(), BODY, [secret])
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(tamper(BODY), sent)


def test_changed_id_or_timestamp_is_refused() -> None:
    secret = new_secret()
    sent = headers(MESSAGE_ID, now(), BODY, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**sent, "webhook-id": "msg_other"})
    later = str(int(sent["webhook-timestamp"]) + 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**sent, "webhook-timestamp": later})


def test_same_message_signed_again_gives_the_same_signature() -> None:
    # A retry signs anew with its own timestamp; the same inputs sign the same.
    secret = new_secret()
    moment = now()
    first = signature_header(MESSAGE_ID, moment, BODY, [secret])
    assert first == signature_header(MESSAGE_ID, moment, BODY.encode(), [secret])
    assert first != signature_header(MESSAGE_ID, moment + timedelta(seconds=5), BODY, [secret])


def test_signature_is_over_id_timestamp_and_body() -> None:
    # Spec api-v2 section 9, recomputed by hand: HMAC-SHA256 of "id.timestamp.body".
    key = bytes(range(WEBHOOK_SECRET_BYTES))
    secret = "whsec_" + base64.b64encode(key).decode()
    moment = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
    digest = hmac.new(key, f"{MESSAGE_ID}.{int(moment.timestamp())}.{BODY}".encode(), "sha256")
    assert signature_header(MESSAGE_ID, moment, BODY, [secret]) == (
        "v1," + base64.b64encode(digest.digest()).decode()
    )


def test_time_zones_and_naive_datetimes_agree() -> None:
    secret = new_secret()
    utc = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
    elsewhere = utc.astimezone(timezone(timedelta(hours=-5)))
    naive = utc.replace(tzinfo=None)  # read as UTC, as the library reads it
    signed = [headers(MESSAGE_ID, moment, BODY, [secret]) for moment in (utc, elsewhere, naive)]
    assert signed[0] == signed[1] == signed[2]
    assert signed[0]["webhook-timestamp"] == "1796544000"


def test_duplicate_secrets_sign_once_and_no_secret_is_an_error() -> None:
    secret = new_secret()
    assert " " not in signature_header(MESSAGE_ID, now(), BODY, [secret, secret])
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header(MESSAGE_ID, now(), BODY, [])


def test_secret_never_appears_in_the_headers() -> None:
    secret = new_secret()
    sent = headers(MESSAGE_ID, now(), BODY, [secret])
    joined = " ".join(sent.values())
    assert secret not in joined
    assert secret.removeprefix("whsec_") not in joined
