"""History on a PostgreSQL server whose default time zone is not UTC.

An event's `changes` are computed by the statement that writes it (decision 0030), so its
timestamps are turned into text by PostgreSQL, in the session's time zone. On a server set to
Asia/Tokyo a due date at the top of the accepted range read "10000-01-01T08:00:00+09:00", and
on one set to America/New_York one at the bottom read "0001-12-31T20:03:58-04:56:02 BC":
Python could not parse either, and every activity page and feed page holding the event was a
500 (the webhook fan-out stopped on it too). The service's sessions are in UTC whatever the
server's default; an event stored before that is shown as stored rather than failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.schemas.event import shown_changes
from tests.conftest import _pg_admin, create_database, drop_database, make_settings, run_alembic

PASSWORD = "a long enough password"


@pytest.fixture(params=["Asia/Tokyo", "America/New_York"])
async def http(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    url = await create_database("postgresql", tmp_path)
    try:
        name = url.rsplit("/", 1)[1]
        await _pg_admin(f"ALTER DATABASE \"{name}\" SET timezone TO '{request.param}'")
        run_alembic(url)
        app: FastAPI = create_app(make_settings(url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c
    finally:
        await drop_database(url)


async def _signed_in(http: httpx.AsyncClient) -> dict[str, str]:
    email = "zone@example.com"
    created = await http.post("/api/v2/users", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    token = await http.post("/api/v2/auth/token", data={"username": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.mark.parametrize("due_at", ["9999-12-31T23:00:00Z", "0001-01-01T01:00:00Z"])
async def test_a_due_date_at_an_edge_of_the_range_is_shown_in_the_history(
    http: httpx.AsyncClient, due_at: str
) -> None:
    headers = await _signed_in(http)
    task = await http.post("/api/v2/tasks", json={"title": "Edge"}, headers=headers)
    assert task.status_code == 201, task.text
    edited = await http.patch(
        f"/api/v2/tasks/{task.json()['id']}", json={"due_at": due_at}, headers=headers
    )
    assert edited.status_code == 200, edited.text
    shown = edited.json()["due_at"]  # as the task shows it
    assert shown.startswith(due_at[:19])

    activity = await http.get(f"/api/v2/tasks/{task.json()['id']}/activity", headers=headers)
    assert activity.status_code == 200, activity.text
    assert activity.json()["items"][0]["changes"] == {"due_at": [None, shown]}
    feed = await http.get("/api/v2/changes", params={"limit": 1000}, headers=headers)
    assert feed.status_code == 200, feed.text
    assert feed.json()["items"][-1]["changes"] == {"due_at": [None, shown]}


def test_a_timestamp_stored_in_another_zone_past_the_range_is_shown_as_stored() -> None:
    stored = '{"due_at": [null, "10000-01-01T08:00:00+09:00"]}'
    assert shown_changes("task", stored) == {"due_at": [None, "10000-01-01T08:00:00+09:00"]}
    stored = '{"due_at": ["2026-12-07T19:00:00+09:00", null]}'  # an ordinary one: in UTC
    assert shown_changes("task", stored) == {"due_at": ["2026-12-07T10:00:00.000Z", None]}
