"""Rate limits over real HTTP: `uvicorn app.main:app` with its default limits (catalogue 48-50).

The servers run exactly as tests/e2e/test_server.py runs them (its helpers are reused): a
fresh database migrated by Alembic, production mode, no RATE_LIMIT_* variables and no
TRUSTED_PROXIES, so the defaults are in force: 5 failed logins a minute per account, 20 per
client address, 10 registrations an hour per address, 60 requests a minute without a valid
credential per address. The requests come from 127.0.0.1, which uvicorn's default
--proxy-headers treats as a proxy, so X-Forwarded-For is rewritten into the peer as it would
be behind a local proxy: with TRUSTED_PROXIES empty that must change no limit. One more pair
of servers shares a Redis server.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.api.test_rate_limits_redis import redis_server_or_skip
from tests.conftest import create_database, drop_database
from tests.e2e.test_server import (
    USER_PASSWORD,
    alembic_upgrade,
    assert_problem,
    login,
    new_email,
    register,
    serve,
    service_env,
)

_POLICY_ITEM = r'"[a-z][a-z0-9-]*";q=[0-9]+;w=[0-9]+'
_STATE_ITEM = r'"[a-z][a-z0-9-]*";r=[0-9]+;t=[0-9]+'
DEFAULT_LOGIN_POLICY = '"login-account";q=5;w=60, "login-ip";q=20;w=60'
DEFAULT_REGISTER_POLICY = '"register-ip";q=10;w=3600'
DEFAULT_ANONYMOUS_POLICY = '"anonymous-ip";q=60;w=60'


def limits_env(database_url: str, **overrides: str) -> dict[str, str]:
    """The e2e service environment with rate limiting at its defaults."""
    env = service_env(database_url, RATE_LIMIT_ENABLED=None, BCRYPT_ROUNDS="4")
    env = {
        name: value
        for name, value in env.items()
        if not name.upper().startswith("RATE_LIMIT_") and name.upper() != "TRUSTED_PROXIES"
    }
    env.update(overrides)
    return env


def migrated_sqlite(tmp: Path, **overrides: str) -> dict[str, str]:
    env = limits_env(f"sqlite:///{tmp / 'tasks.db'}", **overrides)
    migrate = alembic_upgrade(env)
    assert migrate.returncode == 0, migrate.stderr
    return env


def assert_refused(response: httpx.Response) -> int:
    """A 429 problem with an integer Retry-After and the draft's headers; returns it."""
    assert_problem(response, 429)
    retry_after = response.headers.get("retry-after", "")
    assert re.fullmatch(r"[0-9]+", retry_after), retry_after
    assert int(retry_after) >= 1
    assert re.fullmatch(rf"{_POLICY_ITEM}(, {_POLICY_ITEM})*", response.headers["ratelimit-policy"])
    assert re.fullmatch(rf"{_STATE_ITEM}(, {_STATE_ITEM})*", response.headers["ratelimit"])
    return int(retry_after)


def first_refusal(responses: list[httpx.Response]) -> int:
    """1-based number of the first 429; every later response must be a 429 too."""
    codes = [response.status_code for response in responses]
    assert 429 in codes, codes
    first = codes.index(429)
    assert set(codes[first:]) == {429}, codes
    for response in responses[first:]:
        assert_refused(response)
    return first + 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("e2e-rate-limits")
    env = migrated_sqlite(tmp)
    with serve(env, tmp / "uvicorn.log") as base_url:
        yield base_url


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as client:
        yield client


@dataclass
class FreshServer:
    base_url: str
    log_path: Path

    def log_lines(self) -> list[dict[str, object]]:
        """The server's JSON log lines (anything else it printed is kept as its text)."""
        lines: list[dict[str, object]] = []
        for raw in self.log_path.read_text().splitlines():
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"text": raw}
            lines.append(parsed if isinstance(parsed, dict) else {"text": raw})
        return lines


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[FreshServer]:
    """A server of this test alone (its counters untouched), on each backend, started as an
    operator starts it: `uvicorn app.main:app`, uvicorn's defaults, default limits."""
    database_url = await create_database(request.param, tmp_path)
    try:
        env = limits_env(database_url)
        migrate = alembic_upgrade(env)
        assert migrate.returncode == 0, migrate.stderr
        with serve(env, tmp_path / "uvicorn.log") as base_url:
            yield FreshServer(base_url, tmp_path / "uvicorn.log")
    finally:
        await drop_database(database_url)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two uvicorn processes on different ports sharing one Redis under a fresh prefix."""
    redis_url = redis_server_or_skip()
    prefix = f"e2e-rl-{uuid.uuid4().hex}"
    tmp = tmp_path_factory.mktemp("e2e-rate-limits-redis")
    env = migrated_sqlite(tmp, REDIS_URL=redis_url, RATE_LIMIT_KEY_PREFIX=prefix)
    try:
        with ExitStack() as stack:
            first = stack.enter_context(serve(env, tmp / "uvicorn-1.log"))
            second = stack.enter_context(serve(env, tmp / "uvicorn-2.log"))
            yield first, second
    finally:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


class TestDefaultLimits:
    def test_failed_logins_for_one_account_refused_by_the_sixth(self, http: httpx.Client) -> None:
        email = new_email()
        responses = [login(http, email, "not the password") for _ in range(7)]
        assert [response.status_code for response in responses] == [401] * 5 + [429] * 2
        for response in responses[:5]:
            assert_problem(response, 401)
            assert response.headers["ratelimit-policy"] == DEFAULT_LOGIN_POLICY
        assert first_refusal(responses) == 6
        assert assert_refused(responses[5]) <= 60

    def test_rotating_forwarded_for_is_refused_by_the_21st(self, http: httpx.Client) -> None:
        responses = [
            http.post(
                "/api/v1/auth/token",
                data={"username": new_email(), "password": "not the password"},
                headers={"X-Forwarded-For": f"198.51.100.{number}"},
            )
            for number in range(1, 26)
        ]
        assert first_refusal(responses) <= 21

    def test_rotating_forwarded_for_with_odd_ports_is_refused_by_the_21st(
        self, http: httpx.Client
    ) -> None:
        # uvicorn reads "198.51.100.7:x" as the host "198.51.100.7:x"; the limiter must still
        # see that the peer came from the header.
        responses = [
            http.post(
                "/api/v1/auth/token",
                data={"username": new_email(), "password": "not the password"},
                headers={"X-Forwarded-For": f"198.51.100.{number}:x"},
            )
            for number in range(1, 26)
        ]
        assert first_refusal(responses) <= 21

    def test_registrations_refused_by_the_eleventh(self, http: httpx.Client) -> None:
        responses = [register(http, new_email()) for _ in range(12)]
        refused_at = first_refusal(responses)
        assert refused_at <= 11
        for response in responses[: refused_at - 1]:
            assert response.status_code == 201, response.text
            assert response.headers["ratelimit-policy"] == DEFAULT_REGISTER_POLICY

    @pytest.mark.parametrize(
        "value",
        [b"garbage", b"[", b"1.2.3.4:abc, ,", b"x" * 2000, b"1.2.3.4:\xb2", b"[::1]:\xb3"],
        ids=["word", "bracket", "bad-port", "long", "superscript-port", "superscript-v6-port"],
    )
    def test_garbage_forwarded_for_is_never_a_500(self, http: httpx.Client, value: bytes) -> None:
        response = http.post(
            "/api/v1/auth/token",
            data={"username": new_email(), "password": "not the password"},
            headers={b"X-Forwarded-For": value},
        )
        assert response.status_code in {401, 429}, response.text
        assert_problem(response, response.status_code)


class TestHostileClientProbes:
    """The issue's probes, black box, on a fresh server of each backend."""

    def test_forwarded_for_buys_no_second_bucket(self, fresh_server: FreshServer) -> None:
        emails: list[str] = []

        def failed_login(http: httpx.Client, headers: dict[str, str]) -> httpx.Response:
            emails.append(new_email())
            return http.post(
                "/api/v1/auth/token",
                data={"username": emails[-1], "password": "not the password"},
                headers=headers,
            )

        with httpx.Client(base_url=fresh_server.base_url, timeout=10) as http:
            direct = [failed_login(http, {}) for _ in range(22)]
            forwarded = [
                failed_login(http, {"X-Forwarded-For": f"10.0.{n}.{n}"}) for n in range(25)
            ]
        assert [r.status_code for r in direct] == [401] * 20 + [429] * 2
        assert [r.status_code for r in forwarded] == [429] * 25
        for response in forwarded:
            assert_refused(response)
        # Normal traffic, refusals included: no error-level line, and no email in any line.
        lines = fresh_server.log_lines()
        assert lines
        assert [line for line in lines if line.get("level") in {"error", "critical"}] == []
        logged = fresh_server.log_path.read_text().lower()
        assert [email for email in emails if email.lower() in logged] == []

    def test_bad_refreshes_and_unauthenticated_requests_are_limited_per_address(
        self, fresh_server: FreshServer
    ) -> None:
        with httpx.Client(base_url=fresh_server.base_url, timeout=10) as http:
            refreshes = [
                http.post(
                    "/api/v1/auth/refresh",
                    json={"refresh_token": f"guess-{n}"},
                    headers={"X-Forwarded-For": f"10.1.{n % 250}.1"} if n % 2 else {},
                )
                for n in range(300)
            ]
            unauthenticated = [
                http.get("/api/v1/tasks", headers={"Authorization": "Bearer a.b.c"}),
                http.get("/api/v1/users/me"),
                http.post("/api/v1/auth/logout", json={"refresh_token": "guess"}),
            ]
            probe = http.get("/healthz")
        codes = [response.status_code for response in refreshes]
        assert codes == [401] * 60 + [429] * 240
        assert refreshes[0].headers["ratelimit-policy"] == DEFAULT_ANONYMOUS_POLICY
        for response in [*refreshes[60:], *unauthenticated]:
            assert_refused(response)
        assert probe.status_code == 200  # the probes are not limited


class TestMetricsToken:
    def test_metrics_need_the_token_when_it_is_set(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        token = "e2e-metrics-" + uuid.uuid4().hex
        tmp = tmp_path_factory.mktemp("e2e-metrics-token")
        env = migrated_sqlite(tmp, METRICS_TOKEN=token)
        with serve(env, tmp / "uvicorn.log") as base_url:
            with httpx.Client(base_url=base_url, timeout=10) as http:
                anonymous = http.get("/metrics")
                wrong = http.get("/metrics", headers={"Authorization": "Bearer wrong"})
                scraped = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert_problem(anonymous, 401)
        assert_problem(wrong, 401)
        assert scraped.status_code == 200
        assert "http_requests_total" in scraped.text
        assert token not in (tmp / "uvicorn.log").read_text()


class TestSharedRedis:
    def test_failed_logins_alternated_across_processes(self, servers: tuple[str, str]) -> None:
        assert servers[0] != servers[1]
        email = new_email()
        with (
            httpx.Client(base_url=servers[0], timeout=10) as first,
            httpx.Client(base_url=servers[1], timeout=10) as second,
        ):
            responses = [login((first, second)[n % 2], email, "not it") for n in range(10)]
        accepted = [response for response in responses if response.status_code != 429]
        assert len(accepted) <= 5
        assert [response.status_code for response in responses] == [401] * 5 + [429] * 5
        assert first_refusal(responses) == 6

    def test_registration_and_login_work_across_processes(self, servers: tuple[str, str]) -> None:
        email = new_email()
        with (
            httpx.Client(base_url=servers[0], timeout=10) as first,
            httpx.Client(base_url=servers[1], timeout=10) as second,
        ):
            assert register(first, email).status_code == 201
            token = login(second, email, USER_PASSWORD)
        assert token.status_code == 200, token.text
        assert token.headers["ratelimit-policy"] == DEFAULT_LOGIN_POLICY
