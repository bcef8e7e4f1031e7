"""The `tasks` table and its indexes, one per supported keyset walk."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, UTCDateTime, utcnow


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
        # Every index leads with owner_id: ownership is part of every query. Each supported
        # sort has an index whose order matches its keyset walk (see app/services/task.py).
        Index("ix_tasks_owner_created", "owner_id", "created_at", "id"),
        Index("ix_tasks_owner_updated", "owner_id", "updated_at", "id"),
        Index("ix_tasks_owner_status", "owner_id", "status", "created_at", "id"),
        Index("ix_tasks_owner_priority", "owner_id", "priority", "id"),
        # Ascending, PostgreSQL puts NULLs last, as the contract wants for due_at.
        Index("ix_tasks_owner_due", "owner_id", "due_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.TODO.value)
    priority: Mapped[int] = mapped_column(SmallInteger, default=TaskPriority.MEDIUM.value)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)


# Descending with NULLs last is PostgreSQL's only index order that the ascending index cannot
# serve by a backward scan. SQLite's CREATE INDEX has no NULLS LAST (and sorts NULLs first).
Index(
    "ix_tasks_owner_due_desc",
    Task.owner_id,
    Task.due_at.desc().nulls_last(),
    Task.id.desc(),
).ddl_if(dialect="postgresql")
