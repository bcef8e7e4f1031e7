"""`POST /api/v1/auth/token` (the password grant) and access-token checks on `/users/me`."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import QueuePool

from app.core.config import Settings
from app.core.security import (
    ACCESS_TOKEN_TYPE,
    JWT_AUDIENCE,
    JWT_ISSUER,
    hash_password,
    hash_rounds,
    verify_password,
    verify_password_async,
)
from app.models.user import User
from app.services import auth as auth_service
from tests.conftest import TEST_PASSWORD, UserFactory
from tests.support import assert_problem

# Everything in a problem but the request id, which differs by design.
COMPARABLE_FIELDS = ("type", "title", "status", "detail", "instance")

TOKEN_URL = "/api/v1/auth/token"
ME_URL = "/api/v1/users/me"

HeadersFor = Callable[[User], dict[str, str]]


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(TOKEN_URL, data={"username": username, "password": password})


def assert_unauthorized(response: httpx.Response, *, invalid_token: bool) -> dict[str, Any]:
    body = assert_problem(response, 401)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    if invalid_token:
        assert 'error="invalid_token"' in challenge
    return body


class TestLogin:
    async def test_returns_token_pair(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        response = await login(client, user.email, TEST_PASSWORD)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        assert isinstance(body["refresh_token"], str)
        assert len(body["refresh_token"]) >= 32
        assert body["refresh_token"] != body["access_token"]
        assert "no-store" in response.headers["cache-control"]
        assert response.headers["content-type"].startswith("application/json")

    async def test_access_token_format(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        token = (await login(client, user.email, TEST_PASSWORD)).json()["access_token"]
        assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": ACCESS_TOKEN_TYPE}
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == str(user.id)
        assert claims["exp"] - claims["iat"] == 900
        assert claims["tv"] == user.token_version

    async def test_access_token_works_on_me(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user(full_name="Ada")
        token = (await login(client, user.email, TEST_PASSWORD)).json()["access_token"]
        response = await client.get(ME_URL, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == user.id
        assert body["email"] == user.email
        assert body["full_name"] == "Ada"
        assert "password" not in response.text
        assert "token_version" not in body

    async def test_each_login_issues_new_tokens(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        first = (await login(client, user.email, TEST_PASSWORD)).json()
        second = (await login(client, user.email, TEST_PASSWORD)).json()
        assert first["access_token"] != second["access_token"]
        assert first["refresh_token"] != second["refresh_token"]

    @pytest.mark.parametrize(
        "typed", ["CASE.Person@EXAMPLE.com", "case.person@example.com", " Case.Person@Example.COM "]
    )
    async def test_email_case_insensitive(
        self, client: httpx.AsyncClient, make_user: UserFactory, typed: str
    ) -> None:
        await make_user(email="Case.Person@Example.com")
        response = await login(client, typed, TEST_PASSWORD)
        assert response.status_code == 200, response.text

    async def test_grant_type_password_accepted(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        response = await client.post(
            TOKEN_URL,
            data={"grant_type": "password", "username": user.email, "password": TEST_PASSWORD},
        )
        assert response.status_code == 200


class TestLoginFailures:
    async def test_wrong_password_and_unknown_email_identical(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        wrong_password = await login(client, user.email, "not the right password at all")
        unknown_email = await login(client, "nobody@example.com", TEST_PASSWORD)
        malformed_email = await login(client, "not an email", TEST_PASSWORD)
        bodies = [
            assert_unauthorized(response, invalid_token=False)
            for response in (wrong_password, unknown_email, malformed_email)
        ]
        comparable = [{field: body[field] for field in (*COMPARABLE_FIELDS,)} for body in bodies]
        assert comparable[0] == comparable[1] == comparable[2]
        assert set(bodies[0]) == set(bodies[1]) == set(bodies[2])
        headers = {r.headers["www-authenticate"] for r in (wrong_password, unknown_email)}
        assert len(headers) == 1
        assert bodies[0]["request_id"] != bodies[1]["request_id"]
        assert "not the right password" not in wrong_password.text
        assert "nobody@example.com" not in unknown_email.text

    async def test_deactivated_user_with_right_password_is_403(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user(is_active=False)
        response = await login(client, user.email, TEST_PASSWORD)
        body = assert_problem(response, 403)
        assert body["type"].endswith("account-disabled")
        assert "access_token" not in response.text

    async def test_deactivated_user_with_wrong_password_is_401(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user(is_active=False)
        unknown = await login(client, "nobody@example.com", TEST_PASSWORD)
        response = await login(client, user.email, "not the right password at all")
        body = assert_unauthorized(response, invalid_token=False)
        assert {f: body[f] for f in COMPARABLE_FIELDS} == {
            f: unknown.json()[f] for f in COMPARABLE_FIELDS
        }

    @pytest.mark.parametrize(
        "password",
        [
            "é" * 36 + "x",  # 73 bytes, 37 characters
            "€" * 24 + "x",  # 73 bytes, 25 characters
            TEST_PASSWORD + "x" * 1000,  # over 1 KB
            "p" * 1024,
            "😀" * 2560,  # 10 KB
            "x" * 10 * 1024,
            TEST_PASSWORD + "\x00",
        ],
        ids=["73-bytes-2b", "73-bytes-3b", "1KB-prefix", "1KB", "10KB-emoji", "10KB", "nul"],
    )
    async def test_odd_passwords_are_401(
        self, client: httpx.AsyncClient, make_user: UserFactory, password: str
    ) -> None:
        user = await make_user()
        for email in (user.email, "nobody@example.com"):
            response = await login(client, email, password)
            body = assert_unauthorized(response, invalid_token=False)
            assert body["type"].endswith("invalid-credentials")
            assert password[:40] not in response.text

    async def test_73_byte_password_is_a_real_password(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        password = "é" * 36 + "x"
        user = await make_user(password=password)
        assert (await login(client, user.email, password)).status_code == 200
        assert (await login(client, user.email, "é" * 36 + "y")).status_code == 401
        assert (await login(client, user.email, "é" * 36)).status_code == 401

    @pytest.mark.parametrize(
        "data",
        [
            {},
            {"username": "someone@example.com"},
            {"password": TEST_PASSWORD},
        ],
        ids=["empty", "no-password", "no-username"],
    )
    async def test_missing_fields_are_422(
        self, client: httpx.AsyncClient, data: dict[str, str]
    ) -> None:
        response = await client.post(TOKEN_URL, data=data)
        body = assert_problem(response, 422)
        assert body["errors"]
        for error in body["errors"]:
            assert set(error) == {"loc", "msg", "type"}
        assert TEST_PASSWORD not in response.text

    async def test_json_body_is_422(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        response = await client.post(
            TOKEN_URL, json={"username": user.email, "password": TEST_PASSWORD}
        )
        assert_problem(response, 422)
        assert TEST_PASSWORD not in response.text

    async def test_other_grant_type_is_422(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        response = await client.post(
            TOKEN_URL,
            data={"grant_type": "client_credentials", "username": user.email, "password": "x"},
        )
        # The field by its name (it was ["body", "grant_type", "constrained-str"]).
        problem = assert_problem(response, 422, loc=["body", "grant_type"])
        assert problem["detail"] == "These fields are not valid: grant_type."

    async def test_get_is_405(self, client: httpx.AsyncClient) -> None:
        response = await client.get(TOKEN_URL)
        assert_problem(response, 405)
        assert "POST" in response.headers["allow"]


class TestRehash:
    async def test_login_rehashes_at_configured_cost(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        other_rounds = settings.bcrypt_rounds + 1
        user = await make_user()
        user.password_hash = hash_password(TEST_PASSWORD, other_rounds)
        await session.commit()
        old_hash = user.password_hash

        assert (await login(client, user.email, TEST_PASSWORD)).status_code == 200

        await session.refresh(user)
        assert user.password_hash != old_hash
        assert hash_rounds(user.password_hash) == settings.bcrypt_rounds
        assert verify_password(TEST_PASSWORD, user.password_hash)
        assert (await login(client, user.email, TEST_PASSWORD)).status_code == 200

    async def test_no_rehash_at_the_same_cost(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
    ) -> None:
        user = await make_user()
        old_hash = user.password_hash
        assert (await login(client, user.email, TEST_PASSWORD)).status_code == 200
        await session.refresh(user)
        assert user.password_hash == old_hash

    async def test_failed_login_does_not_rehash(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        user = await make_user()
        user.password_hash = hash_password(TEST_PASSWORD, settings.bcrypt_rounds + 1)
        await session.commit()
        old_hash = user.password_hash
        assert (await login(client, user.email, "wrong password, not it")).status_code == 401
        await session.refresh(user)
        assert user.password_hash == old_hash


class TestLoginDoesNotHoldTheDatabase:
    """bcrypt takes hundreds of milliseconds at the production cost: no connection (and on
    SQLite, no write lock) may be held meanwhile, or concurrent logins queue behind each
    other and end in 503s once the pool or SQLite's busy timeout runs out."""

    async def test_no_connection_checked_out_during_password_check(
        self,
        committing_client: httpx.AsyncClient,
        engine: AsyncEngine,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        email = "concurrent@example.com"
        registered = await committing_client.post(
            "/api/v1/users", json={"email": email, "password": TEST_PASSWORD}
        )
        assert registered.status_code == 201
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        held_during_bcrypt: list[int] = []

        async def spy(password: str, stored: str) -> bool:
            held_during_bcrypt.append(pool.checkedout())
            return await verify_password_async(password, stored)

        monkeypatch.setattr(auth_service, "verify_password_async", spy)
        assert pool.checkedout() == 0
        response = await login(committing_client, email, TEST_PASSWORD)
        assert response.status_code == 200
        assert held_during_bcrypt == [0]


# --- access-token tampering -------------------------------------------------------------

_MISSING: Any = object()
OTHER_KEY = "a-different-signing-key-" + "d" * 40


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Forger:
    """Builds access tokens for one user, valid unless told otherwise."""

    def __init__(self, user: User, key: str) -> None:
        self.user = user
        self.key = key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        values: dict[str, Any] = {
            "sub": str(self.user.id),
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
            "tv": self.user.token_version,
            "kind": "access",
        }
        values.update(overrides)
        return {name: value for name, value in values.items() if value is not _MISSING}

    def token(
        self,
        *,
        key: str | None = None,
        algorithm: str = "HS256",
        header: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        headers = {"typ": ACCESS_TOKEN_TYPE} if header is None else header
        return jwt.encode(
            self.claims(**overrides), key or self.key, algorithm=algorithm, headers=headers
        )

    def unsigned(self, alg: str) -> str:
        return f"{_b64({'alg': alg, 'typ': ACCESS_TOKEN_TYPE})}.{_b64(self.claims())}."


def _now() -> int:
    return int(time.time())


TAMPERED: dict[str, Callable[[Forger], str]] = {
    "alg-none": lambda f: f.unsigned("none"),
    "alg-NONE": lambda f: f.unsigned("NONE"),
    "alg-None": lambda f: f.unsigned("None"),
    "alg-none-with-signature": lambda f: f.unsigned("none") + f.token().split(".")[2],
    "other-key": lambda f: f.token(key=OTHER_KEY),
    "HS512": lambda f: f.token(algorithm="HS512"),
    "HS384": lambda f: f.token(algorithm="HS384"),
    "missing-exp": lambda f: f.token(exp=_MISSING),
    "missing-iat": lambda f: f.token(iat=_MISSING),
    "missing-jti": lambda f: f.token(jti=_MISSING),
    "missing-aud": lambda f: f.token(aud=_MISSING),
    "missing-iss": lambda f: f.token(iss=_MISSING),
    "missing-sub": lambda f: f.token(sub=_MISSING),
    "missing-tv": lambda f: f.token(tv=_MISSING),
    "exp-as-string": lambda f: f.token(exp="never"),
    "expired": lambda f: f.token(iat=_now() - 1000, exp=_now() - 60),
    "iat-in-future": lambda f: f.token(iat=_now() + 3600, exp=_now() + 4500),
    "wrong-aud": lambda f: f.token(aud="another-service"),
    "wrong-iss": lambda f: f.token(iss="https://evil.example"),
    "typ-JWT": lambda f: f.token(header={"typ": "JWT"}),
    "typ-refresh": lambda f: f.token(header={"typ": "refresh+jwt"}),
    "no-typ": lambda f: f.token(header={}),
    "kid-jku-header": lambda f: f.token(
        key=OTHER_KEY,
        header={"typ": ACCESS_TOKEN_TYPE, "kid": "evil", "jku": "https://evil.example/jwks"},
    ),
    "sub-int": lambda f: f.token(sub=f.user.id),
    "sub-not-number": lambda f: f.token(sub="admin"),
    "sub-unknown-user": lambda f: f.token(sub=str(2**62)),
    "sub-too-large": lambda f: f.token(sub=str(2**63)),
    "tv-older": lambda f: f.token(tv=f.user.token_version - 1),
    "tv-string": lambda f: f.token(tv=str(f.user.token_version)),
    # Past the column's 32-bit range (a 500 on PostgreSQL before) and past SQLite's 64 bits.
    "tv-too-large": lambda f: f.token(tv=2**31),
    "tv-past-64-bits": lambda f: f.token(tv=2**63),
    "tv-negative": lambda f: f.token(tv=-(2**31) - 1),
    "random-string": lambda _: "not-a-jwt",
    "three-garbage-parts": lambda _: "eyJhbGciOi.eyJzdWIiOi.c2ln",
    "16KB-garbage": lambda _: "A" * 16_384,
}


class TestAccessTokenTampering:
    @pytest.fixture
    async def forger(self, make_user: UserFactory, settings: Settings) -> Forger:
        return Forger(await make_user(), settings.signing_key)

    async def test_forged_valid_token_accepted(
        self, client: httpx.AsyncClient, forger: Forger
    ) -> None:
        # The control: everything below differs from this token in one way only.
        response = await client.get(ME_URL, headers={"Authorization": f"Bearer {forger.token()}"})
        assert response.status_code == 200
        assert response.json()["id"] == forger.user.id

    @pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
    @pytest.mark.parametrize("case", list(TAMPERED))
    async def test_rejected(self, client: httpx.AsyncClient, forger: Forger, case: str) -> None:
        token = TAMPERED[case](forger)
        response = await client.get(ME_URL, headers={"Authorization": f"Bearer {token}"})
        assert_unauthorized(response, invalid_token=True)
        assert token[:20] not in response.text

    @pytest.mark.parametrize("url", [ME_URL, "/api/v1/tasks", "/api/v2/tasks"])
    @pytest.mark.parametrize("pair", ["same", "then-garbage", "basic-first"])
    async def test_two_authorization_headers_are_refused(
        self, client: httpx.AsyncClient, forger: Forger, url: str, pair: str
    ) -> None:
        """One request, one reading (decision 0010): with two headers, the service read the
        first and a proxy in front may read the other; it reads neither."""
        bearer = f"Bearer {forger.token()}"
        first, second = {
            "same": (bearer, bearer),
            "then-garbage": (bearer, "Bearer not-a-token"),
            "basic-first": ("Basic dXNlcjpwdw==", bearer),
        }[pair]
        response = await client.get(
            url, headers=[("Authorization", first), ("Authorization", second)]
        )
        assert_unauthorized(response, invalid_token=True)

    async def test_tampered_subject(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        settings: Settings,
    ) -> None:
        alice, bob = await make_user(), await make_user()
        token = Forger(alice, settings.signing_key).token()
        header, _, signature = token.split(".")
        bob_claims = Forger(bob, settings.signing_key).claims()
        forged = f"{header}.{_b64(bob_claims)}.{signature}"
        response = await client.get(ME_URL, headers={"Authorization": f"Bearer {forged}"})
        assert_unauthorized(response, invalid_token=True)

    @pytest.mark.parametrize(
        "authorization",
        ["", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Token abc.def.ghi", "bearer"],
        ids=["empty", "bearer-only", "bearer-space", "basic", "token-scheme", "lowercase-only"],
    )
    async def test_no_usable_credentials(
        self, client: httpx.AsyncClient, authorization: str
    ) -> None:
        response = await client.get(ME_URL, headers={"Authorization": authorization})
        assert_unauthorized(response, invalid_token=False)

    async def test_no_authorization_header(self, client: httpx.AsyncClient) -> None:
        response = await client.get(ME_URL)
        body = assert_unauthorized(response, invalid_token=False)
        assert response.headers["www-authenticate"] == "Bearer"
        assert body["instance"] == ME_URL

    async def test_other_scheme_with_valid_token(
        self, client: httpx.AsyncClient, forger: Forger
    ) -> None:
        response = await client.get(ME_URL, headers={"Authorization": f"Token {forger.token()}"})
        assert_unauthorized(response, invalid_token=False)

    async def test_refresh_token_is_not_an_access_token(
        self, client: httpx.AsyncClient, make_user: UserFactory
    ) -> None:
        user = await make_user()
        refresh = (await login(client, user.email, TEST_PASSWORD)).json()["refresh_token"]
        response = await client.get(ME_URL, headers={"Authorization": f"Bearer {refresh}"})
        assert_unauthorized(response, invalid_token=True)


class TestTokenOfChangedUser:
    async def test_deleted_user(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        auth_headers: HeadersFor,
    ) -> None:
        user = await make_user()
        headers = auth_headers(user)
        assert (await client.get(ME_URL, headers=headers)).status_code == 200
        await session.delete(user)
        await session.commit()
        assert_unauthorized(await client.get(ME_URL, headers=headers), invalid_token=True)

    async def test_token_version_bumped(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        auth_headers: HeadersFor,
    ) -> None:
        user = await make_user()
        headers = auth_headers(user)
        assert (await client.get(ME_URL, headers=headers)).status_code == 200
        user.token_version += 1
        await session.commit()
        assert_unauthorized(await client.get(ME_URL, headers=headers), invalid_token=True)
        assert (await client.get(ME_URL, headers=auth_headers(user))).status_code == 200

    async def test_deactivated_user(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        auth_headers: HeadersFor,
    ) -> None:
        user = await make_user()
        headers = auth_headers(user)
        user.is_active = False
        await session.commit()
        assert_unauthorized(await client.get(ME_URL, headers=headers), invalid_token=True)
