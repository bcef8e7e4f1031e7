"""Login, token issuing and resolving an access token to its user. No HTTP here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import AccountDisabled, InvalidCredentials, Unauthorized
from app.core.security import (
    PASSWORD_MAX_LENGTH,
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password_async,
    hash_rounds,
    new_refresh_token,
    normalize_password,
    verify_against_dummy,
    verify_password_async,
)
from app.db.base import utcnow
from app.db.session import end_read_transaction
from app.models.refresh_token import RefreshToken
from app.models.user import User
from app.schemas.common import reject_unstorable
from app.schemas.user import normalize_email


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str


def _login_email(raw: str) -> str | None:
    try:
        return normalize_email(raw)
    except ValueError:
        return None


def _acceptable_login_password(password: str) -> bool:
    try:
        reject_unstorable(password)
    except ValueError:
        return False
    return len(normalize_password(password)) <= PASSWORD_MAX_LENGTH


async def authenticate(session: AsyncSession, email: str, password: str, *, rounds: int) -> User:
    """The user with these credentials, or InvalidCredentials.

    Unknown email and wrong password cost the same bcrypt work and raise the same error;
    a deactivated account is reported only to someone who knows its password.
    """
    normalized = _login_email(email)
    if not _acceptable_login_password(password):
        # Over-long or unstorable: it can match no account. Same work, same answer.
        await verify_against_dummy("", rounds)
        raise InvalidCredentials()
    user = None
    if normalized is not None:
        user = await session.scalar(select(User).where(func.lower(User.email) == normalized))
    await end_read_transaction(session)
    if user is None:
        await verify_against_dummy(password, rounds)
        raise InvalidCredentials()
    if not await verify_password_async(password, user.password_hash):
        raise InvalidCredentials()
    if not user.is_active:
        raise AccountDisabled()
    if hash_rounds(user.password_hash) != rounds:
        # BCRYPT_ROUNDS changed: upgrade the stored hash while we hold the password.
        user.password_hash = await hash_password_async(password, rounds)
    return user


async def issue_tokens(session: AsyncSession, user: User, settings: Settings) -> IssuedTokens:
    """A fresh access token and the first refresh token of a new login family."""
    access_token, expires_in = create_access_token(
        user_id=user.id,
        token_version=user.token_version,
        key=settings.signing_key,
        expire_minutes=settings.access_token_expire_minutes,
    )
    refresh_token, digest = new_refresh_token()
    now = utcnow()
    session.add(
        RefreshToken(
            user_id=user.id,
            token_hash=digest,
            family_id=uuid.uuid4().hex,
            created_at=now,
            expires_at=now + timedelta(days=settings.refresh_token_expire_days),
        )
    )
    await session.flush()
    return IssuedTokens(access_token, expires_in, refresh_token)


async def user_for_access_token(session: AsyncSession, token: str, *, key: str) -> User:
    """The active user an access token speaks for; 401 for anything else."""
    try:
        claims = decode_access_token(token, key=key)
    except InvalidToken:
        raise Unauthorized("The access token is invalid or expired.", invalid_token=True) from None
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active or user.token_version != claims.token_version:
        raise Unauthorized("The access token is invalid or expired.", invalid_token=True)
    return user
