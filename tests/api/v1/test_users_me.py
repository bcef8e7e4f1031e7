"""`GET`/`PATCH /api/v1/users/me`, and the password rules of section 2 end to end."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import User
from tests.conftest import TEST_PASSWORD, UserFactory
from tests.support import assert_problem

ME_URL = "/api/v1/users/me"
USERS_URL = "/api/v1/users"
TOKEN_URL = "/api/v1/auth/token"
NEW_PASSWORD = "a brand new passphrase 2026"

HeadersFor = Callable[[User], dict[str, str]]


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(TOKEN_URL, data={"username": email, "password": password})


async def register(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(USERS_URL, json={"email": email, "password": password})


def error_locs(body: dict[str, Any]) -> list[list[str | int]]:
    return [error["loc"] for error in body["errors"]]


async def stored(session: AsyncSession, user: User) -> User:
    """The user's row as the database has it now."""
    session.expunge_all()
    found = await session.scalar(select(User).where(User.id == user.id))
    assert found is not None
    return found


class TestReadMe:
    async def test_returns_public_fields_only(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user(full_name="Grace Hopper")
        response = await client.get(ME_URL, headers=auth_headers(user))
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"id", "email", "full_name", "role", "is_active", "created_at"}
        assert body == {
            "id": user.id,
            "email": user.email,
            "full_name": "Grace Hopper",
            "role": "user",
            "is_active": True,
            "created_at": body["created_at"],
        }
        assert body["created_at"].endswith("Z")

    async def test_requires_authentication(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ME_URL)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


class TestUpdateName:
    async def test_full_name_updated(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user(full_name="Old Name")
        headers = auth_headers(user)
        response = await client.patch(
            ME_URL, json={"full_name": "Zoë Ünïcode 名前"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["full_name"] == "Zoë Ünïcode 名前"
        assert (await client.get(ME_URL, headers=headers)).json()["full_name"] == "Zoë Ünïcode 名前"

    async def test_full_name_null_clears(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user(full_name="Someone")
        headers = auth_headers(user)
        response = await client.patch(ME_URL, json={"full_name": None}, headers=headers)
        assert response.status_code == 200
        assert response.json()["full_name"] is None
        assert (await client.get(ME_URL, headers=headers)).json()["full_name"] is None

    async def test_empty_patch_changes_nothing(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user(full_name="Keep Me")
        response = await client.patch(ME_URL, json={}, headers=auth_headers(user))
        assert response.status_code == 200
        assert response.json()["full_name"] == "Keep Me"

    async def test_200_characters_accepted(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user()
        name = "é" * 200
        response = await client.patch(ME_URL, json={"full_name": name}, headers=auth_headers(user))
        assert response.status_code == 200
        assert response.json()["full_name"] == name

    @pytest.mark.parametrize(
        "name",
        [
            "a\x00b",
            "line\nbreak",
            "tab\there",
            "bell\x07",
            "esc\x1b[31mred",
            "del\x7f",
            "x" * 201,
            "",
        ],
        ids=["nul", "newline", "tab", "bell", "ansi", "del", "201-chars", "empty"],
    )
    async def test_bad_full_name_is_422(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        session: AsyncSession,
        name: str,
    ) -> None:
        user = await make_user(full_name="Unchanged")
        response = await client.patch(ME_URL, json={"full_name": name}, headers=auth_headers(user))
        body = assert_problem(response, 422)
        assert error_locs(body) == [["body", "full_name"]]
        if len(name) > 3:
            assert name not in response.text
        assert (await stored(session, user)).full_name == "Unchanged"

    async def test_lone_surrogate_is_422(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user()
        response = await client.patch(
            ME_URL,
            content=b'{"full_name": "a\\ud800b"}',
            headers={**auth_headers(user), "Content-Type": "application/json"},
        )
        assert_problem(response, 422)

    async def test_not_json_is_415(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user()
        response = await client.patch(
            ME_URL,
            content=b'{"full_name": "x"}',
            headers={**auth_headers(user), "Content-Type": "text/plain"},
        )
        assert_problem(response, 415)

    async def test_requires_authentication(self, client: httpx.AsyncClient) -> None:
        response = await client.patch(ME_URL, json={"full_name": "x"})
        assert_problem(response, 401)


class TestMassAssignment:
    @pytest.mark.parametrize(
        "field",
        [
            {"role": "admin"},
            {"is_active": False},
            {"email": "new@example.com"},
            {"token_version": 0},
            {"id": 1},
            {"created_at": "2020-01-01T00:00:00Z"},
            {"password_hash": "x"},
            {"is_admin": True},
        ],
        ids=lambda field: next(iter(field)),
    )
    async def test_unknown_field_is_422_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        session: AsyncSession,
        field: dict[str, Any],
    ) -> None:
        user = await make_user(full_name="Before")
        before = await stored(session, user)
        snapshot = (before.email, before.role, before.is_active, before.token_version)
        headers = auth_headers(user)
        response = await client.patch(ME_URL, json={"full_name": "After", **field}, headers=headers)
        body = assert_problem(response, 422)
        name = next(iter(field))
        assert ["body", name] in error_locs(body)
        assert {e["type"] for e in body["errors"]} == {"extra_forbidden"}
        after = await stored(session, user)
        assert (after.email, after.role, after.is_active, after.token_version) == snapshot
        assert after.full_name == "Before"
        assert (await client.get(ME_URL, headers=headers)).status_code == 200


class TestPasswordChange:
    async def test_requires_current_password(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        session: AsyncSession,
    ) -> None:
        user = await make_user()
        old_hash = user.password_hash
        response = await client.patch(
            ME_URL, json={"password": NEW_PASSWORD}, headers=auth_headers(user)
        )
        assert_problem(response, 422)
        assert NEW_PASSWORD not in response.text
        assert (await stored(session, user)).password_hash == old_hash

    async def test_wrong_current_password_is_403(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        session: AsyncSession,
    ) -> None:
        user = await make_user(full_name="Same")
        headers = auth_headers(user)
        response = await client.patch(
            ME_URL,
            json={
                "password": NEW_PASSWORD,
                "current_password": "this is not my password",
                "full_name": "Changed",
            },
            headers=headers,
        )
        body = assert_problem(response, 403)
        assert body["type"].endswith("wrong-password")
        assert "this is not my password" not in response.text
        after = await stored(session, user)
        assert after.full_name == "Same"
        assert after.token_version == user.token_version
        assert (await client.get(ME_URL, headers=headers)).status_code == 200
        assert (await login(client, user.email, TEST_PASSWORD)).status_code == 200
        assert (await login(client, user.email, NEW_PASSWORD)).status_code == 401

    async def test_change_revokes_old_tokens_and_new_password_works(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        old_login = (await login(client, user.email, TEST_PASSWORD)).json()
        old = {"Authorization": f"Bearer {old_login['access_token']}"}
        response = await client.patch(
            ME_URL,
            json={"password": NEW_PASSWORD, "current_password": TEST_PASSWORD},
            headers=old,
        )
        assert response.status_code == 200, response.text
        assert response.json()["id"] == user.id
        assert "password" not in response.json()

        stale = await client.get(ME_URL, headers=old)
        assert_problem(stale, 401)
        assert 'error="invalid_token"' in stale.headers["www-authenticate"]

        assert_problem(await login(client, user.email, TEST_PASSWORD), 401)
        fresh = await login(client, user.email, NEW_PASSWORD)
        assert fresh.status_code == 200
        new = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
        assert (await client.get(ME_URL, headers=new)).json()["id"] == user.id

    async def test_new_password_must_follow_policy(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user()
        response = await client.patch(
            ME_URL,
            json={"password": "too short pw", "current_password": TEST_PASSWORD},
            headers=auth_headers(user),
        )
        body = assert_problem(response, 422)
        assert error_locs(body) == [["body", "password"]]
        assert "too short pw" not in response.text

    async def test_nul_in_current_password_is_422(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user()
        response = await client.patch(
            ME_URL,
            json={"password": NEW_PASSWORD, "current_password": TEST_PASSWORD + "\x00"},
            headers=auth_headers(user),
        )
        assert_problem(response, 422)


# 14 code points that NFKC turns into 15 ("ﬁ" is the fi ligature), 15 that it turns into 16,
# and 15 that become 14 (e + combining acute accent compose to é). A new password has 15 to
# 128 characters both as typed and after NFKC.
LIGATURE_14 = "\ufb01" + "ve-and-thirte"
LIGATURE_15 = "\ufb01" + "ve-and-thirtee"
COMBINING_14 = "cafe\u0301" + "-au-laitxx"
assert len(LIGATURE_14) == 14
assert len(unicodedata.normalize("NFKC", LIGATURE_14)) == 15
assert len(LIGATURE_15) == 15
assert len(unicodedata.normalize("NFKC", LIGATURE_15)) == 16
assert len(COMBINING_14) == 15
assert len(unicodedata.normalize("NFKC", COMBINING_14)) == 14


class TestPasswordLength:
    @pytest.mark.parametrize(
        ("password", "accepted"),
        [
            ("fifteen-chars-x", True),
            ("fourteen-chars", False),
            (LIGATURE_14, False),
            (LIGATURE_15, True),
            (COMBINING_14, False),
            ("жёлтый шкаф стол", True),
            ("😀" * 14, False),
        ],
        ids=[
            "ascii-15",
            "ascii-14",
            "nfkc-grows-from-14",
            "nfkc-grows-from-15",
            "nfkc-shrinks-to-14",
            "cyr-16",
            "emoji-14",
        ],
    )
    async def test_registration(
        self, client: httpx.AsyncClient, password: str, accepted: bool
    ) -> None:
        response = await register(client, "length@example.com", password)
        if accepted:
            assert response.status_code == 201, response.text
            assert (await login(client, "length@example.com", password)).status_code == 200
        else:
            body = assert_problem(response, 422)
            assert error_locs(body) == [["body", "password"]]
            assert password not in response.text

    @pytest.mark.parametrize(
        ("password", "accepted"),
        [(LIGATURE_14, False), (LIGATURE_15, True), (COMBINING_14, False)],
        ids=["nfkc-grows-from-14", "nfkc-grows-from-15", "nfkc-shrinks-to-14"],
    )
    async def test_password_change(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        auth_headers: HeadersFor,
        password: str,
        accepted: bool,
    ) -> None:
        user = await make_user()
        response = await client.patch(
            ME_URL,
            json={"password": password, "current_password": TEST_PASSWORD},
            headers=auth_headers(user),
        )
        if accepted:
            assert response.status_code == 200, response.text
            assert (await login(client, user.email, password)).status_code == 200
        else:
            assert_problem(response, 422)

    async def test_128_characters_every_one_counts(self, client: httpx.AsyncClient) -> None:
        password = "".join(chr(ord("a") + i % 26) for i in range(128))
        response = await register(client, "long@example.com", password)
        assert response.status_code == 201, response.text
        assert (await login(client, "long@example.com", password)).status_code == 200
        differs_at_100 = password[:99] + ("Z" if password[99] != "Z" else "Y") + password[100:]
        assert len(differs_at_100) == 128
        assert differs_at_100 != password
        assert_problem(await login(client, "long@example.com", differs_at_100), 401)
        assert_problem(await login(client, "long@example.com", password[:127]), 401)
        assert_problem(await login(client, "long@example.com", password[:72]), 401)

    async def test_128_emoji_every_one_counts(self, client: httpx.AsyncClient) -> None:
        password = "🔐" * 99 + "🔑" + "🔐" * 28  # 512 bytes of UTF-8
        assert len(password) == 128
        response = await register(client, "emoji@example.com", password)
        assert response.status_code == 201, response.text
        assert (await login(client, "emoji@example.com", password)).status_code == 200
        assert_problem(await login(client, "emoji@example.com", "🔐" * 128), 401)

    async def test_129_characters_is_422(self, client: httpx.AsyncClient) -> None:
        response = await register(client, "toolong@example.com", "x" * 129)
        body = assert_problem(response, 422)
        assert error_locs(body) == [["body", "password"]]
        assert "x" * 129 not in response.text


class TestPasswordNormalisation:
    FULLWIDTH = "ｆｕｌｌｗｉｄｔｈ ｐａｓｓｐｈｒａｓｅ ２０２６"
    ASCII = "fullwidth passphrase 2026"

    async def test_register_fullwidth_login_ascii(self, client: httpx.AsyncClient) -> None:
        assert unicodedata.normalize("NFKC", self.FULLWIDTH) == self.ASCII
        response = await register(client, "wide@example.com", self.FULLWIDTH)
        assert response.status_code == 201, response.text
        assert (await login(client, "wide@example.com", self.ASCII)).status_code == 200
        assert (await login(client, "wide@example.com", self.FULLWIDTH)).status_code == 200

    async def test_register_ascii_login_fullwidth(self, client: httpx.AsyncClient) -> None:
        response = await register(client, "narrow@example.com", self.ASCII)
        assert response.status_code == 201, response.text
        assert (await login(client, "narrow@example.com", self.FULLWIDTH)).status_code == 200

    async def test_change_to_fullwidth_then_login_ascii(
        self, client: httpx.AsyncClient, make_user: UserFactory, auth_headers: HeadersFor
    ) -> None:
        user = await make_user()
        response = await client.patch(
            ME_URL,
            json={"password": self.FULLWIDTH, "current_password": TEST_PASSWORD},
            headers=auth_headers(user),
        )
        assert response.status_code == 200, response.text
        assert (await login(client, user.email, self.ASCII)).status_code == 200

    async def test_current_password_is_normalised_too(
        self, client: httpx.AsyncClient, auth_headers: HeadersFor, make_user: UserFactory
    ) -> None:
        user = await make_user(password=self.ASCII)
        response = await client.patch(
            ME_URL,
            json={"password": NEW_PASSWORD, "current_password": self.FULLWIDTH},
            headers=auth_headers(user),
        )
        assert response.status_code == 200, response.text
