"""Registration and profile changes. No HTTP here; the caller's session commits."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import EmailTaken, WrongPassword
from app.core.security import hash_password_async, verify_password_async
from app.db.base import utcnow
from app.db.session import end_read_transaction
from app.models.refresh_token import RefreshToken
from app.models.user import Role, User
from app.schemas.user import UserCreate, UserUpdateMe


async def email_taken(session: AsyncSession, email: str) -> bool:
    found = await session.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
    return found is not None


async def create_user(
    session: AsyncSession, data: UserCreate, *, rounds: int, role: Role = Role.USER
) -> User:
    """A new account; EmailTaken (409) when the address exists in any letter case.

    The pre-check gives the common case a clean answer; the unique index on lower(email)
    settles races between two simultaneous registrations.
    """
    # Hash before touching the database, so no pooled connection waits on bcrypt.
    password_hash = await hash_password_async(data.password, rounds)
    if await email_taken(session, data.email):
        raise EmailTaken()
    now = utcnow()
    user = User(
        email=data.email,
        full_name=data.full_name,
        password_hash=password_hash,
        role=role.value,
        is_active=True,
        token_version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise EmailTaken() from exc
    return user


async def update_me(session: AsyncSession, user: User, data: UserUpdateMe, *, rounds: int) -> User:
    changes = data.model_dump(exclude_unset=True)
    if data.password is not None:
        assert data.current_password is not None  # the schema requires it
        # Two bcrypt runs follow: hold no connection while they do.
        await end_read_transaction(session)
        if not await verify_password_async(data.current_password, user.password_hash):
            raise WrongPassword()
        user.password_hash = await hash_password_async(data.password, rounds)
        # Every earlier access token and every refresh token of the user stops working.
        # Incremented in SQL, so two concurrent changes both count.
        user.token_version = User.token_version + 1
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    if "full_name" in changes:
        user.full_name = data.full_name
    if changes:
        user.updated_at = utcnow()
    await session.flush()
    if data.password is not None:
        await session.refresh(user, ["token_version"])
    return user
