"""Login timing parity (catalogue 8 C 15): an unknown email costs what a wrong password costs.

First deterministically, by counting bcrypt verifications and their cost on every failure
path; then by wall-clock, with a realistic-ish cost on a separate app instance. Both also
while stored hashes have several costs: accounts hashed before BCRYPT_ROUNDS was raised (or
lowered) and not logged in since.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import security
from app.core.config import Settings
from app.db.access import Db
from app.main import create_app
from app.models.user import User
from app.schemas.user import UserCreate
from app.services import auth as auth_service
from app.services import user as user_service
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
    """Records the bcrypt cost of every `bcrypt.checkpw` call the app makes (that bcrypt did
    not refuse at once)."""

    costs: list[int]

    def take(self) -> list[int]:
        taken, self.costs[:] = list(self.costs), []
        return taken

    def take_work(self) -> int:
        """The bcrypt work done since the last take, in units of one hash at cost 0: each
        step of cost doubles it."""
        return sum(2**cost for cost in self.take())


@pytest.fixture(autouse=True)
def fresh_stored_cost_reading() -> Iterator[None]:
    """Every test reads the highest stored cost afresh (the service caches it for minutes,
    and another test's rolled-back hash at another cost must not linger)."""
    auth_service.forget_highest_stored_rounds()
    yield
    auth_service.forget_highest_stored_rounds()


@pytest.fixture
def checkpw_spy(monkeypatch: pytest.MonkeyPatch) -> CheckpwSpy:
    spy = CheckpwSpy([])
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        matched = real(password, hashed_password)  # a hash bcrypt refuses costs nothing
        spy.costs.append(int(hashed_password.split(b"$")[2]))
        return matched

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


SERVICE_ROUNDS = 7  # "the service restarted" at this cost, in the deterministic tests


class TestSameWorkWhateverTheStoredCost:
    """Accounts hashed at another cost than the service's: every failure still costs the
    work of one hash at the higher of the two, unknown email or not."""

    @pytest.mark.parametrize(
        ("stored_rounds", "expected_rounds"),
        [
            (4, SERVICE_ROUNDS),
            (SERVICE_ROUNDS - 1, SERVICE_ROUNDS),
            (SERVICE_ROUNDS + 1, SERVICE_ROUNDS + 1),
        ],
        ids=["raised-from-4", "raised-by-one", "lowered-by-one"],
    )
    async def test_unknown_email_wrong_password_and_over_long_cost_the_same(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        settings: Settings,
        checkpw_spy: CheckpwSpy,
        monkeypatch: pytest.MonkeyPatch,
        stored_rounds: int,
        expected_rounds: int,
    ) -> None:
        user = await make_user()
        user.password_hash = security.hash_password(TEST_PASSWORD, stored_rounds)
        await session.commit()
        monkeypatch.setattr(settings, "bcrypt_rounds", SERVICE_ROUNDS)
        for rounds in range(security.MIN_ROUNDS, expected_rounds + 1):
            security.dummy_hash(rounds)  # made once per cost, outside the measurement
        checkpw_spy.take()

        work: dict[str, int] = {}
        for kind, email, password in [
            ("unknown-email", f"nobody-{uuid.uuid4().hex[:6]}@example.com", WRONG_PASSWORD),
            ("wrong-password", user.email, WRONG_PASSWORD),
            ("over-long-password", user.email, TEST_PASSWORD + "x" * 200),
            ("unknown-email-again", "nobody-else@example.com", TEST_PASSWORD),
        ]:
            assert_problem(await login(client, email, password), 401)
            work[kind] = checkpw_spy.take_work()
        assert work == dict.fromkeys(work, 2**expected_rounds)

        # The right password still logs in, and leaves the hash at the service's cost.
        assert (await login(client, user.email, TEST_PASSWORD)).status_code == 200
        await session.refresh(user)
        assert security.hash_rounds(user.password_hash) == SERVICE_ROUNDS

    async def test_corrupt_stored_hash_costs_a_whole_verification(
        self,
        client: httpx.AsyncClient,
        make_user: UserFactory,
        session: AsyncSession,
        settings: Settings,
        checkpw_spy: CheckpwSpy,
    ) -> None:
        user = await make_user()
        # A hash bcrypt refuses without working (an unknown variant): nothing was spent.
        user.password_hash = user.password_hash.replace("$2b$", "$2z$")
        await session.commit()
        security.dummy_hash(settings.bcrypt_rounds)
        checkpw_spy.take()
        assert_problem(await login(client, user.email, WRONG_PASSWORD), 401)
        assert checkpw_spy.take_work() == 2**settings.bcrypt_rounds


TIMING_ROUNDS = 8
SAMPLES = 15


@asynccontextmanager
async def timing_service(
    url: str, stored_rounds: dict[str, int] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A separate app at bcrypt cost `TIMING_ROUNDS` on `url`, after accounts were stored
    at other costs (`stored_rounds`: email -> cost), as a service started with another
    BCRYPT_ROUNDS left them."""
    app = create_app(make_settings(url, bcrypt_rounds=TIMING_ROUNDS))
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as session:
            for email, rounds in (stored_rounds or {}).items():
                data = UserCreate(email=email, password=TEST_PASSWORD)
                await user_service.create_user(Db.in_session(session), data, rounds=rounds)
            await session.commit()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://timing") as http:
            yield http


@pytest.fixture(scope="module")
async def timing_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    """A separate app at bcrypt cost 8 on its own fresh SQLite database."""
    url = await create_database("sqlite", Path(tmp_path_factory.mktemp("timing")))
    try:
        run_alembic(url)
        async with timing_service(url) as http:
            yield http
    finally:
        await drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_timing_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A fresh, migrated database of each backend for one test."""
    url = await create_database(request.param, tmp_path)
    try:
        run_alembic(url)
        yield url
    finally:
        await drop_database(url)


async def failure_medians(
    client: httpx.AsyncClient, email: str
) -> tuple[float, list[float], list[float]]:
    """Unknown-email and wrong-password failures for `email`, timed interleaved: the ratio
    of their medians, and the samples."""

    async def timed(address: str) -> float:
        start = time.perf_counter()
        response = await login(client, address, WRONG_PASSWORD)
        elapsed = time.perf_counter() - start
        assert response.status_code == 401
        return elapsed

    # Warm-up: dummy hashes are created on first use, and the first requests pay imports.
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
    return statistics.median(unknown) / statistics.median(wrong), unknown, wrong


class TestWallClockParity:
    async def test_unknown_email_and_wrong_password_take_alike(
        self, timing_client: httpx.AsyncClient
    ) -> None:
        email = "timed@example.com"
        registered = await timing_client.post(
            "/api/v1/users", json={"email": email, "password": TEST_PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        ratio, unknown, wrong = await failure_medians(timing_client, email)
        assert 0.5 < ratio < 2.0, (ratio, unknown, wrong)

    @pytest.mark.parametrize(
        "stored_rounds",
        [4, TIMING_ROUNDS + 2],
        ids=["hashed-at-4-service-raised", "hashed-higher-service-lowered"],
    )
    async def test_alike_while_stored_hashes_have_other_costs(
        self, fresh_timing_database: str, stored_rounds: int
    ) -> None:
        # The probe: accounts hashed at BCRYPT_ROUNDS=4, the service restarted at a
        # higher cost (and the converse); a wrong password for such an account must take
        # what an unknown email takes.
        email = "hashed-long-ago@example.com"
        stored = {email: stored_rounds, "current@example.com": TIMING_ROUNDS}
        async with timing_service(fresh_timing_database, stored) as client:
            ratio, unknown, wrong = await failure_medians(client, email)
            assert 0.5 < ratio < 2.0, (ratio, unknown, wrong)
            # Accounts at the current cost are still alike too.
            ratio, unknown, wrong = await failure_medians(client, "current@example.com")
            assert 0.5 < ratio < 2.0, (ratio, unknown, wrong)
