"""Rate limits (contract section 4, guide section 5, catalogue 48-49) with in-process counters.

Every test builds its own app with the limits it needs (conftest turns limiting off for the
rest of the suite) and a unique counter prefix, runs the app's lifespan, and talks to it
through `httpx.ASGITransport` with a chosen peer address. These apps commit for real, so each
test's users carry a tag in their email and are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.core.config import Settings
from app.core.security import create_access_token
from app.db.access import Db
from app.main import create_app
from app.models.user import User
from app.schemas.user import UserCreate
from app.services import user as user_service
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD, make_settings
from tests.support import assert_problem

TOKEN_URL = "/api/v1/auth/token"
REFRESH_URL = "/api/v1/auth/refresh"
LOGOUT_URL = "/api/v1/auth/logout"
USERS_URL = "/api/v1/users"
TASKS_URL = "/api/v1/tasks"
ME_URL = "/api/v1/users/me"

# Nothing listens on port 1: every connection is refused at once (a database that is down).
UNREACHABLE_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/unreachable"
PEER = ("203.0.113.5", 1234)
OTHER_PEER = ("203.0.113.77", 4321)
GENEROUS = "1000/minute"

# One item of each header, draft-ietf-httpapi-ratelimit-headers: a quoted policy name and
# integer parameters, in this order (the service emits no optional parameters).
_POLICY_ITEM = re.compile(r'"(?P<name>[a-z][a-z0-9-]*)";q=(?P<q>[0-9]+);w=(?P<w>[0-9]+)')
_STATE_ITEM = re.compile(r'"(?P<name>[a-z][a-z0-9-]*)";r=(?P<r>[0-9]+);t=(?P<t>[0-9]+)')
_LIST_SEPARATOR = re.compile(r"[ \t]*,[ \t]*")
_DELTA_SECONDS = re.compile(r"[0-9]+")


# --- header parsing and assertions ---------------------------------------------------------


@dataclass(frozen=True)
class PolicyState:
    quota: int
    window: int
    remaining: int
    reset: int


def rate_limit_state(response: httpx.Response) -> dict[str, PolicyState]:
    """`RateLimit-Policy` and `RateLimit`, parsed strictly; policy name -> its state.

    Both headers must be present, each a structured-field list whose every item matches the
    draft's syntax, naming the same policies in the same order.
    """
    assert "ratelimit-policy" in response.headers, dict(response.headers)
    assert "ratelimit" in response.headers, dict(response.headers)
    assert len(response.headers.get_list("ratelimit-policy")) == 1
    assert len(response.headers.get_list("ratelimit")) == 1
    policies = _LIST_SEPARATOR.split(response.headers["ratelimit-policy"].strip())
    states = _LIST_SEPARATOR.split(response.headers["ratelimit"].strip())
    parsed_policies = [_POLICY_ITEM.fullmatch(item) for item in policies]
    parsed_states = [_STATE_ITEM.fullmatch(item) for item in states]
    assert all(parsed_policies), response.headers["ratelimit-policy"]
    assert all(parsed_states), response.headers["ratelimit"]
    names = [match["name"] for match in parsed_policies if match]
    assert names == [match["name"] for match in parsed_states if match]
    assert len(set(names)) == len(names)
    result: dict[str, PolicyState] = {}
    for policy, state in zip(parsed_policies, parsed_states, strict=True):
        assert policy
        assert state
        quota, window = int(policy["q"]), int(policy["w"])
        remaining, reset = int(state["r"]), int(state["t"])
        assert window >= 1
        assert 0 <= remaining <= quota
        assert 0 <= reset <= window
        result[policy["name"]] = PolicyState(quota, window, remaining, reset)
    return result


def assert_rate_limited(response: httpx.Response, *, policy: str) -> int:
    """A 429 problem refused by `policy`: integer Retry-After, draft headers; returns it."""
    assert_problem(response, 429)
    retry_after = response.headers.get("retry-after", "")
    assert _DELTA_SECONDS.fullmatch(retry_after), f"Retry-After {retry_after!r}"
    seconds = int(retry_after)
    state = rate_limit_state(response)
    assert policy in state, state
    assert state[policy].remaining == 0
    assert 1 <= seconds <= state[policy].window
    return seconds


def assert_no_rate_limit_headers(response: httpx.Response) -> None:
    for name in ("ratelimit", "ratelimit-policy", "retry-after"):
        assert name not in response.headers, dict(response.headers)


# --- apps, clients, users -------------------------------------------------------------------


class AppMaker:
    """Builds apps with rate limiting on, runs their lifespans, and cleans up after them."""

    def __init__(self, database_url: str, *, redis_url: str | None = None) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.tag = uuid.uuid4().hex[:12]
        self.key_prefix = f"rl-test-{self.tag}"
        self._numbers = itertools.count(1)
        self._stack = AsyncExitStack()
        self._cleanup_engine: AsyncEngine | None = None

    def email(self) -> str:
        """A fresh address of this test; every account it names is deleted at the end."""
        return f"rl-{self.tag}-{next(self._numbers)}@example.com"

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "rate_limit_enabled": True,
            "rate_limit_key_prefix": self.key_prefix,
            "rate_limit_login_account": GENEROUS,
            "rate_limit_login_ip": GENEROUS,
            "rate_limit_register_ip": GENEROUS,
            "rate_limit_user": GENEROUS,
            "rate_limit_anonymous_ip": GENEROUS,
            "redis_url": self.redis_url,
        }
        values.update(overrides)
        return make_settings(values.pop("database_url", self.database_url), **values)

    async def without_its_database(self, **overrides: Any) -> FastAPI:
        """An app whose database refuses every connection; it adds and deletes no users."""
        app = create_app(self.settings(database_url=UNREACHABLE_DATABASE_URL, **overrides))
        await self._stack.enter_async_context(app.router.lifespan_context(app))
        return app

    async def __call__(self, **overrides: Any) -> FastAPI:
        app = create_app(self.settings(**overrides))
        await self._stack.enter_async_context(app.router.lifespan_context(app))
        if self._cleanup_engine is None:
            # Pushed after the first lifespan, so it runs while that engine is still open.
            self._cleanup_engine = app.state.engine
            self._stack.push_async_callback(self._delete_users, app.state.engine)
        return app

    async def add_user(self, app: FastAPI, *, password: str = TEST_PASSWORD) -> User:
        async with app.state.sessionmaker() as session:
            user = await user_service.create_user(
                Db.in_session(session),
                UserCreate(email=self.email(), password=password),
                rounds=BCRYPT_TEST_ROUNDS,
            )
            await session.commit()
            return user

    async def user_exists(self, app: FastAPI, email: str) -> bool:
        async with app.state.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM users WHERE lower(email) = :email"),
                {"email": email.lower()},
            )
            return bool(found.scalar_one())

    async def _delete_users(self, engine: AsyncEngine) -> None:
        mine = "SELECT id FROM users WHERE lower(email) LIKE :pattern"
        params = {"pattern": f"rl-{self.tag}-%"}
        async with engine.begin() as conn:
            # Their Inboxes, members and tasks go with them (ON DELETE CASCADE).
            await conn.execute(
                text(f"DELETE FROM refresh_tokens WHERE user_id IN ({mine})"), params
            )
            await conn.execute(text(f"DELETE FROM users WHERE id IN ({mine})"), params)

    async def aclose(self) -> None:
        await self._stack.aclose()


@pytest.fixture
async def make_app(database_url: str) -> AsyncIterator[AppMaker]:
    maker = AppMaker(database_url)
    try:
        yield maker
    finally:
        await maker.aclose()


def http_client(
    app: ASGIApp, peer: tuple[str, int] = PEER, *, timeout: float = 10
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=timeout)


def uvicorn_default_proxy_headers(app: FastAPI) -> ASGIApp:
    """The app as `uvicorn app.main:app` serves it: --proxy-headers, trusting 127.0.0.1."""
    asgi_app: Any = app  # uvicorn's own ASGI types are narrower than Starlette's
    served: ASGIApp = ProxyHeadersMiddleware(asgi_app, trusted_hosts="127.0.0.1")  # type: ignore[assignment]
    return served


def bearer(app: FastAPI, user: User) -> dict[str, str]:
    token, _ = create_access_token(
        user_id=user.id,
        token_version=user.token_version,
        key=app.state.settings.signing_key,
        expire_minutes=15,
    )
    return {"Authorization": f"Bearer {token}"}


async def login(
    client: httpx.AsyncClient,
    email: str,
    password: str = "not the password of anyone here",
    *,
    forwarded_for: str | bytes | None = None,
) -> httpx.Response:
    headers: dict[bytes, bytes] = {}
    if forwarded_for is not None:
        raw = forwarded_for.encode("latin-1") if isinstance(forwarded_for, str) else forwarded_for
        headers[b"X-Forwarded-For"] = raw
    return await client.post(
        TOKEN_URL, data={"username": email, "password": password}, headers=headers
    )


async def register(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(USERS_URL, json={"email": email, "password": TEST_PASSWORD})


async def refresh(
    client: httpx.AsyncClient,
    token: str = "not-a-refresh-token-of-anyone",
    *,
    forwarded_for: str | None = None,
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    return await client.post(REFRESH_URL, json={"refresh_token": token}, headers=headers)


@contextmanager
def sql_statements(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends while the block runs: through SQLAlchemy,
    and on PostgreSQL also straight to asyncpg (the hot task statements, app/db/access.py)."""
    statements: list[str] = []
    engine = app.state.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    original_execute = asyncpg.Connection._execute

    async def record_direct(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(query)
        return await original_execute(self, query, *args, **kwargs)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with mock.patch.object(asyncpg.Connection, "_execute", record_direct):
            yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [response.status_code for response in responses]


# --- the behaviours --------------------------------------------------------------------------


class TestLoginPerAccount:
    async def test_failed_logins_beyond_the_quota_are_a_429_problem(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_account="3/minute", rate_limit_login_ip="50/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            failures = [await login(client, user.email) for _ in range(3)]
            refused = await login(client, user.email)
            # The right password does not get past a spent quota either.
            refused_right_password = await login(client, user.email, TEST_PASSWORD)

        assert statuses(failures) == [401, 401, 401]
        for number, response in enumerate(failures, start=1):
            assert_problem(response, 401)
            assert response.headers["ratelimit-policy"] == (
                '"login-account";q=3;w=60, "login-ip";q=50;w=60'
            )
            state = rate_limit_state(response)
            assert list(state) == ["login-account", "login-ip"]
            assert state["login-account"].remaining == 3 - number
            assert state["login-ip"].remaining == 50 - number
            assert state["login-account"].reset >= 1
        assert_rate_limited(refused, policy="login-account")
        assert rate_limit_state(refused)["login-ip"].remaining > 0  # the IP was not the cause
        assert_rate_limited(refused_right_password, policy="login-account")
        assert "access_token" not in refused_right_password.text

    async def test_account_is_counted_whatever_the_spelling_of_the_email(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_account="2/minute")
        email = make_app.email()
        async with http_client(app) as client:
            first = await login(client, email)
            second = await login(client, f"  {email.upper()} ")
            third = await login(client, email.title())
        assert statuses([first, second]) == [401, 401]
        assert_rate_limited(third, policy="login-account")

    async def test_other_account_from_same_ip_unaffected_until_ip_policy_trips(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_account="3/minute", rate_limit_login_ip="6/minute")
        victim, other = make_app.email(), make_app.email()
        async with http_client(app) as client:
            spent = [await login(client, victim) for _ in range(3)]
            refused = await login(client, victim)
            unaffected = await login(client, other)
            # Fresh accounts from the same address until the address is refused.
            more = [await login(client, make_app.email()) for _ in range(4)]

        assert statuses(spent) == [401, 401, 401]
        assert_rate_limited(refused, policy="login-account")
        assert unaffected.status_code == 401
        assert rate_limit_state(unaffected)["login-account"].remaining == 2
        # Attempts are counted before the password check, refused ones not at all: 3 + 1
        # attempts so far, so the fifth and sixth are accepted and the seventh is refused by
        # the IP policy.
        assert statuses(more[:2]) == [401, 401]
        assert [rate_limit_state(r)["login-ip"].remaining for r in more[:2]] == [1, 0]
        for response in more[2:]:
            assert_rate_limited(response, policy="login-ip")
            assert rate_limit_state(response)["login-account"].remaining > 0

    async def test_other_ip_has_its_own_ip_bucket(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_ip="2/minute")
        async with http_client(app, PEER) as first, http_client(app, OTHER_PEER) as second:
            spent = [await login(first, make_app.email()) for _ in range(2)]
            refused = await login(first, make_app.email())
            elsewhere = await login(second, make_app.email())
        assert statuses(spent) == [401, 401]
        assert_rate_limited(refused, policy="login-ip")
        assert elsewhere.status_code == 401

    async def test_successful_login_resets_the_account_count(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_account="3/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            before = [await login(client, user.email) for _ in range(2)]
            success = await login(client, user.email, TEST_PASSWORD)
            after = [await login(client, user.email) for _ in range(3)]
            refused = await login(client, user.email)

        assert statuses(before) == [401, 401]
        assert success.status_code == 200, success.text
        rate_limit_state(success)  # a success carries the headers too
        assert statuses(after) == [401, 401, 401]
        assert rate_limit_state(after[0])["login-account"].remaining == 2
        assert_rate_limited(refused, policy="login-account")

    async def test_successful_login_does_not_reset_the_ip_count(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_ip="4/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            failures = [await login(client, user.email) for _ in range(2)]
            success = await login(client, user.email, TEST_PASSWORD)
            other = await login(client, make_app.email())
            refused = await login(client, make_app.email())

        assert statuses([*failures, success, other]) == [401, 401, 200, 401]
        assert rate_limit_state(other)["login-ip"].remaining == 0
        assert_rate_limited(refused, policy="login-ip")

    async def test_attempts_are_allowed_again_after_the_window(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_account="2 per 2 seconds")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            spent = [await login(client, user.email) for _ in range(2)]
            refused = await login(client, user.email)
            retry_after = assert_rate_limited(refused, policy="login-account")
            assert rate_limit_state(refused)["login-account"] == PolicyState(
                quota=2, window=2, remaining=0, reset=retry_after
            )
            await asyncio.sleep(retry_after + 0.05)
            again = await login(client, user.email, TEST_PASSWORD)
        assert statuses(spent) == [401, 401]
        assert again.status_code == 200, again.text


class TestRegistrationPerIp:
    async def test_registrations_beyond_the_quota_are_refused(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_register_ip="3/hour")
        emails = [make_app.email() for _ in range(4)]
        async with http_client(app, PEER) as client, http_client(app, OTHER_PEER) as other:
            created = [await register(client, email) for email in emails[:3]]
            refused = await register(client, emails[3])
            elsewhere = await register(other, make_app.email())

        assert statuses(created) == [201, 201, 201], created[-1].text
        for number, response in enumerate(created, start=1):
            assert response.headers["ratelimit-policy"] == '"register-ip";q=3;w=3600'
            assert rate_limit_state(response)["register-ip"].remaining == 3 - number
        assert_rate_limited(refused, policy="register-ip")
        assert not await make_app.user_exists(app, emails[3])
        assert elsewhere.status_code == 201

    async def test_a_refused_registration_does_no_database_work(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_register_ip="1/hour")
        async with http_client(app) as client:
            with sql_statements(app) as accepted_sql:
                accepted = await register(client, make_app.email())
            refused_email = make_app.email()
            with sql_statements(app) as refused_sql:
                refused = await register(client, refused_email)
        assert accepted.status_code == 201
        assert accepted_sql  # the listener does see the app's statements
        assert_rate_limited(refused, policy="register-ip")
        assert refused_sql == []
        assert not await make_app.user_exists(app, refused_email)


class TestPerUserLimit:
    async def test_requests_beyond_the_quota_are_refused_per_user(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_user="3/minute")
        alice, bob = await make_app.add_user(app), await make_app.add_user(app)
        async with http_client(app) as client:
            allowed = [await client.get(TASKS_URL, headers=bearer(app, alice)) for _ in range(3)]
            refused = await client.get(TASKS_URL, headers=bearer(app, alice))
            bob_allowed = await client.get(TASKS_URL, headers=bearer(app, bob))

        assert statuses(allowed) == [200, 200, 200]
        for number, response in enumerate(allowed, start=1):
            assert response.headers["ratelimit-policy"] == '"user";q=3;w=60'
            assert rate_limit_state(response)["user"].remaining == 3 - number
        assert_rate_limited(refused, policy="user")
        assert bob_allowed.status_code == 200
        assert rate_limit_state(bob_allowed)["user"].remaining == 2

    async def test_every_authenticated_route_shares_the_users_quota(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_user="3/minute")
        alice = await make_app.add_user(app)
        headers = bearer(app, alice)
        async with http_client(app) as client:
            listed = await client.get(TASKS_URL, headers=headers)
            created = await client.post(TASKS_URL, json={"title": "counted"}, headers=headers)
            me = await client.get(ME_URL, headers=headers)
            refused_me = await client.get(ME_URL, headers=headers)
            refused_write = await client.post(TASKS_URL, json={"title": "x"}, headers=headers)

        assert statuses([listed, created, me]) == [200, 201, 200]
        assert [rate_limit_state(r)["user"].remaining for r in (listed, created, me)] == [2, 1, 0]
        assert_rate_limited(refused_me, policy="user")
        assert_rate_limited(refused_write, policy="user")

    async def test_each_request_counts_once_however_it_ends(self, make_app: AppMaker) -> None:
        # Answered, refused by validation (a value, an unknown parameter), refused by the
        # route: each counts exactly once.
        app = await make_app(rate_limit_user="5/minute")
        alice = await make_app.add_user(app)
        headers = bearer(app, alice)
        async with http_client(app) as client:
            answered = [
                await client.get(TASKS_URL, headers=headers),
                await client.get(TASKS_URL, params={"deleted": "1"}, headers=headers),
                await client.post(TASKS_URL, json={"title": ""}, headers=headers),
                await client.get(TASKS_URL, params={"stauts": "done"}, headers=headers),
                await client.post(TASKS_URL, json={"title": "counted"}, headers=headers),
            ]
            refused = await client.get(TASKS_URL, headers=headers)

        assert statuses(answered) == [200, 200, 422, 422, 201]
        assert [rate_limit_state(r)["user"].remaining for r in answered] == [4, 3, 2, 1, 0]
        assert_rate_limited(refused, policy="user")

    async def test_a_refused_request_does_no_database_work(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_user="1/minute")
        alice = await make_app.add_user(app)
        async with http_client(app) as client:
            with sql_statements(app) as accepted_sql:
                accepted = await client.get(TASKS_URL, headers=bearer(app, alice))
            with sql_statements(app) as refused_sql:
                refused = await client.post(
                    TASKS_URL, json={"title": "never stored"}, headers=bearer(app, alice)
                )
        assert accepted.status_code == 200
        assert accepted_sql
        assert_rate_limited(refused, policy="user")
        assert refused_sql == []

    async def test_anonymous_and_invalid_tokens_are_not_counted_for_a_user(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_user="1/minute")
        async with http_client(app) as client:
            anonymous = [await client.get(TASKS_URL) for _ in range(3)]
            forged = [
                await client.get(TASKS_URL, headers={"Authorization": "Bearer a.b.c"})
                for _ in range(3)
            ]
        for response in [*anonymous, *forged]:
            assert_problem(response, 401)


class TestRefusedLoginDoesNoWork:
    async def test_no_database_query_and_no_token(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_account="1/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            with sql_statements(app) as accepted_sql:
                accepted = await login(client, user.email)
            with sql_statements(app) as refused_sql:
                refused = await login(client, user.email, TEST_PASSWORD)
        assert accepted.status_code == 401
        assert accepted_sql
        assert_rate_limited(refused, policy="login-account")
        assert refused_sql == []


class TestDisabled:
    async def test_never_429_and_no_headers(self, make_app: AppMaker) -> None:
        app = await make_app(
            rate_limit_enabled=False,
            rate_limit_login_account="1/minute",
            rate_limit_login_ip="1/minute",
            rate_limit_register_ip="1/hour",
            rate_limit_user="1/minute",
            rate_limit_anonymous_ip="1/minute",
        )
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            logins = [await login(client, user.email) for _ in range(4)]
            success = await login(client, user.email, TEST_PASSWORD)
            registrations = [await register(client, make_app.email()) for _ in range(3)]
            reads = [await client.get(TASKS_URL, headers=bearer(app, user)) for _ in range(4)]
            anonymous = [await refresh(client) for _ in range(3)]
            anonymous += [await client.get(TASKS_URL) for _ in range(3)]

        assert statuses(logins) == [401] * 4
        assert success.status_code == 200
        assert statuses(registrations) == [201] * 3
        assert statuses(reads) == [200] * 4
        assert statuses(anonymous) == [401] * 6
        for response in [*logins, success, *registrations, *reads, *anonymous]:
            assert_no_rate_limit_headers(response)


class TestRefusedAttemptsCountForNothing:
    """A refused request is counted against no policy: neither the one that refused it nor
    the others it would have been counted against (docs/decisions/0013)."""

    async def test_attempts_refused_for_the_address_leave_the_account_alone(
        self, make_app: AppMaker
    ) -> None:
        # An attacker whose address is spent keeps trying the victim's account: the owner,
        # from elsewhere, still gets in.
        app = await make_app(rate_limit_login_account="3/minute", rate_limit_login_ip="3/minute")
        owner = await make_app.add_user(app)
        async with http_client(app, PEER) as attacker, http_client(app, OTHER_PEER) as elsewhere:
            spent = [await login(attacker, make_app.email()) for _ in range(3)]
            refused = [await login(attacker, owner.email) for _ in range(10)]
            owner_login = await login(elsewhere, owner.email, TEST_PASSWORD)

        assert statuses(spent) == [401, 401, 401]
        for response in refused:
            assert_rate_limited(response, policy="login-ip")
            assert rate_limit_state(response)["login-account"].remaining == 3
        assert owner_login.status_code == 200, owner_login.text

    async def test_attempts_refused_for_the_account_leave_the_address_alone(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_account="2/minute", rate_limit_login_ip="5/minute")
        victim = make_app.email()
        async with http_client(app) as client:
            spent = [await login(client, victim) for _ in range(2)]
            refused = [await login(client, victim) for _ in range(6)]
            other_account = await login(client, make_app.email())

        assert statuses(spent) == [401, 401]
        for response in refused:
            assert_rate_limited(response, policy="login-account")
            assert rate_limit_state(response)["login-ip"].remaining == 3
        assert other_account.status_code == 401
        assert rate_limit_state(other_account)["login-ip"].remaining == 2

    async def test_hammering_a_spent_account_does_not_push_its_window_back(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_account="2 per 2 seconds")
        owner = await make_app.add_user(app)
        async with http_client(app) as client:
            spent = [await login(client, owner.email) for _ in range(2)]
            first_refusal = await login(client, owner.email)
            deadline = asyncio.get_running_loop().time() + assert_rate_limited(
                first_refusal, policy="login-account"
            )
            waits = []
            while asyncio.get_running_loop().time() < deadline - 0.3:
                refused = await login(client, owner.email)
                waits.append(assert_rate_limited(refused, policy="login-account"))
                await asyncio.sleep(0.05)
            await asyncio.sleep(max(deadline - asyncio.get_running_loop().time(), 0) + 0.05)
            owner_login = await login(client, owner.email, TEST_PASSWORD)

        assert statuses(spent) == [401, 401]
        assert waits
        assert waits == sorted(waits, reverse=True)  # the wait only ever shrinks
        assert owner_login.status_code == 200, owner_login.text


async def requests_not_served(app: FastAPI, email: str, rounds: int) -> list[httpx.Response]:
    """Each counted request of each kind, `rounds` times, against an app whose database is
    down: a login, a registration, an authenticated read and a refresh."""
    token, _ = create_access_token(
        user_id=1, token_version=1, key=app.state.settings.signing_key, expire_minutes=15
    )
    responses = []
    async with http_client(app) as client:
        for _ in range(rounds):
            responses.append(await login(client, email))
            responses.append(await register(client, email))
            responses.append(await client.get(ME_URL, headers={"Authorization": f"Bearer {token}"}))
            responses.append(await refresh(client))
    return responses


NOT_SERVED_LIMITS = {
    "rate_limit_login_account": "3/minute",
    "rate_limit_login_ip": "3/minute",
    "rate_limit_register_ip": "3/hour",
    "rate_limit_user": "3/minute",
    "rate_limit_anonymous_ip": "3/minute",
}


def assert_counted_against_nothing(responses: list[httpx.Response]) -> None:
    """Every answer a 503, each showing the quota less only itself: none before it stayed
    counted, so none was refused."""
    for response in responses:
        assert_problem(response, 503)
        for state in rate_limit_state(response).values():
            assert state.remaining == state.quota - 1, response.headers["ratelimit"]


class TestRequestsNotServedCountForNothing:
    """A request answered 503 because the database is down was not served: it counts against
    no policy. Before, clients retrying through an outage (as `Retry-After: 5` tells them)
    spent their logins and registrations on it, and were refused with 429 once it ended (a
    black-box run, 2026-12-07)."""

    async def test_requests_answered_503_spend_no_quota(self, make_app: AppMaker) -> None:
        app = await make_app.without_its_database(**NOT_SERVED_LIMITS)
        assert_counted_against_nothing(await requests_not_served(app, make_app.email(), 5))


class TestAnonymousPerAddress:
    """Requests without a valid credential (refresh, logout, authenticated routes with no or
    a bad access token) are limited per client address: `anonymous-ip`."""

    async def test_bad_refreshes_beyond_the_quota_are_refused(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_anonymous_ip="3/minute")
        async with http_client(app, PEER) as client, http_client(app, OTHER_PEER) as other:
            answered = [await refresh(client) for _ in range(3)]
            refused = [await refresh(client) for _ in range(3)]
            elsewhere = await refresh(other)

        assert statuses(answered) == [401, 401, 401]
        for number, response in enumerate(answered, start=1):
            assert_problem(response, 401)
            assert response.headers["ratelimit-policy"] == '"anonymous-ip";q=3;w=60'
            assert rate_limit_state(response)["anonymous-ip"].remaining == 3 - number
        for response in refused:
            assert_rate_limited(response, policy="anonymous-ip")
        assert elsewhere.status_code == 401
        assert rate_limit_state(elsewhere)["anonymous-ip"].remaining == 2

    async def test_a_refused_refresh_does_no_database_work_and_spends_no_token(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_anonymous_ip="2/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client, http_client(app, OTHER_PEER) as other:
            pair = (await login(client, user.email, TEST_PASSWORD)).json()
            spent = [await refresh(client), await refresh(client)]
            with sql_statements(app) as refused_sql:
                refused = await refresh(client, pair["refresh_token"])
            # The token was not spent by the refused request: it still works elsewhere.
            renewed = await refresh(other, pair["refresh_token"])

        assert statuses(spent) == [401, 401]
        assert_rate_limited(refused, policy="anonymous-ip")
        assert refused_sql == []
        assert renewed.status_code == 200, renewed.text

    async def test_refresh_logout_and_requests_without_a_valid_token_share_the_quota(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_anonymous_ip="5/minute")
        user = await make_app.add_user(app)
        expired, _ = create_access_token(
            user_id=user.id,
            token_version=user.token_version,
            key=app.state.settings.signing_key,
            expire_minutes=-1,
        )
        async with http_client(app) as client:
            answered = [
                await refresh(client),
                await client.post(LOGOUT_URL, json={"refresh_token": "not a token"}),
                await client.get(TASKS_URL),
                await client.get(TASKS_URL, headers={"Authorization": "Bearer a.b.c"}),
                await client.get(ME_URL, headers={"Authorization": f"Bearer {expired}"}),
            ]
            refused = [
                await client.get(TASKS_URL),
                await client.post(TASKS_URL, json={"title": "x"}),
                await client.post(LOGOUT_URL, json={"refresh_token": "not a token"}),
                await refresh(client),
            ]
            # The user's own valid token is counted for the user, not the address.
            signed_in = await client.get(TASKS_URL, headers=bearer(app, user))

        assert statuses(answered) == [401] * 5
        assert [rate_limit_state(r)["anonymous-ip"].remaining for r in answered] == [4, 3, 2, 1, 0]
        for response in refused:
            assert_rate_limited(response, policy="anonymous-ip")
        assert signed_in.status_code == 200
        assert list(rate_limit_state(signed_in)) == ["user"]

    async def test_signed_in_requests_do_not_spend_the_address(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_anonymous_ip="2/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            signed_in = [await client.get(TASKS_URL, headers=bearer(app, user)) for _ in range(5)]
            anonymous = await client.get(TASKS_URL)
        assert statuses(signed_in) == [200] * 5
        assert_problem(anonymous, 401)
        assert rate_limit_state(anonymous)["anonymous-ip"].remaining == 1

    async def test_a_successful_refresh_and_logout_are_counted_too(
        self, make_app: AppMaker
    ) -> None:
        # Counted before the token is looked at, like a login attempt: a flood of them
        # cannot overshoot the quota whatever the tokens are.
        app = await make_app(rate_limit_anonymous_ip="3/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            pair = (await login(client, user.email, TEST_PASSWORD)).json()
            renewed = await refresh(client, pair["refresh_token"])
            logged_out = await client.post(
                LOGOUT_URL, json={"refresh_token": renewed.json()["refresh_token"]}
            )
            last = await refresh(client)
            refused = await refresh(client)
        assert renewed.status_code == 200, renewed.text
        assert logged_out.status_code == 204
        assert [rate_limit_state(r)["anonymous-ip"].remaining for r in (renewed, logged_out)] == [
            2,
            1,
        ]
        assert last.status_code == 401
        assert_rate_limited(refused, policy="anonymous-ip")

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/healthz", 200),
            ("GET", "/readyz", 200),
            ("GET", "/metrics", 200),
            ("GET", "/openapi.json", 200),
            ("GET", "/no/such/path", 404),
        ],
    )
    async def test_probes_documents_and_unknown_paths_are_not_limited(
        self, make_app: AppMaker, method: str, path: str, status: int
    ) -> None:
        app = await make_app(rate_limit_anonymous_ip="1/minute")
        async with http_client(app) as client:
            spent = await client.get(TASKS_URL)
            responses = [await client.request(method, path) for _ in range(3)]
        assert_problem(spent, 401)
        assert statuses(responses) == [status] * 3
        for response in responses:
            assert "ratelimit" not in response.headers

    async def test_uvicorn_rewritten_peer_gets_no_second_bucket(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_anonymous_ip="3/minute")
        served = uvicorn_default_proxy_headers(app)
        async with http_client(served, ("127.0.0.1", 50000)) as client:
            direct = [await refresh(client) for _ in range(3)]
            forwarded = [await refresh(client, forwarded_for=f"10.0.{n}.{n}") for n in range(5)]
        assert statuses(direct) == [401, 401, 401]
        for response in forwarded:
            assert_rate_limited(response, policy="anonymous-ip")


class RecordEverything(logging.Handler):
    """Every log record of the process, whatever its logger, as the text a handler shows."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, record: logging.LogRecord) -> str:
        return f"{self._formatter.format(record)} {record.msg!r} {record.args!r}"


@contextmanager
def all_logs() -> Iterator[RecordEverything]:
    """Records everything logged while the block runs (after `create_app`, which replaces
    the root logger's handlers)."""
    handler = RecordEverything()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


class TestLogsOfNormalTraffic:
    async def test_concurrent_logins_log_no_error_and_no_email(self, make_app: AppMaker) -> None:
        # Logins of many accounts at once, most succeeding (which clears the account's
        # count while other requests are counted): nothing at error level, and no email, in
        # any line of any logger.
        app = await make_app(rate_limit_login_account="50/minute")
        users = [await make_app.add_user(app) for _ in range(8)]
        with all_logs() as logs:
            async with http_client(app) as client:
                for round_number in range(12):
                    attempts = [
                        *(login(client, user.email, TEST_PASSWORD) for user in users),
                        *(login(client, user.email) for user in users),
                        *(login(client, make_app.email()) for _ in range(24)),
                    ]
                    responses = await asyncio.gather(*attempts)
                    assert set(statuses(responses)) == {200, 401}, round_number
                await asyncio.sleep(0.2)
            gc.collect()  # an unretrieved task exception is logged when the task is collected
            await asyncio.sleep(0)

        errors = [logs.text(record) for record in logs.records if record.levelno >= logging.ERROR]
        assert errors == []
        logged = "\n".join(logs.text(record) for record in logs.records)
        assert logs.records  # the requests were logged
        assert f"rl-{make_app.tag}-" not in logged  # no email of this test, in any form


class TestForwardedFor:
    @pytest.mark.parametrize(
        ("forwarded_allow_ips", "peer"),
        [
            ("127.0.0.1", "127.0.0.1"),  # uvicorn's default
            ("127.0.0.1,::1", "::1"),
            ("*", "127.0.0.1"),
            ("*", "::1"),
        ],
    )
    async def test_the_header_buys_no_second_bucket_whatever_the_server_trusts(
        self, make_app: AppMaker, forwarded_allow_ips: str, peer: str
    ) -> None:
        # The probe, scaled down: TRUSTED_PROXIES empty, failed logins from the
        # loopback peer until refused, then more with a rotating X-Forwarded-For, which the
        # ASGI server (trusting the peer) turns into the client address.
        app = await make_app(rate_limit_login_ip="4/minute")
        asgi_app: Any = app
        served: ASGIApp = ProxyHeadersMiddleware(asgi_app, trusted_hosts=forwarded_allow_ips)  # type: ignore[assignment]
        async with http_client(served, (peer, 50000)) as client:
            direct = [await login(client, make_app.email()) for _ in range(6)]
            forwarded = [
                await login(client, make_app.email(), forwarded_for=f"10.0.{n}.{n}")
                for n in range(1, 9)
            ]
        assert statuses(direct) == [401] * 4 + [429] * 2
        for response in forwarded:
            assert_rate_limited(response, policy="login-ip")

    async def test_naming_its_own_address_keeps_a_client_in_its_bucket(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_ip="3/minute")
        async with http_client(app, PEER) as client:
            spent = [await login(client, make_app.email()) for _ in range(3)]
            own_address = [
                await login(client, make_app.email(), forwarded_for=value)
                for value in (PEER[0], f"{PEER[0]}:80", f"198.51.100.1, {PEER[0]}")
            ]
        assert statuses(spent) == [401, 401, 401]
        for response in own_address:
            assert_rate_limited(response, policy="login-ip")

    async def test_untrusted_peer_rotating_the_header_is_still_limited(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_ip="3/minute")
        async with http_client(app, PEER) as client:
            responses = [
                await login(client, make_app.email(), forwarded_for=f"198.51.100.{number}")
                for number in range(1, 7)
            ]
        assert statuses(responses[:3]) == [401, 401, 401]
        for response in responses[3:]:
            assert_rate_limited(response, policy="login-ip")

    async def test_header_ignored_from_a_peer_outside_the_trusted_proxies(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_register_ip="2/hour", trusted_proxies=["10.0.0.0/8"])
        async with http_client(app, PEER) as client:
            responses = [
                await client.post(
                    USERS_URL,
                    json={"email": make_app.email(), "password": TEST_PASSWORD},
                    headers={"X-Forwarded-For": f"198.51.100.{number}"},
                )
                for number in range(1, 5)
            ]
        assert statuses(responses[:2]) == [201, 201]
        for response in responses[2:]:
            assert_rate_limited(response, policy="register-ip")

    async def test_trusted_proxy_gives_each_forwarded_client_its_own_bucket(
        self, make_app: AppMaker
    ) -> None:
        app = await make_app(rate_limit_login_ip="3/minute", trusted_proxies=["10.0.0.0/8"])
        async with http_client(app, ("10.1.2.3", 5555)) as proxy:
            first_client = [
                await login(proxy, make_app.email(), forwarded_for="198.51.100.1") for _ in range(3)
            ]
            first_refused = await login(proxy, make_app.email(), forwarded_for="198.51.100.1")
            # A client cannot escape its bucket by prepending entries of its own ...
            spoofed = await login(proxy, make_app.email(), forwarded_for="192.0.2.44, 198.51.100.1")
            # ... and a chain through a second trusted proxy still names the client.
            chained = [
                await login(proxy, make_app.email(), forwarded_for=f"198.51.100.{n}, 10.9.9.9")
                for n in (2, 3)
            ]
            second_client = await login(proxy, make_app.email(), forwarded_for="198.51.100.2")

        assert statuses(first_client) == [401, 401, 401]
        assert_rate_limited(first_refused, policy="login-ip")
        assert_rate_limited(spoofed, policy="login-ip")
        assert statuses(chained) == [401, 401]
        assert rate_limit_state(chained[0])["login-ip"].remaining == 2
        assert second_client.status_code == 401
        assert rate_limit_state(second_client)["login-ip"].remaining == 1

    async def test_trusted_proxy_without_header_counts_the_proxy(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_ip="2/minute", trusted_proxies=["10.1.2.3"])
        async with http_client(app, ("10.1.2.3", 5555)) as proxy:
            responses = [await login(proxy, make_app.email()) for _ in range(3)]
        assert statuses(responses[:2]) == [401, 401]
        assert_rate_limited(responses[2], policy="login-ip")

    @pytest.mark.parametrize(
        "entry",
        [
            "198.51.100.{n}",
            "198.51.100.{n}:8080",
            "[2001:db8::{n}]:443",
            "2001:db8::{n}",
            "203.0.113.9, 198.51.100.{n}",
            # Spellings that uvicorn and the limiter might split differently.
            "198.51.100.{n}:x",
            "198.51.100.{n}:+80",
            "[2001:db8::{n}]x",
            "[2001:db8::{n}",
        ],
    )
    async def test_uvicorn_rewritten_peer_without_trusted_proxies_shares_one_bucket(
        self, make_app: AppMaker, entry: str
    ) -> None:
        # uvicorn's default --proxy-headers replaces a loopback peer with the header's
        # client; rotating that header must not give an attacker fresh buckets.
        app = await make_app(rate_limit_login_ip="3/minute")
        served = uvicorn_default_proxy_headers(app)
        async with http_client(served, ("127.0.0.1", 50000)) as client:
            responses = [
                await login(client, make_app.email(), forwarded_for=entry.format(n=number))
                for number in range(1, 7)
            ]
        assert statuses(responses[:3]) == [401, 401, 401]
        for response in responses[3:]:
            assert_rate_limited(response, policy="login-ip")

    async def test_uvicorn_rewritten_peer_with_trusted_proxy_counts_each_client(
        self, make_app: AppMaker
    ) -> None:
        # Behind a local proxy the operator names 127.0.0.1 in TRUSTED_PROXIES; then each
        # forwarded client is counted on its own.
        app = await make_app(rate_limit_login_ip="2/minute", trusted_proxies=["127.0.0.1"])
        served = uvicorn_default_proxy_headers(app)
        async with http_client(served, ("127.0.0.1", 50000)) as client:
            first = [
                await login(client, make_app.email(), forwarded_for="198.51.100.1")
                for _ in range(3)
            ]
            second = await login(client, make_app.email(), forwarded_for="198.51.100.2")
        assert statuses(first[:2]) == [401, 401]
        assert_rate_limited(first[2], policy="login-ip")
        assert second.status_code == 401


GARBAGE_FORWARDED_FOR: list[bytes] = [
    b"",
    b" ",
    b",",
    b" , ,, ",
    b"garbage",
    b"unknown",
    b"999.999.999.999",
    b"1.2.3.4:",
    b"1.2.3.4:abc",
    b"1.2.3.4:-1",
    b"1.2.3.4:99999999999999999999999",
    b"1.2.3.4:1:2",
    b"[",
    b"[]",
    b"[]:",
    b"]:80",
    b"[::1",
    b"[::1]:",
    b"[::1]:port",
    b"::1",
    b"fe80::1%eth0",
    b"1.2.3.4, garbage, 10.1.2.3",
    b"garbage, 10.1.2.3",
    b"\t198.51.100.1\t",
    b";;;",
    b"x" * 4000,
    b"1.2.3.4," * 500,
    "1.2.3.4:\u00b2".encode("latin-1"),  # a superscript two is a digit to str.isdigit
    "[::1]:\u00b3".encode("latin-1"),
    "caf\u00e9".encode("latin-1"),
]


class TestGarbageForwardedFor:
    @pytest.mark.parametrize("setup", ["untrusted-peer", "trusted-peer", "uvicorn-loopback"])
    async def test_never_a_500(self, make_app: AppMaker, setup: str) -> None:
        trusted = ["10.0.0.0/8"] if setup == "trusted-peer" else []
        app = await make_app(trusted_proxies=trusted)
        served: ASGIApp = app
        peer = PEER
        if setup == "trusted-peer":
            peer = ("10.1.2.3", 5555)
        elif setup == "uvicorn-loopback":
            served = uvicorn_default_proxy_headers(app)
            peer = ("127.0.0.1", 50000)
        failures: dict[str, int] = {}
        async with http_client(served, peer) as client:
            for value in GARBAGE_FORWARDED_FOR:
                response = await login(client, make_app.email(), forwarded_for=value)
                if response.status_code != 401:
                    failures[value[:40].decode("latin-1")] = response.status_code
                    continue
                assert_problem(response, 401)
                rate_limit_state(response)
        assert failures == {}


class TestInvalidSettings:
    @pytest.mark.parametrize(
        "field",
        [
            "rate_limit_login_account",
            "rate_limit_login_ip",
            "rate_limit_register_ip",
            "rate_limit_user",
            "rate_limit_anonymous_ip",
        ],
    )
    @pytest.mark.parametrize(
        "value", ["five per minute", "5", "", "5/fortnight", "-1/minute", "minute"]
    )
    def test_invalid_limit_is_refused_at_startup(self, field: str, value: str) -> None:
        with pytest.raises(ValidationError) as raised:
            make_settings("sqlite://", rate_limit_enabled=True, **{field: value})
        assert field in str(raised.value)

    def test_invalid_limit_from_the_environment_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RATE_LIMIT_LOGIN_ACCOUNT", "lots")
        with pytest.raises(ValidationError) as raised:
            Settings()
        assert "rate_limit_login_account" in str(raised.value)

    @pytest.mark.parametrize("value", ["not-an-address", "10.0.0.0/33", "300.1.1.1"])
    def test_invalid_trusted_proxy_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        monkeypatch.setenv("TRUSTED_PROXIES", f"10.0.0.1, {value}")
        with pytest.raises(ValidationError):
            Settings()

    def test_limits_in_the_environment_are_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        environment: Mapping[str, str] = {
            "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_LOGIN_ACCOUNT": "7 per 30 seconds",
            "RATE_LIMIT_LOGIN_IP": "40/hour",
            "RATE_LIMIT_REGISTER_IP": "2/day",
            "RATE_LIMIT_USER": "100/minute",
            "RATE_LIMIT_ANONYMOUS_IP": "30 per 10 seconds",
            "RATE_LIMIT_KEY_PREFIX": "elsewhere",
            "TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        assert settings.rate_limit_enabled is True
        assert settings.rate_limit_login_account == "7 per 30 seconds"
        assert settings.rate_limit_login_ip == "40/hour"
        assert settings.rate_limit_register_ip == "2/day"
        assert settings.rate_limit_user == "100/minute"
        assert settings.rate_limit_anonymous_ip == "30 per 10 seconds"
        assert settings.rate_limit_key_prefix == "elsewhere"
        assert settings.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]


class TestPasswordChangeGuesses:
    """`current_password` on PATCH /users/me is a password guess, limited like a login."""

    async def test_wrong_current_passwords_are_limited(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_account="2/minute")
        user = await make_app.add_user(app)
        body = {"password": "a brand new long passphrase", "current_password": "wrong guess!!"}
        async with http_client(app) as client:
            statuses = [
                (await client.patch("/api/v1/users/me", json=body, headers=bearer(app, user)))
                for _ in range(3)
            ]
        assert [r.status_code for r in statuses[:2]] == [403, 403]
        assert_rate_limited(statuses[2], policy="login-account")

    async def test_name_changes_are_not_counted(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_account="1/minute")
        user = await make_app.add_user(app)
        async with http_client(app) as client:
            for name in ("A", "B", "C"):
                response = await client.patch(
                    "/api/v1/users/me", json={"full_name": name}, headers=bearer(app, user)
                )
                assert response.status_code == 200


class TestAccountKeyIsTheNormalisedEmail:
    async def test_respelling_the_email_does_not_open_a_new_count(self, make_app: AppMaker) -> None:
        app = await make_app(rate_limit_login_account="2/minute")
        user = await make_app.add_user(app)
        local, domain = user.email.split("@")
        spellings = [user.email, user.email.upper(), f" {local}@{domain.upper()} "]
        async with http_client(app) as client:
            responses = [await login(client, email) for email in spellings]
        assert [r.status_code for r in responses[:2]] == [401, 401]
        assert_rate_limited(responses[2], policy="login-account")
