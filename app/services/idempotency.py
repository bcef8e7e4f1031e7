"""Idempotency keys: a retried create returns the first response instead of a second task.

`do_once` runs a piece of work once per (user, key). It first *claims* the key in a short
transaction of its own, committed at once, so that a concurrent retry sees the claim and gets
a 409 instead of doing the work twice. The work and its stored response are then written in
one transaction, so they are kept together or not at all: a crash in between leaves a claim
without a response, which a retry may take over once it is older than the in-flight timeout.
See docs/decisions/0014-idempotency-keys.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.core.errors import Conflict, ValidationFailed, error_item
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.models.idempotency_key import IdempotencyKey
from app.services import auth as auth_service

KEY_LIFETIME = timedelta(hours=24)
# A claim this old without a response belongs to a request that died; it may be taken over.
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)
# A claim younger than this is most likely a request still running (creates take milliseconds).
IN_FLIGHT_RUNNING = timedelta(seconds=5)
# Expired keys removed by each claim, at most (the index on expires_at makes this cheap).
_CLEANUP_BATCH = 100


class KeyInFlight(Conflict):
    """A 409 with `Retry-After`: at once (1 s) while the claim is young enough to be a request
    still running; otherwise the seconds until it may be taken over, its request most likely
    dead with its host (decision 0014)."""

    slug = "idempotency-key-in-flight"
    title = "Request with this idempotency key in progress"
    default_detail = "A request with this Idempotency-Key is still being processed; retry later."

    def __init__(self, claimed_at: datetime | None = None, now: datetime | None = None) -> None:
        wait = 1
        if claimed_at is not None and now is not None and now - claimed_at >= IN_FLIGHT_RUNNING:
            wait = max(1, math.ceil((claimed_at + IN_FLIGHT_TIMEOUT - now).total_seconds()))
        super().__init__(headers={"Retry-After": str(wait)})


class KeyReused(ValidationFailed):
    default_detail = "This Idempotency-Key was already used with a different request."

    def __init__(self) -> None:
        super().__init__(
            errors=[
                error_item(
                    ["header", "Idempotency-Key"],
                    "Key already used with a different request body",
                    "idempotency_key_reused",
                )
            ]
        )


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Claim:
    """Either the right to do the work (`claim_id`) or the response to replay."""

    claim_id: int | None
    replay: StoredResponse | None


@dataclass(frozen=True, slots=True)
class Outcome:
    response: StoredResponse
    replayed: bool  # the stored response of an earlier request with the key


async def do_once(
    db: Db,
    caller: AccessClaims,
    key: str,
    request_fingerprint: str,
    work: Callable[[Db], Awaitable[StoredResponse]],
) -> Outcome:
    """`work`'s response, done once per (caller, key), or the response it gave before.

    The caller's token is checked first, so that a revoked token cannot even replay a stored
    response. `work` runs in a transaction that also stores its response; if either fails,
    nothing of it stays and the claim is given up, so that a retry can do the work.
    """
    async with db.new_transaction() as claiming:
        await auth_service.user_for_claims(claiming, caller)
        claim = await _claim(claiming, caller.user_id, key, request_fingerprint)
    if claim.replay is not None:
        return Outcome(claim.replay, replayed=True)
    assert claim.claim_id is not None
    try:
        async with db.new_transaction() as working:
            response = await work(working)
            await _record_response(working, claim.claim_id, response)
    except BaseException:
        # The work's transaction has ended (rolled back) first: its locks (SQLite's write
        # lock, the claim row's) would make the release wait on this very request.
        async with db.new_transaction() as releasing:
            await _release(releasing, claim.claim_id)
        raise
    return Outcome(response, replayed=False)


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _insert(dialect: str) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(IdempotencyKey)


async def _claim(db: Db, user_id: int, key: str, request_fingerprint: str) -> Claim:
    """Claim `key` for this user, or say what the earlier request with it answered."""
    now = utcnow()
    session = db.session
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.id.in_(
                select(IdempotencyKey.id)
                .where(IdempotencyKey.expires_at < now)
                .limit(_CLEANUP_BATCH)
                .scalar_subquery()
            )
        )
    )
    inserted = await session.scalar(
        _insert(session.get_bind().dialect.name)
        .values(
            user_id=user_id,
            key=key,
            fingerprint=request_fingerprint,
            claimed_at=now,
            expires_at=now + KEY_LIFETIME,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(IdempotencyKey.id)
    )
    if inserted is not None:
        return Claim(inserted, None)
    existing = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    if existing is None:  # deleted between the two statements: a retry will claim it
        raise KeyInFlight()
    if existing.expires_at <= now:
        # Expired but not yet cleaned up: the key is free again.
        taken = await session.scalar(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == existing.id, IdempotencyKey.expires_at <= now)
            .values(
                fingerprint=request_fingerprint,
                claimed_at=now,
                expires_at=now + KEY_LIFETIME,
                response_status=None,
                response_body=None,
                response_headers=None,
            )
            .returning(IdempotencyKey.id)
        )
        if taken is None:
            raise KeyInFlight()
        return Claim(taken, None)
    if existing.fingerprint != request_fingerprint:
        raise KeyReused()
    if existing.response_status is not None:
        return Claim(
            None,
            StoredResponse(
                existing.response_status,
                existing.response_body or "",
                json.loads(existing.response_headers or "{}"),
            ),
        )
    if existing.claimed_at > now - IN_FLIGHT_TIMEOUT:
        raise KeyInFlight(existing.claimed_at, now)
    # Abandoned by a request that died: take it over, unless someone just did.
    taken = await session.scalar(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.id == existing.id,
            IdempotencyKey.claimed_at == existing.claimed_at,
            IdempotencyKey.response_status.is_(None),
        )
        .values(claimed_at=now)
        .returning(IdempotencyKey.id)
    )
    if taken is None:
        raise KeyInFlight()
    return Claim(taken, None)


async def _record_response(db: Db, claim_id: int, response: StoredResponse) -> None:
    """Store the response in the work's transaction, beside the work it describes."""
    await db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id)
        .values(
            response_status=response.status,
            response_body=response.body,
            response_headers=json.dumps(response.headers),
        )
    )


async def _release(db: Db, claim_id: int) -> None:
    """Give up a claim whose request failed, so that a retry can do the work."""
    await db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.id == claim_id, IdempotencyKey.response_status.is_(None)
        )
    )
