"""Rate limits with `REDIS_URL` (catalogue 50-51): shared counters, and a Redis that fails.

Shared counters need a Redis server: TEST_REDIS_URL or redis://127.0.0.1:6379/0. When it does
not answer these tests are skipped with "REDIS UNREACHABLE" in the reason, except with
CI=true, where that is a failure. Every test counts under its own key prefix and deletes only
the keys under that prefix. The outage tests need no Redis: they point the service at a port
where nothing listens, or at a relay of this test that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis

from app.api import rate_limit
from tests.api.test_rate_limits import (
    NOT_SERVED_LIMITS,
    OTHER_PEER,
    PEER,
    REFRESH_URL,
    TASKS_URL,
    AppMaker,
    assert_counted_against_nothing,
    assert_rate_limited,
    bearer,
    http_client,
    login,
    rate_limit_state,
    register,
    requests_not_served,
    statuses,
)
from tests.conftest import REDIS_UNREACHABLE, TEST_PASSWORD, running_in_ci
from tests.support import assert_problem

REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
# Nothing listens on port 1: connections are refused at once.
REFUSING_REDIS_URL = "redis://:not-logged-secret@127.0.0.1:1/0"
# A bound on each request's time during an outage: it is about not stalling (the Redis
# timeout is 0.25 s), not a benchmark.
MAX_REQUEST_SECONDS = 1.0
MAX_LOOP_STALL_SECONDS = 0.5


def redis_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def redis_server_or_skip() -> str:
    where = "{}:{}".format(*redis_address(REDIS_URL))
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = (
            f"{REDIS_UNREACHABLE} at {where} ({type(exc).__name__}): the shared-counter tests "
            "did not run. Start Redis there or set TEST_REDIS_URL."
        )
        if running_in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
async def redis_maker(database_url: str) -> AsyncIterator[AppMaker]:
    """Apps on the real Redis, all under one key prefix of this test (deleted afterwards)."""
    url = redis_server_or_skip()
    maker = AppMaker(database_url, redis_url=url)
    try:
        yield maker
    finally:
        await maker.aclose()
        client = redis.Redis.from_url(url)
        try:
            # Only this test's keys: its prefix carries a fresh uuid.
            keys = list(client.scan_iter(match=f"{maker.key_prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
async def outage_maker(database_url: str) -> AsyncIterator[AppMaker]:
    maker = AppMaker(database_url)
    try:
        yield maker
    finally:
        await maker.aclose()


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            record.msg
            for record in self.records
            if isinstance(record.msg, dict) and record.msg.get("event") == name
        ]


@pytest.fixture
def limiter_log() -> Iterator[RecordingHandler]:
    handler = RecordingHandler()
    logger = logging.getLogger("app.rate_limit")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


class RedisRelay:
    """A TCP relay in front of a Redis server that the test can switch.

    "up" forwards; "refuse" closes every connection and each new one at once; "silent"
    accepts and reads but never answers (a hung or black-holed server).
    """

    def __init__(self, target: tuple[str, int] | None) -> None:
        self.target = target
        self.mode = "up" if target else "silent"
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, like: str = "redis://127.0.0.1/0") -> str:
        """Listen; returns `like` (credentials, database) pointed at the relay."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(like)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse":
            for writer in list(self._writers):
                writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if self.mode == "refuse":
                return
            if self.mode == "silent" or self.target is None:
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.close()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.mode == "silent":
                    continue
                if self.mode != "up":
                    break
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)


@contextlib.asynccontextmanager
async def event_loop_watch() -> AsyncIterator[list[float]]:
    """Gaps between the wake-ups of a 10 ms ticker: a stalled event loop shows as a gap."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(tick())
    try:
        yield gaps
    finally:
        stop.set()
        await task


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


class ShiftedClock:
    """Stands in for `time` inside app.api.rate_limit; its monotonic() can be moved ahead."""

    def __init__(self) -> None:
        self.shift = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.shift

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    shifted = ShiftedClock()
    monkeypatch.setattr(rate_limit, "time", shifted)
    return shifted


class TestSharedCounters:
    async def test_two_instances_share_the_account_quota(self, redis_maker: AppMaker) -> None:
        first = await redis_maker(rate_limit_login_account="3/minute")
        second = await redis_maker(rate_limit_login_account="3/minute")
        email = redis_maker.email()
        async with http_client(first) as one, http_client(second) as two:
            responses = [await login((one, two)[n % 2], email) for n in range(8)]

        accepted = [response for response in responses if response.status_code != 429]
        assert len(accepted) <= 3
        assert statuses(responses) == [401, 401, 401] + [429] * 5
        assert [rate_limit_state(r)["login-account"].remaining for r in accepted] == [2, 1, 0]
        for response in responses[3:]:
            assert_rate_limited(response, policy="login-account")

    async def test_two_instances_share_the_ip_quota(self, redis_maker: AppMaker) -> None:
        first = await redis_maker(rate_limit_login_ip="4/minute")
        second = await redis_maker(rate_limit_login_ip="4/minute")
        async with http_client(first) as one, http_client(second) as two:
            responses = [await login((one, two)[n % 2], redis_maker.email()) for n in range(7)]
        assert statuses(responses) == [401] * 4 + [429] * 3
        for response in responses[4:]:
            assert_rate_limited(response, policy="login-ip")

    async def test_success_on_one_instance_clears_the_count_on_both(
        self, redis_maker: AppMaker
    ) -> None:
        first = await redis_maker(rate_limit_login_account="3/minute")
        second = await redis_maker(rate_limit_login_account="3/minute")
        user = await redis_maker.add_user(first)
        async with http_client(first) as one, http_client(second) as two:
            before = [await login(one, user.email), await login(two, user.email)]
            success = await login(two, user.email, TEST_PASSWORD)
            after = [await login((one, two)[n % 2], user.email) for n in range(4)]
        assert statuses(before) == [401, 401]
        assert success.status_code == 200, success.text
        assert statuses(after) == [401, 401, 401, 429]

    async def test_two_instances_share_the_registration_quota(self, redis_maker: AppMaker) -> None:
        first = await redis_maker(rate_limit_register_ip="2/hour")
        second = await redis_maker(rate_limit_register_ip="2/hour")
        emails = [redis_maker.email() for _ in range(4)]
        async with http_client(first) as one, http_client(second) as two:
            responses = [await register((one, two)[n % 2], emails[n]) for n in range(4)]
        assert statuses(responses) == [201, 201, 429, 429]
        for email, response in zip(emails[2:], responses[2:], strict=True):
            assert_rate_limited(response, policy="register-ip")
            assert not await redis_maker.user_exists(first, email)

    async def test_two_instances_share_the_user_quota(self, redis_maker: AppMaker) -> None:
        first = await redis_maker(rate_limit_user="3/minute")
        second = await redis_maker(rate_limit_user="3/minute")
        alice = await redis_maker.add_user(first)
        async with http_client(first) as one, http_client(second) as two:
            responses = [
                await (one, two)[n % 2].get(TASKS_URL, headers=bearer(first, alice))
                for n in range(5)
            ]
        assert statuses(responses) == [200, 200, 200, 429, 429]
        assert [rate_limit_state(r)["user"].remaining for r in responses[:3]] == [2, 1, 0]

    async def test_key_prefix_separates_deployments(self, redis_maker: AppMaker) -> None:
        first = await redis_maker(rate_limit_login_account="2/minute")
        other_deployment = await redis_maker(
            rate_limit_login_account="2/minute",
            rate_limit_key_prefix=f"{redis_maker.key_prefix}-other",
        )
        email = redis_maker.email()
        async with http_client(first) as one, http_client(other_deployment) as two:
            first_responses = [await login(one, email) for _ in range(3)]
            other_responses = [await login(two, email) for _ in range(3)]
        assert statuses(first_responses) == [401, 401, 429]
        assert statuses(other_responses) == [401, 401, 429]

    async def test_counters_are_kept_in_redis_under_the_prefix(self, redis_maker: AppMaker) -> None:
        app = await redis_maker(rate_limit_login_account="3/minute")
        async with http_client(app) as client:
            assert (await login(client, redis_maker.email())).status_code == 401
        server = redis.Redis.from_url(REDIS_URL)
        try:
            keys = [key.decode() for key in server.scan_iter(match=f"{redis_maker.key_prefix}:*")]
        finally:
            server.close()
        assert any("login-account" in key for key in keys), keys
        assert any("login-ip" in key for key in keys), keys

    async def test_requests_answered_503_spend_no_quota(self, redis_maker: AppMaker) -> None:
        # The hits given back are taken out of Redis's lists (limits has no call for it).
        app = await redis_maker.without_its_database(**NOT_SERVED_LIMITS)
        assert_counted_against_nothing(await requests_not_served(app, redis_maker.email(), 5))
        other_instance = await redis_maker.without_its_database(**NOT_SERVED_LIMITS)
        assert_counted_against_nothing(
            await requests_not_served(other_instance, redis_maker.email(), 2)
        )

    async def test_keys_name_no_email_and_no_address(self, redis_maker: AppMaker) -> None:
        # Redis (its dumps, its MONITOR, its slow log) sees who was counted only as a
        # keyed hash: no email, no client address, no user id.
        app = await redis_maker(rate_limit_login_account="3/minute")
        user = await redis_maker.add_user(app)
        email = redis_maker.email()
        async with http_client(app) as client:
            assert (await login(client, email)).status_code == 401
            assert (await login(client, user.email, TEST_PASSWORD)).status_code == 200
            assert (await client.get(TASKS_URL, headers=bearer(app, user))).status_code == 200
            assert (await register(client, redis_maker.email())).status_code == 201
            assert (await client.get(TASKS_URL)).status_code == 401
        server = redis.Redis.from_url(REDIS_URL)
        try:
            keys = [key.decode() for key in server.scan_iter(match=f"{redis_maker.key_prefix}:*")]
        finally:
            server.close()
        text = " ".join(keys).lower()
        for secret in (email, user.email, email.split("@")[0], PEER[0], f"/user/{user.id}/"):
            assert secret.lower() not in text, (secret, keys)
        policies = {"login-account", "login-ip", "register-ip", "user", "anonymous-ip"}
        assert {name for name in policies if any(f"/{name}/" in key for key in keys)} == policies

    async def test_a_refused_attempt_spends_nothing_on_any_instance(
        self, redis_maker: AppMaker
    ) -> None:
        limits = {"rate_limit_login_account": "3/minute", "rate_limit_login_ip": "2/minute"}
        first, second = await redis_maker(**limits), await redis_maker(**limits)
        owner = await redis_maker.add_user(first)
        async with http_client(first, PEER) as attacker, http_client(second, OTHER_PEER) as home:
            spent = [await login(attacker, redis_maker.email()) for _ in range(2)]
            refused = [await login(attacker, owner.email) for _ in range(6)]
            owner_login = await login(home, owner.email, TEST_PASSWORD)
        assert statuses(spent) == [401, 401]
        for response in refused:
            assert_rate_limited(response, policy="login-ip")
        assert owner_login.status_code == 200, owner_login.text

    async def test_two_instances_share_the_anonymous_quota(self, redis_maker: AppMaker) -> None:
        first = await redis_maker(rate_limit_anonymous_ip="3/minute")
        second = await redis_maker(rate_limit_anonymous_ip="3/minute")
        async with http_client(first) as one, http_client(second) as two:
            responses = [
                await (one, two)[n % 2].post(REFRESH_URL, json={"refresh_token": "not one"})
                for n in range(5)
            ]
        assert statuses(responses) == [401, 401, 401, 429, 429]
        for response in responses[3:]:
            assert_rate_limited(response, policy="anonymous-ip")


class TestRedisUnavailable:
    @pytest.mark.parametrize("outage", ["refused", "silent"])
    async def test_answered_limited_per_process_never_500_and_logged(
        self, outage_maker: AppMaker, limiter_log: RecordingHandler, outage: str
    ) -> None:
        relay = RedisRelay(None)  # accepts, reads, never answers
        redis_url = REFUSING_REDIS_URL if outage == "refused" else await relay.start()
        try:
            app = await outage_maker(redis_url=redis_url, rate_limit_login_account="3/minute")
            user = await outage_maker.add_user(app)
            async with http_client(app) as client, event_loop_watch() as gaps:
                timed_logins = [await timed(login(client, user.email)) for _ in range(5)]
                created, registration_time = await timed(register(client, outage_maker.email()))
                listed, list_time = await timed(client.get(TASKS_URL, headers=bearer(app, user)))
        finally:
            await relay.close()

        logins = [response for response, _ in timed_logins]
        assert statuses(logins) == [401, 401, 401, 429, 429]  # still limited, in this process
        for response in logins[3:]:
            assert_rate_limited(response, policy="login-account")
        assert created.status_code == 201, created.text
        assert listed.status_code == 200, listed.text
        rate_limit_state(listed)
        seconds = [*(elapsed for _, elapsed in timed_logins), registration_time, list_time]
        assert max(seconds) < MAX_REQUEST_SECONDS, seconds
        assert max(gaps) < MAX_LOOP_STALL_SECONDS, max(gaps)

        warnings = limiter_log.events("rate_limit_storage_unavailable")
        assert warnings, [record.msg for record in limiter_log.records]
        assert all(event["level"] == "warning" for event in warnings)
        assert "not-logged-secret" not in repr([record.msg for record in limiter_log.records])

    async def test_redis_is_not_asked_again_within_the_retry_interval(
        self, outage_maker: AppMaker, limiter_log: RecordingHandler, clock: ShiftedClock
    ) -> None:
        relay = RedisRelay(None)
        redis_url = await relay.start()
        try:
            app = await outage_maker(redis_url=redis_url)
            async with http_client(app) as client:
                first = await login(client, outage_maker.email())
                tried = relay.connections
                during = [await login(client, outage_maker.email()) for _ in range(3)]
                tried_during_fallback = relay.connections - tried
                clock.shift = rate_limit.REDIS_RETRY_AFTER_SECONDS + 0.1
                retried, retried_time = await timed(login(client, outage_maker.email()))
        finally:
            await relay.close()
        assert statuses([first, *during]) == [401] * 4
        assert tried >= 1
        assert tried_during_fallback == 0
        assert retried.status_code == 401
        assert retried_time < MAX_REQUEST_SECONDS
        assert relay.connections > tried
        assert len(limiter_log.events("rate_limit_storage_unavailable")) == 2

    async def test_goes_back_to_redis_after_the_retry_interval(
        self, redis_maker: AppMaker, limiter_log: RecordingHandler, clock: ShiftedClock
    ) -> None:
        relay = RedisRelay(redis_address(REDIS_URL))
        relayed_url = await relay.start(like=REDIS_URL)
        try:
            relayed = await redis_maker(redis_url=relayed_url, rate_limit_login_account="3/minute")
            direct = await redis_maker(rate_limit_login_account="3/minute")
            email = redis_maker.email()
            async with http_client(relayed) as one, http_client(direct) as two:
                # Both on Redis: one shared count.
                shared = await login(one, email)
                relay.set_mode("refuse")
                during = [await login(one, email) for _ in range(3)]
                relay.set_mode("up")
                # Within the retry interval the relayed instance keeps its own count.
                still_local = await login(one, email)
                direct_view = await login(two, email)
                clock.shift = rate_limit.REDIS_RETRY_AFTER_SECONDS + 0.1
                back = await login(one, email)
                after = [await login(one, email), await login(two, email)]
        finally:
            await relay.close()

        assert shared.status_code == 401
        assert rate_limit_state(shared)["login-account"].remaining == 2
        # The fallback counts from zero in process memory: 3 accepted, then limited.
        assert statuses(during) == [401, 401, 401]
        assert_rate_limited(still_local, policy="login-account")
        # Redis saw only the first attempt, and the direct instance adds the second.
        assert direct_view.status_code == 401
        assert rate_limit_state(direct_view)["login-account"].remaining == 1
        # Back on Redis: the third attempt there, then the shared quota is spent.
        assert back.status_code == 401, back.text
        assert rate_limit_state(back)["login-account"].remaining == 0
        for response in after:
            assert_rate_limited(response, policy="login-account")
        assert len(limiter_log.events("rate_limit_storage_unavailable")) == 1

    async def test_outage_with_the_default_limits_is_never_a_500(
        self, outage_maker: AppMaker
    ) -> None:
        app = await outage_maker(
            redis_url=REFUSING_REDIS_URL,
            rate_limit_login_account="5/minute",
            rate_limit_login_ip="20/minute",
            rate_limit_register_ip="10/hour",
            rate_limit_user="600/minute",
        )
        async with http_client(app) as client:
            responses = [await login(client, outage_maker.email()) for _ in range(3)]
        for response in responses:
            assert_problem(response, 401)
            assert set(rate_limit_state(response)) == {"login-account", "login-ip"}
