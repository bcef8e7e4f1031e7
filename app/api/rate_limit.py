"""Rate limits: login attempts, registrations, per-user requests, and anonymous requests.

Counters live in process memory, or in Redis (the `limits` package's moving window) when
`REDIS_URL` is set so that every worker and every instance shares them. When Redis does not
answer (timeouts of a quarter second), the limiter logs it and falls back to this process's
memory counters for a few seconds before trying Redis again: requests are still limited, per
process, never refused with a 500, and the event loop never waits longer than the timeout.
See docs/decisions/0013-rate-limits.md.

A request is counted only when every limit that applies to it has room: a refused request
counts against nothing, so a flood of refused attempts neither keeps a window full nor spends
another policy's quota (an account's, an address's). Nor does a request the service could not
serve (a 503: the database unavailable): its counts are given back (`give_back`), so that
clients retrying through an outage do not find their logins and registrations refused after
it.

What identifies a client (an email, an address, a user id) is never stored or logged as it
is: counter keys carry a keyed hash of it (`pseudonym`).

Each check returns the `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-
headers) for the caller to set on the `Response` it declares (FastAPI's way for a dependency
to set headers; `CompiledRoute` sends them with every answer of the route, errors included);
a refusal is a 429 problem that carries them, with `Retry-After`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import structlog
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.util import WindowStats
from redis.asyncio import Redis
from starlette.requests import Request

from app.core.config import Settings
from app.core.errors import TooManyRequests
from app.core.security import derive_key

log = structlog.get_logger("app.rate_limit")

REDIS_TIMEOUT_SECONDS = 0.25
REDIS_RETRY_AFTER_SECONDS = 5.0
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Headers = dict[str, str]

# Where a request keeps what it was counted against, for `give_back` (the request's state).
_COUNTED_STATE = "rate_limit_counted"

# The client of a request whose address the ASGI server took from X-Forwarded-For while
# TRUSTED_PROXIES is empty, and of every loopback peer: one bucket. The server rewrites only
# for peers it trusts, by default loopback (uvicorn's and gunicorn's --forwarded-allow-ips),
# so that is where such a request came from, whatever the header says.
SERVER_PROXY_CLIENT = "asgi-server-proxy"
UNKNOWN_CLIENT = "unknown"


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    limit: RateLimitItem

    @property
    def window_seconds(self) -> int:
        return int(self.limit.get_expiry())


@dataclass(frozen=True, slots=True)
class Verdict:
    policy: Policy
    allowed: bool
    remaining: int
    reset_in: int


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.login_account = Policy("login-account", parse_limit(settings.rate_limit_login_account))
        self.login_ip = Policy("login-ip", parse_limit(settings.rate_limit_login_ip))
        self.register_ip = Policy("register-ip", parse_limit(settings.rate_limit_register_ip))
        self.user = Policy("user", parse_limit(settings.rate_limit_user))
        self.anonymous_ip = Policy("anonymous-ip", parse_limit(settings.rate_limit_anonymous_ip))
        self._trusted: list[_IPNetwork] = [
            ipaddress.ip_network(network, strict=False) for network in settings.trusted_proxies
        ]
        # Instances sharing Redis share SECRET_KEY (their tokens must verify everywhere), so
        # they derive the same pseudonyms.
        self._pseudonym_key = derive_key(settings.signing_key, "rate-limit-keys")
        self._memory = MemoryWindows()
        self._redis: MovingWindowRateLimiter | None = None
        if settings.redis_url:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=settings.rate_limit_key_prefix,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._redis = MovingWindowRateLimiter(storage)
        self._redis_down_until = 0.0

    # --- the checks the routes use -------------------------------------------------------

    async def hit_login(self, request: Request, account: str) -> Headers:
        """Count a login attempt for the account and the client address; 429 when spent."""
        return await self._hit(
            request,
            (self.login_account, account),
            (self.login_ip, self.client(request)),
        )

    async def login_succeeded(self, account: str) -> None:
        """A correct password clears the account's count: the limit is on failures."""
        if self.enabled:
            await self._call("clear", self.login_account, self.pseudonym(account))

    async def hit_registration(self, request: Request) -> Headers:
        return await self._hit(request, (self.register_ip, self.client(request)))

    async def hit_user(self, request: Request, user_id: int) -> Headers:
        return await self._hit(request, (self.user, str(user_id)))

    async def hit_anonymous(self, request: Request) -> Headers:
        """Count a request that carries no valid credential (a refresh or logout, an
        authenticated route without a valid access token) for the client address."""
        return await self._hit(request, (self.anonymous_ip, self.client(request)))

    async def give_back(self, request: Request) -> None:
        """Take back what this request was counted against: it was not served (a 503)."""
        counted: list[tuple[Policy, str]] = request.scope.get("state", {}).pop(_COUNTED_STATE, [])
        for policy, key in counted:
            await self._call("give_back", policy, key)

    def client(self, request: Request) -> str:
        return client_ip(request, self._trusted)

    def pseudonym(self, identity: str) -> str:
        """What a counter key holds instead of an email, address or id: a keyed hash, so
        that neither Redis nor a log line ever shows who was counted."""
        data = identity.encode("utf-8", "surrogatepass")
        return hmac.new(self._pseudonym_key, data, hashlib.sha256).hexdigest()[:32]

    # --- machinery -------------------------------------------------------------------------

    async def _hit(self, request: Request, *checks: tuple[Policy, str]) -> Headers:
        """Count the request against every policy if all have room; the headers of their
        state, or TooManyRequests (with them) when one is spent."""
        if not self.enabled:
            return {}
        keyed = [(policy, self.pseudonym(identity)) for policy, identity in checks]
        verdicts = [await self._state(policy, key) for policy, key in keyed]
        if all(verdict.allowed for verdict in verdicts):
            counted = request.scope.setdefault("state", {}).setdefault(_COUNTED_STATE, [])
            for position, (policy, key) in enumerate(keyed):
                if await self._call("hit", policy, key):
                    counted.append((policy, key))
                    verdicts[position] = _counted(verdicts[position])
                else:
                    # A concurrent request took the last place since the state was read.
                    # The policies counted before this one keep the count (a race only).
                    verdicts[position] = await self._state(policy, key, refused=True)
                    break
        headers = rate_limit_headers(verdicts)
        refused = [verdict for verdict in verdicts if not verdict.allowed]
        if refused:
            retry_after = max(max(verdict.reset_in for verdict in refused), 1)
            raise TooManyRequests(
                f"Too many requests; retry in {retry_after} seconds.",
                headers={**headers, "Retry-After": str(retry_after)},
            )
        return headers

    async def _state(self, policy: Policy, key: str, *, refused: bool = False) -> Verdict:
        stats: WindowStats = await self._call("get_window_stats", policy, key)
        remaining = 0 if refused else max(stats.remaining, 0)
        reset_in = max(math.ceil(stats.reset_time - time.time()), 0)
        return Verdict(policy, remaining > 0, remaining, reset_in)

    async def _call(self, method: str, policy: Policy, key: str) -> Any:
        identifiers = (policy.name, key)
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                if method == "give_back":
                    return await _give_back_in_redis(self._redis, policy.limit, *identifiers)
                return await getattr(self._redis, method)(policy.limit, *identifiers)
            except Exception as exc:  # any storage failure: degrade, never a 500
                self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
                log.warning(
                    "rate_limit_storage_unavailable",
                    error_class=type(exc).__name__,
                    fallback="process memory",
                    retry_in_seconds=REDIS_RETRY_AFTER_SECONDS,
                )
        return await getattr(self._memory, method)(policy.limit, *identifiers)


async def _give_back_in_redis(
    limiter: MovingWindowRateLimiter, item: RateLimitItem, *identifiers: str
) -> None:
    """Remove the newest hit of a moving window kept in Redis. limits keeps a window as a
    list of hit times, newest first (its `acquire_moving_window.lua`), and has no call that
    takes one back; tests/api/test_rate_limits_redis.py holds this to the pinned version."""
    storage = limiter.storage
    assert isinstance(storage, RedisStorage)
    bridge = storage.bridge
    assert isinstance(bridge, RedispyBridge)  # implementation="redispy" (RateLimiter.__init__)
    connection = cast(Redis, bridge.get_connection())  # limits' protocol omits LPOP
    await connection.lpop(bridge.prefixed_key(item.key_for(*identifiers)))


def _counted(before: Verdict) -> Verdict:
    """The state after this request was counted, from the state read before it."""
    quota = before.policy.limit.amount
    reset_in = before.policy.window_seconds if before.remaining >= quota else before.reset_in
    return Verdict(before.policy, True, before.remaining - 1, reset_in)


class MemoryWindows:
    """Moving windows in this process's memory, with the three calls of limits'
    `MovingWindowRateLimiter` the limiter makes (`hit`, `get_window_stats`, `clear`), and
    `give_back`, which takes back the newest hit.

    limits' own MemoryStorage expires entries in a background task that races `clear` (a
    KeyError logged as "Task exception was never retrieved", the key in the message). Here
    nothing runs in the background and no call awaits: each is atomic on the event loop.
    Keys whose last hit has left its window are dropped as later calls pass, oldest first.
    """

    def __init__(self) -> None:
        # Window length -> key -> times of its hits in the window, oldest first. Each inner
        # dict is in order of last hit (a hit moves its key to the end), so the keys whose
        # window has passed are always at its front.
        self._windows: dict[int, dict[str, deque[float]]] = {}

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        now = time.time()
        keys, key, hits = self._current(item, identifiers, now)
        if len(hits) >= item.amount:
            return False
        keys.pop(key, None)
        hits.append(now)
        keys[key] = hits
        return True

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        now = time.time()
        _, _, hits = self._current(item, identifiers, now)
        if not hits:
            return WindowStats(now + item.get_expiry(), item.amount)
        return WindowStats(hits[0] + item.get_expiry(), item.amount - len(hits))

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        self._windows.get(item.get_expiry(), {}).pop(item.key_for(*identifiers), None)

    async def give_back(self, item: RateLimitItem, *identifiers: str) -> None:
        hits = self._windows.get(item.get_expiry(), {}).get(item.key_for(*identifiers))
        if hits:
            hits.pop()

    def _current(
        self, item: RateLimitItem, identifiers: tuple[str, ...], now: float
    ) -> tuple[dict[str, deque[float]], str, deque[float]]:
        """The key's dict, the key, and its hits still in the window (oldest first)."""
        expiry = item.get_expiry()
        start = now - expiry
        keys = self._windows.setdefault(expiry, {})
        while keys:
            oldest = next(iter(keys))
            if keys[oldest] and keys[oldest][-1] >= start:
                break
            del keys[oldest]
        key = item.key_for(*identifiers)
        hits = keys.get(key)
        if hits is None:
            return keys, key, deque()
        while hits and hits[0] < start:
            hits.popleft()
        return keys, key, hits


def rate_limit_headers(verdicts: list[Verdict]) -> Headers:
    """`RateLimit-Policy` and `RateLimit` as structured-field lists, one item per policy."""
    return {
        "RateLimit-Policy": ", ".join(
            f'"{v.policy.name}";q={v.policy.limit.amount};w={v.policy.window_seconds}'
            for v in verdicts
        ),
        "RateLimit": ", ".join(
            f'"{v.policy.name}";r={v.remaining};t={v.reset_in}' for v in verdicts
        ),
    }


# --- the client's address ------------------------------------------------------------------


def client_ip(request: Request, trusted: list[_IPNetwork]) -> str:
    """The address to count a client by; X-Forwarded-For only via TRUSTED_PROXIES.

    The ASGI server may have replaced the TCP peer already: uvicorn's default --proxy-headers
    does, from X-Forwarded-For, when the peer is loopback (`--forwarded-allow-ips`, which may
    be set to anything). Such a peer is recognised: it is one of the header's entries, with
    that entry's port or port 0, or not an IP address at all, which no TCP peer is.

    - TRUSTED_PROXIES empty: nothing in X-Forwarded-For is believed, whoever rewrote the
      peer. A rewritten peer counts as the server's proxy (`SERVER_PROXY_CLIENT`), which is
      also what every loopback peer counts as, with or without the header: rotating the
      header changes no bucket.
    - TRUSTED_PROXIES set: a peer the server rewrote stands (the README asks for
      `--forwarded-allow-ips` equal to TRUSTED_PROXIES, so the server chose as this would);
      otherwise a trusted peer's header is read here: its rightmost entry that is not itself
      a trusted proxy.

    A peer that is not an IP address at all counts as `SERVER_PROXY_CLIENT` either way.
    """
    client = request.scope.get("client")
    if not client:
        return UNKNOWN_CLIENT
    host, port = str(client[0]), client[1]
    address = _address(host)
    forwarded = _forwarded_entries(request)
    rewritten = bool(forwarded) and _rewritten_by_server(address, port, forwarded)
    if address is None or (not trusted and (rewritten or _is_loopback(address))):
        return SERVER_PROXY_CLIENT
    if forwarded and not rewritten and _in(address, trusted):
        return _rightmost_untrusted(forwarded, trusted) or str(address)
    return str(address)


def _forwarded_entries(request: Request) -> list[str]:
    values = request.headers.getlist("x-forwarded-for")
    return [entry.strip() for value in values for entry in value.split(",") if entry.strip()]


def _split_entry(entry: str) -> tuple[str, int | None]:
    """An X-Forwarded-For entry's host and port, read as uvicorn reads them (`1.2.3.4`,
    `1.2.3.4:80`, `[::1]:80`, `[::1]`, `::1`); the port None when there is none."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket:
            return entry, None
        return host, _port(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(port)
    return entry, None


def _port(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _address(host: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _rewritten_by_server(address: _IPAddress | None, port: Any, entries: list[str]) -> bool:
    """Whether the ASGI server replaced the peer with an X-Forwarded-For entry.

    A real TCP peer is an IP address with a port other than 0. A client that names its own
    address in the header is not taken for a rewritten one unless it names its port too.
    """
    if address is None:
        return True
    for entry in entries:
        entry_host, entry_port = _split_entry(entry)
        if _address(entry_host) == address and port in (0, entry_port):
            return True
    return False


def _is_loopback(address: _IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _in(address: _IPAddress | None, trusted: list[_IPNetwork]) -> bool:
    return address is not None and any(address in network for network in trusted)


def _rightmost_untrusted(entries: list[str], trusted: list[_IPNetwork]) -> str | None:
    for entry in reversed(entries):
        address = _address(_split_entry(entry)[0])
        if address is None:
            return None  # garbage in the chain: believe none of it
        if not _in(address, trusted):
            return str(address)
    return None
