"""The event log: one row per change of a project, member, invitation, task, label or comment,
written in the same transaction as the change (spec api-v2 section 7, docs/decisions/0030).

`xid` is the writing transaction's id on PostgreSQL (`pg_current_xact_id()`, a column default
that the inserts never set), 0 on SQLite. The change feed walks `(xid, id)` and holds back
what is not yet below the oldest running transaction, which is what makes it never skip an
event whose transaction commits late; on SQLite one writer at a time makes `id` alone do.
`id` never repeats (SQLite: AUTOINCREMENT; PostgreSQL: an identity), so a cursor cannot be
passed by an id handed out again after the newest events were removed.

`changes` holds `{column: [old, new]}` in the columns' stored form (a priority's rank, a role's
rank, ISO timestamps); `app.services.events` turns it into the v2 objects' fields. Only the
columns `app.db.statements.events.AUDITED` names ever reach it, so no secret can.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, FetchedValue, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import IDS_NEVER_REUSED, Base, BigIntPK, UTCDateTime

# The feed's and the activity's walks; the migration (0006) creates the same.
EVENT_INDEXES = (
    ("ix_events_project_feed", ("project_id", "xid", "id"), None),
    (
        "ix_events_from_project_feed",
        ("from_project_id", "xid", "id"),
        "from_project_id IS NOT NULL",
    ),
    ("ix_events_member_feed", ("entity_id", "xid", "id"), "entity = 'member'"),
    ("ix_events_task", ("task_id", "id"), "task_id IS NOT NULL"),
    ("ix_events_project", ("project_id", "id"), None),
    ("ix_events_from_project", ("from_project_id", "id"), "from_project_id IS NOT NULL"),
)


# The whole log in feed order, with what tells whose an event is (index-only scans on
# PostgreSQL): the feed's first walk (app.db.statements.events.feed).
LOG_INDEX = "ix_events_log"
LOG_INDEX_INCLUDES = ("project_id", "from_project_id", "entity", "entity_id")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index(LOG_INDEX, "xid", "id", postgresql_include=list(LOG_INDEX_INCLUDES)),
        *(
            Index(
                name,
                *columns,
                postgresql_where=text(where) if where else None,
                sqlite_where=text(where) if where else None,
            )
            for name, columns, where in EVENT_INDEXES
        ),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # The writing transaction (PostgreSQL), set by the column's default.
    xid: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # NULL: the system (a purge). No foreign key: the log outlives what it names.
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    # The project the change happened in (a move: the task's new project) ...
    project_id: Mapped[int] = mapped_column(BigInteger)
    # ... and, for a move, the one it left (its members learn that the task went).
    from_project_id: Mapped[int | None] = mapped_column(BigInteger)
    entity: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    # The task of a task's or a comment's event (a task's history includes its comments).
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))


class EventRetention(Base):
    """How far retention has removed events: the newest (xid, id) removed. A feed cursor
    before it may have missed something, so it is a 410 (the client starts over)."""

    __tablename__ = "event_retention"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    removed_through_xid: Mapped[int] = mapped_column(BigInteger)
    removed_through_id: Mapped[int] = mapped_column(BigInteger)
