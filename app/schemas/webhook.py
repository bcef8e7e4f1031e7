"""Webhook request and response bodies (spec api-v2 section 9), the event names a webhook may
subscribe to, and a webhook's and a delivery's documents.

A webhook's `secret` is in one document only, `WebhookCreated` (the answer to its creation and
to a rotation): it is shown once. `WebhookRead` and `DeliveryRead` never carry one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field, StrictBool, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.core.bounds import (
    WEBHOOK_DESCRIPTION_MAX_LENGTH,
    WEBHOOK_EVENTS_MAX,
    WEBHOOK_URL_MAX_LENGTH,
)
from app.db.statements.events import ACTIONS, ENTITIES
from app.db.statements.webhooks import DeliveryRecord, WebhookRecord
from app.schemas.common import (
    TEXT_PATTERN,
    JsonSchemaHints,
    RequestModel,
    ResponseModel,
    UTCTimestamp,
    optional_not_null,
    reject_controls_in_line,
    reject_controls_in_text,
)

# Every "<entity>.<action>" the log writes (spec api-v2 section 7): the actions each entity
# really has, not the whole product of the two lists (a `task.joined` never happens, and a
# subscription to it would be a mistake the client should hear about at once).
OCCURRING_ACTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "project": ("created", "updated", "deleted", "restored", "purged"),
    "member": ("joined", "left", "removed", "role_changed"),
    # purged: an invitation removed by the cleanup job once expired.
    "invitation": ("created", "updated", "deleted", "purged"),
    "task": ("created", "updated", "moved", "deleted", "restored", "purged"),
    "label": ("created", "updated", "deleted"),
    "comment": ("created", "updated", "deleted"),
}
if set(OCCURRING_ACTIONS) != set(ENTITIES) or not all(
    set(actions) <= set(ACTIONS) for actions in OCCURRING_ACTIONS.values()
):
    raise RuntimeError("webhook event names must be entities and actions of the log")

ALL_EVENTS: Final = "*"
EVENT_TYPES: Final[tuple[str, ...]] = tuple(
    f"{entity}.{action}" for entity, actions in OCCURRING_ACTIONS.items() for action in actions
)
_EVENT_CHOICES: Final = frozenset(EVENT_TYPES) | {ALL_EVENTS}


def subscribed(events: list[str], event_type: str) -> bool:
    """Whether a webhook of `events` receives an event of `event_type` ("task.updated")."""
    return ALL_EVENTS in events or event_type in events


def _event_name(value: str) -> str:
    if value not in _EVENT_CHOICES:
        raise ValueError(
            'must be "*" or an event name "<entity>.<action>" of the history, such as '
            "task.updated (the schema lists them all)"
        )
    return value


EventName = Annotated[
    str,
    StringConstraints(max_length=40),
    AfterValidator(_event_name),
    JsonSchemaHints(enum=[ALL_EVENTS, *EVENT_TYPES]),
]


def _event_list(value: list[str]) -> list[str]:
    # "*" beside names is allowed (JSON Schema could not say otherwise): it means them all.
    if len(set(value)) != len(value):
        raise ValueError("must name each event once")
    return value


Events = Annotated[
    list[EventName],
    Field(min_length=1, max_length=WEBHOOK_EVENTS_MAX),
    AfterValidator(_event_list),
    JsonSchemaHints(uniqueItems=True, examples=[["task.created", "task.updated"], ["*"]]),
]

# The URL as sent: its shape is checked by the service (`app.core.destinations`, which also
# resolves it), so that a refusal explains itself in one place.
WebhookUrlText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=WEBHOOK_URL_MAX_LENGTH),
    AfterValidator(reject_controls_in_line),
    JsonSchemaHints(format="uri", examples=["https://hooks.example.com/tasks"]),
]
WebhookDescription = Annotated[
    str,
    StringConstraints(max_length=WEBHOOK_DESCRIPTION_MAX_LENGTH),
    AfterValidator(reject_controls_in_text),
    JsonSchemaHints(pattern=TEXT_PATTERN),
]


class WebhookCreate(RequestModel):
    url: WebhookUrlText
    events: Events
    description: WebhookDescription | None = None
    active: StrictBool = True


class WebhookUpdate(RequestModel):
    """Partial update: only the fields sent change; `null` clears the description. `active:
    true` re-enables a webhook that was disabled (by hand, or after failing for days)."""

    url: WebhookUrlText | SkipJsonSchema[None] = optional_not_null()
    events: Events | SkipJsonSchema[None] = optional_not_null()
    description: WebhookDescription | None = None
    active: StrictBool | SkipJsonSchema[None] = optional_not_null()

    @field_validator("url", "events", "active", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


class WebhookRead(ResponseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    description: str | None
    created_at: UTCTimestamp
    disabled_reason: str | None = Field(
        description="Why the server disabled it (e.g. its receiver answered 410, or failed for "
        "days); null while active or when an admin disabled it."
    )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The signing secret (`whsec_...`, Standard Webhooks). Shown in this "
        "response only: keep it now.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class DeliveryRead(ResponseModel):
    id: int
    event_id: int | None = Field(description="The event delivered; null for a ping.")
    type: str = Field(examples=["task.updated", "ping"])
    attempt: int = Field(ge=1)
    status: str = Field(json_schema_extra={"enum": ["pending", "succeeded", "failed", "abandoned"]})
    response_status: int | None
    duration_ms: int | None
    error: str | None
    created_at: UTCTimestamp
    next_attempt_at: UTCTimestamp | None


def webhook_json(webhook: WebhookRecord) -> dict[str, Any]:
    """The `WebhookRead` document of a webhook (never its secret)."""
    return WebhookRead(
        id=webhook.id,
        url=webhook.url,
        events=list(webhook.events),
        active=webhook.active,
        description=webhook.description,
        created_at=webhook.created_at,
        disabled_reason=webhook.disabled_reason,
    ).model_dump(mode="json")


def webhook_created_json(webhook: WebhookRecord, secret: str) -> dict[str, Any]:
    """The `WebhookCreated` document: the webhook and its secret, shown this once."""
    return {**webhook_json(webhook), "secret": secret}


def delivery_json(delivery: DeliveryRecord) -> dict[str, Any]:
    """The `DeliveryRead` document of one attempt (never the payload or the receiver's body)."""
    return DeliveryRead(
        id=delivery.id,
        event_id=delivery.event_id,
        type=delivery.type,
        attempt=delivery.attempt,
        status=delivery.status,
        response_status=delivery.response_status,
        duration_ms=delivery.duration_ms,
        error=delivery.error,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at,
    ).model_dump(mode="json")
