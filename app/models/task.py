"""The `tasks` table and its indexes: one per keyset walk and view, and the text search's.

docs/decisions/0016-listing-indexes.md says why they are as they are.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.bounds import TITLE_MAX_LENGTH
from app.db.base import IDS_NEVER_REUSED, Base, BigIntPK, UTCDateTime, utcnow


class TaskStatus(enum.StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"


class TaskPriority(enum.IntEnum):
    """Stored as a small integer so that sorting by priority is sorting by the column."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    URGENT = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> TaskPriority:
        return cls[label.upper()]


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("status IN ('todo', 'in_progress', 'done')", name="status_valid"),
        CheckConstraint("priority BETWEEN 1 AND 4", name="priority_valid"),
        CheckConstraint("version >= 1", name="version_positive"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # The project that holds the task (v1's tasks are the caller's Inbox's).
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.TODO.value)
    priority: Mapped[int] = mapped_column(SmallInteger, default=TaskPriority.MEDIUM.value)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # When the assignees want to be reminded (v2 only; v1 neither shows nor sets it).
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who created it (not shown): a reminder of a task nobody is assigned goes to them, and
    # comments notify them (spec api-v2 section 8). Kept on the row, not read from the
    # `created` event, which retention removes. No foreign key: like a notification's ids,
    # it is only ever read together with the person's membership, and an insert pays nothing
    # for it. NULL for tasks created before revision 0011 whose event was gone by then.
    creator_id: Mapped[int | None] = mapped_column(BigInteger)


class TaskAssignee(Base):
    __tablename__ = "task_assignees"
    # A user's assignments (`assignee=me`, removing a member from a project's tasks).
    __table_args__ = (Index("ix_task_assignees_user_id", "user_id", "task_id"),)

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class TaskRecord(NamedTuple):
    """A row of `tasks`: the one list of a task's columns, in the table's order.

    The statements select and return exactly these (`TASK_COLUMNS`), the JSON of a task is
    built from them (`app.schemas.task.task_json`), and inserts write them (`INSERT_COLUMNS`,
    the seed command too). The table below must declare the same columns in the same order;
    importing this module checks it.
    """

    id: int
    project_id: int
    title: str
    description: str | None
    status: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    version: int
    remind_at: datetime | None
    creator_id: int | None


TASK_COLUMNS = tuple(Task.__table__.c[name] for name in TaskRecord._fields)
if tuple(column.name for column in Task.__table__.c) != TaskRecord._fields:
    raise RuntimeError("TaskRecord and the tasks table list different columns")
# What an insert supplies: every column but the generated id, in the table's order.
INSERT_COLUMNS = TaskRecord._fields[1:]


# --- indexes of the listing (app/services/task.py) --------------------------------------
#
# Every list query is `project_id = :project AND deleted_at IS [NOT] NULL AND <filters> ORDER
# BY <key>, id LIMIT n`, after a cursor `(key, id) > (:key, :id)` (v1: the caller's Inbox; v2:
# each of the caller's projects in turn, merged). Each (view, walk) has an index that is
# exactly that walk: it leads with project_id, then the sort key and id in the walk's
# order, and is partial on the view, so the live list never steps over trashed tasks and the
# trash is small however large the live list. Behind the walk come the filter columns, so that
# an equality on status or priority and a due_at range are checked inside the index and a
# page never visits rows it then discards. A multi-value IN is checked on the row (PostgreSQL
# before 17 does not walk an IN on a later column in order), still in the walk's order.


def _walks() -> dict[str, tuple[Any, ...]]:
    """Each walk's columns after project_id: its order, then the filters it checks."""
    return {
        "created": (Task.created_at, Task.id, Task.status, Task.priority, Task.due_at),
        "updated": (Task.updated_at, Task.id, Task.status, Task.priority, Task.due_at),
        "priority": (Task.priority, Task.id, Task.status, Task.due_at),
        # Ascending, PostgreSQL puts NULLs last, as the contract wants for due_at.
        "due": (Task.due_at, Task.id, Task.status, Task.priority),
        # Descending with NULLs last is the one walk that the ascending index cannot serve by
        # a backward scan; SQLite's CREATE INDEX has no NULLS LAST (and sorts NULLs first).
        "due_desc": (Task.due_at.desc().nulls_last(), Task.id.desc(), Task.status, Task.priority),
    }


_VIEWS: dict[str, ColumnElement[bool]] = {
    "live": Task.deleted_at.is_(None),
    "trash": Task.deleted_at.is_not(None),
}

for _view, _where in _VIEWS.items():
    for _walk, _columns in _walks().items():
        _index = Index(
            f"ix_tasks_{_view}_{_walk}",
            Task.project_id,
            *_columns,
            postgresql_where=_where,
            sqlite_where=_where,
        )
        if _walk == "due_desc":
            _index.ddl_if(dialect="postgresql")

# `q` (title or description contains the text, ignoring case) is `ILIKE '%text%'` on each
# column; on PostgreSQL each has a trigram index (the pg_trgm extension, which the migration
# creates), and the two combine in a BitmapOr. SQLite has no equivalent: it filters the
# project's walk.
for _column in (Task.title, Task.description):
    Index(
        f"ix_tasks_{_column.key}_trgm",
        _column,
        postgresql_using="gin",
        postgresql_ops={_column.key: "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")

# The reminder job's walk: the live tasks whose `remind_at` has come (app.jobs.reminders).
Index(
    "ix_tasks_remind_at",
    Task.remind_at,
    postgresql_where=Task.remind_at.is_not(None) & Task.deleted_at.is_(None),
    sqlite_where=Task.remind_at.is_not(None) & Task.deleted_at.is_(None),
)
