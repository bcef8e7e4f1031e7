"""Events as the API shows them (spec api-v2 section 7): the activity of a task or a project,
and the items of the change feed (an event with its entity's v2 document now, `object`), which
webhook payloads carry too (section 9).

`changes` is stored in the columns' form ({column: [old, new]}, `app.models.event`); here it
takes the form of the entity's v2 object: a priority or a role by its name, timestamps as
every timestamp of the API (UTC, milliseconds, `Z`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from app.core.roles import ProjectRole
from app.db.statements.event_objects import EntityObject
from app.db.statements.events import Action, Entity, EventRow
from app.db.statements.tasks import TaskDetail
from app.models.task import TaskPriority
from app.schemas.comment import comment_json
from app.schemas.common import ResponseModel, UTCTimestamp
from app.schemas.label import label_json
from app.schemas.project import invitation_json, member_json, project_json
from app.schemas.task import project_task_json, timestamp_text


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


# PostgreSQL's JSON of the infinities that asyncpg stores Python's first and last instants as
# (a due date of 0001-01-01T00:00:00Z): shown as those instants, as the task itself shows them.
_INFINITIES = {
    "-infinity": timestamp_text(datetime.min.replace(tzinfo=UTC)),
    "infinity": timestamp_text(datetime.max.replace(tzinfo=UTC)),
}


def _when(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value in _INFINITIES:
        return _INFINITIES[value]
    try:
        return timestamp_text(datetime.fromisoformat(value))
    except ValueError:
        # Written by a server whose sessions were not in UTC before they were pinned to it
        # (app/db/session.py), at an edge of the range ("10000-01-01T08:00:00+09:00"): shown
        # as stored rather than failing every page that holds the event.
        return value


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


def _task_json(task: TaskDetail) -> dict[str, Any]:
    return project_task_json(task.task, task.assignee_ids, task.label_ids)


# Each entity's v2 document, as its own GET shows it.
_OBJECT_JSON: dict[str, Callable[[Any], dict[str, Any]]] = {
    "task": _task_json,
    "project": project_json,
    "member": member_json,
    "invitation": invitation_json,
    "label": label_json,
    "comment": comment_json,
}


def object_json(entity: str, found: EntityObject | None) -> dict[str, Any] | None:
    """The v2 document of an `entity` as found now (`app.db.statements.event_objects`); None
    when it was not found (gone, or not the reader's to see)."""
    return None if found is None else _OBJECT_JSON[entity](found)


def feed_item_json(
    event: EventRow,
    found: EntityObject | None,
    *,
    shown: dict[int, dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The `FeedItem` document of an event whose entity is `found` now (None: gone).

    With `shown` (one dict per page), an entity found once for several events of the page is
    rendered once and its document shared by their items."""
    if shown is None:
        document = object_json(event.entity, found)
    else:
        key = id(found)
        if key not in shown:
            shown[key] = object_json(event.entity, found)
        document = shown[key]
    item = event_json(event)
    item["object"] = document
    return item


def feed_items_json(items: Iterable[tuple[EventRow, EntityObject | None]]) -> list[dict[str, Any]]:
    """The `FeedItem` documents of a page of events with their entities (`feed_item_json`),
    each entity rendered once for the page."""
    shown: dict[int, dict[str, Any] | None] = {}
    return [feed_item_json(event, found, shown=shown) for event, found in items]
