"""`task_json` (what the task routes send) against `TaskRead` (what OpenAPI promises).

The routes serialise rows with `task_json` and orjson instead of validating a `TaskRead` per
task; the two must give the same document for every task, byte for byte once encoded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import product
from typing import Any

import orjson
import pytest

from app.models.task import TaskPriority, TaskRecord
from app.schemas.task import TaskRead, task_json

INSTANTS = [
    datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
    datetime(2026, 11, 24, 9, 30, 0, 999_999, tzinfo=UTC),  # truncated, not rounded
    datetime(2026, 11, 24, 9, 30, 1, 1_000, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 0, 500, tzinfo=UTC),  # a year below 1000 keeps four digits
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),  # not UTC
]


def record(**fields: Any) -> TaskRecord:
    values: dict[str, Any] = {
        "id": 9_223_372_036_854_775_807,
        "project_id": 1,
        "title": 'Write it \u00e9\U0001f600 "quoted" \\ back',
        "description": None,
        "status": "todo",
        "priority": TaskPriority.MEDIUM.value,
        "due_at": None,
        "created_at": INSTANTS[0],
        "updated_at": INSTANTS[0],
        "completed_at": None,
        "deleted_at": None,
        "version": 1,
        "remind_at": None,
        "creator_id": 1,
    }
    values.update(fields)
    return TaskRecord(**values)


CASES = [
    record(),
    record(description="line one\nline\ttwo", status="done", completed_at=INSTANTS[1]),
    *(record(priority=priority.value) for priority in TaskPriority),
    *(
        record(due_at=due, created_at=created, updated_at=created, deleted_at=due, version=7)
        for due, created in product(INSTANTS, INSTANTS[:3])
    ),
]


@pytest.mark.parametrize("task", CASES)
def test_same_document_as_task_read(task: TaskRecord) -> None:
    expected = TaskRead.model_validate(task, from_attributes=True).model_dump(mode="json")
    assert task_json(task) == expected
    assert orjson.loads(orjson.dumps(task_json(task))) == expected
    assert list(task_json(task)) == list(TaskRead.model_fields)
