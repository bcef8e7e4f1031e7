"""The `refresh_tokens` table: opaque tokens kept only as digests, grouped in login families."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, UTCDateTime, utcnow


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_user_id", "user_id"),
        Index("ix_refresh_tokens_family_id", "family_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 hex of the token; the plaintext is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Every token descended from one login shares the family id (reuse revokes the family).
    family_id: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # This token's own deadline: the idle window from its creation, capped by the family's.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The absolute end of the login: rotation never extends a family past it.
    family_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
