"""Text a person will be shown, over HTTP: titles need a visible character; titles and full
names are one line; no field takes direction overrides, isolates or noncharacters; emoji
sequences joined with ZWJ stay valid. Every refusal is a 422 naming the field in plain words,
stores nothing and repeats nothing of what was sent."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.task import Task
from app.models.user import User
from tests.api.conftest import Headers
from tests.conftest import TEST_PASSWORD
from tests.support import assert_problem

TASKS = "/api/v1/tasks"
ME = "/api/v1/users/me"

INVISIBLE = ["\u200b", "\ufeff", "\u200d", "\u200b \u200c", "\u3164", "\u2800 \u2800"]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]
NONCHARACTERS = ["\uffff", "\ufffe", "\ufdd0", "\U0010ffff"]
JOINED_EMOJI = [
    "\U0001f469\u200d\U0001f4bb pair programming",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f3f3\ufe0f\u200d\U0001f308",
]


async def task_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Task)) or 0)


def refused(response: httpx.Response, field: str, msg: str, sent: str) -> None:
    body = assert_problem(response, 422, loc=["body", field], absent=[sent])
    assert [item["msg"] for item in body["errors"]] == [msg]


async def create_task(client: httpx.AsyncClient, headers: Headers, **fields: Any) -> httpx.Response:
    return await client.post(TASKS, json={"title": "A task", **fields}, headers=headers)


class TestTitles:
    @pytest.mark.parametrize("title", INVISIBLE)
    async def test_only_invisible_characters_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, alice_h: Headers, title: str
    ) -> None:
        response = await create_task(client, alice_h, title=title)
        body = assert_problem(response, 422, loc=["body", "title"])
        assert [item["msg"] for item in body["errors"]] == ["must contain a visible character"]
        assert await task_count(session) == 0

    async def test_sent_as_json_escapes_too(
        self, client: httpx.AsyncClient, session: AsyncSession, alice_h: Headers
    ) -> None:
        response = await client.post(
            TASKS,
            content=rb'{"title": "\u200b\ufeff"}',
            headers={**alice_h, "Content-Type": "application/json"},
        )
        assert_problem(response, 422, loc=["body", "title"])
        assert await task_count(session) == 0

    @pytest.mark.parametrize("title", INVISIBLE[:3])
    async def test_renaming_to_invisible_is_422_and_keeps_the_title(
        self, client: httpx.AsyncClient, alice_h: Headers, title: str
    ) -> None:
        created = (await create_task(client, alice_h, title="Visible")).json()
        response = await client.patch(
            f"{TASKS}/{created['id']}", json={"title": title}, headers=alice_h
        )
        assert_problem(response, 422, loc=["body", "title"])
        kept = (await client.get(f"{TASKS}/{created['id']}", headers=alice_h)).json()
        assert (kept["title"], kept["version"]) == ("Visible", 1)

    @pytest.mark.parametrize("char", BIDI)
    async def test_direction_overrides_and_isolates_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, alice_h: Headers, char: str
    ) -> None:
        sent = f"invoice{char}fdp.exe"
        response = await create_task(client, alice_h, title=sent)
        refused(
            response, "title", "must not contain characters that change the direction of text", sent
        )
        assert await task_count(session) == 0

    @pytest.mark.parametrize("char", ["\u2028", "\u2029"])
    async def test_line_and_paragraph_separators_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, alice_h: Headers, char: str
    ) -> None:
        sent = f"first line{char}second line"
        refused(
            await create_task(client, alice_h, title=sent), "title", "must be a single line", sent
        )
        assert await task_count(session) == 0

    @pytest.mark.parametrize("char", NONCHARACTERS)
    async def test_noncharacters_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, alice_h: Headers, char: str
    ) -> None:
        sent = f"buy milk{char}"
        response = await create_task(client, alice_h, title=sent)
        refused(response, "title", "must not contain Unicode noncharacters", sent)
        assert await task_count(session) == 0

    @pytest.mark.parametrize("title", JOINED_EMOJI)
    async def test_emoji_joined_with_zwj_stay_valid(
        self, client: httpx.AsyncClient, alice_h: Headers, title: str
    ) -> None:
        response = await create_task(client, alice_h, title=title)
        assert response.status_code == 201, response.text
        stored = (await client.get(f"{TASKS}/{response.json()['id']}", headers=alice_h)).json()
        assert stored["title"] == title

    async def test_invisible_characters_inside_a_title_are_kept(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        title = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # Persian, with a ZWNJ
        response = await create_task(client, alice_h, title=f"  {title}  ")
        assert response.status_code == 201, response.text
        assert response.json()["title"] == title


class TestDescriptions:
    async def test_lines_and_paragraphs_are_kept(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        description = "first\nsecond\u2028third\u2029fourth\r\n\tlast"
        response = await create_task(client, alice_h, description=description)
        assert response.status_code == 201, response.text
        stored = (await client.get(f"{TASKS}/{response.json()['id']}", headers=alice_h)).json()
        assert stored["description"] == description

    @pytest.mark.parametrize("char", BIDI)
    async def test_direction_overrides_and_isolates_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, alice_h: Headers, char: str
    ) -> None:
        sent = f"pay the {char}lanoitanretni invoice"
        response = await create_task(client, alice_h, description=sent)
        refused(
            response,
            "description",
            "must not contain characters that change the direction of text",
            sent,
        )
        assert await task_count(session) == 0

    @pytest.mark.parametrize("char", NONCHARACTERS)
    async def test_noncharacters_are_422_on_update_too(
        self, client: httpx.AsyncClient, alice_h: Headers, char: str
    ) -> None:
        created = (await create_task(client, alice_h, description="before")).json()
        sent = f"after{char}"
        response = await client.patch(
            f"{TASKS}/{created['id']}", json={"description": sent}, headers=alice_h
        )
        refused(response, "description", "must not contain Unicode noncharacters", sent)
        kept = (await client.get(f"{TASKS}/{created['id']}", headers=alice_h)).json()
        assert kept["description"] == "before"


class TestFullNames:
    @pytest.mark.parametrize(
        ("sent", "msg"),
        [
            ("\u200b", "must contain a visible character"),
            ("   ", "must contain a visible character"),
            ("Ada\u2028Lovelace", "must be a single line"),
            ("Ada \u202eecalevoL", "must not contain characters that change the direction of text"),
            ("Ada\uffff", "must not contain Unicode noncharacters"),
        ],
        ids=["zwsp", "spaces", "line-separator", "override", "nonchar"],
    )
    async def test_profile_name_is_422_and_unchanged(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        alice: User,
        alice_h: Headers,
        sent: str,
        msg: str,
    ) -> None:
        response = await client.patch(ME, json={"full_name": sent}, headers=alice_h)
        body = assert_problem(response, 422, loc=["body", "full_name"])
        assert [item["msg"] for item in body["errors"]] == [msg]
        stored = await session.scalar(select(User.full_name).where(User.id == alice.id))
        assert stored is None

    async def test_registration_with_an_invisible_name_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await client.post(
            "/api/v1/users",
            json={"email": "ghost@example.com", "password": TEST_PASSWORD, "full_name": "\u3164"},
        )
        assert_problem(response, 422, loc=["body", "full_name"])
        assert await session.scalar(select(func.count()).select_from(User)) == 0

    async def test_a_name_with_an_emoji_sequence_is_kept(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        name = "Ada \U0001f469\u200d\U0001f52c"
        response = await client.patch(ME, json={"full_name": name}, headers=alice_h)
        assert response.status_code == 200, response.text
        assert response.json()["full_name"] == name


class TestDocumented:
    """OpenAPI states each rule as a pattern, so generated clients and fuzzers know it."""

    async def test_patterns_refuse_what_the_api_refuses(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()
        schemas = document["components"]["schemas"]
        title = schemas["TaskCreate"]["properties"]["title"]["pattern"]
        description = schemas["TaskCreate"]["properties"]["description"]["anyOf"][0]["pattern"]
        full_name = schemas["UserCreate"]["properties"]["full_name"]["anyOf"][0]["pattern"]
        for pattern, refused_values, accepted in (
            (title, ["\u200b", "a\u202eb", "a\u2028b", "a\uffff"], JOINED_EMOJI),
            (description, ["a\u2066b", "a\uffff"], ["a\u2028b\nc"]),
            (full_name, ["\u3164", "a\u2029b", "a\u202db"], ["Zoë \U0001f469\u200d\U0001f52c"]),
        ):
            for value in refused_values:
                assert re.fullmatch(pattern, value) is None, json.dumps(value)
            for value in accepted:
                assert re.fullmatch(pattern, value) is not None, json.dumps(value)
