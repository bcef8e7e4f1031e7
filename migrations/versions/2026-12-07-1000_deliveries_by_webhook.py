"""Pending webhook attempts by webhook: the delivery job caps each webhook's attempts in
flight, and reads each webhook's due attempts and those in flight from this index.

Revision ID: 0009_deliveries_by_webhook
Revises: 0008_sqlite_ids_never_reused
Create Date: 2026-12-07 10:00:00

Without it the claim ranked every due attempt of every webhook on each call: with a backlog
of 50,000 attempts to one slow receiver, 60 ms a claim on PostgreSQL, against 3 ms walking
this index a webhook at a time (decision 0033, "Slow receivers").

A plain CREATE INDEX inside the migration's transaction: writes to `webhook_deliveries` wait
while it builds (as with revision 0003, decision 0016). On a large live delivery log, build it
`CONCURRENTLY` by hand first, under this name; the migration then finds it and skips it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_deliveries_by_webhook"
down_revision: str | None = "0008_sqlite_ids_never_reused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_webhook_deliveries_pending_by_webhook"


def upgrade() -> None:
    pending = sa.text("status = 'pending'")
    op.create_index(
        INDEX,
        "webhook_deliveries",
        ["webhook_id", "next_attempt_at", "id"],
        postgresql_where=pending,
        sqlite_where=pending,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="webhook_deliveries")
