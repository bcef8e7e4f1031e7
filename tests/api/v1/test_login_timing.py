"""Login timing parity (catalogue 8 C 15): an unknown email costs what a wrong password costs.

First deterministically, by counting bcrypt verifications and their cost on every failure
path; then by wall-clock, with a realistic-ish cost on a separate app instance.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import security
from app.core.config import Settings
from app.main import create_app
from app.models.user import User
from tests.conftest import (
    TEST_PASSWORD,
    UserFactory,
    create_database,
    drop_database,
    make_settings,
    run_alembic,
)
from tests.support import assert_problem

TOKEN_URL = "/api/v1/auth/token"
WRONG_PASSWORD = "this is not the right password"


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(TOKEN_URL, data={"username": email, "password": password})


@dataclass
class CheckpwSpy:
    """Records the bcrypt cost of every `bcrypt.checkpw` call the app makes."""

    costs: list[int]

    def take(self) -> list[int]:
        taken, self.costs[:] = list(self.costs), []
        return taken


@pytest.fixture
def checkpw_spy(monkeypatch: pytest.MonkeyPatch) -> CheckpwSpy:
    spy = CheckpwSpy([])
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        spy.costs.append(int(hashed_password.split(b"$")[2]))
        return real(password, hashed_password)

    monkeypatch.setattr(security.bcrypt, "checkpw", counting)
    return spy


class TestOneVerificationPerAttempt:
    @pytest.mark.parametrize(
        ("who", "password", "status"),
        [
            ("unknown", TEST_PASSWORD, 401),
            ("malformed", TEST_PASSWORD, 401),
            ("known", WRONG_PASSWORD, 401),
            ("known", TEST_PASSWORD + "x" * 200, 401),
            ("unknown", TEST_PASSWORD + "x" * 200, 401),
            ("known", "x" * 10_000, 401),
            ("known", TEST_PASSWORD + "\x00", 401),
            ("inactive", WRONG_PASSWORD, 401),
            ("inactive", TEST_PASSWORD, 403),
            ("known", TEST_PASSWORD, 200),
        ],
        ids=[
            "unknown-email",
            "malformed-email",
            "wrong-password",
            "over-long-known",
            "over-long-unknown",
            "10KB-password",
            "nul-password",
            "inactive-wrong",
            "inactive-right",
            "control-success",
        ],
    )
    async def test_exactly_one_checkpw_at_configured_cost(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        settings: Settings,
        checkpw_spy: CheckpwSpy,
        who: str,
        password: str,
        status: int,
    ) -> None:
        known = await make_user()
        inactive = await make_user(is_active=False)
        email = {
            "known": known.email,
            "inactive": inactive.email,
            "unknown": f"nobody-{uuid.uuid4().hex[:6]}@example.com",
            "malformed": "not an email at all",
        }[who]
        # Warm the dummy hash (made once per cost, by hashpw) outside the measurement.
        security.dummy_hash(settings.bcrypt_rounds)
        checkpw_spy.take()

        response = await login(client, email, password)
        if status == 200:
            assert response.status_code == 200, response.text
        else:
            assert_problem(response, status)
        assert checkpw_spy.take() == [settings.bcrypt_rounds]

    async def test_same_count_for_repeated_failures(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        settings: Settings,
        checkpw_spy: CheckpwSpy,
    ) -> None:
        user = await make_user()
        for _ in range(3):
            await login(client, "nobody@example.com", TEST_PASSWORD)
            await login(client, user.email, WRONG_PASSWORD)
        assert checkpw_spy.take() == [settings.bcrypt_rounds] * 6

    async def test_stored_hash_is_at_the_configured_cost(
        self, make_user: UserFactory, session: AsyncSession, settings: Settings
    ) -> None:
        # Precondition of the parity: the dummy hash and real hashes share one cost.
        user = await make_user()
        stored = await session.get_one(User, user.id)
        assert security.hash_rounds(stored.password_hash) == settings.bcrypt_rounds
        assert security.hash_rounds(security.dummy_hash(settings.bcrypt_rounds)) == (
            settings.bcrypt_rounds
        )


TIMING_ROUNDS = 8
SAMPLES = 15


@pytest.fixture(scope="module")
async def timing_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    """A separate app at bcrypt cost 8 on its own fresh SQLite database."""
    url = await create_database("sqlite", Path(tmp_path_factory.mktemp("timing")))
    try:
        run_alembic(url)
        app = create_app(make_settings(url, bcrypt_rounds=TIMING_ROUNDS))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://timing") as http:
                yield http
    finally:
        await drop_database(url)


class TestWallClockParity:
    async def test_unknown_email_and_wrong_password_take_alike(
        self, timing_client: httpx.AsyncClient
    ) -> None:
        email = "timed@example.com"
        registered = await timing_client.post(
            "/api/v1/users", json={"email": email, "password": TEST_PASSWORD}
        )
        assert registered.status_code == 201, registered.text

        async def timed(address: str) -> float:
            start = time.perf_counter()
            response = await login(timing_client, address, WRONG_PASSWORD)
            elapsed = time.perf_counter() - start
            assert response.status_code == 401
            return elapsed

        # Warm-up: the dummy hash is created on first use, and the first requests pay imports.
        for _ in range(2):
            await timed("nobody@example.com")
            await timed(email)

        unknown: list[float] = []
        wrong: list[float] = []
        for n in range(SAMPLES):
            # Interleaved, alternating which goes first, so drift hits both alike.
            pair = [("unknown", f"nobody{n}@example.com"), ("wrong", email)]
            for kind, address in pair if n % 2 else reversed(pair):
                (unknown if kind == "unknown" else wrong).append(await timed(address))
        ratio = statistics.median(unknown) / statistics.median(wrong)
        assert 0.5 < ratio < 2.0, (ratio, unknown, wrong)
