"""Who created each task, on its row: a reminder of a task nobody is assigned goes to its
creator, and comments notify them (spec api-v2 section 8). It was read from the task's
`created` event, which retention removes after ACTIVITY_RETENTION_DAYS: then the reminder
went to nobody and the creator heard of no comment.

Revision ID: 0011_task_creators
Revises: 0010_mail_sending
Create Date: 2026-12-07 13:30:00

Filled from the `created` events still kept; tasks whose event is gone keep NULL (an Inbox's
reminders go to its owner anyway). One UPDATE over the table: on a large one, writes to
`tasks` wait while it runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_task_creators"
down_revision: str | None = "0010_mail_sending"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("creator_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE tasks SET creator_id = (SELECT events.actor_id FROM events"
        " WHERE events.task_id = tasks.id AND events.entity = 'task'"
        " AND events.action = 'created' ORDER BY events.id LIMIT 1)"
    )


def downgrade() -> None:
    # Not in batch mode: on SQLite a rebuild drops `tasks` with foreign keys on, which deletes
    # every comment, assignee and label link through their ON DELETE CASCADE. ALTER TABLE
    # DROP COLUMN (SQLite 3.35 or later) leaves them be.
    op.drop_column("tasks", "creator_id")
