"""Email addresses over HTTP: one account per address as a person reads it (equal after NFKC
and case folding), and a local part of at most 64 characters."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import User
from tests.conftest import TEST_PASSWORD
from tests.support import assert_problem

USERS = "/api/v1/users"
TOKEN = "/api/v1/auth/token"


async def register(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(USERS, json={"email": email, "password": TEST_PASSWORD})


async def login(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(TOKEN, data={"username": email, "password": TEST_PASSWORD})


async def user_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


# Pairs of spellings a person cannot tell apart (or that differ only in case).
SAME_ADDRESS = [
    ("kim@example.com", "ｋim@example.com"),  # full-width k
    ("ｋim@example.com", "kim@example.com"),
    ("kim@example.com", "ＫＩＭ@ＥＸＡＭＰＬＥ.ＣＯＭ"),
    ("kim@example.com", "kim＠example.com"),  # full-width @
    ("strasse@example.com", "STRAẞE@example.com"),  # capital sharp s folds to ss
    ("ﬁona@example.com", "fiona@example.com"),  # the fi ligature
    ("zoë@example.com", "zoe\u0308@example.com"),  # ë, precomposed and combined
    ("kim@example.com", "ki\u3164m@example.com"),  # an invisible Hangul filler
]


class TestOneAccountPerAddress:
    @pytest.mark.parametrize(("first", "second"), SAME_ADDRESS)
    async def test_second_spelling_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession, first: str, second: str
    ) -> None:
        assert (await register(client, first)).status_code == 201
        response = await register(client, second)
        body = assert_problem(response, 409)
        assert body["type"].endswith("email-taken")
        assert await user_count(session) == 1

    @pytest.mark.parametrize(("first", "second"), SAME_ADDRESS)
    async def test_either_spelling_logs_in(
        self, client: httpx.AsyncClient, first: str, second: str
    ) -> None:
        created = await register(client, first)
        assert created.status_code == 201, created.text
        for spelling in (first, second):
            response = await login(client, spelling)
            assert response.status_code == 200, (spelling, response.text)

    async def test_the_address_is_stored_in_its_normal_form(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await register(client, "  ＫＩＭ@Ｅxample.com ")
        assert response.status_code == 201, response.text
        assert response.json()["email"] == "kim@example.com"

    async def test_different_addresses_stay_different(self, client: httpx.AsyncClient) -> None:
        # Folding is not a looser match: other letters are other accounts.
        for email in ("kim@example.com", "kím@example.com", "kim@example.org", "kim1@example.com"):
            response = await register(client, email)
            assert response.status_code == 201, (email, response.text)


class TestLocalPartLength:
    async def test_64_characters_before_the_at_is_accepted(self, client: httpx.AsyncClient) -> None:
        email = "a" * 64 + "@example.com"
        response = await register(client, email)
        assert response.status_code == 201, response.text
        assert response.json()["email"] == email

    @pytest.mark.parametrize(
        "local", ["a" * 65, "b" * 200, "ß" * 33], ids=["65", "200", "66-once-folded"]
    )
    async def test_more_is_422_in_plain_words(
        self, client: httpx.AsyncClient, session: AsyncSession, local: str
    ) -> None:
        email = f"{local}@example.com"
        response = await register(client, email)
        body = assert_problem(response, 422, loc=["body", "email"], absent=[email, local[:40]])
        assert [item["msg"] for item in body["errors"]] == [
            "must have at most 64 characters before the @"
        ]
        assert await user_count(session) == 0
