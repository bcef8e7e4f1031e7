"""Round trips to PostgreSQL per request on the hot task routes (issue 6, "Fast at scale").

An authenticated read is one statement, authentication included (docs/decisions/0017), and
so are a create and a conditional update: no BEGIN, no COMMIT, no ping, no separate read of
the user. Counted on the driver's connection with requests that really commit
(`committing_client`: the app's own pool, as in production). The first use of a statement on
a pooled connection also prepares it (once per connection; a request may be handed a
connection that has not run it yet), so a `prepare` is allowed next to the one statement.
PostgreSQL only: SQLite has no round trips to count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from asyncpg.prepared_stmt import PreparedStatement

from tests.api.conftest import Headers
from tests.conftest import TEST_PASSWORD

TASKS = "/api/v1/tasks"


@pytest.fixture
def sent(backend: str, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every message exchange asyncpg has with the server, by kind."""
    if backend != "postgresql":
        pytest.skip("counts PostgreSQL round trips")
    counts: Counter[str] = Counter()

    def counting(cls: type, name: str, kind: Callable[[tuple[Any, ...]], str]) -> None:
        original = getattr(cls, name)

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[kind(args)] += 1
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    # Simple-protocol commands (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET ...).
    counting(asyncpg.Connection, "execute", lambda args: str(args[0]).split()[0].upper())
    # Statements run with arguments (fetch, fetchrow, fetchval) and preparing them.
    counting(asyncpg.Connection, "_execute", lambda _args: "statement")
    counting(asyncpg.Connection, "prepare", lambda _args: "prepare")
    counting(PreparedStatement, "fetch", lambda _args: "statement")
    return counts


def statements(sent: Counter[str]) -> dict[str, int]:
    """What was sent, without preparing statements (see the module's doc)."""
    return {kind: count for kind, count in sent.items() if kind != "prepare"}


async def register(client: httpx.AsyncClient) -> Headers:
    email = "round-trips@example.com"
    registered = await client.post(
        "/api/v1/users", json={"email": email, "password": TEST_PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    token = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": TEST_PASSWORD}
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


class TestOneStatementPerRequest:
    async def test_hot_routes(
        self, committing_client: httpx.AsyncClient, sent: Counter[str]
    ) -> None:
        client = committing_client
        headers = await register(client)
        tasks = [
            (await client.post(TASKS, json={"title": f"t{n}"}, headers=headers)).json()
            for n in range(3)
        ]

        async def list_page() -> httpx.Response:
            return await client.get(TASKS, params={"limit": 2}, headers=headers)

        async def read() -> httpx.Response:
            return await client.get(f"{TASKS}/{tasks[0]['id']}", headers=headers)

        async def create() -> httpx.Response:
            return await client.post(TASKS, json={"title": "new"}, headers=headers)

        async def conditional_update() -> httpx.Response:
            current = await client.get(f"{TASKS}/{tasks[1]['id']}", headers=headers)
            sent.clear()
            return await client.patch(
                f"{TASKS}/{tasks[1]['id']}",
                json={"status": "done"},
                headers={**headers, "If-Match": current.headers["etag"]},
            )

        for name, call, status in (
            ("list", list_page, 200),
            ("read", read, 200),
            ("create", create, 201),
            ("conditional update", conditional_update, 200),
        ):
            assert (await call()).status_code == status  # prepares what it needs
            sent.clear()
            response = await call()
            assert response.status_code == status, response.text
            assert statements(sent) == {"statement": 1}, (name, dict(sent))

    async def test_failed_match_takes_one_more_read(
        self, committing_client: httpx.AsyncClient, sent: Counter[str]
    ) -> None:
        """A 404 or 412 needs the second statement that tells them apart, and no more."""
        client = committing_client
        headers = await register(client)
        task = (await client.post(TASKS, json={"title": "t"}, headers=headers)).json()
        stale = {**headers, "If-Match": '"7"'}
        for _ in range(2):  # the second time, everything is prepared
            sent.clear()
            response = await client.patch(
                f"{TASKS}/{task['id']}", json={"title": "x"}, headers=stale
            )
            assert response.status_code == 412
        assert statements(sent) == {"statement": 2}
        for _ in range(2):
            sent.clear()
            response = await client.get(f"{TASKS}/{task['id'] + 1000}", headers=headers)
            assert response.status_code == 404
        assert statements(sent) == {"statement": 2}
