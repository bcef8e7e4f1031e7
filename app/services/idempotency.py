"""Idempotency keys: a retried create returns the first response instead of a second task.

A request with a key first *claims* it in a short transaction of its own, committed at once,
so that a concurrent retry sees the claim and gets a 409 instead of doing the work twice.
The work and the stored response are then written in the request's own transaction, so
they are kept together or not at all: a crash in between leaves a claim without a response,
which a retry may take over once it is older than the in-flight timeout. See
docs/decisions/0014-idempotency-keys.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import Conflict, ValidationFailed
from app.db.base import utcnow
from app.db.session import end_read_transaction
from app.models.idempotency_key import IdempotencyKey

KEY_LIFETIME = timedelta(hours=24)
# A claim this old without a response belongs to a request that died; it may be taken over.
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)
# Expired keys removed by each claim, at most (the index on expires_at makes this cheap).
_CLEANUP_BATCH = 100


class KeyInFlight(Conflict):
    slug = "idempotency-key-in-flight"
    title = "Request with this idempotency key in progress"
    default_detail = "A request with this Idempotency-Key is still being processed; retry later."


class KeyReused(ValidationFailed):
    default_detail = "This Idempotency-Key was already used with a different request."

    def __init__(self) -> None:
        super().__init__(
            errors=[
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "Key already used with a different request body",
                    "type": "idempotency_key_reused",
                }
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


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _insert(dialect: str) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(IdempotencyKey)


async def claim(
    request_session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    user_id: int,
    key: str,
    request_fingerprint: str,
) -> Claim:
    """Claim `key` for this user, or say what the earlier request with it answered.

    The request's own transaction holds nothing but reads so far (authentication); it is
    ended first, since on SQLite the claim's write transaction would otherwise wait for it.
    """
    await end_read_transaction(request_session)
    now = utcnow()
    async with sessions() as session, session.begin():
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
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.key == key
            )
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
            raise KeyInFlight()
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


async def record_response(session: AsyncSession, claim_id: int, response: StoredResponse) -> None:
    """Store the response in the request's transaction, beside the work it describes."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id)
        .values(
            response_status=response.status,
            response_body=response.body,
            response_headers=json.dumps(response.headers),
        )
    )


async def release(sessions: async_sessionmaker[AsyncSession], claim_id: int) -> None:
    """Give up a claim whose request failed, so that a retry can do the work."""
    async with sessions() as session, session.begin():
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == claim_id, IdempotencyKey.response_status.is_(None)
            )
        )
