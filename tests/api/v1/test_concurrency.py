"""Races on `/api/v1/tasks`: simultaneous writers, conditional writes, creates and deletes.

Every request here goes through `committing_client`: each one runs on its own pooled
connection and really commits, so `asyncio.gather` makes them race as real clients would
(on SQLite they queue on the write lock; on PostgreSQL they contend on row locks). Users are
registered and logged in over HTTP, so they are committed too; the fixture empties the tables
afterwards. Every test runs on SQLite and on PostgreSQL.

What the contract (section 3) promises under concurrency:
- `If-Match` is a compare-and-set: of many writers holding the same tag, exactly one wins and
  the others get 412 (or 404 once the winner has moved the task to the trash), changing
  nothing;
- `version` starts at 1 and grows by one on every change, so unconditional writers never lose
  an increment, and each of them sees its own version;
- creates never collide, and every task belongs to whoever created it;
- no race ever turns into a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.conftest import Headers
from tests.conftest import TEST_PASSWORD
from tests.support import assert_problem

TASKS = "/api/v1/tasks"
USERS = "/api/v1/users"
TOKEN = "/api/v1/auth/token"
WRITERS = 10


# --- helpers --------------------------------------------------------------------------------


async def register(client: httpx.AsyncClient, label: str) -> Headers:
    """A new committed user, logged in over HTTP; its auth headers."""
    email = f"{label}-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(USERS, json={"email": email, "password": TEST_PASSWORD})
    assert registered.status_code == 201, registered.text
    token = await client.post(TOKEN, data={"username": email, "password": TEST_PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def create(client: httpx.AsyncClient, headers: Headers, **body: Any) -> dict[str, Any]:
    response = await client.post(TASKS, json={"title": "Contended", **body}, headers=headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    assert response.headers["etag"] == f'"{task["version"]}"'
    return task


async def fetch(client: httpx.AsyncClient, headers: Headers, task_id: int) -> httpx.Response:
    return await client.get(f"{TASKS}/{task_id}", headers=headers)


async def current(client: httpx.AsyncClient, headers: Headers, task_id: int) -> dict[str, Any]:
    """The live task as the server has it now (its ETag checked against its version)."""
    response = await fetch(client, headers, task_id)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    assert response.headers["etag"] == f'"{task["version"]}"'
    return task


async def walk(client: httpx.AsyncClient, headers: Headers, **params: Any) -> list[dict[str, Any]]:
    """Every item of a listing, following `next_cursor` to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        query = params if cursor is None else {**params, "cursor": cursor}
        response = await client.get(TASKS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert body["items"], "a page with a next cursor must not be empty"
    pytest.fail("the walk did not end within 100 pages")


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def assert_no_server_error(responses: list[httpx.Response]) -> None:
    failed = [(r.request.method, r.request.url.path, r.status_code, r.text) for r in responses]
    assert all(status < 500 for _, _, status, _ in failed), [f for f in failed if f[2] >= 500]


@pytest.fixture
async def owner(committing_client: httpx.AsyncClient) -> Headers:
    return await register(committing_client, "racer")


# --- conditional writes ---------------------------------------------------------------------


class TestConditionalPatchRace:
    """Ten writers PATCH with the same `If-Match`: one wins, nine get 412."""

    async def test_exactly_one_writer_wins(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        task = await create(committing_client, owner)
        tag = '"1"'

        responses = await asyncio.gather(
            *(
                committing_client.patch(
                    f"{TASKS}/{task['id']}",
                    json={"title": f"Writer {n}"},
                    headers={**owner, "If-Match": tag},
                )
                for n in range(WRITERS)
            )
        )

        assert statuses(responses) == {200: 1, 412: WRITERS - 1}, statuses(responses)
        [winner] = [r for r in responses if r.status_code == 200]
        for loser in responses:
            if loser.status_code == 412:
                assert_problem(loser, 412)
        won = winner.json()
        assert won["version"] == 2
        assert winner.headers["etag"] == '"2"'
        assert won["title"] == json.loads(winner.request.content)["title"]

        final = await current(committing_client, owner, task["id"])
        assert final["version"] == 2
        assert final["title"] == won["title"]
        assert final["updated_at"] == won["updated_at"]

    async def test_the_losers_tag_stays_stale(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        task = await create(committing_client, owner, description="before")
        responses = await asyncio.gather(
            *(
                committing_client.patch(
                    f"{TASKS}/{task['id']}",
                    json={"description": f"by writer {n}"},
                    headers={**owner, "If-Match": '"1"'},
                )
                for n in range(WRITERS)
            )
        )
        assert statuses(responses) == {200: 1, 412: WRITERS - 1}, statuses(responses)
        won = next(r for r in responses if r.status_code == 200).json()

        # A loser that retries with the same tag still changes nothing.
        retry = await committing_client.patch(
            f"{TASKS}/{task['id']}",
            json={"description": "late"},
            headers={**owner, "If-Match": '"1"'},
        )
        assert_problem(retry, 412)
        final = await current(committing_client, owner, task["id"])
        assert final["version"] == 2
        assert final["description"] == won["description"]


class TestConditionalDeleteRace:
    """Ten DELETEs with the same `If-Match`: one 204, the rest 412 or 404."""

    async def test_exactly_one_delete_wins(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        task = await create(committing_client, owner)

        responses = await asyncio.gather(
            *(
                committing_client.delete(
                    f"{TASKS}/{task['id']}", headers={**owner, "If-Match": '"1"'}
                )
                for _ in range(WRITERS)
            )
        )

        counts = statuses(responses)
        assert counts[204] == 1, counts
        assert set(counts) <= {204, 404, 412}, counts
        for loser in responses:
            if loser.status_code != 204:
                assert_problem(loser, loser.status_code)

        assert_problem(await fetch(committing_client, owner, task["id"]), 404)
        trash = await walk(committing_client, owner, deleted="true")
        assert [item["id"] for item in trash] == [task["id"]]
        # Moved to the trash once: one more version, not one per delete attempt.
        assert trash[0]["version"] == 2
        assert trash[0]["deleted_at"] is not None

    async def test_patch_and_delete_with_the_same_tag(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        """Five PATCHes and five DELETEs holding tag 1: exactly one write of either kind."""
        task = await create(committing_client, owner)
        url = f"{TASKS}/{task['id']}"
        conditional = {**owner, "If-Match": '"1"'}
        requests: list[Awaitable[httpx.Response]] = []
        for n in range(WRITERS // 2):
            requests.append(
                committing_client.patch(url, json={"title": f"Patcher {n}"}, headers=conditional)
            )
            requests.append(committing_client.delete(url, headers=conditional))

        responses = await asyncio.gather(*requests)

        counts = statuses(responses)
        assert counts[200] + counts[204] == 1, counts
        losers = [r for r in responses if r.status_code not in (200, 204)]
        for loser in losers:
            assert_problem(loser, loser.status_code)
        if counts[200]:
            # The task is still live at version 2: every other tag-1 write is stale (412).
            won = next(r for r in responses if r.status_code == 200).json()
            assert {r.status_code for r in losers} == {412}
            final = await current(committing_client, owner, task["id"])
            assert (final["version"], final["title"]) == (2, won["title"])
        else:
            assert {r.status_code for r in losers} <= {404, 412}
            [trashed] = await walk(committing_client, owner, deleted="true")
            assert (trashed["id"], trashed["version"], trashed["title"]) == (
                task["id"],
                2,
                "Contended",
            )


# --- unconditional writes -------------------------------------------------------------------


class TestUnconditionalWritesLoseNothing:
    """Without `If-Match` every writer succeeds, and every change counts exactly once."""

    async def test_every_title_change_gets_its_own_version(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        task = await create(committing_client, owner)
        titles = [f"Title {n}" for n in range(WRITERS)]

        responses = await asyncio.gather(
            *(
                committing_client.patch(
                    f"{TASKS}/{task['id']}", json={"title": title}, headers=owner
                )
                for title in titles
            )
        )

        assert statuses(responses) == {200: WRITERS}, [r.text for r in responses]
        versions = [r.json()["version"] for r in responses]
        assert len(set(versions)) == WRITERS, f"two writers saw the same version: {versions}"
        assert set(versions) == set(range(2, WRITERS + 2))
        for response, title in zip(responses, titles, strict=True):
            body = response.json()
            assert body["title"] == title
            assert response.headers["etag"] == f'"{body["version"]}"'

        final = await current(committing_client, owner, task["id"])
        assert final["version"] == 1 + WRITERS
        last = max((r.json() for r in responses), key=lambda body: body["version"])
        assert final["title"] == last["title"]

    async def test_changes_to_different_fields_all_survive(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        task = await create(committing_client, owner)
        changes: list[dict[str, Any]] = [
            {"title": "Renamed"},
            {"description": "Described"},
            {"status": "done"},
            {"priority": "urgent"},
            {"due_at": "2031-01-02T03:04:05.678Z"},
        ]

        responses = await asyncio.gather(
            *(
                committing_client.patch(f"{TASKS}/{task['id']}", json=change, headers=owner)
                for change in changes
            )
        )

        assert statuses(responses) == {200: len(changes)}, [r.text for r in responses]
        versions = sorted(r.json()["version"] for r in responses)
        assert versions == list(range(2, len(changes) + 2))
        final = await current(committing_client, owner, task["id"])
        assert final["version"] == 1 + len(changes)
        for change in changes:
            for field, value in change.items():
                assert final[field] == value, f"the change to {field} was lost: {final}"
        assert final["completed_at"] is not None


# --- creates --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Creator:
    name: str
    headers: Headers


class TestConcurrentCreates:
    USER_COUNT = 4
    EACH = 50

    @pytest.fixture
    async def creators(self, committing_client: httpx.AsyncClient) -> list[Creator]:
        return [
            Creator(f"user{n}", await register(committing_client, f"creator{n}"))
            for n in range(self.USER_COUNT)
        ]

    async def test_two_hundred_creates_by_four_users(
        self, committing_client: httpx.AsyncClient, creators: list[Creator]
    ) -> None:
        # Interleaved, so that every user's creates race every other user's.
        jobs = [(creator, n) for n in range(self.EACH) for creator in creators]

        responses = await asyncio.gather(
            *(
                committing_client.post(
                    TASKS, json={"title": f"{creator.name} #{n}"}, headers=creator.headers
                )
                for creator, n in jobs
            )
        )

        assert_no_server_error(responses)
        assert statuses(responses) == {201: len(jobs)}, statuses(responses)
        created: dict[str, dict[int, str]] = {creator.name: {} for creator in creators}
        for (creator, n), response in zip(jobs, responses, strict=True):
            body = response.json()
            assert body["title"] == f"{creator.name} #{n}"
            assert body["version"] == 1
            assert response.headers["location"] == f"{TASKS}/{body['id']}"
            assert response.headers["etag"] == '"1"'
            created[creator.name][body["id"]] = body["title"]
        all_ids = [task_id for mine in created.values() for task_id in mine]
        assert len(set(all_ids)) == len(jobs), "two creates got the same id"

        for creator in creators:
            listed = await walk(committing_client, creator.headers, limit=15)
            ids = [item["id"] for item in listed]
            assert len(ids) == self.EACH
            assert len(set(ids)) == self.EACH, "a task was listed twice"
            assert set(ids) == set(created[creator.name]), creator.name
            assert {item["id"]: item["title"] for item in listed} == created[creator.name]
            # Newest first: created_at (shown to the millisecond) never increases.
            stamps = [item["created_at"] for item in listed]
            assert stamps == sorted(stamps, reverse=True)


# --- creates and deletes interleaved --------------------------------------------------------


class TestCreatesAndDeletesInterleaved:
    async def test_no_server_error_and_a_consistent_end_state(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        existing = [
            (await create(committing_client, owner, title=f"Old {n}"))["id"] for n in range(20)
        ]
        new_ids: list[int] = []
        chained_ids: list[int] = []

        async def create_new(n: int) -> list[httpx.Response]:
            response = await committing_client.post(
                TASKS, json={"title": f"New {n}"}, headers=owner
            )
            if response.status_code == 201:
                new_ids.append(response.json()["id"])
            return [response]

        async def create_then_delete(n: int) -> list[httpx.Response]:
            created = await committing_client.post(
                TASKS, json={"title": f"Short-lived {n}"}, headers=owner
            )
            if created.status_code != 201:
                return [created]
            task_id = created.json()["id"]
            chained_ids.append(task_id)
            deleted = await committing_client.delete(f"{TASKS}/{task_id}", headers=owner)
            return [created, deleted]

        async def delete(task_id: int) -> list[httpx.Response]:
            return [await committing_client.delete(f"{TASKS}/{task_id}", headers=owner)]

        async def listing() -> list[httpx.Response]:
            return [await committing_client.get(TASKS, params={"limit": 7}, headers=owner)]

        jobs: list[Callable[[], Awaitable[list[httpx.Response]]]] = []
        for n, task_id in enumerate(existing):
            # Every old task is deleted twice at once; new tasks come and go around them.
            jobs += [
                lambda task_id=task_id: delete(task_id),
                lambda task_id=task_id: delete(task_id),
                lambda n=n: create_new(n),
                lambda n=n: create_then_delete(n),
            ]
        jobs += [listing for _ in range(10)]
        random.Random(20301).shuffle(jobs)

        results = await asyncio.gather(*(job() for job in jobs))
        responses = [response for result in results for response in result]

        assert_no_server_error(responses)
        by_path: dict[tuple[str, str], list[int]] = {}
        for response in responses:
            key = (response.request.method, response.request.url.path)
            by_path.setdefault(key, []).append(response.status_code)
        for task_id in existing:
            # Deleting twice at once: one moves it to the trash, the other finds it gone.
            assert sorted(by_path[("DELETE", f"{TASKS}/{task_id}")]) == [204, 404]
        for task_id in chained_ids:
            assert by_path[("DELETE", f"{TASKS}/{task_id}")] == [204]
        assert sorted(by_path[("POST", TASKS)]) == [201] * 40
        assert set(by_path[("GET", TASKS)]) == {200}
        for response in responses:
            if response.status_code == 404:
                assert_problem(response, 404)

        live = [item["id"] for item in await walk(committing_client, owner, limit=9)]
        assert sorted(live) == sorted(new_ids)
        trash = await walk(committing_client, owner, limit=9, deleted="true")
        assert sorted(item["id"] for item in trash) == sorted(existing + chained_ids)
        assert {item["version"] for item in trash} == {2}

    async def test_patches_racing_a_delete(
        self, committing_client: httpx.AsyncClient, owner: Headers
    ) -> None:
        """Writers that lose to a delete get 404; those that won each left one version."""
        task = await create(committing_client, owner)
        url = f"{TASKS}/{task['id']}"
        requests: list[Awaitable[httpx.Response]] = [
            committing_client.patch(url, json={"title": f"Racer {n}"}, headers=owner)
            for n in range(WRITERS)
        ]
        requests.insert(WRITERS // 2, committing_client.delete(url, headers=owner))

        responses = await asyncio.gather(*requests)

        assert_no_server_error(responses)
        deleted = responses[WRITERS // 2]
        assert deleted.status_code == 204
        patches = responses[: WRITERS // 2] + responses[WRITERS // 2 + 1 :]
        counts = statuses(patches)
        assert set(counts) <= {200, 404}, counts
        for response in patches:
            if response.status_code == 404:
                assert_problem(response, 404)
        [trashed] = await walk(committing_client, owner, deleted="true")
        assert trashed["version"] == 1 + counts[200] + 1
        if counts[200]:
            last = max(
                (r.json() for r in patches if r.status_code == 200), key=lambda b: b["version"]
            )
            assert trashed["title"] == last["title"]
