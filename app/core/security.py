"""Password hashing and the access-token format: the one place that knows either.

Passwords: NFKC-normalised, then HMAC-SHA256 pre-hashed and base64-encoded before bcrypt, so
every character counts (bcrypt alone silently ignores bytes past 72, and bcrypt 5 raises on
them) and no NUL byte can reach bcrypt. See docs/decisions/0005-password-hashing.md.

Access tokens: HS256 JWTs with a pinned algorithm, an `at+jwt` type header and required
claims. Refresh tokens are opaque random strings stored only as a SHA-256 digest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import bcrypt
import jwt

from app.core.bounds import MAX_ID, MAX_VERSION

# Domain separation for the pre-hash. It is deliberately not SECRET_KEY: rotating the JWT key
# must not lock every user out. Its job is to make the bcrypt input fixed-length and NUL-free.
_PREHASH_KEY = b"tasks-api/password-prehash/v1"
_HASH_PREFIX = "bcrypt-hmac-sha256$"
# A well-formed stored hash: the prefix, then bcrypt's `$2b$<cost>$<22 salt><31 hash>`.
_STORED_HASH = re.compile(
    re.escape(_HASH_PREFIX) + r"\$2[aby]\$(?P<rounds>[0-9]{2})\$[./A-Za-z0-9]{53}"
)
MIN_ROUNDS, MAX_ROUNDS = 4, 31  # bcrypt's own bounds
# Where the cost is written in a stored hash: 1-based start and length, as SQL's substr
# counts, so that the database can tell the highest cost it stores.
STORED_HASH_PREFIX = _HASH_PREFIX
STORED_COST_SPAN = (len(_HASH_PREFIX) + len("$2b$") + 1, 2)

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "tasks-api"
JWT_AUDIENCE = "tasks-api"
ACCESS_TOKEN_TYPE = "at+jwt"
ACCESS_TOKEN_KIND = "access"
_REQUIRED_CLAIMS = ["sub", "exp", "iat", "jti", "iss", "aud", "tv", "kind"]

_T = TypeVar("_T")
# Small clock-skew allowance; documented in docs/decisions.
JWT_LEEWAY_SECONDS = 5


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def _bcrypt_input(password: str) -> bytes:
    digest = hmac.new(_PREHASH_KEY, normalize_password(password).encode("utf-8"), hashlib.sha256)
    return base64.b64encode(digest.digest())  # 44 ASCII bytes: under 72, no NUL


def hash_password(password: str, rounds: int) -> str:
    """CPU-bound (hundreds of ms at cost 12): call `hash_password_async` on the request path."""
    hashed = bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(rounds=rounds))
    return _HASH_PREFIX + hashed.decode("ascii")


def verify_password(password: str, stored: str) -> bool:
    if not stored.startswith(_HASH_PREFIX):
        return False
    try:
        return bcrypt.checkpw(_bcrypt_input(password), stored[len(_HASH_PREFIX) :].encode("ascii"))
    except ValueError:  # a corrupt stored hash must not become a 500
        return False


def hash_rounds(stored: str) -> int | None:
    """The bcrypt cost a well-formed stored hash was made with (`...$2b$12$...`), which is
    the work verifying it costs; None for anything bcrypt would refuse at once."""
    match = _STORED_HASH.fullmatch(stored)
    if match is None:
        return None
    rounds = int(match["rounds"])
    return rounds if MIN_ROUNDS <= rounds <= MAX_ROUNDS else None


@lru_cache(maxsize=32)
def dummy_hash(rounds: int) -> str:
    """A hash to verify against when there is nothing real to verify: one bcrypt at `rounds`."""
    return hash_password(secrets.token_urlsafe(24), rounds)


def padding_rounds(spent: int | None, rounds: int) -> list[int]:
    """The costs of the dummy verifications that complete, after a verification at cost
    `spent`, the work of one verification at cost `rounds`.

    bcrypt's work doubles with each step of cost, so 2**c + 2**c + 2**(c+1) + ... +
    2**(rounds-1) = 2**rounds: a hash at cost 4 checked with the service at 10 is followed by
    dummies at 4, 5, ..., 9, and the attempt costs what an unknown email's does. Nothing when
    `spent` is at least `rounds`; one whole verification at `rounds` when nothing was spent
    (no hash, or one bcrypt refused at once). The precedent is Django's `harden_runtime`.
    """
    if spent is None:
        return [rounds]
    return list(range(max(spent, MIN_ROUNDS), rounds))


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _lower_this_threads_priority() -> None:
    # On Linux a thread's nice value applies to that thread alone; elsewhere this is a no-op.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


@lru_cache(maxsize=1)
def _hashing_pool() -> ThreadPoolExecutor:
    """bcrypt's own threads: one per core, at the lowest CPU priority.

    Hashing never runs on the event loop, and a login flood must not starve it either: with
    anyio's default 40 threads per process, 40 hashes share the cores equally with the loop
    and every other request waits behind them. Here logins queue for a few low-priority
    threads, which still fill every core when nothing else needs it (login throughput stays
    bound by bcrypt), while the loop's threads win the CPU whenever they have work.
    """
    return ThreadPoolExecutor(
        max_workers=_usable_cores(),
        thread_name_prefix="bcrypt",
        initializer=_lower_this_threads_priority,
    )


async def _off_the_loop(work: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_hashing_pool(), work)


async def hash_password_async(password: str, rounds: int) -> str:
    return await _off_the_loop(lambda: hash_password(password, rounds))


async def verify_password_async(password: str, stored: str) -> bool:
    return await _off_the_loop(lambda: verify_password(password, stored))


async def verify_against_dummy(password: str, rounds: int) -> None:
    await _off_the_loop(lambda: verify_password(password, dummy_hash(rounds)))


async def pad_verification(password: str, spent: int | None, rounds: int) -> None:
    """The rest of one verification's work at cost `rounds`, after one at cost `spent`
    (`padding_rounds`), so that a failed attempt costs the same whatever hash it met."""
    costs = padding_rounds(spent, rounds)
    if costs:
        await _off_the_loop(lambda: _verify_dummies(password, costs))


def _verify_dummies(password: str, costs: list[int]) -> None:
    for cost in costs:
        verify_password(password, dummy_hash(cost))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    token_version: int
    issued_at: int
    expires_at: int


def create_access_token(
    *, user_id: int, token_version: int, key: str, expire_minutes: int
) -> tuple[str, int]:
    """Return the token and its lifetime in seconds."""
    now = int(time.time())
    lifetime = expire_minutes * 60
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "tv": token_version,
        "kind": ACCESS_TOKEN_KIND,
    }
    token = jwt.encode(claims, key, algorithm=JWT_ALGORITHM, headers={"typ": ACCESS_TOKEN_TYPE})
    return token, lifetime


class InvalidToken(Exception):
    """The token is not a valid access token of this service (the reason is not shown)."""


def decode_access_token(token: str, *, key: str) -> AccessClaims:
    """The claims of a valid, unexpired access token signed with `key`; InvalidToken otherwise.

    Verifying costs an HMAC and a JSON parse on every request; a client sends the same token
    for its whole lifetime, so verified tokens are remembered (by their full text, signature
    included: any change to a token is a different key and is verified afresh). Only expiry
    changes with time, and it is checked on every call. Revocation is not a property of the
    token; the database decides it on every request.
    """
    claims = _verified_claims(token, key)
    if claims.expires_at <= time.time() - JWT_LEEWAY_SECONDS:
        raise InvalidToken("expired")
    return claims


@lru_cache(maxsize=4096)
def _verified_claims(token: str, key: str) -> AccessClaims:
    """Signature, header and claims checked once per token (failures are not cached)."""
    try:
        decoded = jwt.decode_complete(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            leeway=JWT_LEEWAY_SECONDS,
            options={"require": _REQUIRED_CLAIMS},
        )
        if decoded["header"].get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidToken("wrong token type")
        claims = decoded["payload"]
        if claims["kind"] != ACCESS_TOKEN_KIND:
            raise InvalidToken("wrong token kind")
        user_id = int(claims["sub"])
        token_version = claims["tv"]
        if not isinstance(token_version, int) or isinstance(token_version, bool):
            raise InvalidToken("bad token version")
        if token_version < 1 or token_version > MAX_VERSION:  # no account has it
            raise InvalidToken("bad token version")
        if user_id < 1 or user_id > MAX_ID:
            raise InvalidToken("bad subject")
        return AccessClaims(user_id, token_version, int(claims["iat"]), int(claims["exp"]))
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise InvalidToken(str(exc)) from exc


def new_refresh_token() -> tuple[str, str]:
    """An opaque 256-bit refresh token and the digest that is all the database keeps."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def derive_key(secret: str, purpose: str) -> bytes:
    """A sub-key of SECRET_KEY for one purpose, so one secret never signs two formats."""
    return hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()
