"""Projects, their members at roles, and the invitations that make members.

Every account has one Inbox project (`inbox_user_id` set, unique), made with the account:
v1's tasks are the Inbox's. A member's `role` is a `ProjectRole` rank (app/core/roles.py),
so "at least an editor" is `role >= 3` in the statements' `WHERE`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.bounds import EMAIL_MAX_LENGTH, PROJECT_NAME_MAX_LENGTH
from app.db.base import IDS_NEVER_REUSED, Base, BigIntPK, UTCDateTime, utcnow

# The name an Inbox is given (it may be renamed).
INBOX_NAME = "Inbox"


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("version >= 1", name="version_positive"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(PROJECT_NAME_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    # The account whose Inbox this is; NULL for every other project.
    inbox_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (
        CheckConstraint("role BETWEEN 1 AND 5", name="role_valid"),
        # A user's projects (every listing across projects starts here).
        Index("ix_project_members_user_id", "user_id", "project_id", "role"),
    )

    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[int] = mapped_column(SmallInteger)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Invitation(Base):
    """A pending invitation; accepting, declining or revoking one deletes it."""

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("role BETWEEN 1 AND 5", name="role_valid"),
        # One pending invitation per address and project: inviting again replaces it.
        Index("uq_invitations_project_email", "project_id", "email", unique=True),
        Index("ix_invitations_email", "email"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE")
    )
    # In the accounts' normal form (app.schemas.user.normalize_email), so it compares equal.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    role: Mapped[int] = mapped_column(SmallInteger)
    invited_by_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
