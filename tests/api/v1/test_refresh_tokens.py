"""Refresh tokens (issue 3): opaque, stored as SHA-256, rotated, expiring, revoked by family.

Contract section 2 and the hostile catalogue, section 8 A (tokens) and B (rotation). The
replay rules follow RFC 9700 4.14.2: a spent refresh token presented again revokes every
token descended from the same login, and no grace period ever lets an older generation in
(django-oauth-toolkit#1617).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.core.security import ACCESS_TOKEN_TYPE, JWT_AUDIENCE, JWT_ISSUER, create_access_token
from app.models.refresh_token import RefreshToken
from app.models.user import Role, User
from app.services import auth as auth_service
from tests.conftest import TEST_PASSWORD, UserFactory
from tests.support import assert_problem

TOKEN_URL = "/api/v1/auth/token"
REFRESH_URL = "/api/v1/auth/refresh"
LOGOUT_URL = "/api/v1/auth/logout"
ME_URL = "/api/v1/users/me"
USERS_URL = "/api/v1/users"
NEW_PASSWORD = "a brand new passphrase for issue 3"

Headers = dict[str, str]
HeadersFor = Callable[[User], Headers]


# --- helpers ------------------------------------------------------------------------------


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer(access_token: str) -> Headers:
    return {"Authorization": f"Bearer {access_token}"}


async def login(client: httpx.AsyncClient, email: str, password: str = TEST_PASSWORD) -> Any:
    response = await client.post(TOKEN_URL, data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH_URL, json={"refresh_token": token})


async def logout(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(LOGOUT_URL, json={"refresh_token": token})


async def rotate(client: httpx.AsyncClient, token: str) -> Any:
    """Refresh, insisting that it works; the new pair."""
    response = await refresh(client, token)
    assert response.status_code == 200, response.text
    return response.json()


def assert_refresh_rejected(response: httpx.Response) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert body["type"].endswith("invalid-refresh-token"), body
    assert "access_token" not in response.text
    assert "refresh_token" not in response.json()
    return body


def assert_access_rejected(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def rows_of(session: AsyncSession, user: User) -> list[RefreshToken]:
    """The user's refresh-token rows as the database has them now, oldest first."""
    session.expunge_all()
    result = await session.scalars(
        select(RefreshToken).where(RefreshToken.user_id == user.id).order_by(RefreshToken.id)
    )
    return list(result.all())


async def row_of(session: AsyncSession, token: str) -> RefreshToken:
    session.expunge_all()
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token))
    )
    assert row is not None, "no row for this token"
    return row


async def set_columns(session: AsyncSession, token: str, **values: Any) -> None:
    await session.execute(
        update(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token)).values(**values)
    )
    await session.commit()


class Clock:
    """Stands in for `utcnow` in the auth service, so refresh-token time can be moved."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth_service, "utcnow", fake)
    return fake


# --- issuing and storage ------------------------------------------------------------------


class TestIssuedAtLogin:
    async def test_login_returns_an_opaque_refresh_token(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        pair = await login(client, user.email)
        token = pair["refresh_token"]
        assert isinstance(token, str)
        # 256 random bits, URL-safe, and not a JWT (nothing to decode, nothing to forge).
        assert len(token) >= 43
        assert token.count(".") == 0
        with pytest.raises(jwt.DecodeError):
            jwt.get_unverified_header(token)

    async def test_row_stores_only_the_sha256(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        [row] = await rows_of(session, user)
        assert row.token_hash == sha256_hex(token)
        assert row.used_at is None
        assert row.revoked_at is None
        assert row.parent_id is None
        # Read the raw row: the plaintext is in no column, in any form.
        raw = (
            (
                await session.execute(
                    text("SELECT * FROM refresh_tokens WHERE id = :id"), {"id": row.id}
                )
            )
            .mappings()
            .one()
        )
        for column, value in raw.items():
            assert token not in str(value), f"plaintext refresh token stored in {column}"
            assert token[:16] not in str(value), f"part of the refresh token stored in {column}"

    async def test_lifetimes_follow_settings(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        user = await make_user()
        before = datetime.now(UTC)
        await login(client, user.email)
        after = datetime.now(UTC)
        [row] = await rows_of(session, user)
        idle = timedelta(days=settings.refresh_token_idle_days)
        absolute = timedelta(days=settings.refresh_token_expire_days)
        assert before + absolute <= row.family_expires_at <= after + absolute
        assert row.expires_at == min(row.family_expires_at, row.created_at + idle)
        assert row.expires_at <= row.family_expires_at

    async def test_each_login_starts_its_own_family(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        await login(client, user.email)
        await login(client, user.email)
        first, second = await rows_of(session, user)
        assert first.family_id != second.family_id


# --- rotation -----------------------------------------------------------------------------


class TestRotation:
    async def test_refresh_returns_a_new_pair_not_cached(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        first = await login(client, user.email)
        response = await refresh(client, first["refresh_token"])
        assert response.status_code == 200, response.text
        assert "no-store" in response.headers["cache-control"]
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        assert body["refresh_token"] != first["refresh_token"]
        assert body["access_token"] != first["access_token"]

    async def test_new_access_token_works(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        pair = await rotate(client, (await login(client, user.email))["refresh_token"])
        me = await client.get(ME_URL, headers=bearer(pair["access_token"]))
        assert me.status_code == 200
        assert me.json()["id"] == user.id

    async def test_old_refresh_token_is_spent(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        await rotate(client, r1)
        assert_refresh_rejected(await refresh(client, r1))

    async def test_rotation_links_the_family(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        first, second = await row_of(session, r1), await row_of(session, r2)
        assert first.used_at is not None
        assert first.revoked_at is None
        assert second.used_at is None
        assert second.family_id == first.family_id
        assert second.parent_id == first.id
        assert second.family_expires_at == first.family_expires_at
        assert second.expires_at <= second.family_expires_at

    async def test_a_chain_of_rotations_keeps_working(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        seen = {token}
        for _ in range(5):
            token = (await rotate(client, token))["refresh_token"]
            assert token not in seen
            seen.add(token)


class TestReuseRevokesTheFamily:
    async def test_replay_revokes_the_newer_token(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        with caplog.at_level(logging.WARNING, logger="app.auth"):
            assert_refresh_rejected(await refresh(client, r1))
        assert_refresh_rejected(await refresh(client, r2))
        family = await rows_of(session, user)
        assert len(family) == 2
        assert all(row.revoked_at is not None for row in family)
        # RFC 9700 4.14.2 / catalogue B11: the replay is a security event.
        events = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
        assert any(event.get("event") == "refresh_token_reused" for event in events), events

    async def test_replay_leaves_other_logins_alone(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        stolen = (await login(client, user.email))["refresh_token"]
        other = await login(client, user.email)
        newer = (await rotate(client, stolen))["refresh_token"]
        assert_refresh_rejected(await refresh(client, stolen))
        assert_refresh_rejected(await refresh(client, newer))
        # The other device's login is its own family and keeps working.
        pair = await rotate(client, other["refresh_token"])
        assert (await client.get(ME_URL, headers=bearer(pair["access_token"]))).status_code == 200

    async def test_replay_does_not_touch_other_users(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        victim, bystander = await make_user(), await make_user()
        r1 = (await login(client, victim.email))["refresh_token"]
        theirs = (await login(client, bystander.email))["refresh_token"]
        await rotate(client, r1)
        assert_refresh_rejected(await refresh(client, r1))
        await rotate(client, theirs)

    async def test_grace_never_applies_to_older_generations(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        r3 = (await rotate(client, r2))["refresh_token"]
        # Immediately, well inside any grace window a server might have.
        assert_refresh_rejected(await refresh(client, r1))
        assert_refresh_rejected(await refresh(client, r3))
        assert_refresh_rejected(await refresh(client, r2))
        assert all(row.revoked_at is not None for row in await rows_of(session, user))

    async def test_replay_of_the_immediate_predecessor_revokes_too(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        r3 = (await rotate(client, r2))["refresh_token"]
        assert_refresh_rejected(await refresh(client, r2))
        assert_refresh_rejected(await refresh(client, r3))

    async def test_revoked_family_stays_revoked(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        assert_refresh_rejected(await refresh(client, r1))
        for _ in range(2):
            assert_refresh_rejected(await refresh(client, r2))
            assert_refresh_rejected(await refresh(client, r1))
        # A fresh login is a fresh family.
        await rotate(client, (await login(client, user.email))["refresh_token"])


# --- races --------------------------------------------------------------------------------


async def live_tokens(engine: AsyncEngine, email: str) -> list[int]:
    """Rows of the user that could still be refreshed (unused, unrevoked, unexpired)."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(RefreshToken.id)
            .join(User, User.id == RefreshToken.user_id)
            .where(
                User.email == email,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
        )
        return list(result.scalars().all())


async def register_and_login(client: httpx.AsyncClient) -> tuple[str, Any]:
    email = f"racer-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(USERS_URL, json={"email": email, "password": TEST_PASSWORD})
    assert registered.status_code == 201, registered.text
    return email, await login(client, email)


class TestConcurrentUse:
    """Catalogue B12: simultaneous uses of one refresh token never yield two live chains.

    `committing_client` runs every request on its own connection with real commits, on
    SQLite and on PostgreSQL.
    """

    @pytest.mark.parametrize("parallel", [2, 3, 5])
    async def test_simultaneous_refreshes(
        self, committing_client: httpx.AsyncClient, engine: AsyncEngine, parallel: int
    ) -> None:
        email, pair = await register_and_login(committing_client)
        r1 = pair["refresh_token"]
        responses = await asyncio.gather(*(refresh(committing_client, r1) for _ in range(parallel)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 401}, statuses
        assert statuses.count(200) == 1, statuses
        for response in responses:
            if response.status_code == 401:
                assert_refresh_rejected(response)

        # Every token a 200 handed out: at most one of them still works.
        issued = [r.json()["refresh_token"] for r in responses if r.status_code == 200]
        working = [
            token
            for token in issued
            if (await refresh(committing_client, token)).status_code == 200
        ]
        assert len(working) <= 1
        assert_refresh_rejected(await refresh(committing_client, r1))
        assert len(await live_tokens(engine, email)) <= 1

    async def test_replays_of_one_token_are_401s_round_after_round(
        self, committing_client: httpx.AsyncClient
    ) -> None:
        """The same token sent five times at once, over and over: one 200, the rest 401s,
        every round. The replays revoke the family together; they once did it each in the
        order of its own scan of the family's rows, and deadlocked (a 409)."""
        for _ in range(12):
            _, pair = await register_and_login(committing_client)
            responses = await asyncio.gather(
                *(refresh(committing_client, pair["refresh_token"]) for _ in range(5))
            )
            assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]

    async def test_a_replay_racing_a_rotation_leaves_nothing_alive(
        self, committing_client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """An old token of the family comes back while the current one is being rotated:
        the replay is a 401 and revokes the family, and whichever came first, no token of
        the family works afterwards, including one the rotation issued (a replay that
        waited for the rotation once revoked the family as it was before it)."""
        for _ in range(30):
            email, pair = await register_and_login(committing_client)
            r1 = pair["refresh_token"]
            r2 = (await rotate(committing_client, r1))["refresh_token"]
            rotated, *replayed = await asyncio.gather(
                refresh(committing_client, r2), *(refresh(committing_client, r1) for _ in range(3))
            )
            assert rotated.status_code in {200, 401}, rotated.text
            for response in replayed:
                assert_refresh_rejected(response)
            assert await live_tokens(engine, email) == []

    async def test_refresh_racing_logout_leaves_nothing_alive(
        self, committing_client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        email, pair = await register_and_login(committing_client)
        r1 = pair["refresh_token"]
        refreshed, logged_out = await asyncio.gather(
            refresh(committing_client, r1), logout(committing_client, r1)
        )
        assert {refreshed.status_code, logged_out.status_code} <= {200, 204, 401}
        assert (refreshed.status_code == 200) != (logged_out.status_code == 204), (
            refreshed.status_code,
            logged_out.status_code,
        )
        if refreshed.status_code == 200:
            # The refresh won, then the logout presented a spent token: family revoked.
            assert_refresh_rejected(
                await refresh(committing_client, refreshed.json()["refresh_token"])
            )
        assert await live_tokens(engine, email) == []


# --- expiry -------------------------------------------------------------------------------


class TestExpiry:
    async def test_idle_expiry(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        await set_columns(session, r1, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        assert_refresh_rejected(await refresh(client, r1))
        # Expiry is not reuse: nothing was revoked or spent by the attempt.
        row = await row_of(session, r1)
        assert row.used_at is None

    async def test_idle_expiry_of_a_rotated_token(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        await set_columns(session, r2, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        assert_refresh_rejected(await refresh(client, r2))

    async def test_absolute_expiry_stored_on_the_row(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        """The login's absolute deadline is enforced as stored, whatever `expires_at` says."""
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        await set_columns(session, r1, family_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        assert_refresh_rejected(await refresh(client, r1))

    async def test_absolute_expiry_over_time(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        settings: Settings,
        clock: Clock,
    ) -> None:
        """Refreshing just inside the idle window, day after day, never outlives the login."""
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        first = await row_of(session, token)
        deadline = first.family_expires_at
        step = timedelta(days=settings.refresh_token_idle_days) - timedelta(hours=1)
        moment = first.created_at
        capped = False
        while moment + step < deadline:
            moment += step
            clock.set(moment)
            token = (await rotate(client, token))["refresh_token"]
            row = await row_of(session, token)
            assert row.family_expires_at == deadline
            assert row.expires_at <= deadline
            capped = capped or row.expires_at == deadline
        assert capped, "the idle window never reached the family's absolute deadline"

        clock.set(deadline - timedelta(minutes=1))
        token = (await rotate(client, token))["refresh_token"]
        assert (await row_of(session, token)).expires_at == deadline
        clock.set(deadline + timedelta(seconds=1))
        assert_refresh_rejected(await refresh(client, token))

    async def test_idle_expiry_over_time(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        settings: Settings,
        clock: Clock,
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        clock.set(datetime.now(UTC) + timedelta(days=settings.refresh_token_idle_days, seconds=1))
        assert_refresh_rejected(await refresh(client, token))


# --- who may refresh ----------------------------------------------------------------------


class TestDeactivatedUser:
    async def test_deactivated_by_an_admin(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
    ) -> None:
        admin = await make_user(role=Role.ADMIN)
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        changed = await client.patch(
            f"{USERS_URL}/{user.id}", json={"is_active": False}, headers=auth_headers(admin)
        )
        assert changed.status_code == 200, changed.text
        assert_refresh_rejected(await refresh(client, token))
        assert_refresh_rejected(await logout(client, token))
        # Re-activation does not bring the old login back.
        changed = await client.patch(
            f"{USERS_URL}/{user.id}", json={"is_active": True}, headers=auth_headers(admin)
        )
        assert changed.status_code == 200, changed.text
        assert_refresh_rejected(await refresh(client, token))

    async def test_deactivated_in_the_database(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        """An operator flips `is_active` directly: the refresh is refused and the login ends
        ("a deactivated user's existing tokens are a 401 from then on")."""
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        user.is_active = False
        await session.commit()
        assert_refresh_rejected(await refresh(client, token))
        # The service revokes the family here; that revocation must survive the 401.
        assert (await row_of(session, token)).revoked_at is not None
        user = await session.get_one(User, user.id)
        user.is_active = True
        await session.commit()
        assert_refresh_rejected(await refresh(client, token))


# --- hostile bodies -----------------------------------------------------------------------

BAD_TOKENS: dict[str, tuple[Any, int]] = {
    "unknown": (secrets.token_urlsafe(32), 401),
    "garbage": ("!!not a token at all!!", 401),
    "sql": ("' OR 1=1 --", 401),
    "512-chars": ("t" * 512, 401),
    "empty": ("", 422),
    "nul": ("abc\x00def", 422),
    "513-chars": ("t" * 513, 422),
    "100k-chars": ("t" * 100_000, 422),
    "integer": (12345, 422),
    "null": (None, 422),
    "list": (["a"], 422),
    "object": ({"token": "a"}, 422),
    "bool": (True, 422),
}


class TestHostileBodies:
    @pytest.mark.parametrize("url", [REFRESH_URL, LOGOUT_URL], ids=["refresh", "logout"])
    @pytest.mark.parametrize("case", list(BAD_TOKENS))
    async def test_bad_token_values(self, client: httpx.AsyncClient, url: str, case: str) -> None:
        value, status = BAD_TOKENS[case]
        response = await client.post(url, json={"refresh_token": value})
        assert_problem(
            response,
            status,
            absent=[value] if isinstance(value, str) and len(value) > 3 else [],
        )
        if status == 401:
            assert_refresh_rejected(response)

    @pytest.mark.parametrize("url", [REFRESH_URL, LOGOUT_URL], ids=["refresh", "logout"])
    async def test_lone_surrogate(self, client: httpx.AsyncClient, url: str) -> None:
        response = await client.post(
            url,
            content=b'{"refresh_token": "ab\\ud800cd"}',
            headers={"Content-Type": "application/json"},
        )
        assert_problem(response, 422)

    @pytest.mark.parametrize("url", [REFRESH_URL, LOGOUT_URL], ids=["refresh", "logout"])
    @pytest.mark.parametrize(
        "body",
        [b"", b"{}", b"[]", b'"token"', b"{not json", b'{"refresh_token": NaN}'],
        ids=["no-body", "empty-object", "array", "string", "malformed", "nan"],
    )
    async def test_malformed_json(self, client: httpx.AsyncClient, url: str, body: bytes) -> None:
        response = await client.post(
            url, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code in {400, 422}, response.text
        assert_problem(response, response.status_code)

    @pytest.mark.parametrize("url", [REFRESH_URL, LOGOUT_URL], ids=["refresh", "logout"])
    @pytest.mark.parametrize(
        "extra",
        [
            {"grant_type": "refresh_token"},
            {"user_id": 1},
            {"family_id": "x"},
            {"refresh_token2": "x"},
        ],
        ids=["grant_type", "user_id", "family_id", "near-miss"],
    )
    async def test_unknown_fields_are_422_and_spend_nothing(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        url: str,
        extra: dict[str, Any],
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        response = await client.post(url, json={"refresh_token": token, **extra})
        assert_problem(response, 422, absent=[token])
        await rotate(client, token)

    @pytest.mark.parametrize("url", [REFRESH_URL, LOGOUT_URL], ids=["refresh", "logout"])
    @pytest.mark.parametrize(
        "content_type", ["application/x-www-form-urlencoded", "text/plain", None]
    )
    async def test_not_json_is_415_and_spends_nothing(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        url: str,
        content_type: str | None,
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        if content_type == "application/x-www-form-urlencoded":
            response = await client.post(url, data={"refresh_token": token})
        else:
            headers = {} if content_type is None else {"Content-Type": content_type}
            response = await client.post(
                url, content=f'{{"refresh_token": "{token}"}}'.encode(), headers=headers
            )
        assert_problem(response, 415, absent=[token])
        await rotate(client, token)

    async def test_get_is_405(self, client: httpx.AsyncClient) -> None:
        for url in (REFRESH_URL, LOGOUT_URL):
            response = await client.get(url)
            assert_problem(response, 405)
            assert "POST" in response.headers["allow"]


# --- access and refresh tokens never stand in for each other -------------------------------


def forge_access_token(
    user: User, key: str, *, header: dict[str, Any] | None = None, **overrides: Any
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "tv": user.token_version,
        "kind": "access",
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    headers = {"typ": ACCESS_TOKEN_TYPE} if header is None else header
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


class TestTokenKindsAreSeparate:
    async def test_access_token_is_not_a_refresh_token(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        pair = await login(client, user.email)
        assert_refresh_rejected(await refresh(client, pair["access_token"]))
        assert_refresh_rejected(await logout(client, pair["access_token"]))
        # Nothing was spent or revoked by the attempts.
        await rotate(client, pair["refresh_token"])

    async def test_refresh_token_is_not_an_access_token(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        first = (await login(client, user.email))["refresh_token"]
        second = (await rotate(client, first))["refresh_token"]
        for token in (first, second):
            response = await client.get(ME_URL, headers=bearer(token))
            assert_access_rejected(response)
            assert token not in response.text

    async def test_forged_control_token_is_accepted(
        self, client: httpx.AsyncClient, make_user: UserFactory, settings: Settings
    ) -> None:
        user = await make_user()
        token = forge_access_token(user, settings.signing_key)
        assert (await client.get(ME_URL, headers=bearer(token))).status_code == 200

    @pytest.mark.parametrize(
        ("header", "overrides"),
        [
            (None, {"kind": None}),
            (None, {"kind": "refresh"}),
            (None, {"kind": "ACCESS"}),
            (None, {"kind": ["access"]}),
            ({"typ": "refresh+jwt"}, {"kind": "refresh"}),
            ({"typ": "JWT"}, {"kind": None}),
        ],
        ids=["no-kind", "kind-refresh", "kind-upper", "kind-list", "refresh-typ", "plain-jwt"],
    )
    async def test_forged_wrong_kind_is_401(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        settings: Settings,
        header: dict[str, Any] | None,
        overrides: dict[str, Any],
    ) -> None:
        user = await make_user()
        token = forge_access_token(user, settings.signing_key, header=header, **overrides)
        assert_access_rejected(await client.get(ME_URL, headers=bearer(token)))


# --- logout -------------------------------------------------------------------------------


class TestLogout:
    async def test_logout_is_204_not_cached(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        response = await logout(client, token)
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert "no-store" in response.headers["cache-control"]

    async def test_logged_out_token_is_401(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email))["refresh_token"]
        assert (await logout(client, token)).status_code == 204
        assert_refresh_rejected(await refresh(client, token))
        assert_refresh_rejected(await logout(client, token))
        assert all(row.revoked_at is not None for row in await rows_of(session, user))

    async def test_logout_with_latest_token_ends_the_whole_family(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        r3 = (await rotate(client, r2))["refresh_token"]
        assert (await logout(client, r3)).status_code == 204
        for token in (r3, r2, r1):
            assert_refresh_rejected(await refresh(client, token))

    async def test_logout_with_a_spent_token_is_401_and_revokes_the_family(
        self, client: httpx.AsyncClient, make_user: UserFactory, session: AsyncSession
    ) -> None:
        user = await make_user()
        r1 = (await login(client, user.email))["refresh_token"]
        r2 = (await rotate(client, r1))["refresh_token"]
        assert_refresh_rejected(await logout(client, r1))
        assert_refresh_rejected(await refresh(client, r2))
        assert all(row.revoked_at is not None for row in await rows_of(session, user))

    async def test_logout_with_an_unknown_token_is_401(self, client: httpx.AsyncClient) -> None:
        assert_refresh_rejected(await logout(client, secrets.token_urlsafe(32)))

    async def test_logout_ends_only_its_own_login(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        phone = (await login(client, user.email))["refresh_token"]
        laptop = (await login(client, user.email))["refresh_token"]
        assert (await logout(client, phone)).status_code == 204
        await rotate(client, laptop)


# --- password change ----------------------------------------------------------------------


@dataclass
class TwoLogins:
    user: User
    first: Any
    second: Any


class TestPasswordChangeRevokes:
    @pytest.fixture
    async def two_logins(self, client: httpx.AsyncClient, make_user: UserFactory) -> TwoLogins:
        user = await make_user()
        first = await login(client, user.email)
        first = await rotate(client, first["refresh_token"])
        second = await login(client, user.email)
        return TwoLogins(user, first, second)

    async def change_password(
        self, client: httpx.AsyncClient, access_token: str, current: str = TEST_PASSWORD
    ) -> httpx.Response:
        return await client.patch(
            ME_URL,
            json={"password": NEW_PASSWORD, "current_password": current},
            headers=bearer(access_token),
        )

    async def test_every_refresh_token_and_old_access_token_dies(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        settings: Settings,
        two_logins: TwoLogins,
    ) -> None:
        user = two_logins.user
        old_version = user.token_version
        response = await self.change_password(client, two_logins.first["access_token"])
        assert response.status_code == 200, response.text
        # Minted in the same second as the change, with the version it had before.
        same_second, _ = create_access_token(
            user_id=user.id,
            token_version=old_version,
            key=settings.signing_key,
            expire_minutes=15,
        )
        for pair in (two_logins.first, two_logins.second):
            assert_refresh_rejected(await refresh(client, pair["refresh_token"]))
            assert_access_rejected(await client.get(ME_URL, headers=bearer(pair["access_token"])))
        assert_access_rejected(await client.get(ME_URL, headers=bearer(same_second)))
        assert all(row.revoked_at is not None for row in await rows_of(session, user))

        # A new login under the new password has a working refresh token.
        fresh = await login(client, user.email, NEW_PASSWORD)
        await rotate(client, fresh["refresh_token"])

    async def test_token_issued_just_before_the_change_dies(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        pair = await login(client, user.email)
        # No sleep: the change happens in the same second as the token's iat.
        response = await self.change_password(client, pair["access_token"])
        assert response.status_code == 200, response.text
        assert_access_rejected(await client.get(ME_URL, headers=bearer(pair["access_token"])))
        assert_refresh_rejected(await refresh(client, pair["refresh_token"]))

    async def test_wrong_current_password_revokes_nothing(
        self, client: httpx.AsyncClient, two_logins: TwoLogins
    ) -> None:
        response = await self.change_password(
            client, two_logins.first["access_token"], current="definitely not my password"
        )
        assert_problem(response, 403)
        me = await client.get(ME_URL, headers=bearer(two_logins.first["access_token"]))
        assert me.status_code == 200
        for pair in (two_logins.first, two_logins.second):
            await rotate(client, pair["refresh_token"])

    async def test_name_change_revokes_nothing(
        self, client: httpx.AsyncClient, two_logins: TwoLogins
    ) -> None:
        response = await client.patch(
            ME_URL,
            json={"full_name": "Just A Rename"},
            headers=bearer(two_logins.first["access_token"]),
        )
        assert response.status_code == 200, response.text
        for pair in (two_logins.first, two_logins.second):
            await rotate(client, pair["refresh_token"])
