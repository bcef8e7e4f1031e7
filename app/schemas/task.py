"""Task request and response bodies: v1's, and v2's (a task in a project, with its
assignees, labels and reminder)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, StringConstraints, field_validator
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from app.core.bounds import (
    DESCRIPTION_MAX_LENGTH,
    MAX_ID,
    TASK_ASSIGNEES_MAX,
    TASK_LABELS_MAX,
    TITLE_MAX_LENGTH,
)
from app.models.task import TaskPriority, TaskRecord
from app.schemas.common import (
    TEXT_PATTERN,
    JsonSchemaHints,
    RequestModel,
    ResponseModel,
    Timestamp,
    UTCTimestamp,
    optional_not_null,
    reject_controls_in_line,
    reject_controls_in_text,
    require_visible,
    visible_line_pattern,
)

StatusName = Literal["todo", "in_progress", "done"]
PriorityName = Literal["low", "medium", "high", "urgent"]


def _trimmed_title(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or only spaces")
    if len(value) > TITLE_MAX_LENGTH:
        raise ValueError(f"must be at most {TITLE_MAX_LENGTH} characters after trimming")
    return value


# Single-line (no control characters, line breaks, direction overrides or noncharacters:
# app/schemas/common.py), trimmed, then 1 to TITLE_MAX_LENGTH characters of which one at least
# is visible. The raw bound keeps absurd inputs cheap to reject; the real rule applies after
# trimming. The pattern states the whole rule for OpenAPI.
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4 * TITLE_MAX_LENGTH),
    AfterValidator(reject_controls_in_line),
    AfterValidator(_trimmed_title),
    AfterValidator(require_visible),
    JsonSchemaHints(pattern=visible_line_pattern(TITLE_MAX_LENGTH)),
]
# Multi-line: tab, line feed, carriage return and the line and paragraph separators allowed;
# other control characters, direction overrides and noncharacters not.
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX_LENGTH),
    AfterValidator(reject_controls_in_text),
    JsonSchemaHints(pattern=TEXT_PATTERN),
]


class TaskCreate(RequestModel):
    title: Title
    description: Description | None = None
    status: StatusName = "todo"
    priority: PriorityName = "medium"
    due_at: Timestamp | None = None


class TaskUpdate(RequestModel):
    """Partial update: only the fields sent change; `null` clears description or due_at."""

    title: Title | SkipJsonSchema[None] = optional_not_null()
    description: Description | None = None
    status: StatusName | SkipJsonSchema[None] = optional_not_null()
    priority: PriorityName | SkipJsonSchema[None] = optional_not_null()
    due_at: Timestamp | None = None

    @field_validator("title", "status", "priority", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


class TaskRead(ResponseModel):
    id: int
    title: str
    description: str | None
    status: StatusName
    priority: PriorityName
    due_at: UTCTimestamp | None
    created_at: UTCTimestamp
    updated_at: UTCTimestamp
    completed_at: UTCTimestamp | None
    deleted_at: UTCTimestamp | None
    version: int

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_label(cls, value: object) -> object:
        if isinstance(value, int):
            return TaskPriority(value).label
        return value


_PRIORITY_LABELS = {priority.value: priority.label for priority in TaskPriority}


def timestamp_text(value: datetime | None) -> str | None:
    """`UTCTimestamp`'s format (UTC, milliseconds, `Z`), without its per-call overhead."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - the fastest spelling
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 1000,
    )


def task_json(task: TaskRecord) -> dict[str, Any]:
    """The `TaskRead` document of a task, as JSON-ready values.

    The routes serialise with this instead of validating a `TaskRead` first: the values come
    from the database, so there is nothing to validate, and `TaskRead` stays the schema
    OpenAPI shows. tests/unit/test_task_json.py holds the two to the same output.
    """
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": _PRIORITY_LABELS[task.priority],
        "due_at": timestamp_text(task.due_at),
        "created_at": timestamp_text(task.created_at),
        "updated_at": timestamp_text(task.updated_at),
        "completed_at": timestamp_text(task.completed_at),
        "deleted_at": timestamp_text(task.deleted_at),
        "version": task.version,
    }


# --- v2: a task in a project, with its assignees and labels (spec api-v2 section 5) --------
#
# The v1 models above stay as they are (v1's JSON does not change); v2's extend them.


def _id_schema(schema: JsonDict) -> None:
    schema["uniqueItems"] = True


# An id in a body: a JSON integer (not a string or a float that happens to be whole), 1 to
# MAX_ID. Whether it names something the caller may use is the service's question (422).
IdInBody = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
# Each id once (a repeated one is a 422 pointing at it: app.services.task).
AssigneeIds = Annotated[
    list[IdInBody],
    Field(
        max_length=TASK_ASSIGNEES_MAX,
        description="Members of the task's project, by user id; each once.",
        json_schema_extra=_id_schema,
    ),
]
LabelIds = Annotated[
    list[IdInBody],
    Field(
        max_length=TASK_LABELS_MAX,
        description="Labels of the task's project; each once.",
        json_schema_extra=_id_schema,
    ),
]


class ProjectTaskCreate(TaskCreate):
    project_id: IdInBody | None = Field(
        default=None,
        description="The project to create the task in; the caller's Inbox if left out or null.",
    )
    assignee_ids: AssigneeIds = []
    label_ids: LabelIds = []
    remind_at: Timestamp | None = None


class ProjectTaskUpdate(TaskUpdate):
    """Partial update: only the fields sent change. `project_id` moves the task (assignees
    who are not members of the target are dropped unless `assignee_ids` is sent too; labels
    are replaced by `label_ids`, or cleared); `assignee_ids` and `label_ids` replace the
    task's; `null` clears remind_at."""

    project_id: IdInBody | SkipJsonSchema[None] = optional_not_null()
    assignee_ids: AssigneeIds | SkipJsonSchema[None] = optional_not_null()
    label_ids: LabelIds | SkipJsonSchema[None] = optional_not_null()
    remind_at: Timestamp | None = None

    @field_validator("project_id", "assignee_ids", "label_ids", mode="before")
    @classmethod
    def _links_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


class ProjectTaskRead(TaskRead):
    project_id: int
    assignee_ids: list[int] = Field(description="User ids, ascending.")
    label_ids: list[int] = Field(description="Label ids, ascending.")
    remind_at: UTCTimestamp | None


def project_task_json(
    task: TaskRecord, assignee_ids: Sequence[int], label_ids: Sequence[int]
) -> dict[str, Any]:
    """The `ProjectTaskRead` document of a task: `task_json`'s, and its project, assignees,
    labels and reminder (held to `ProjectTaskRead` by tests/api/v2/test_tasks.py)."""
    document = task_json(task)
    document["project_id"] = task.project_id
    document["assignee_ids"] = list(assignee_ids)
    document["label_ids"] = list(label_ids)
    document["remind_at"] = timestamp_text(task.remind_at)
    return document
