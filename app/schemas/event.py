"""Events as the API shows them (spec api-v2 section 7): the activity of a task or a project,
and the items of the change feed.

`changes` is stored in the columns' form ({column: [old, new]}, `app.models.event`); here it
takes the form of the entity's v2 object: a priority or a role by its name, timestamps as
every timestamp of the API (UTC, milliseconds, `Z`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from app.core.roles import ProjectRole
from app.db.statements.events import Action, Entity, EventRow
from app.models.task import TaskPriority
from app.schemas.common import ResponseModel, UTCTimestamp
from app.schemas.task import timestamp_text


class Actor(BaseModel):
    id: int
    full_name: str | None


class EventRead(ResponseModel):
    id: int
    at: UTCTimestamp
    actor: Actor | None = Field(description="Who made the change; null for the system.")
    project_id: int
    entity: Entity
    entity_id: int = Field(description="The entity's id; for a member, the member's user id.")
    task_id: int | None = Field(
        description="The task of a task's or a comment's event (null for other entities)."
    )
    action: Action
    changes: dict[str, list[Any]] = Field(
        description="Each changed field of the entity's v2 object: [old, new]."
    )


class FeedItem(EventRead):
    object: dict[str, Any] | None = Field(
        description="The entity as a v2 GET shows it to you now; null once it is gone."
    )


class FeedPage(BaseModel):
    items: list[FeedItem]
    next_cursor: str = Field(description="Where to read on from, now or later (always given).")
    has_more: bool = Field(description="Whether more events are there to read at once.")


def _when(value: Any) -> Any:
    return timestamp_text(datetime.fromisoformat(value)) if isinstance(value, str) else value


_PRIORITY_LABELS = {priority.value: priority.label for priority in TaskPriority}
_ROLE_LABELS = {role.value: role.label for role in ProjectRole}


def _priority(value: Any) -> Any:
    return _PRIORITY_LABELS.get(value, value)


def _role(value: Any) -> Any:
    return _ROLE_LABELS.get(value, value)


# How a stored value reads in the entity's v2 object, per (entity, field); others as stored.
_SHOWN: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("task", "priority"): _priority,
    ("task", "due_at"): _when,
    ("task", "completed_at"): _when,
    ("task", "deleted_at"): _when,
    ("task", "remind_at"): _when,
    ("project", "deleted_at"): _when,
    ("member", "role"): _role,
    ("invitation", "role"): _role,
    ("invitation", "expires_at"): _when,
}


def shown_changes(entity: str, stored: str) -> dict[str, list[Any]]:
    """An event's stored `changes` (JSON text) in the form of the entity's v2 object."""
    changes: dict[str, list[Any]] = {}
    for field, (old, new) in orjson.loads(stored).items():
        show = _SHOWN.get((entity, field))
        changes[field] = [show(old), show(new)] if show else [old, new]
    return changes


def event_json(event: EventRow) -> dict[str, Any]:
    """The `EventRead` document of an event."""
    return {
        "id": event.id,
        "at": timestamp_text(event.at),
        "actor": (
            None
            if event.actor_id is None
            else {"id": event.actor_id, "full_name": event.actor_name}
        ),
        "project_id": event.project_id,
        "entity": event.entity,
        "entity_id": event.entity_id,
        "task_id": event.task_id,
        "action": event.action,
        "changes": shown_changes(event.entity, event.changes),
    }
