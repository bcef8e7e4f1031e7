"""The system's view of events (`app.services.history.event_documents`), with real commits, on
SQLite and PostgreSQL: what a webhook's payload will carry (spec api-v2 section 9).

For every event, the document is exactly the item the change feed shows an admin of the
event's project now (the event, and the entity as a v2 GET shows it to them: `null` once it
is gone for them), whatever the entity: project, member, invitation, task, label, comment.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.access import Db
from app.db.statements.events import events_by_ids
from app.models.event import Event
from app.services.history import event_documents
from tests.api.v2.conftest import V2
from tests.api.v2.test_change_feed import new_project, walk
from tests.api.v2.test_project_races import Account, racing, register

__all__ = ["racing"]  # a fixture these tests use


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    response = await response
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def invite(
    client: httpx.AsyncClient, owner: Account, project_id: int, email: str, role: str
) -> int:
    invited = await ok(
        client.post(
            f"{V2}/projects/{project_id}/invitations",
            json={"email": email, "role": role},
            headers=owner.headers,
        ),
        201,
    )
    invitation_id: int = invited["id"]
    return invitation_id


async def logged_events(engine: AsyncEngine, project_ids: set[int]) -> list[int]:
    """The ids of the events of `project_ids` (a task moved out of one included)."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(Event.id).where(
                or_(Event.project_id.in_(project_ids), Event.from_project_id.in_(project_ids))
            )
        )
        return [int(event_id) for (event_id,) in result.all()]


async def test_each_event_as_the_feed_shows_it_to_an_admin_of_its_project(
    racing: httpx.AsyncClient, engine: AsyncEngine, app: Any
) -> None:
    owner = await register(racing, "owner")
    admin = await register(racing, "admin")  # admin of `main` and `trashed`
    other_admin = await register(racing, "other-admin")  # admin of `other` only
    editor = await register(racing, "editor")
    main = await new_project(racing, owner, "Main")
    other = await new_project(racing, owner, "Other")
    trashed = await new_project(racing, owner, "Trashed")
    headers = owner.headers
    # SQLite reuses the id of the newest row once it is deleted (only `events` has
    # AUTOINCREMENT), and the feed finds an object by its id: so nothing here is created
    # after the newest of its kind was deleted (invitations first, accepted afterwards).
    joining = [
        (await invite(racing, owner, main, admin.email, "admin"), admin),
        (await invite(racing, owner, other, other_admin.email, "admin"), other_admin),
        (await invite(racing, owner, trashed, admin.email, "admin"), admin),
        (await invite(racing, owner, main, editor.email, "editor"), editor),
    ]
    await invite(racing, owner, main, "not-yet@example.com", "viewer")  # stays pending
    for invitation_id, member in joining:
        accept = f"{V2}/invitations/{invitation_id}/accept"
        await ok(racing.post(accept, headers=member.headers))

    # Project and members: renamed; one member's role changed, then removed (gone).
    await ok(racing.patch(f"{V2}/projects/{main}", json={"name": "Main, renamed"}, headers=headers))
    members = f"{V2}/projects/{main}/members"
    await ok(racing.patch(f"{members}/{editor.id}", json={"role": "viewer"}, headers=headers))
    await ok(racing.delete(f"{members}/{editor.id}", headers=headers), 204)

    # Labels: one deleted, one kept and renamed (and one in the project put in the trash).
    labels = f"{V2}/projects/{main}/labels"
    gone_label = await ok(racing.post(labels, json={"name": "Gone"}, headers=headers), 201)
    kept_label = await ok(racing.post(labels, json={"name": "Bug"}, headers=headers), 201)
    await ok(
        racing.post(f"{V2}/projects/{trashed}/labels", json={"name": "Hidden"}, headers=headers),
        201,
    )
    await ok(racing.patch(f"{labels}/{kept_label['id']}", json={"name": "Bugs"}, headers=headers))
    await ok(racing.delete(f"{labels}/{gone_label['id']}", headers=headers), 204)

    # Tasks: one with a label and an assignee, changed; one deleted; one moved to `other`.
    task = await ok(
        racing.post(
            f"{V2}/tasks",
            json={
                "title": "Labelled",
                "project_id": main,
                "label_ids": [kept_label["id"]],
                "assignee_ids": [admin.id],
            },
            headers=headers,
        ),
        201,
    )
    await ok(racing.patch(f"{V2}/tasks/{task['id']}", json={"status": "done"}, headers=headers))
    deleted = await ok(
        racing.post(f"{V2}/tasks", json={"title": "Deleted", "project_id": main}, headers=headers),
        201,
    )
    await ok(racing.delete(f"{V2}/tasks/{deleted['id']}", headers=headers), 204)
    moved = await ok(
        racing.post(f"{V2}/tasks", json={"title": "Moved", "project_id": main}, headers=headers),
        201,
    )
    await ok(
        racing.patch(
            f"{V2}/tasks/{moved['id']}",
            json={"project_id": other, "title": "Moved, renamed there"},
            headers=headers,
        )
    )

    # Comments: one edited, one deleted.
    comments = f"{V2}/tasks/{task['id']}/comments"
    comment = await ok(racing.post(comments, json={"body": "First"}, headers=headers), 201)
    await ok(racing.patch(f"{comments}/{comment['id']}", json={"body": "Edited"}, headers=headers))
    gone_comment = await ok(racing.post(comments, json={"body": "Gone"}, headers=headers), 201)
    await ok(racing.delete(f"{comments}/{gone_comment['id']}", headers=headers), 204)

    # A project in the trash: everything of it is gone for its admins.
    await ok(racing.delete(f"{V2}/projects/{trashed}", headers=headers), 204)

    # The feed of an admin of each project, by event id.
    admin_feed = {item["id"]: item for item in (await walk(racing, admin, limit=7))[0]}
    other_feed = {item["id"]: item for item in (await walk(racing, other_admin, limit=7))[0]}
    shown_to_admin_of = {main: admin_feed, trashed: admin_feed, other: other_feed}

    ids = await logged_events(engine, {main, other, trashed})
    async with Db.transaction_for(app.state.sessionmaker) as db:
        rows = await events_by_ids(db, ids)
        documents = await event_documents(db, rows)
    # The same in autocommit mode (on PostgreSQL, the statements' own driver path).
    autocommit = Db.autocommit(app.state.sessionmaker)
    assert await event_documents(autocommit, await events_by_ids(autocommit, ids)) == documents

    assert sorted(row.id for row in rows) == sorted(ids)
    assert [row.id for row in rows] == [document["id"] for document in documents]
    for row, document in zip(rows, documents, strict=True):
        assert document == shown_to_admin_of[row.project_id][row.id], (row.entity, row.action)

    by_entity: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for document in documents:
        by_entity.setdefault((document["entity"], document["entity_id"]), []).append(document)
    assert {entity for entity, _id in by_entity} == {
        "project",
        "member",
        "invitation",
        "task",
        "label",
        "comment",
    }

    def objects(entity: str, entity_id: int, project_id: int = main) -> list[Any]:
        return [
            document["object"]
            for document in by_entity[entity, entity_id]
            if document["project_id"] == project_id
        ]

    # What is live is shown as an admin's GET shows it; what is gone is null.
    renamed = await ok(racing.get(f"{V2}/projects/{main}", headers=admin.headers))
    assert renamed["my_role"] == "admin"
    assert objects("project", main) == [renamed, renamed]  # created, updated
    listed = (await ok(racing.get(members, headers=admin.headers)))["items"]
    # Every member as the list shows them (not only the reader's own membership).
    for member in (owner, admin):
        shown = [listing for listing in listed if listing["user"]["id"] == member.id]
        assert objects("member", member.id) == shown
    assert objects("member", editor.id) == [None] * 3  # joined, role_changed, removed
    live_task = await ok(racing.get(f"{V2}/tasks/{task['id']}", headers=admin.headers))
    assert live_task["label_ids"] == [kept_label["id"]]
    assert live_task["assignee_ids"] == [admin.id]
    assert objects("task", task["id"]) == [live_task, live_task]
    assert objects("task", deleted["id"]) == [None, None]
    # The task moved out: gone for `main`'s admins, there for `other`'s.
    assert objects("task", moved["id"]) == [None]
    assert objects("task", moved["id"], other) == [
        await ok(racing.get(f"{V2}/tasks/{moved['id']}", headers=other_admin.headers))
    ]
    # Seen from the project it left (a webhook of `main`), as `main`'s admin's feed shows it.
    move = [row for row in rows if row.action == "moved"]
    assert [row.from_project_id for row in move] == [main]
    async with Db.transaction_for(app.state.sessionmaker) as db:
        from_main = await event_documents(db, move, seen_from=main)
    assert from_main == [admin_feed[move[0].id]]
    assert from_main[0]["object"] is None
    # Where it went, not what it became there (decision 0030); `other`'s webhooks see it all.
    assert from_main[0]["changes"] == {"project_id": [main, other]}
    async with Db.transaction_for(app.state.sessionmaker) as db:
        from_other = await event_documents(db, move, seen_from=other)
    assert from_other[0]["changes"] == {
        "project_id": [main, other],
        "title": ["Moved", "Moved, renamed there"],
    }
    assert (
        objects("label", kept_label["id"])
        == [await ok(racing.get(f"{labels}/{kept_label['id']}", headers=admin.headers))] * 2
    )
    assert objects("label", gone_label["id"]) == [None, None]
    assert (
        objects("comment", comment["id"])
        == [await ok(racing.get(f"{comments}/{comment['id']}", headers=admin.headers))] * 2
    )
    assert objects("comment", gone_comment["id"]) == [None, None]
    pending = [
        document["object"]
        for document in documents
        if document["entity"] == "invitation" and document["object"] is not None
    ]
    assert [invitation["email"] for invitation in pending] == ["not-yet@example.com"]
    assert all(
        document["object"] is None for document in documents if document["project_id"] == trashed
    )


async def test_no_events_no_documents(app: Any) -> None:
    db = Db.autocommit(app.state.sessionmaker)
    assert await events_by_ids(db, []) == []
    assert await events_by_ids(db, [2**62]) == []  # unknown, or removed by retention
    assert await event_documents(db, []) == []
