"""Conditional task writes as a client meets them: entity tags compare exactly, and a write
that changes nothing keeps the task's version and `ETag` (contract section 3: `version` grows
"+1 on every change"; `ETag` is a strong entity tag derived from it).

- `If-Match: "04"` does not match version 4 (strong comparison: the opaque tags must be equal
  character by character); `If-None-Match` compares weakly, so `W/"4"` names version 4, but
  `"04"` still does not.
- A `PATCH` that sets fields to the values they hold answers 200 with the task as it is: the
  same `version`, `updated_at` and `ETag`, so no other client's tag goes stale. It still honours
  `If-Match` (a stale tag is a 412), the caller check (401) and ownership (404).

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.api.conftest import Headers
from tests.conftest import TEST_PASSWORD
from tests.support import assert_problem

TASKS = "/api/v1/tasks"
TRIALS = 4
WRITERS = 8

FULL = {
    "title": "Plan the release",
    "description": "Every step, in order",
    "status": "in_progress",
    "priority": "high",
    "due_at": "2031-01-02T03:04:05.678Z",
}


def task_url(task_id: object) -> str:
    return f"{TASKS}/{task_id}"


def etag(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == f'"{body["version"]}"'
    return response.headers["etag"]


async def create(client: httpx.AsyncClient, headers: Headers, **body: Any) -> dict[str, Any]:
    response = await client.post(TASKS, json={**FULL, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def read(client: httpx.AsyncClient, headers: Headers, task_id: int) -> httpx.Response:
    response = await client.get(task_url(task_id), headers=headers)
    assert response.status_code == 200, response.text
    return response


def writable(task: dict[str, Any]) -> dict[str, Any]:
    """The task's writable fields as a client would send them back."""
    return {field: task[field] for field in FULL}


@pytest.fixture
async def task(client: httpx.AsyncClient, alice_h: Headers) -> dict[str, Any]:
    return await create(client, alice_h)


@pytest.fixture
async def at_version_4(
    client: httpx.AsyncClient, alice_h: Headers, task: dict[str, Any]
) -> dict[str, Any]:
    for n in range(3):
        response = await client.patch(
            task_url(task["id"]), json={"title": f"Step {n}"}, headers=alice_h
        )
        assert response.status_code == 200, response.text
    current = (await read(client, alice_h, task["id"])).json()
    assert current["version"] == 4
    return current


# --- entity tags compare exactly --------------------------------------------------------------


LEADING_ZEROS = ['"04"', '"004"', '"04", "05"', '"0004"']


class TestIfMatchIsStrong:
    @pytest.mark.parametrize("header", LEADING_ZEROS)
    async def test_a_zero_padded_tag_is_stale_for_patch(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        at_version_4: dict[str, Any],
        header: str,
    ) -> None:
        url = task_url(at_version_4["id"])
        response = await client.patch(
            url, json={"title": "Not applied"}, headers={**alice_h, "If-Match": header}
        )
        assert_problem(response, 412)
        assert (await read(client, alice_h, at_version_4["id"])).json() == at_version_4

        applied = await client.patch(
            url, json={"title": "Applied"}, headers={**alice_h, "If-Match": '"4"'}
        )
        assert etag(applied) == '"5"'
        assert applied.json()["title"] == "Applied"

    @pytest.mark.parametrize("header", LEADING_ZEROS)
    async def test_a_zero_padded_tag_is_stale_for_delete(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        at_version_4: dict[str, Any],
        header: str,
    ) -> None:
        url = task_url(at_version_4["id"])
        response = await client.delete(url, headers={**alice_h, "If-Match": header})
        assert_problem(response, 412)
        assert (await read(client, alice_h, at_version_4["id"])).json() == at_version_4
        deleted = await client.delete(url, headers={**alice_h, "If-Match": '"4"'})
        assert deleted.status_code == 204

    async def test_a_zero_padded_tag_is_stale_for_a_no_op_too(
        self, client: httpx.AsyncClient, alice_h: Headers, at_version_4: dict[str, Any]
    ) -> None:
        response = await client.patch(
            task_url(at_version_4["id"]),
            json=writable(at_version_4),
            headers={**alice_h, "If-Match": '"04"'},
        )
        assert_problem(response, 412)


class TestIfNoneMatchComparesOpaqueTagsExactly:
    @pytest.mark.parametrize("header", ['"4"', 'W/"4"', '"3", W/"4"'])
    async def test_the_current_tag_is_304(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        at_version_4: dict[str, Any],
        header: str,
    ) -> None:
        response = await client.get(
            task_url(at_version_4["id"]), headers={**alice_h, "If-None-Match": header}
        )
        assert response.status_code == 304
        assert response.headers["etag"] == '"4"'
        assert response.content == b""

    @pytest.mark.parametrize("header", [*LEADING_ZEROS, 'W/"04"', '"+4"'])
    async def test_another_spelling_gets_the_task(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        at_version_4: dict[str, Any],
        header: str,
    ) -> None:
        response = await client.get(
            task_url(at_version_4["id"]), headers={**alice_h, "If-None-Match": header}
        )
        assert etag(response) == '"4"'
        assert response.json() == at_version_4


# --- a write that changes nothing -----------------------------------------------------------


class TestNoOpPatch:
    async def test_every_field_at_its_value_keeps_version_and_etag(
        self, client: httpx.AsyncClient, alice_h: Headers, task: dict[str, Any]
    ) -> None:
        before = await read(client, alice_h, task["id"])

        response = await client.patch(task_url(task["id"]), json=writable(task), headers=alice_h)

        assert etag(response) == before.headers["etag"] == '"1"'
        assert response.json() == before.json()
        after = await read(client, alice_h, task["id"])
        assert after.json() == before.json()
        assert after.headers["etag"] == before.headers["etag"]

    @pytest.mark.parametrize(
        "body",
        [
            {"title": FULL["title"]},
            {"description": FULL["description"]},
            {"status": FULL["status"]},
            {"priority": FULL["priority"]},
            {"due_at": FULL["due_at"]},
            {"due_at": "2031-01-02T05:04:05.678+02:00"},  # the same instant, another offset
            {"title": f"  {FULL['title']} "},  # trimmed, as every title is
            {"status": FULL["status"], "priority": FULL["priority"]},
        ],
        ids=str,
    )
    async def test_any_subset_at_its_value_changes_nothing(
        self,
        client: httpx.AsyncClient,
        alice_h: Headers,
        task: dict[str, Any],
        body: dict[str, Any],
    ) -> None:
        response = await client.patch(task_url(task["id"]), json=body, headers=alice_h)
        assert etag(response) == '"1"'
        assert response.json() == task

    async def test_cleared_fields_cleared_again(
        self, client: httpx.AsyncClient, alice_h: Headers
    ) -> None:
        bare = await create(client, alice_h, description=None, due_at=None)
        response = await client.patch(
            task_url(bare["id"]), json={"description": None, "due_at": None}, headers=alice_h
        )
        assert etag(response) == '"1"'
        assert response.json() == bare

    async def test_one_real_change_among_same_values_is_one_version(
        self, client: httpx.AsyncClient, alice_h: Headers, task: dict[str, Any]
    ) -> None:
        body = {**writable(task), "priority": "urgent"}
        response = await client.patch(task_url(task["id"]), json=body, headers=alice_h)
        assert etag(response) == '"2"'
        changed = response.json()
        assert changed["priority"] == "urgent"
        assert changed["updated_at"] > task["updated_at"]
        moved = {"priority", "version", "updated_at"}
        assert {k: v for k, v in changed.items() if k not in moved} == {
            k: v for k, v in task.items() if k not in moved
        }

    async def test_other_clients_tags_stay_good(
        self, client: httpx.AsyncClient, alice_h: Headers, task: dict[str, Any]
    ) -> None:
        """Another client read the task; a no-op by someone else leaves its tag current."""
        url = task_url(task["id"])
        theirs = (await read(client, alice_h, task["id"])).headers["etag"]
        for _ in range(3):
            assert etag(await client.patch(url, json=writable(task), headers=alice_h)) == theirs

        cached = await client.get(url, headers={**alice_h, "If-None-Match": theirs})
        assert cached.status_code == 304
        applied = await client.patch(
            url, json={"title": "Their change"}, headers={**alice_h, "If-Match": theirs}
        )
        assert etag(applied) == '"2"'
        assert applied.json()["title"] == "Their change"

    async def test_if_match_still_applies(
        self, client: httpx.AsyncClient, alice_h: Headers, at_version_4: dict[str, Any]
    ) -> None:
        url = task_url(at_version_4["id"])
        same = writable(at_version_4)
        for header in ('"4"', '"3", "4"', "*"):
            response = await client.patch(url, json=same, headers={**alice_h, "If-Match": header})
            assert etag(response) == '"4"', header
            assert response.json() == at_version_4
        for header in ('"3"', '"5"', 'W/"4"', '"1", "2"'):
            response = await client.patch(url, json=same, headers={**alice_h, "If-Match": header})
            assert_problem(response, 412)
        assert (await read(client, alice_h, at_version_4["id"])).json() == at_version_4

    async def test_done_again_keeps_the_completion_time(
        self, client: httpx.AsyncClient, alice_h: Headers, task: dict[str, Any]
    ) -> None:
        url = task_url(task["id"])
        done = await client.patch(url, json={"status": "done"}, headers=alice_h)
        assert etag(done) == '"2"'
        assert done.json()["completed_at"] is not None
        again = await client.patch(url, json={"status": "done"}, headers=alice_h)
        assert etag(again) == '"2"'
        assert again.json() == done.json()
        # A real change to a done task keeps the completion time, as before.
        renamed = await client.patch(url, json={"title": "Renamed"}, headers=alice_h)
        assert etag(renamed) == '"3"'
        assert renamed.json()["completed_at"] == done.json()["completed_at"]

    async def test_a_revoked_token_is_still_401(
        self, client: httpx.AsyncClient, alice_h: Headers, task: dict[str, Any]
    ) -> None:
        changed = await client.patch(
            "/api/v1/users/me",
            json={"password": "a brand new long passphrase", "current_password": TEST_PASSWORD},
            headers=alice_h,
        )
        assert changed.status_code == 200, changed.text
        response = await client.patch(task_url(task["id"]), json=writable(task), headers=alice_h)
        assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]

    async def test_someone_elses_task_is_still_404(
        self, client: httpx.AsyncClient, bob_h: Headers, task: dict[str, Any]
    ) -> None:
        theirs = await client.patch(task_url(task["id"]), json=writable(task), headers=bob_h)
        missing = await client.patch(task_url(2**62), json=writable(task), headers=bob_h)
        assert assert_problem(theirs, 404)["detail"] == assert_problem(missing, 404)["detail"]

    async def test_a_trashed_task_is_still_404(
        self, client: httpx.AsyncClient, alice_h: Headers, task: dict[str, Any]
    ) -> None:
        url = task_url(task["id"])
        assert (await client.delete(url, headers=alice_h)).status_code == 204
        assert_problem(await client.patch(url, json=writable(task), headers=alice_h), 404)


# --- no-ops racing (requests that really commit) --------------------------------------------


async def register(client: httpx.AsyncClient) -> Headers:
    email = f"no-op-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(
        "/api/v1/users", json={"email": email, "password": TEST_PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    token = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": TEST_PASSWORD}
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


class TestNoOpsRacing:
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_same_value_writers_all_keep_their_tag(
        self, committing_client: httpx.AsyncClient, trial: int
    ) -> None:
        """Several clients holding tag 1 write what the task already holds, at once: none of
        them changes anything, so none of them makes the others' tag stale."""
        client = committing_client
        owner = await register(client)
        task = await create(client, owner, title=f"Trial {trial}")

        responses = await asyncio.gather(
            *(
                client.patch(
                    task_url(task["id"]), json=writable(task), headers={**owner, "If-Match": '"1"'}
                )
                for _ in range(WRITERS)
            )
        )

        assert Counter(r.status_code for r in responses) == {200: WRITERS}, [
            r.text for r in responses
        ]
        assert all(etag(r) == '"1"' and r.json() == task for r in responses)
        assert (await read(client, owner, task["id"])).json() == task

    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_a_no_op_never_costs_a_real_change_its_tag(
        self, committing_client: httpx.AsyncClient, trial: int
    ) -> None:
        """A no-op and a real change, both holding tag 1, sent together: the change is
        applied (version 2); the no-op is a 200 at version 1 if it came first, or a 412."""
        client = committing_client
        owner = await register(client)
        task = await create(client, owner, title=f"Trial {trial}")
        conditional = {**owner, "If-Match": '"1"'}

        no_op, change = await asyncio.gather(
            client.patch(task_url(task["id"]), json=writable(task), headers=conditional),
            client.patch(task_url(task["id"]), json={"title": "Changed"}, headers=conditional),
        )

        assert etag(change) == '"2"'
        assert change.json()["title"] == "Changed"
        if no_op.status_code == 200:
            assert etag(no_op) == '"1"'
            assert no_op.json() == task
        else:
            assert_problem(no_op, 412)
        final = (await read(client, owner, task["id"])).json()
        assert (final["version"], final["title"]) == (2, "Changed")
