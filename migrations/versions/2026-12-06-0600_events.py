"""The event log: every change of a project, member, invitation, task, label or comment.

Revision ID: 0006_events
Revises: 0005_projects
Create Date: 2026-12-06 06:00:00

`events.xid` defaults to the writing transaction's id on PostgreSQL (`pg_current_xact_id()`,
PostgreSQL 13+), to 0 on SQLite; the change feed walks (xid, id) (docs/decisions/0030).
`event_retention` holds how far retention has removed events. Existing data gets no events:
history starts with this revision. The downgrade drops both tables (the history is lost).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_events"
down_revision: str | None = "0005_projects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# app.models.event.EVENT_INDEXES when this revision was made.
_INDEXES = (
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


def upgrade() -> None:
    is_postgresql = op.get_bind().dialect.name == "postgresql"
    xid_default = "(pg_current_xact_id()::text::bigint)" if is_postgresql else "0"
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("xid", sa.BigInteger(), server_default=sa.text(xid_default), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("from_project_id", sa.BigInteger(), nullable=True),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column(
            "changes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sqlite_autoincrement=True,
    )
    # The whole log in feed order (app.models.event.LOG_INDEX when this revision was made).
    op.create_index(
        "ix_events_log",
        "events",
        ["xid", "id"],
        postgresql_include=["project_id", "from_project_id", "entity", "entity_id"],
    )
    for name, columns, where in _INDEXES:
        condition = sa.text(where) if where else None
        op.create_index(
            name, "events", list(columns), postgresql_where=condition, sqlite_where=condition
        )
    op.create_table(
        "event_retention",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("removed_through_xid", sa.BigInteger(), nullable=False),
        sa.Column("removed_through_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_retention")),
    )


def downgrade() -> None:
    op.drop_table("event_retention")
    for name, _columns, _where in reversed(_INDEXES):
        op.drop_index(name, table_name="events")
    op.drop_index("ix_events_log", table_name="events")
    op.drop_table("events")
