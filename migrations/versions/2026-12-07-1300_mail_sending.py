"""Mail being sent: a claimed mail is `sending` until its outcome is written, and one whose
lease ended first (its worker stopped while sending) is given up, not sent again (the
contract's "at most once", spec api-v2 section 8). This index finds those by the end of
their lease; it holds only the mail being sent at the moment.

Revision ID: 0010_mail_sending
Revises: 0009_deliveries_by_webhook
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_mail_sending"
down_revision: str | None = "0009_deliveries_by_webhook"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_notifications_mail_sending"


def upgrade() -> None:
    sending = sa.text("mail_status = 'sending'")
    op.create_index(
        INDEX,
        "notifications",
        ["mail_next_attempt_at"],
        postgresql_where=sending,
        sqlite_where=sending,
        if_not_exists=True,
    )


def downgrade() -> None:
    # The code before this revision knows no `sending`: such mail is due again, as it was.
    op.execute("UPDATE notifications SET mail_status = 'pending' WHERE mail_status = 'sending'")
    op.drop_index(INDEX, table_name="notifications")
