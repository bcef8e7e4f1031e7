"""When each webhook was last enabled and disabled: an event goes to a webhook that was active
when the event happened, whenever the fan-out job comes to it (docs/decisions/0033).

The fan-out looked at the webhooks active when it ran, up to a second later (longer with a
backlog, or while no worker ran): an event made just before a webhook was disabled was never
delivered, and one made while it was disabled was delivered once it was enabled again.

Revision ID: 0013_webhook_active_periods
Revises: 0012_periodic_deferrals_in_order
Create Date: 2026-12-07 21:00:00

Existing webhooks: active since their creation (`active_from` NULL); a disabled one until its
last change (when it was most likely disabled). Two nullable columns and no table rebuild: on
SQLite a rebuild drops `webhooks` with foreign keys on, which deletes every delivery of the
log through its ON DELETE CASCADE (decision 0035, migration 0008). The downgrade drops them
with SQLite's own ALTER TABLE DROP COLUMN (3.35 or later) for the same reason.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0013_webhook_active_periods"
down_revision: str | None = "0012_periodic_deferrals_in_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("active_from", UTCDateTime(), nullable=True))
    op.add_column("webhooks", sa.Column("active_until", UTCDateTime(), nullable=True))
    op.execute("UPDATE webhooks SET active_until = updated_at WHERE NOT active")


def downgrade() -> None:
    # Not in batch mode: op.drop_column is ALTER TABLE ... DROP COLUMN on both databases.
    op.drop_column("webhooks", "active_until")
    op.drop_column("webhooks", "active_from")
