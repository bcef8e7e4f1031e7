"""User rules without HTTP: registration, profile and password changes, administration."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, EmailTaken, WrongPassword
from app.core.security import verify_password
from app.db.access import Db
from app.models.refresh_token import RefreshToken
from app.models.user import Role, User
from app.schemas.user import UserAdminUpdate, UserCreate, UserUpdateMe
from app.services import auth as auth_service
from app.services import user as user_service
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD, UserFactory, make_settings

NEW_PASSWORD = "a different long passphrase"


async def fresh(session: AsyncSession, user_id: int) -> User:
    """The row as stored, not the session's cached object."""
    session.expunge_all()
    user = await session.get(User, user_id)
    assert user is not None
    return user


class TestCreateUser:
    async def test_stores_normalised_email_and_a_hash(self, session: AsyncSession) -> None:
        data = UserCreate(email="  Carol@Example.COM ", password=TEST_PASSWORD)
        user = await user_service.create_user(
            Db.in_session(session), data, rounds=BCRYPT_TEST_ROUNDS
        )
        stored = await fresh(session, user.id)
        assert stored.email == "carol@example.com"
        assert stored.role == "user"
        assert stored.token_version == 1
        assert TEST_PASSWORD not in stored.password_hash
        assert verify_password(TEST_PASSWORD, stored.password_hash)

    @pytest.mark.parametrize("email", ["carol@example.com", "CAROL@example.com"])
    async def test_email_taken_in_any_case(self, session: AsyncSession, email: str) -> None:
        data = UserCreate(email="Carol@example.com", password=TEST_PASSWORD)
        await user_service.create_user(Db.in_session(session), data, rounds=BCRYPT_TEST_ROUNDS)
        with pytest.raises(EmailTaken):
            await user_service.create_user(
                Db.in_session(session), UserCreate(email=email, password=TEST_PASSWORD), rounds=4
            )


class TestUpdateMe:
    async def test_wrong_current_password_changes_nothing(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        user = await make_user()
        before = (await fresh(session, user.id)).password_hash
        data = UserUpdateMe(password=NEW_PASSWORD, current_password="not the password at all")
        with pytest.raises(WrongPassword):
            await user_service.update_me(
                Db.in_session(session), user, data, rounds=BCRYPT_TEST_ROUNDS
            )
        await session.rollback()
        after = await fresh(session, user.id)
        assert after.password_hash == before
        assert after.token_version == 1

    async def test_password_change_bumps_version_and_revokes_refresh_tokens(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        user = await make_user()
        settings = make_settings("sqlite://")
        await auth_service.issue_tokens(Db.in_session(session), user, settings)
        data = UserUpdateMe(password=NEW_PASSWORD, current_password=TEST_PASSWORD)
        updated = await user_service.update_me(
            Db.in_session(session), user, data, rounds=BCRYPT_TEST_ROUNDS
        )
        assert updated.token_version == 2
        stored = await fresh(session, user.id)
        assert verify_password(NEW_PASSWORD, stored.password_hash)
        tokens = (await session.scalars(select(RefreshToken))).all()
        assert tokens
        assert all(token.revoked_at is not None for token in tokens)

    async def test_name_change_keeps_tokens(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        user = await make_user()
        updated = await user_service.update_me(
            Db.in_session(session), user, UserUpdateMe(full_name="Carol"), rounds=BCRYPT_TEST_ROUNDS
        )
        assert updated.full_name == "Carol"
        assert (await fresh(session, user.id)).token_version == 1


class TestAdministerUser:
    async def test_deactivation_bumps_version(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        admin = await make_user(role=Role.ADMIN)
        target = await make_user()
        await user_service.administer_user(
            Db.in_session(session), admin, target.id, UserAdminUpdate(is_active=False)
        )
        stored = await fresh(session, target.id)
        assert stored.is_active is False
        assert stored.token_version == 2

    async def test_admin_cannot_demote_self(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        admin = await make_user(role=Role.ADMIN)
        with pytest.raises(Conflict):
            await user_service.administer_user(
                Db.in_session(session), admin, admin.id, UserAdminUpdate(role="user")
            )
