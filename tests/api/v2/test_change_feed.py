"""The change feed (`GET /api/v2/changes`, spec api-v2 section 7), with real commits.

Every request goes through `committing_client` (each on its own pooled connection, really
committed), on SQLite and on PostgreSQL. What a client keeping a copy in sync would notice:
- walking the feed from any cursor gives every event after it exactly once, in log order,
  each with its entity as a GET shows it now (null once gone), and the cursor to poll from;
- an outsider never sees another project's events;
- on PostgreSQL, a transaction that began before a read and commits after it is not skipped:
  its events come on the next read (the horizon, docs/decisions/0030);
- concurrent writers and a concurrent reader: the reader ends having seen every write once;
- a cursor from before what retention removed is a 410; a forged one a 422.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncTransaction

from app.api.paging import cursor_key
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import events
from app.db.statements.events import Position
from app.models.project import Invitation
from app.models.user import User
from app.services import history
from tests.api.v2.conftest import V2
from tests.api.v2.test_project_races import Account, join, racing, register
from tests.support import assert_problem

__all__ = ["racing"]  # a fixture these tests use

CHANGES = f"{V2}/changes"


async def read(client: httpx.AsyncClient, account: Account, **query: Any) -> dict[str, Any]:
    response = await client.get(CHANGES, params=query, headers=account.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    assert isinstance(page["next_cursor"], str)
    return page


async def walk(
    client: httpx.AsyncClient, account: Account, cursor: str | None = None, limit: int = 3
) -> tuple[list[dict[str, Any]], str]:
    """Every event after `cursor` (from the start without one), reading until `has_more`
    is false; and the cursor to poll from."""
    items: list[dict[str, Any]] = []
    while True:
        query: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            query["cursor"] = cursor
        page = await read(client, account, **query)
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor


async def new_project(client: httpx.AsyncClient, owner: Account, name: str = "Sync") -> int:
    created = await client.post(f"{V2}/projects", json={"name": name}, headers=owner.headers)
    assert created.status_code == 201, created.text
    project_id: int = created.json()["id"]
    return project_id


async def new_task(
    client: httpx.AsyncClient, account: Account, project_id: int, title: str = "Sync me"
) -> dict[str, Any]:
    created = await client.post(
        f"{V2}/tasks", json={"title": title, "project_id": project_id}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    task: dict[str, Any] = created.json()
    return task


async def invite_someone(
    client: httpx.AsyncClient, owner: Account, project_id: int
) -> dict[str, Any]:
    """An invitation of someone@example.com, an editor, to the project."""
    invited = await client.post(
        f"{V2}/projects/{project_id}/invitations",
        json={"email": "someone@example.com", "role": "editor"},
        headers=owner.headers,
    )
    assert invited.status_code == 201, invited.text
    invitation: dict[str, Any] = invited.json()
    return invitation


def task_events(items: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(item["action"], item["entity_id"]) for item in items if item["entity"] == "task"]


@pytest.fixture
async def owner(racing: httpx.AsyncClient) -> Account:
    return await register(racing, "owner")


class TestWalking:
    async def test_every_event_once_with_the_entity_as_it_is_now(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        project_id = await new_project(racing, owner)
        kept = await new_task(racing, owner, project_id, "Kept")
        gone = await new_task(racing, owner, project_id, "Gone")
        renamed = await racing.patch(
            f"{V2}/tasks/{kept['id']}", json={"title": "Kept, renamed"}, headers=owner.headers
        )
        assert renamed.status_code == 200
        deleted = await racing.delete(f"{V2}/tasks/{gone['id']}", headers=owner.headers)
        assert deleted.status_code == 204

        items, _ = await walk(racing, owner, limit=2)
        assert task_events(items) == [
            ("created", kept["id"]),
            ("created", gone["id"]),
            ("updated", kept["id"]),
            ("deleted", gone["id"]),
        ]
        ids = [item["id"] for item in items]
        assert len(ids) == len(set(ids))
        now = (await racing.get(f"{V2}/tasks/{kept['id']}", headers=owner.headers)).json()
        for item in items:
            if item["entity"] == "task":
                # The entity as a GET shows it now: the renamed task, the trashed one gone.
                expected = now if item["entity_id"] == kept["id"] else None
                assert item["object"] == expected
        updated = next(item for item in items if item["action"] == "updated")
        assert updated["changes"] == {"title": ["Kept", "Kept, renamed"]}
        assert updated["actor"]["id"] == owner.id

    async def test_the_first_instant_in_the_changes(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        """A due date of 0001-01-01T00:00:00Z, stored as -infinity on PostgreSQL: the feed
        shows it as the task does. Before, every page holding its events answered 500, so a
        client could never read past them (a black-box run, 2026-12-07)."""
        project_id = await new_project(racing, owner)
        created = await racing.post(
            f"{V2}/tasks",
            json={"title": "Long ago", "project_id": project_id, "due_at": "0001-01-01T00:00:00Z"},
            headers=owner.headers,
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        cleared = await racing.patch(
            f"{V2}/tasks/{task_id}", json={"due_at": None}, headers=owner.headers
        )
        assert cleared.status_code == 200, cleared.text
        items, _ = await walk(racing, owner, limit=1)
        first = "0001-01-01T00:00:00.000Z"
        assert [item["changes"]["due_at"] for item in items if item["entity"] == "task"] == [
            [None, first],
            [first, None],
        ]

    async def test_a_deleted_comments_events_stay_tombstones_after_the_next_comment(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        """The next comment (label) never takes a deleted one's id, so the old one's events
        do not show it (SQLite reuses the highest id of a table without AUTOINCREMENT)."""
        project_id = await new_project(racing, owner)
        task = await new_task(racing, owner, project_id)
        comments = f"{V2}/tasks/{task['id']}/comments"
        labels = f"{V2}/projects/{project_id}/labels"
        first = await racing.post(comments, json={"body": "first"}, headers=owner.headers)
        label = await racing.post(labels, json={"name": "old"}, headers=owner.headers)
        assert (first.status_code, label.status_code) == (201, 201), label.text
        old = {"comment": first.json()["id"], "label": label.json()["id"]}
        for url, entity in ((comments, "comment"), (labels, "label")):
            gone = await racing.delete(f"{url}/{old[entity]}", headers=owner.headers)
            assert gone.status_code == 204, gone.text
        second = await racing.post(comments, json={"body": "second"}, headers=owner.headers)
        label = await racing.post(labels, json={"name": "new"}, headers=owner.headers)
        assert (second.status_code, label.status_code) == (201, 201), label.text
        new = {"comment": second.json(), "label": label.json()}

        items, _ = await walk(racing, owner, limit=50)
        for entity in ("comment", "label"):
            assert new[entity]["id"] != old[entity]
            seen = [
                (item["action"], item["entity_id"], item["object"])
                for item in items
                if item["entity"] == entity
            ]
            assert seen == [
                ("created", old[entity], None),
                ("deleted", old[entity], None),
                ("created", new[entity]["id"], new[entity]),
            ]

    async def test_polling_from_the_cursor_gives_only_what_is_new(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        project_id = await new_project(racing, owner)
        await new_task(racing, owner, project_id)
        _, cursor = await walk(racing, owner)
        quiet = await read(racing, owner, cursor=cursor)
        assert quiet["items"] == []
        assert quiet["has_more"] is False
        later = await new_task(racing, owner, project_id, "Later")
        page = await read(racing, owner, cursor=quiet["next_cursor"])
        assert task_events(page["items"]) == [("created", later["id"])]

    async def test_from_any_cursor_the_rest_of_the_log(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        project_id = await new_project(racing, owner)
        for n in range(6):
            await new_task(racing, owner, project_id, f"Task {n}")
        cursors: list[tuple[str | None, list[int]]] = []
        cursor: str | None = None
        seen: list[int] = []
        while True:
            query: dict[str, Any] = {"limit": 2}
            if cursor is not None:
                query["cursor"] = cursor
            page = await read(racing, owner, **query)
            cursors.append((cursor, list(seen)))
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        for start, before in random.Random(7).sample(cursors, min(3, len(cursors))):
            rest, _ = await walk(racing, owner, start, limit=4)
            assert [item["id"] for item in rest] == seen[len(before) :]

    async def test_the_same_walk_whether_the_callers_events_are_rare_or_not(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        # The feed first scans the log from the cursor, a few pages' worth, and walks the
        # caller's projects one by one when their events are rare in it: a walk a page of
        # one at a time (where the caller's events are rare in every scan) and one page of
        # fifty (where a scan reaches the end) must say the same.
        mine = await new_project(racing, owner, "Mine")
        busy = await register(racing, "busy")
        theirs = await new_project(racing, busy, "Theirs")
        expected = []
        for n in range(3):
            expected.append((await new_task(racing, owner, mine, f"Mine {n}"))["id"])
            for k in range(12):
                await new_task(racing, busy, theirs, f"Theirs {n}.{k}")
        one_by_one, _ = await walk(racing, owner, limit=1)
        at_once, _ = await walk(racing, owner, limit=50)
        assert [item["id"] for item in one_by_one] == [item["id"] for item in at_once]
        assert [task_id for action, task_id in task_events(one_by_one)] == expected
        assert all(item["project_id"] != theirs for item in one_by_one)

    async def test_an_outsider_sees_nothing_of_the_project(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        outsider = await register(racing, "outsider")
        project_id = await new_project(racing, owner)
        await new_task(racing, owner, project_id)
        items, _ = await walk(racing, outsider)
        assert all(item["project_id"] != project_id for item in items)


class TestMembership:
    async def test_a_new_member_learns_of_the_project_and_a_removed_one_of_the_removal(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        member = await register(racing, "member")
        project_id = await new_project(racing, owner)
        _, cursor = await walk(racing, member)
        await join(racing, owner, project_id, member, "editor")
        items, cursor = await walk(racing, member, cursor)
        joined = [item for item in items if item["entity"] == "member"]
        assert [(item["action"], item["entity_id"]) for item in joined] == [("joined", member.id)]
        assert joined[0]["project_id"] == project_id
        assert joined[0]["object"]["role"] == "editor"

        await new_task(racing, owner, project_id, "Seen")
        removed = await racing.delete(
            f"{V2}/projects/{project_id}/members/{member.id}", headers=owner.headers
        )
        assert removed.status_code == 204, removed.text
        await new_task(racing, owner, project_id, "Never seen")
        items, _ = await walk(racing, member, cursor)
        # Its own removal, and nothing of the project after it (not even what came before it
        # but after the cursor: the feed holds the projects the member is in now).
        assert [(item["entity"], item["action"]) for item in items] == [("member", "removed")]
        assert items[0]["entity_id"] == member.id
        assert items[0]["object"] is None
        assert items[0]["project_id"] == project_id


class TestRefused:
    async def test_forged_cursors_and_limits_are_422(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        other = await register(racing, "other")
        page = await read(racing, owner)
        theirs = await racing.get(
            CHANGES, params={"cursor": page["next_cursor"]}, headers=other.headers
        )
        assert_problem(theirs, 422)
        for query in ({"limit": 0}, {"limit": 1001}, {"cursor": "not-a-cursor"}):
            refused = await racing.get(CHANGES, params=query, headers=owner.headers)
            assert_problem(refused, 422)
        assert_problem(await racing.get(CHANGES), 401)

    async def test_a_cursor_before_what_was_removed_is_410(
        self, racing: httpx.AsyncClient, owner: Account, app: Any
    ) -> None:
        project_id = await new_project(racing, owner)
        await new_task(racing, owner, project_id)
        start = await read(racing, owner, limit=1)
        assert start["has_more"] is True
        async with Db.transaction_for(app.state.sessionmaker) as db:
            removed = await history.remove_expired(db, utcnow() + timedelta(days=1), 0)
        assert removed >= 2
        expired = await racing.get(
            CHANGES, params={"cursor": start["next_cursor"]}, headers=owner.headers
        )
        assert_problem(expired, 410)
        # Starting over works, from what is kept.
        later = await new_task(racing, owner, project_id, "After the purge")
        items, _ = await walk(racing, owner)
        assert task_events(items) == [("created", later["id"])]

    async def test_a_start_after_everything_was_removed_gives_a_cursor_that_works(
        self, racing: httpx.AsyncClient, owner: Account, app: Any
    ) -> None:
        """Retention removed every event: a read without a cursor hands out one that is not
        before what was removed, and the next event comes after it. Before, SQLite handed
        out the start of an empty log, and every poll with it was a 410 (a black-box run,
        2026-12-07)."""
        project_id = await new_project(racing, owner)
        async with Db.transaction_for(app.state.sessionmaker) as db:
            assert await history.remove_expired(db, utcnow() + timedelta(days=1), 0) >= 2
        start = await read(racing, owner)
        assert (start["items"], start["has_more"]) == ([], False)
        polled = await read(racing, owner, cursor=start["next_cursor"])
        assert polled["items"] == []
        later = await new_task(racing, owner, project_id, "After the purge")
        items, _ = await walk(racing, owner, start["next_cursor"])
        assert task_events(items) == [("created", later["id"])]

    async def test_a_revoked_token_is_401_before_its_cursor_is_410(
        self, racing: httpx.AsyncClient, owner: Account, app: Any, engine: AsyncEngine
    ) -> None:
        """The spec's order: a token no longer current is a 401 before a cursor from before
        what retention removed is a 410 (it was the 410)."""
        project_id = await new_project(racing, owner)
        await new_task(racing, owner, project_id)
        start = await read(racing, owner, limit=1)
        async with Db.transaction_for(app.state.sessionmaker) as db:
            await history.remove_expired(db, utcnow() + timedelta(days=1), 0)
        async with engine.begin() as connection:
            await connection.execute(
                update(User).where(User.id == owner.id).values(token_version=User.token_version + 1)
            )
        refused = await racing.get(
            CHANGES, params={"cursor": start["next_cursor"]}, headers=owner.headers
        )
        assert_problem(refused, 401)

    async def test_a_cursor_ahead_of_the_log_is_410(
        self, racing: httpx.AsyncClient, owner: Account, app: Any, engine: AsyncEngine
    ) -> None:
        """A cursor past the log's horizon was given by another copy of the database (one
        restored from a backup since, or a dump loaded into a new PostgreSQL cluster, whose
        transaction ids start lower): the client starts over, rather than skipping the new
        events until the log catches up with its cursor. A revoked token is still a 401."""
        project_id = await new_project(racing, owner)
        await new_task(racing, owner, project_id)
        _items, polled_from = await walk(racing, owner)
        async with Db.transaction_for(app.state.sessionmaker) as db:
            upto = await events.horizon(db)
        claims = AccessClaims(owner.id, 1, 0, 2**31)
        key = cursor_key(app.state.settings, "changes")
        ahead = history._feed_cursor(Position(upto.xid + 1_000, upto.id), claims, key)
        if engine.dialect.name == "sqlite":
            ahead = history._feed_cursor(Position(0, upto.id + 1_000), claims, key)
        assert_problem(
            await racing.get(CHANGES, params={"cursor": ahead}, headers=owner.headers), 410
        )
        polled = await read(racing, owner, cursor=polled_from)  # one given by this log works
        assert polled["items"] == []
        async with engine.begin() as connection:
            await connection.execute(
                update(User).where(User.id == owner.id).values(token_version=User.token_version + 1)
            )
        refused = await racing.get(CHANGES, params={"cursor": ahead}, headers=owner.headers)
        assert_problem(refused, 401)


class TestInviteesAddress:
    async def test_a_viewer_gets_invitation_events_without_the_address(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        """The feed of a member who may not list the project's invitations carries their
        events (a copy of the project stays complete) without the address invited."""
        project_id = await new_project(racing, owner)
        viewer = await register(racing, "viewer")
        await join(racing, owner, project_id, viewer, "viewer")
        _, cursor = await walk(racing, viewer)
        _, owners_cursor = await walk(racing, owner)
        await invite_someone(racing, owner, project_id)

        seen, _ = await walk(racing, viewer, cursor)
        assert [(item["entity"], item["action"]) for item in seen] == [("invitation", "created")]
        assert seen[0]["changes"]["role"] == [None, "editor"]
        assert "email" not in seen[0]["changes"]
        assert seen[0]["object"] is None
        owners, _ = await walk(racing, owner, owners_cursor)
        assert [item["changes"]["email"] for item in owners] == [[None, "someone@example.com"]]

    async def test_an_expired_invitation_is_gone(
        self, racing: httpx.AsyncClient, owner: Account, engine: AsyncEngine
    ) -> None:
        """Null, as for any entity no GET shows: it is in no list any more. Before, its
        object stayed until the cleanup job removed it (a black-box run)."""
        project_id = await new_project(racing, owner)
        _, cursor = await walk(racing, owner)
        invited = await invite_someone(racing, owner, project_id)
        seen, _ = await walk(racing, owner, cursor)
        assert seen[0]["object"]["id"] == invited["id"]
        async with engine.begin() as connection:
            await connection.execute(
                update(Invitation)
                .where(Invitation.id == invited["id"])
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        seen, _ = await walk(racing, owner, cursor)
        assert [(item["entity"], item["object"]) for item in seen] == [("invitation", None)]


class TestAMoveSeenFromTheProjectLeft:
    async def test_shows_where_the_task_went_and_nothing_of_what_it_became_there(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        """A viewer of the project a task left learns that it went, and where, in the feed
        and in the project's activity; not the title, assignees and labels it was given
        there by the same request (a black-box run read them, while GET of the task and of
        that project were 404 to the viewer). A member of both sees the whole change."""
        left = await new_project(racing, owner, "Left")
        entered = await new_project(racing, owner, "Entered")
        viewer = await register(racing, "viewer")
        insider = await register(racing, "insider")  # a member of the project entered only
        await join(racing, owner, left, viewer, "viewer")
        await join(racing, owner, entered, insider, "editor")
        label = await racing.post(
            f"{V2}/projects/{entered}/labels", json={"name": "Secret"}, headers=owner.headers
        )
        assert label.status_code == 201, label.text
        task = await new_task(racing, owner, left, "Harmless")
        _, cursor = await walk(racing, viewer)
        _, owners_cursor = await walk(racing, owner)
        moved = await racing.patch(
            f"{V2}/tasks/{task['id']}",
            json={
                "project_id": entered,
                "title": "Confidential terms",
                "description": "Only for the project entered",
                "assignee_ids": [insider.id],
                "label_ids": [label.json()["id"]],
            },
            headers=owner.headers,
        )
        assert moved.status_code == 200, moved.text
        assert (
            await racing.get(f"{V2}/tasks/{task['id']}", headers=viewer.headers)
        ).status_code == 404

        seen, _ = await walk(racing, viewer, cursor)
        assert [(item["entity"], item["action"]) for item in seen] == [("task", "moved")]
        assert seen[0]["changes"] == {"project_id": [left, entered]}
        assert seen[0]["object"] is None
        activity = await racing.get(f"{V2}/projects/{left}/activity", headers=viewer.headers)
        assert activity.status_code == 200, activity.text
        assert activity.json()["items"][0]["changes"] == {"project_id": [left, entered]}

        owners, _ = await walk(racing, owner, owners_cursor)
        assert owners[0]["changes"] == {
            "project_id": [left, entered],
            "title": ["Harmless", "Confidential terms"],
            "description": [None, "Only for the project entered"],
            "assignee_ids": [[], [insider.id]],
            "label_ids": [[], [label.json()["id"]]],
        }


async def _a_project_read_to_the_end(
    client: httpx.AsyncClient, owner: Account, backend: str
) -> tuple[int, str]:
    """A new project of `owner`, and the cursor of the feed read to its end (PostgreSQL)."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing commits behind another")
    project_id = await new_project(client, owner)
    _, cursor = await walk(client, owner)
    return project_id, cursor


@contextlib.asynccontextmanager
async def _holding_an_xid(engine: AsyncEngine) -> AsyncIterator[AsyncTransaction]:
    """A transaction that writes no event but holds an xid (as a job's does) until the
    caller commits it."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(text("SELECT pg_current_xact_id()"))
        yield transaction


class TestCommitOrder:
    async def test_a_transaction_committed_after_a_read_comes_on_the_next_read(
        self,
        racing: httpx.AsyncClient,
        owner: Account,
        engine: AsyncEngine,
        backend: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        if backend != "postgresql":
            pytest.skip("SQLite has one writer at a time: no transaction commits late")
        # The read meanwhile waits for the late transaction this long at most (the test
        # commits it only after the read).
        monkeypatch.setattr(history, "CATCH_UP_SECONDS", 0.1)
        project_id = await new_project(racing, owner)
        _, cursor = await walk(racing, owner)
        async with engine.connect() as late:
            transaction = await late.begin()
            await late.execute(
                text(
                    "INSERT INTO events (at, actor_id, project_id, entity, entity_id, action,"
                    " changes) VALUES (now(), :actor, :project, 'project', :project, 'updated',"
                    " '{}'::jsonb)"
                ),
                {"actor": owner.id, "project": project_id},
            )
            # A write that commits meanwhile, after the late transaction took its id.
            early = await new_task(racing, owner, project_id, "Committed first")
            meanwhile = await read(racing, owner, cursor=cursor)
            # Held back: the late transaction might still commit below it.
            assert meanwhile["items"] == []
            await transaction.commit()
        items, _ = await walk(racing, owner, meanwhile["next_cursor"])
        assert [(item["entity"], item["action"]) for item in items] == [
            ("project", "updated"),
            ("task", "created"),
        ]
        assert items[1]["entity_id"] == early["id"]

    async def test_the_last_page_waits_for_a_transaction_holding_back_a_committed_write(
        self, racing: httpx.AsyncClient, owner: Account, engine: AsyncEngine, backend: str
    ) -> None:
        """A job's transaction (it writes no event) is running when a write commits, so the
        write's event waits behind it. A client that had its answer and read the feed to the
        end was told it had caught up without it; a black-box run missed 2 to 9 of 300
        writes that way, with the worker's fan-out as the transaction."""
        project_id, cursor = await _a_project_read_to_the_end(racing, owner, backend)
        async with _holding_an_xid(engine) as job:
            written = await new_task(racing, owner, project_id, "Acknowledged")
            reading = asyncio.create_task(walk(racing, owner, cursor))
            await asyncio.sleep(0.3)
            await job.commit()
        items, _ = await reading
        assert task_events(items) == [("created", written["id"])]

    async def test_a_transaction_left_open_is_not_waited_for_past_a_bound(
        self,
        racing: httpx.AsyncClient,
        owner: Account,
        engine: AsyncEngine,
        backend: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(history, "CATCH_UP_SECONDS", 0.2)
        project_id, cursor = await _a_project_read_to_the_end(racing, owner, backend)
        async with _holding_an_xid(engine) as idle:
            written = await new_task(racing, owner, project_id, "Held back")
            held = await read(racing, owner, cursor=cursor)
            assert (held["items"], held["has_more"]) == ([], False)
            await idle.commit()
        items, _ = await walk(racing, owner, held["next_cursor"])
        assert task_events(items) == [("created", written["id"])]

    async def test_events_of_a_restored_log_ahead_of_this_cluster_are_not_waited_for(
        self,
        racing: httpx.AsyncClient,
        owner: Account,
        engine: AsyncEngine,
        backend: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Events copied from another cluster whose transaction ids were further on (a dump
        loaded into a new one) stay past the horizon until this one's ids catch up: no
        transaction holds them back, and a read at the head does not wait for them (a
        review measured 2 s on every such read)."""
        monkeypatch.setattr(history, "CATCH_UP_SECONDS", 60.0)
        project_id, cursor = await _a_project_read_to_the_end(racing, owner, backend)
        task = await new_task(racing, owner, project_id, "Copied in")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE events SET xid = pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
                    " + 1000000 WHERE task_id = :task"
                ),
                {"task": task["id"]},
            )
        async with _holding_an_xid(engine) as idle:
            # A guard, not a measure: it waited for CATCH_UP_SECONDS.
            page = await asyncio.wait_for(read(racing, owner, cursor=cursor), timeout=20)
            await idle.commit()
        assert (page["items"], page["has_more"]) == ([], False)

    async def test_writers_of_one_task_come_in_the_order_they_committed(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        """Several writers change one task's title at once, round after round: in the feed
        each change's old title is the new title of the change before it, as in the task's
        history and its versions. (On PostgreSQL a writer woken from a queue of writers
        for the row used to take its xid before waiting again for another that got there
        first, and came before it in the feed: the write turn, app/db/statements/tasks.py.)"""
        project_id = await new_project(racing, owner)
        for round_ in range(6):
            task = await new_task(racing, owner, project_id, "start")
            _, cursor = await walk(racing, owner, limit=100)
            patched = await asyncio.gather(
                *(
                    racing.patch(
                        f"{V2}/tasks/{task['id']}",
                        json={"title": f"by-{writer}"},
                        headers=owner.headers,
                    )
                    for writer in range(6)
                )
            )
            assert all(response.status_code == 200 for response in patched)
            items, _ = await walk(racing, owner, cursor, limit=100)
            titles = [item["changes"]["title"] for item in items if item["entity"] == "task"]
            assert len(titles) == 6
            chain = ["start"] + [new for _old, new in titles]
            assert [old for old, _new in titles] == chain[:-1], f"round {round_}: {titles}"

    @pytest.mark.parametrize("kind", ["project", "label", "comment", "invitation"])
    async def test_writers_of_one_thing_come_in_the_order_they_committed(
        self, racing: httpx.AsyncClient, owner: Account, kind: str
    ) -> None:
        """As for a task: several writers change one project's name, label's name,
        comment's body or invitation's role at once, round after round, and in the feed each
        change starts from the one before (on PostgreSQL, the project's turn, or the task's
        for its comments: app/db/statements/turns.py)."""
        project_id = await new_project(racing, owner)
        task = await new_task(racing, owner, project_id)
        field = {"project": "name", "label": "name", "comment": "body", "invitation": "role"}[kind]
        roles = ["viewer", "commenter", "editor", "admin"]
        for round_ in range(4):
            if kind == "project":
                path, start = f"{V2}/projects/{project_id}", f"project {round_}"
                await racing.patch(path, json={"name": start}, headers=owner.headers)
            elif kind == "label":
                start = f"label {round_}"
                created = await racing.post(
                    f"{V2}/projects/{project_id}/labels",
                    json={"name": start},
                    headers=owner.headers,
                )
                assert created.status_code == 201, created.text
                path = f"{V2}/projects/{project_id}/labels/{created.json()['id']}"
            elif kind == "comment":
                start = f"comment {round_}"
                created = await racing.post(
                    f"{V2}/tasks/{task['id']}/comments", json={"body": start}, headers=owner.headers
                )
                assert created.status_code == 201, created.text
                path = f"{V2}/tasks/{task['id']}/comments/{created.json()['id']}"
            else:
                path, start = f"{V2}/projects/{project_id}/invitations", "viewer"
                email = f"invitee-{round_}@example.com"
                invited = await racing.post(
                    path, json={"email": email, "role": start}, headers=owner.headers
                )
                assert invited.status_code == 201, invited.text
            _, cursor = await walk(racing, owner, limit=100)
            if kind == "invitation":
                # Each writer a role other than the one before it, so each changes the role.
                sent = [{"email": email, "role": roles[1 + writer % 3]} for writer in range(6)]
                writes = [racing.post(path, json=body, headers=owner.headers) for body in sent]
            else:
                writes = [
                    racing.patch(path, json={field: f"{round_}-by-{writer}"}, headers=owner.headers)
                    for writer in range(6)
                ]
            answers = await asyncio.gather(*writes)
            assert all(answer.status_code == 200 for answer in answers), [
                answer.text for answer in answers
            ]
            items, _ = await walk(racing, owner, cursor, limit=100)
            changed = [
                item["changes"][field]
                for item in items
                if item["entity"] == kind and field in item["changes"]
            ]
            chain = [start] + [new for _old, new in changed]
            assert [old for old, _new in changed] == chain[:-1], f"round {round_}: {changed}"
            assert len(changed) >= (3 if kind == "invitation" else 6)

    async def test_concurrent_writers_and_a_reader_see_every_write_once(
        self, racing: httpx.AsyncClient, owner: Account
    ) -> None:
        project_id = await new_project(racing, owner)
        _, cursor = await walk(racing, owner)
        seen: list[dict[str, Any]] = []
        writing = True

        async def reader() -> None:
            nonlocal cursor
            while writing:
                page = await read(racing, owner, cursor=cursor, limit=5)
                seen.extend(page["items"])
                cursor = page["next_cursor"]
                await asyncio.sleep(0)

        async def writer(n: int) -> list[int]:
            created = []
            for k in range(5):
                task = await new_task(racing, owner, project_id, f"w{n}-{k}")
                created.append(task["id"])
                patched = await racing.patch(
                    f"{V2}/tasks/{task['id']}", json={"status": "done"}, headers=owner.headers
                )
                assert patched.status_code == 200
            return created

        reading = asyncio.create_task(reader())
        written = await asyncio.gather(*(writer(n) for n in range(4)))
        writing = False
        await reading
        rest, _ = await walk(racing, owner, cursor, limit=7)
        seen += rest
        counts = Counter(item["id"] for item in seen)
        assert max(counts.values()) == 1
        events = Counter(task_events(seen))
        for task_id in (task_id for batch in written for task_id in batch):
            assert events["created", task_id] == 1
            assert events["updated", task_id] == 1
        # In log order: each task's creation before its update.
        order = [(item["action"], item["entity_id"]) for item in seen]
        for task_id in (task_id for batch in written for task_id in batch):
            assert order.index(("created", task_id)) < order.index(("updated", task_id))
