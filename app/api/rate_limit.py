"""Rate limits on the `limits` package: login attempts, registrations, per-user requests.

Counters live in process memory, or in Redis when `REDIS_URL` is set so that every worker
and every instance shares them. When Redis does not answer (timeouts of a quarter second),
the limiter logs it and falls back to this process's memory counters for a few seconds
before trying Redis again: requests are still limited, per process, never refused with a
500, and the event loop never waits longer than the timeout. See
docs/decisions/0013-rate-limits.md.

Each check returns the `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-
headers) for the caller to set on the `Response` it declares (FastAPI's way for a dependency
to set headers; `CompiledRoute` sends them with every answer of the route, errors included);
a refusal is a 429 problem that carries them, with `Retry-After`.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from app.core.config import Settings
from app.core.errors import TooManyRequests

log = structlog.get_logger("app.rate_limit")

REDIS_TIMEOUT_SECONDS = 0.25
REDIS_RETRY_AFTER_SECONDS = 5.0
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Headers = dict[str, str]


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
        self._trusted: list[_IPNetwork] = [
            ipaddress.ip_network(network, strict=False) for network in settings.trusted_proxies
        ]
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        if settings.redis_url:
            storage: Storage = RedisStorage(
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
            (self.login_account, account),
            (self.login_ip, client_ip(request, self._trusted)),
        )

    async def login_succeeded(self, account: str) -> None:
        """A correct password clears the account's count: the limit is on failures."""
        if self.enabled:
            await self._call("clear", self.login_account, account)

    async def hit_registration(self, request: Request) -> Headers:
        return await self._hit((self.register_ip, client_ip(request, self._trusted)))

    async def hit_user(self, user_id: int) -> Headers:
        return await self._hit((self.user, str(user_id)))

    # --- machinery -------------------------------------------------------------------------

    async def _hit(self, *checks: tuple[Policy, str]) -> Headers:
        """The headers of the checks' state; TooManyRequests (with them) when one is spent."""
        if not self.enabled:
            return {}
        verdicts = [await self._verdict(policy, key) for policy, key in checks]
        headers = rate_limit_headers(verdicts)
        refused = [verdict for verdict in verdicts if not verdict.allowed]
        if refused:
            retry_after = max(max(verdict.reset_in for verdict in refused), 1)
            raise TooManyRequests(
                f"Too many requests; retry in {retry_after} seconds.",
                headers={**headers, "Retry-After": str(retry_after)},
            )
        return headers

    async def _verdict(self, policy: Policy, key: str) -> Verdict:
        allowed = bool(await self._call("hit", policy, key))
        stats = await self._call("get_window_stats", policy, key)
        reset_in = math.ceil(stats.reset_time - time.time()) if stats else policy.window_seconds
        remaining = stats.remaining if stats else 0
        return Verdict(policy, allowed, max(remaining, 0), max(reset_in, 0))

    async def _call(self, method: str, policy: Policy, key: str) -> Any:
        identifiers = (policy.name, key)
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            try:
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


def client_ip(request: Request, trusted: list[_IPNetwork]) -> str:
    """The address to count a client by; X-Forwarded-For only via configured proxies.

    uvicorn itself (with its default --proxy-headers) replaces the peer with a forwarded
    address when the peer is loopback. Such a replaced peer is recognised because it is one
    of the X-Forwarded-For entries; without configured proxies those requests are then
    counted together, so rotating the header gains an attacker nothing.
    """
    client = request.scope.get("client") or ("unknown", 0)
    host = str(client[0])
    forwarded = _forwarded_entries(request)
    if forwarded and _is_forwarded_entry(host, forwarded):
        # The server already chose this address from the header (or the client put its own
        # address there). Without trusted proxies, all such requests share one bucket;
        # with them, the server's choice stands: re-reading the header would let a direct
        # client name any address it likes.
        return host if trusted else "forwarded-via-untrusted-proxy"
    if forwarded and _in(host, trusted):
        return _rightmost_untrusted(forwarded, trusted) or host
    return host


def _forwarded_entries(request: Request) -> list[str]:
    values = request.headers.getlist("x-forwarded-for")
    return [entry.strip() for value in values for entry in value.split(",") if entry.strip()]


def _entry_host(entry: str) -> str:
    """The host part of an X-Forwarded-For entry (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`)."""
    if entry.startswith("["):
        return entry[1:].partition("]")[0]
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


def _is_forwarded_entry(host: str, entries: list[str]) -> bool:
    """Whether the server replaced the peer with an X-Forwarded-For value.

    A real TCP peer is an IP address; anything else came from the header. The port is not
    compared: the client controls it.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return any(host in (entry, _entry_host(entry)) for entry in entries)


def _in(host: str, trusted: list[_IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def _rightmost_untrusted(entries: list[str], trusted: list[_IPNetwork]) -> str | None:
    for entry in reversed(entries):
        host = _entry_host(entry)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # garbage in the chain: believe none of it
        if not _in(host, trusted):
            return host
    return None
