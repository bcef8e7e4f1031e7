"""Races on the user writes: a write is applied only if the token that authorized it is still
current when the write commits (docs/decisions/0023).

Every request goes through `committing_client`: each runs on its own pooled connection and
really commits, so `asyncio.gather` makes them race as real clients would (on SQLite they
queue on the write lock; on PostgreSQL they contend on row locks). Each race is run several
times, on SQLite and on PostgreSQL. What a user would notice:
- four parallel password changes with one access token: one is applied, the other three are
  the usual invalid-token 401 (that token died with the first change), and only the
  winner's new password logs in;
- two admins demoting (or deactivating) each other at once: never both; the loser's token
  died with the winner's change, so the loser gets that 401;
- whatever the interleaving, there is always an active admin left.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.core.security import hash_password
from app.db.access import Db
from app.models.user import Role, User
from app.schemas.user import UserCreate
from app.services import auth as auth_service
from app.services import user as user_service
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD
from tests.support import assert_problem

USERS = "/api/v1/users"
ME = "/api/v1/users/me"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
TRIALS = 4
PASSWORD_CHANGES = 4

Headers = dict[str, str]


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str
    headers: Headers


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(TOKEN, data={"username": email, "password": password})


def bearer(response: httpx.Response) -> Headers:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def register(client: httpx.AsyncClient, label: str) -> Account:
    """A new committed user, logged in over HTTP."""
    email = f"{label}-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(USERS, json={"email": email, "password": TEST_PASSWORD})
    assert registered.status_code == 201, registered.text
    headers = bearer(await login(client, email, TEST_PASSWORD))
    return Account(registered.json()["id"], email, headers)


async def admin_account(app: FastAPI, client: httpx.AsyncClient, label: str) -> Account:
    """A new committed admin (there is no HTTP way to make one), logged in over HTTP."""
    email = f"{label}-{uuid.uuid4().hex[:8]}@example.com"
    async with Db.transaction_for(app.state.sessionmaker) as db:
        user = await user_service.create_user(
            db,
            UserCreate(email=email, password=TEST_PASSWORD),
            rounds=BCRYPT_TEST_ROUNDS,
            role=Role.ADMIN,
        )
        user_id = user.id
    return Account(user_id, email, bearer(await login(client, email, TEST_PASSWORD)))


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


async def dead_token_problem(client: httpx.AsyncClient, headers: Headers) -> dict[str, Any]:
    """What a request with a revoked token gets anywhere: the reference 401."""
    response = await client.get(ME, headers=headers)
    return assert_invalid_token(response)


def assert_invalid_token(response: httpx.Response) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    return body


def same_problem(left: dict[str, Any], right: dict[str, Any]) -> bool:
    return (left["type"], left["title"], left["detail"]) == (
        right["type"],
        right["title"],
        right["detail"],
    )


async def accounts_state(client: httpx.AsyncClient, admin: Headers) -> dict[int, dict[str, Any]]:
    """Every account as an admin lists it (role and active flag), by id."""
    response = await client.get(USERS, params={"limit": 100}, headers=admin)
    assert response.status_code == 200, response.text
    return {user["id"]: user for user in response.json()["items"]}


async def any_admin_headers(client: httpx.AsyncClient, accounts: list[Account]) -> Headers:
    """A fresh login of an account that is still an active admin (one must be)."""
    for account in accounts:
        response = await login(client, account.email, TEST_PASSWORD)
        if response.status_code != 200:
            continue
        headers = bearer(response)
        me = await client.get(ME, headers=headers)
        if me.json()["role"] == "admin":
            return headers
    pytest.fail("no active admin is left")


# --- password changes -----------------------------------------------------------------------


class TestParallelPasswordChanges:
    """Four `PATCH /users/me` with a new password each, one access token, all at once."""

    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_exactly_one_is_applied(
        self, committing_client: httpx.AsyncClient, trial: int
    ) -> None:
        client = committing_client
        account = await register(client, f"password-race-{trial}")
        passwords = [f"racing new passphrase number {n}" for n in range(PASSWORD_CHANGES)]

        responses = await asyncio.gather(
            *(
                client.patch(
                    ME,
                    json={"password": password, "current_password": TEST_PASSWORD},
                    headers=account.headers,
                )
                for password in passwords
            )
        )

        assert statuses(responses) == {200: 1, 401: PASSWORD_CHANGES - 1}, [
            (r.status_code, r.text) for r in responses
        ]
        [winner] = [
            password
            for password, response in zip(passwords, responses, strict=True)
            if response.status_code == 200
        ]
        # The losers ran with a token the winner's change killed: the usual invalid-token 401.
        reference = await dead_token_problem(client, account.headers)
        for response in responses:
            if response.status_code == 401:
                assert same_problem(assert_invalid_token(response), reference)
        # Only the winner's password works; the lost writes left no trace.
        assert (await login(client, account.email, winner)).status_code == 200
        for password in [TEST_PASSWORD, *passwords]:
            if password != winner:
                assert_problem(await login(client, account.email, password), 401)


# --- admins acting on each other ------------------------------------------------------------


def admin_write(
    client: httpx.AsyncClient, actor: Account, target: Account, body: dict[str, Any]
) -> Awaitable[httpx.Response]:
    return client.patch(f"{USERS}/{target.id}", json=body, headers=actor.headers)


class TestAdminsActingOnEachOther:
    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ({"role": "user"}, {"role": "user"}),
            ({"is_active": False}, {"role": "user"}),
            ({"is_active": False}, {"is_active": False}),
            ({"role": "user", "is_active": False}, {"role": "user"}),
        ],
        ids=["demote-demote", "deactivate-demote", "deactivate-deactivate", "both-demote"],
    )
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_never_both(
        self,
        app: FastAPI,
        committing_client: httpx.AsyncClient,
        trial: int,
        first: dict[str, Any],
        second: dict[str, Any],
    ) -> None:
        """The only two admins act on each other at the same moment: exactly one change is
        applied, the other is the invalid-token 401, and the winner is still an admin."""
        client = committing_client
        one = await admin_account(app, client, f"admin-one-{trial}")
        two = await admin_account(app, client, f"admin-two-{trial}")

        responses = await asyncio.gather(
            admin_write(client, one, two, first), admin_write(client, two, one, second)
        )

        assert sorted(r.status_code for r in responses) == [200, 401], [
            (r.status_code, r.text) for r in responses
        ]
        won = 0 if responses[0].status_code == 200 else 1
        winner, loser = (one, two) if won == 0 else (two, one)
        assert_invalid_token(responses[1 - won])
        assert_invalid_token(await client.get(ME, headers=loser.headers))
        # The winner's token was not touched: it still administers, and sees one admin left.
        state = await accounts_state(client, winner.headers)
        active_admins = [
            user["id"] for user in state.values() if user["role"] == "admin" and user["is_active"]
        ]
        assert active_admins == [winner.id], state
        applied = first if won == 0 else second
        for field, value in applied.items():
            assert state[loser.id][field] == value, state[loser.id]

    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_a_ring_of_admins_always_leaves_one(
        self, app: FastAPI, committing_client: httpx.AsyncClient, trial: int
    ) -> None:
        """Four admins, each demoting or deactivating the next (and the one after) at once."""
        client = committing_client
        admins = [await admin_account(app, client, f"ring-{trial}-{n}") for n in range(4)]
        jobs = []
        for n, actor in enumerate(admins):
            jobs.append((actor, admins[(n + 1) % 4], {"role": "user"}))
            jobs.append((actor, admins[(n + 2) % 4], {"is_active": False}))

        responses = await asyncio.gather(
            *(admin_write(client, actor, target, body) for actor, target, body in jobs)
        )

        assert set(statuses(responses)) <= {200, 401}, [(r.status_code, r.text) for r in responses]
        assert statuses(responses)[200] >= 1
        state = await accounts_state(client, await any_admin_headers(client, admins))
        survivors = [a.id for a in admins if state[a.id]["role"] == "admin"]
        survivors = [i for i in survivors if state[i]["is_active"]]
        assert survivors, state
        for (actor, target, body), response in zip(jobs, responses, strict=True):
            if response.status_code == 200:
                # An applied change is there (nobody promotes or re-activates here).
                for field, value in body.items():
                    assert state[target.id][field] == value
            else:
                # Refused only because the actor had been demoted or deactivated by then.
                assert_invalid_token(response)
                assert state[actor.id]["role"] == "user" or not state[actor.id]["is_active"]

    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_the_last_admin_is_never_removed(
        self, app: FastAPI, committing_client: httpx.AsyncClient, trial: int
    ) -> None:
        """Two admins, every kind of removal both ways, several of each, and self-removals."""
        client = committing_client
        one = await admin_account(app, client, f"last-one-{trial}")
        two = await admin_account(app, client, f"last-two-{trial}")
        removals = [{"role": "user"}, {"is_active": False}, {"role": "user", "is_active": False}]
        jobs = [
            (actor, target, body)
            for body in removals
            for actor, target in ((one, two), (two, one), (one, one), (two, two))
        ]

        responses = await asyncio.gather(
            *(admin_write(client, actor, target, body) for actor, target, body in jobs)
        )

        for (actor, target, _body), response in zip(jobs, responses, strict=True):
            if actor is target:
                assert response.status_code in {401, 409}, response.text
                assert_problem(response, response.status_code)
            else:
                assert response.status_code in {200, 401}, response.text
        applied = {
            target.id for (_a, target, _b), r in zip(jobs, responses, strict=True) if r.is_success
        }
        assert len(applied) == 1, applied  # one of them removed the other, never both
        state = await accounts_state(client, await any_admin_headers(client, [one, two]))
        active_admins = [
            a.id for a in (one, two) if state[a.id]["role"] == "admin" and state[a.id]["is_active"]
        ]
        assert len(active_admins) == 1, state
        assert active_admins[0] not in applied


# --- a login that overlaps a password change --------------------------------------------------


class TestLoginDuringPasswordChange:
    """A login verifies the password outside any transaction (bcrypt is slow); a password
    change can commit between that check and the tokens. The change must win: a login whose
    password no longer opens the account issues nothing, and no refresh token outlives the
    change. The change is made to land exactly in that gap, by running it from inside the
    login's password check."""

    NEW = "a passphrase set while a login was on its way"

    async def test_the_old_password_gets_no_tokens(
        self,
        committing_client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        client = committing_client
        account = await register(client, "login-race")
        real_verify = auth_service.verify_password_async
        changed: list[httpx.Response] = []

        async def verify_then_change(password: str, stored_hash: str) -> bool:
            verified = await real_verify(password, stored_hash)
            if not changed:  # the login's own check: the change commits right after it
                changed.append(
                    await client.patch(
                        ME,
                        json={"password": self.NEW, "current_password": TEST_PASSWORD},
                        headers=account.headers,
                    )
                )
            return verified

        monkeypatch.setattr(auth_service, "verify_password_async", verify_then_change)
        stale_login = await login(client, account.email, TEST_PASSWORD)
        monkeypatch.setattr(auth_service, "verify_password_async", real_verify)

        assert [response.status_code for response in changed] == [200]
        assert_problem(stale_login, 401)
        assert (await login(client, account.email, self.NEW)).status_code == 200
        assert_problem(await login(client, account.email, TEST_PASSWORD), 401)

    async def test_a_new_hash_of_the_same_password_still_logs_in(
        self,
        app: FastAPI,
        committing_client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Another login may re-hash the same password meanwhile (a cost upgrade): the password
        still opens the account, so this login succeeds, and its refresh token works."""
        client = committing_client
        account = await register(client, "login-rehash")
        real_verify = auth_service.verify_password_async
        rehashed: list[int] = []

        async def verify_then_rehash(password: str, stored_hash: str) -> bool:
            verified = await real_verify(password, stored_hash)
            if not rehashed:
                async with Db.transaction_for(app.state.sessionmaker) as db:
                    await db.session.execute(
                        update(User)
                        .where(User.id == account.id)
                        .values(password_hash=hash_password(TEST_PASSWORD, BCRYPT_TEST_ROUNDS))
                    )
                rehashed.append(account.id)
            return verified

        monkeypatch.setattr(auth_service, "verify_password_async", verify_then_rehash)
        fresh = await login(client, account.email, TEST_PASSWORD)
        monkeypatch.setattr(auth_service, "verify_password_async", real_verify)

        assert rehashed == [account.id]
        assert fresh.status_code == 200, fresh.text
        refreshed = await client.post(
            REFRESH,
            json={"refresh_token": fresh.json()["refresh_token"]},
        )
        assert refreshed.status_code == 200, refreshed.text
