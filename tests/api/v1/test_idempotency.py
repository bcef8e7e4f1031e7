"""`Idempotency-Key` on POST /api/v1/tasks: retries replay, never duplicate."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import utcnow
from app.models.idempotency_key import IdempotencyKey
from app.models.task import Task
from app.models.user import User
from app.services.idempotency import fingerprint
from tests.api.conftest import Headers
from tests.conftest import TEST_PASSWORD
from tests.support import assert_problem, inbox_id

TASKS = "/api/v1/tasks"


async def create(
    client: httpx.AsyncClient, headers: Headers, key: str | None, **body: object
) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(
        TASKS, json={"title": "Pay rent", **body}, headers={**headers, **extra}
    )


async def task_count(session: AsyncSession, owner: User) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Task)
        .where(Task.project_id == await inbox_id(session, owner))
    )
    return int(count or 0)


class TestReplay:
    async def test_retry_returns_the_first_response(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        first = await create(client, alice_h, "key-1")
        second = await create(client, alice_h, "key-1")
        assert first.status_code == 201
        assert second.status_code == 201
        assert second.content == first.content
        assert second.headers["location"] == first.headers["location"]
        assert second.headers["etag"] == first.headers["etag"]
        assert second.headers["idempotent-replayed"] == "true"
        assert await task_count(session, alice) == 1

    async def test_same_body_in_another_key_order_is_the_same_request(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        first = await client.post(
            TASKS,
            content=b'{"title": "a", "priority": "high"}',
            headers={**alice_h, "Idempotency-Key": "k", "Content-Type": "application/json"},
        )
        second = await client.post(
            TASKS,
            content=b'{"priority":"high","title":"a"}',
            headers={**alice_h, "Idempotency-Key": "k", "Content-Type": "application/json"},
        )
        assert second.json()["id"] == first.json()["id"]
        assert await task_count(session, alice) == 1

    async def test_other_body_with_same_key_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        assert (await create(client, alice_h, "key-2")).status_code == 201
        response = await create(client, alice_h, "key-2", title="Something else")
        assert_problem(response, 422, loc=["header", "Idempotency-Key"], absent=["key-2"])
        assert await task_count(session, alice) == 1

    async def test_keys_belong_to_one_user(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        bob: User,
        alice_h: Headers,
        bob_h: Headers,
    ) -> None:
        mine = await create(client, alice_h, "shared")
        theirs = await create(client, bob_h, "shared", title="Different")
        assert mine.status_code == 201
        assert theirs.status_code == 201
        assert theirs.json()["id"] != mine.json()["id"]
        assert await task_count(session, bob) == 1

    async def test_without_key_every_request_creates(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        await create(client, alice_h, None)
        await create(client, alice_h, None)
        assert await task_count(session, alice) == 2

    async def test_rejected_body_claims_nothing(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        assert (await create(client, alice_h, "k3", title="")).status_code == 422
        assert (await create(client, alice_h, "k3")).status_code == 201


async def claim_key(session: AsyncSession, user: User, key: str, at: datetime) -> None:
    """A claim of `key` made at `at` for the create of "Pay rent", without a response: its
    request is still running, or died."""
    session.add(
        IdempotencyKey(
            user_id=user.id,
            key=key,
            fingerprint=fingerprint("POST", TASKS, {"title": "Pay rent"}),
            claimed_at=at,
            expires_at=at + timedelta(hours=24),
        )
    )
    await session.commit()


class TestKeyLifecycle:
    async def test_in_flight_key_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        now = utcnow()
        await claim_key(session, alice, "busy", now)
        response = await create(client, alice_h, "busy")
        assert_problem(response, 409)
        # Young enough to be a request still running: retry at once.
        assert response.headers["retry-after"] == "1"
        assert await task_count(session, alice) == 0

    async def test_a_claim_whose_request_likely_died_says_when_it_may_be_taken_over(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        """A host that died after claiming the key: the retry learns when the claim may be
        taken over (60 s after it was made) instead of polling blindly."""
        claimed = utcnow() - timedelta(seconds=20)
        await claim_key(session, alice, "orphaned", claimed)
        response = await create(client, alice_h, "orphaned")
        assert_problem(response, 409)
        assert 35 <= int(response.headers["retry-after"]) <= 40
        assert await task_count(session, alice) == 0

    async def test_abandoned_claim_is_taken_over(
        self, client: httpx.AsyncClient, session: AsyncSession, alice: User, alice_h: Headers
    ) -> None:
        long_ago = utcnow() - timedelta(minutes=5)
        await claim_key(session, alice, "crashed", long_ago)
        assert (await create(client, alice_h, "crashed")).status_code == 201
        assert (await create(client, alice_h, "crashed")).headers["idempotent-replayed"]
        assert await task_count(session, alice) == 1

    async def test_expired_key_is_forgotten(
        self, client: httpx.AsyncClient, session: AsyncSession, alice_h: Headers
    ) -> None:
        first = await create(client, alice_h, "old")
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        second = await create(client, alice_h, "old")
        assert second.status_code == 201
        assert "idempotent-replayed" not in second.headers
        assert second.json()["id"] != first.json()["id"]
        remaining = await session.scalar(select(func.count()).select_from(IdempotencyKey))
        assert remaining == 1  # the expired row was cleaned up

    @pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
    async def test_malformed_key_is_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        key: str,
    ) -> None:
        response = await client.post(
            TASKS,
            json={"title": "x"},
            headers=[*alice_h.items(), ("Idempotency-Key", key.encode("utf-8"))],
        )
        assert_problem(response, 422)
        assert await task_count(session, alice) == 0


class TestBurst:
    async def test_identical_retries_create_one_task(
        self, committing_client: httpx.AsyncClient
    ) -> None:
        email = "burst@example.com"
        await committing_client.post(
            "/api/v1/users", json={"email": email, "password": TEST_PASSWORD}
        )
        token = (
            await committing_client.post(
                "/api/v1/auth/token", data={"username": email, "password": TEST_PASSWORD}
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        responses = await asyncio.gather(
            *(create(committing_client, headers, "burst-key") for _ in range(12))
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 409}, statuses
        created = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(created) == 1
        listing = await committing_client.get(TASKS, headers=headers)
        assert [task["id"] for task in listing.json()["items"]] == list(created)
