"""`/api/v1/users`: registration and the caller's profile, with hostile inputs."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import User
from tests.conftest import TEST_PASSWORD
from tests.support import PROBLEM


async def register(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    payload = {"email": "alice@example.com", "password": TEST_PASSWORD, **body}
    return await client.post("/api/v1/users", json=payload)


class TestRegister:
    async def test_created_with_location_and_no_secrets(self, client: httpx.AsyncClient) -> None:
        response = await register(client, full_name="Alice")
        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "email", "full_name", "role", "is_active", "created_at"}
        assert body["email"] == "alice@example.com"
        assert body["role"] == "user"
        assert body["is_active"] is True
        assert response.headers["location"] == f"/api/v1/users/{body['id']}"
        assert body["created_at"].endswith("Z")

    @pytest.mark.parametrize(
        "email", ["Alice@Example.com", " alice@example.com ", "ALICE@EXAMPLE.COM"]
    )
    async def test_email_taken_regardless_of_case(
        self, client: httpx.AsyncClient, email: str
    ) -> None:
        assert (await register(client)).status_code == 201
        response = await register(client, email=email)
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("email-taken")

    async def test_short_password_rejected_without_echo(self, client: httpx.AsyncClient) -> None:
        response = await register(client, password="fourteen chars")
        assert response.status_code == 422
        assert "fourteen chars" not in response.text
        assert response.json()["errors"][0]["loc"] == ["body", "password"]

    @pytest.mark.parametrize("field", ["id", "role", "is_active", "created_at", "password_hash"])
    async def test_mass_assignment_rejected(
        self, client: httpx.AsyncClient, session: AsyncSession, field: str
    ) -> None:
        response = await register(client, **{field: "admin"})
        assert response.status_code == 422
        assert await session.scalar(select(func.count()).select_from(User)) == 0


class TestRegistrationRace:
    async def test_simultaneous_registrations_one_wins(
        self, committing_client: httpx.AsyncClient
    ) -> None:
        responses = await asyncio.gather(*(register(committing_client) for _ in range(5)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409, 409, 409, 409]
