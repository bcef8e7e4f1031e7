"""User writes are authorized when they are applied, not only when the request began
(docs/decisions/0023), called on the services directly, without HTTP.

The user object a service is given is the caller as `CurrentUser` / `AdminUser` read it at the
start of the request. Here the row changes after that read and before the write (as another
request's committed change would, written past the session's copy), and the write must see
it. The same races with real concurrency are in tests/api/v1/test_write_races.py. Each test
runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AdminRequired, Unauthorized
from app.core.security import verify_password
from app.db.access import Db
from app.models.user import Role, User
from app.schemas.user import UserAdminUpdate, UserUpdateMe
from app.services import user as user_service
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD, UserFactory

NEW_PASSWORD = "a different long passphrase"


async def meanwhile(session: AsyncSession, user_id: int, **values: Any) -> None:
    """Change the stored row behind the back of the session's copy of it (as a concurrent,
    committed request would)."""
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def stored(session: AsyncSession, user_id: int) -> tuple[Any, ...]:
    row = (
        await session.execute(
            select(
                User.full_name,
                User.password_hash,
                User.role,
                User.is_active,
                User.token_version,
            ).where(User.id == user_id)
        )
    ).one()
    return tuple(row)


def invalid_token(error: Unauthorized) -> bool:
    return error.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


class TestUpdateMe:
    @pytest.mark.parametrize(
        "data",
        [
            UserUpdateMe(full_name="Renamed"),
            UserUpdateMe(password=NEW_PASSWORD, current_password=TEST_PASSWORD),
        ],
        ids=["name", "password"],
    )
    @pytest.mark.parametrize(
        "change",
        [{"token_version": User.token_version + 1}, {"is_active": False}],
        ids=["token-bumped", "deactivated"],
    )
    async def test_a_token_killed_before_the_write_writes_nothing(
        self,
        session: AsyncSession,
        make_user: UserFactory,
        data: UserUpdateMe,
        change: dict[str, Any],
    ) -> None:
        user = await make_user()
        await meanwhile(session, user.id, **change)
        before = await stored(session, user.id)

        with pytest.raises(Unauthorized) as raised:
            await user_service.update_me(
                Db.in_session(session), user, data, rounds=BCRYPT_TEST_ROUNDS
            )

        assert invalid_token(raised.value)
        assert await stored(session, user.id) == before

    async def test_a_current_token_writes(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        user = await make_user()
        await meanwhile(session, user.id, full_name="Changed elsewhere")  # no token change
        data = UserUpdateMe(password=NEW_PASSWORD, current_password=TEST_PASSWORD)
        updated = await user_service.update_me(
            Db.in_session(session), user, data, rounds=BCRYPT_TEST_ROUNDS
        )
        assert updated.token_version == 2
        full_name, password_hash, *_ = await stored(session, user.id)
        assert full_name == "Changed elsewhere"  # what the other write did is kept
        assert verify_password(NEW_PASSWORD, password_hash)


class TestAdministerUser:
    @pytest.mark.parametrize(
        "change",
        [{"token_version": User.token_version + 1}, {"is_active": False}],
        ids=["token-bumped", "deactivated"],
    )
    async def test_an_admin_whose_token_died_changes_nothing(
        self, session: AsyncSession, make_user: UserFactory, change: dict[str, Any]
    ) -> None:
        admin = await make_user(role=Role.ADMIN)
        target = await make_user(role=Role.ADMIN)
        await meanwhile(session, admin.id, **change)
        before = await stored(session, target.id)

        with pytest.raises(Unauthorized) as raised:
            await user_service.administer_user(
                Db.in_session(session), admin, target.id, UserAdminUpdate(role="user")
            )

        assert invalid_token(raised.value)
        assert await stored(session, target.id) == before

    async def test_an_admin_demoted_meanwhile_changes_nothing(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        """Even a demotion that did not bump the token (an operator's UPDATE) is seen."""
        admin = await make_user(role=Role.ADMIN)
        target = await make_user(role=Role.ADMIN)
        await meanwhile(session, admin.id, role="user")
        before = await stored(session, target.id)

        with pytest.raises(AdminRequired):
            await user_service.administer_user(
                Db.in_session(session), admin, target.id, UserAdminUpdate(is_active=False)
            )

        assert await stored(session, target.id) == before

    async def test_the_change_is_judged_on_the_row_as_it_is_now(
        self, session: AsyncSession, make_user: UserFactory
    ) -> None:
        """A target deactivated meanwhile: deactivating it again is no change (no new token
        version); demoting it is one."""
        admin = await make_user(role=Role.ADMIN)
        target = await make_user(role=Role.ADMIN)
        await meanwhile(session, target.id, is_active=False, token_version=User.token_version + 1)

        same = await user_service.administer_user(
            Db.in_session(session), admin, target.id, UserAdminUpdate(is_active=False)
        )
        assert (same.is_active, same.token_version) == (False, 2)
        demoted = await user_service.administer_user(
            Db.in_session(session), admin, target.id, UserAdminUpdate(role="user")
        )
        assert (demoted.role, demoted.token_version) == ("user", 3)
        assert await stored(session, target.id) == (None, target.password_hash, "user", False, 3)
