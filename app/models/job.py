"""What the background jobs keep between runs that is theirs alone.

`OutboxCursor`: how far a job that reads the event log (the transactional outbox: the
notifications' and the webhooks' fan-out) has read, as a feed position (xid, id). A job
advances it in the same transaction as what it made from the events it read, so a job lost
halfway makes nothing and reads them again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class OutboxCursor(Base):
    __tablename__ = "outbox_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    xid: Mapped[int] = mapped_column(BigInteger)
    id: Mapped[int] = mapped_column(BigInteger)
