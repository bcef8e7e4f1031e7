"""Labels of a project, and which tasks carry them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.bounds import LABEL_NAME_MAX_LENGTH
from app.db.base import IDS_NEVER_REUSED, Base, BigIntPK, UTCDateTime, utcnow


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (
        # Unique in its project without regard to case, enforced by the database.
        Index("uq_labels_project_name", "project_id", func.lower(text("name")), unique=True),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(LABEL_NAME_MAX_LENGTH))
    color: Mapped[str] = mapped_column(String(7))  # "#rrggbb", lower case
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskLabel(Base):
    __tablename__ = "task_labels"
    # The tasks that carry a label (`label_id=` filters, deleting a label).
    __table_args__ = (Index("ix_task_labels_label_id", "label_id", "task_id"),)

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    label_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True
    )
