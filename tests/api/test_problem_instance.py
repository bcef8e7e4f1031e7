"""A problem repeats at most about 1 KB of the request: `instance` names the path, cut to
1,024 bytes of UTF-8 (ending with "…") when it is longer, and still valid text."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from app.api.problems import INSTANCE_MAX_BYTES
from tests.support import PROBLEM, call_asgi

CUT = "…"


def problem_of(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    return body


class TestLongPaths:
    async def test_a_60_kb_path_is_not_echoed_in_full(self, client: httpx.AsyncClient) -> None:
        path = "/" + "a" * 60_000
        response = await client.get(path)
        assert response.status_code == 404
        instance = problem_of(response)["instance"]
        assert isinstance(instance, str)
        assert len(instance.encode()) <= INSTANCE_MAX_BYTES == 1024
        assert instance == path[: INSTANCE_MAX_BYTES - len(CUT.encode())] + CUT
        assert len(response.content) < 2 * INSTANCE_MAX_BYTES

    async def test_a_long_id_in_a_route_is_cut_too(
        self, client: httpx.AsyncClient, alice_h: dict[str, str]
    ) -> None:
        path = "/api/v1/tasks/" + "9" * 60_000
        response = await client.get(path, headers=alice_h)
        assert response.status_code == 422
        instance = problem_of(response)["instance"]
        assert isinstance(instance, str)
        assert instance.startswith("/api/v1/tasks/999")
        assert instance.endswith(CUT)
        assert len(instance.encode()) <= INSTANCE_MAX_BYTES

    @pytest.mark.parametrize(
        "char", ["é", "€", "\U0001f600"], ids=["2-bytes", "3-bytes", "4-bytes"]
    )
    async def test_cut_between_characters(self, client: httpx.AsyncClient, char: str) -> None:
        response = await client.get("/" + char * 5_000)
        assert response.status_code == 404
        instance = problem_of(response)["instance"]
        assert isinstance(instance, str)
        assert re.fullmatch(f"/{re.escape(char)}+{CUT}", instance), instance[-10:]
        # As many whole characters as fit: none was dropped but the one cut in two.
        budget = INSTANCE_MAX_BYTES - len(CUT.encode()) - 1
        assert instance.count(char) == budget // len(char.encode())

    async def test_cut_outside_an_escape(self, app: FastAPI) -> None:
        # `?` in a path is spelled %3F in `instance`; a cut leaves no half of one.
        status, _, content = await call_asgi(app, "GET", "/" + "?" * 5_000)
        assert status == 404
        instance = httpx.Response(status, content=content).json()["instance"]
        assert re.fullmatch(f"/(%3F)+{CUT}", instance), instance[-10:]
        assert len(instance.encode()) <= INSTANCE_MAX_BYTES

    async def test_a_path_that_fits_is_repeated_whole(self, client: httpx.AsyncClient) -> None:
        path = "/" + "é" * ((INSTANCE_MAX_BYTES - 1) // 2)
        response = await client.get(path)
        assert response.status_code == 404
        assert problem_of(response)["instance"] == path
