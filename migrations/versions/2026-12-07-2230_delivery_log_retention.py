"""The webhook delivery log by age: the cleanup job now removes finished attempts older than
`ACTIVITY_RETENTION_DAYS` (decision 0033), walking this index oldest first.

Revision ID: 0014_delivery_log_retention
Revises: 0013_webhook_active_periods
Create Date: 2026-12-07 22:30:00

The log had no bound: every attempt of every message keeps its payload, so a project's busy
webhook grew the table for as long as the deployment ran, after the events themselves were
removed. A plain CREATE INDEX inside the migration's transaction: writes to
`webhook_deliveries` wait while it builds (as with revision 0009). On a large live log, build
it `CONCURRENTLY` by hand first, under this name; the migration then finds it and skips it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_delivery_log_retention"
down_revision: str | None = "0013_webhook_active_periods"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_webhook_deliveries_created"


def upgrade() -> None:
    op.create_index(INDEX, "webhook_deliveries", ["created_at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="webhook_deliveries")
