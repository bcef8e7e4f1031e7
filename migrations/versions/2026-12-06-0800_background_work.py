"""Background work: notifications, reminders sent, webhooks and their deliveries, the
outbox cursors, and (PostgreSQL) the job engine's own tables.

Revision ID: 0007_background_work
Revises: 0006_events
Create Date: 2026-12-06 08:00:00

On PostgreSQL the job engine, procrastinate, keeps its queue in the database: its schema (the
SQL the pinned procrastinate version ships) goes into a PostgreSQL schema of its own,
`procrastinate`, which the workers put on their search path (docs/decisions/0031).

The outbox cursor starts at the end of the log as it is: the events written before this
revision are history, not news (no notification or webhook message is made from them).

The downgrade drops that schema (and any job in it) and the tables; notifications and the
delivery log are lost.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.util import await_only

revision: str = "0007_background_work"
down_revision: str | None = "0006_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_SCHEMA = "procrastinate"


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "notifications",
        _id(),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("read_at", _when(), nullable=True),
        sa.Column("project_id", sa.BigInteger(), nullable=True),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(96), nullable=False),
        sa.Column("mail_status", sa.String(16), nullable=True),
        sa.Column("mail_attempts", sa.Integer(), nullable=False),
        sa.Column("mail_next_attempt_at", _when(), nullable=True),
        sa.Column("mail_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_notifications_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("user_id", "dedupe_key", name="uq_notifications_user_dedupe"),
    )
    op.create_index("ix_notifications_user", "notifications", ["user_id", "id"])
    op.create_index(
        "ix_notifications_mail_due",
        "notifications",
        ["mail_next_attempt_at"],
        postgresql_where=sa.text("mail_status = 'pending'"),
        sqlite_where=sa.text("mail_status = 'pending'"),
    )
    op.create_table(
        "sent_reminders",
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("remind_at", _when(), nullable=False),
        sa.Column("sent_at", _when(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_sent_reminders_task_id_tasks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "remind_at", name="pk_sent_reminders"),
    )
    live_reminder = sa.text("remind_at IS NOT NULL AND deleted_at IS NULL")
    op.create_index(
        "ix_tasks_remind_at",
        "tasks",
        ["remind_at"],
        postgresql_where=live_reminder,
        sqlite_where=live_reminder,
    )
    op.create_table(
        "webhooks",
        _id(),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("previous_secret", sa.String(128), nullable=True),
        sa.Column("previous_secret_until", _when(), nullable=True),
        sa.Column("failing_since", _when(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_webhooks_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
    )
    op.create_index("ix_webhooks_project", "webhooks", ["project_id", "id"])
    op.create_table(
        "webhook_deliveries",
        _id(),
        sa.Column("webhook_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("next_attempt_at", _when(), nullable=True),
        sa.Column("attempted_at", _when(), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name="fk_webhook_deliveries_webhook_id_webhooks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("message_id", "attempt", name="uq_webhook_deliveries_attempt"),
    )
    op.create_index("ix_webhook_deliveries_webhook", "webhook_deliveries", ["webhook_id", "id"])
    first_of_event = sa.text("attempt = 1 AND event_id IS NOT NULL")
    op.create_index(
        "uq_webhook_deliveries_event",
        "webhook_deliveries",
        ["webhook_id", "event_id"],
        unique=True,
        postgresql_where=first_of_event,
        sqlite_where=first_of_event,
    )
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    op.create_table(
        "outbox_cursors",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_outbox_cursors"),
    )
    # The log's newest position now: the jobs read what is written after it.
    bind.execute(
        sa.text(
            "INSERT INTO outbox_cursors (name, xid, id) "
            "SELECT 'outbox', xid, id FROM events ORDER BY xid DESC, id DESC LIMIT 1"
        )
    )
    if bind.dialect.name == "postgresql":
        install_job_schema(bind)


def install_job_schema(bind: sa.Connection) -> None:
    """procrastinate's schema, as its pinned version ships it, in a schema of its own."""
    from procrastinate.schema import SchemaManager

    script = (
        f"CREATE SCHEMA IF NOT EXISTS {JOB_SCHEMA}; SET LOCAL search_path TO {JOB_SCHEMA};\n"
        f"{SchemaManager.get_schema()}\nSET LOCAL search_path TO DEFAULT;"
    )
    # The script holds many statements (and $$-quoted functions): asyncpg runs it as one
    # simple query, which a prepared statement (op.execute) cannot be.
    driver = bind.connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    await_only(driver.execute(script))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"DROP SCHEMA IF EXISTS {JOB_SCHEMA} CASCADE"))
    op.drop_table("outbox_cursors")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_index("uq_webhook_deliveries_event", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_webhook", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhooks_project", table_name="webhooks")
    op.drop_table("webhooks")
    op.drop_index("ix_tasks_remind_at", table_name="tasks")
    op.drop_table("sent_reminders")
    op.drop_index("ix_notifications_mail_due", table_name="notifications")
    op.drop_index("ix_notifications_user", table_name="notifications")
    op.drop_table("notifications")
