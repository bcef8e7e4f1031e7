"""Notifications as the API shows them (spec api-v2 section 8): what happened, who did it, and
the project and task it is about, as they are now."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.db.statements.notifications import NotificationRow
from app.schemas.common import ResponseModel, UTCTimestamp
from app.schemas.event import Actor
from app.schemas.task import timestamp_text

# `app.models.notification.NOTIFICATION_KINDS`, spelled out for the schema clients read.
NotificationKind = Literal[
    "assigned",
    "invited",
    "commented",
    "reminder",
    "role_changed",
    "removed",
    "webhook_disabled",
]


class ProjectRef(BaseModel):
    id: int
    name: str


class TaskRef(BaseModel):
    id: int
    title: str


class NotificationRead(ResponseModel):
    id: int
    kind: NotificationKind = Field(
        description="`webhook_disabled` (an extension of the spec) goes to a project's admins "
        "when one of its webhooks was disabled after failing."
    )
    created_at: UTCTimestamp
    read_at: UTCTimestamp | None = Field(description="When it was first marked read.")
    project: ProjectRef | None = Field(
        description="The project it is about, as it is now; null when none, or it is gone."
    )
    task: TaskRef | None = Field(
        description="The task it is about, with its title as it is now; null when none, or "
        "it is gone (purged)."
    )
    actor: Actor | None = Field(description="Who caused it; null for the system, or gone.")
    message: str


def notification_json(row: NotificationRow) -> dict[str, Any]:
    """The `NotificationRead` document of a notification."""
    return {
        "id": row.id,
        "kind": row.kind,
        "created_at": timestamp_text(row.created_at),
        "read_at": timestamp_text(row.read_at),
        "project": (
            None if row.project_id is None else {"id": row.project_id, "name": row.project_name}
        ),
        "task": None if row.task_id is None else {"id": row.task_id, "title": row.task_title},
        "actor": (
            None if row.actor_id is None else {"id": row.actor_id, "full_name": row.actor_full_name}
        ),
        "message": row.message,
    }
