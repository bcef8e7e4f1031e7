"""When each webhook was last enabled and disabled: an event goes to a webhook that was active
when the event happened, whenever the fan-out job comes to it (docs/decisions/0033).

The fan-out looked at the webhooks active when it ran, up to a second later (longer with a
backlog, or while no worker ran): an event made just before a webhook was disabled was never
delivered, and one made while it was disabled was delivered once it was enabled again.

Revision ID: 0013_webhook_active_periods
Revises: 0012_periodic_deferrals_in_order
Create Date: 2026-12-07 21:00:00

Existing webhooks: active from their creation; a disabled one until its last change (when it
was most likely disabled).
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
    op.execute(
        "UPDATE webhooks SET active_from = created_at, "
        "active_until = CASE WHEN active THEN NULL ELSE updated_at END"
    )
    with op.batch_alter_table("webhooks") as batch:
        batch.alter_column("active_from", existing_type=UTCDateTime(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("active_until")
        batch.drop_column("active_from")
