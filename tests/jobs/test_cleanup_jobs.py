"""The cleanup job: the trash emptied after TRASH_RETENTION_DAYS (a `purged` event each, a
restore first wins), and what has expired removed. Safe to run twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app import cli
from app.db.statements import tasks as task_statements
from app.jobs import cleanup, outbox
from tests.jobs.conftest import Deployment

LONG_AGO = datetime.now(UTC) - timedelta(days=40)


async def _age(deployment: Deployment, table: str, column: str, row_id: int) -> None:
    async with deployment.runtime.transaction() as db:
        await db.session.execute(
            text(f"UPDATE {table} SET {column} = :when WHERE id = :id"),
            {"when": LONG_AGO, "id": row_id},
        )


async def test_the_trash_is_emptied_after_the_retention(deployment: Deployment) -> None:
    owner = await deployment.user("owner@example.com")
    headers = owner["headers"]
    project_id = await deployment.project_with(owner)
    old, recent, restored = [
        (await deployment.http.post("/api/v2/tasks", json={"title": t}, headers=headers)).json()
        for t in ("old", "recent", "restored")
    ]
    for task in (old, recent, restored):
        assert (
            await deployment.http.delete(f"/api/v2/tasks/{task['id']}", headers=headers)
        ).status_code == 204
    await _age(deployment, "tasks", "deleted_at", old["id"])
    await _age(deployment, "tasks", "deleted_at", restored["id"])
    # Restored before the purge runs: the restore wins, the task stays.
    back = await deployment.http.post(f"/api/v2/tasks/{restored['id']}/restore", headers=headers)
    assert back.status_code == 200, back.text
    gone = await deployment.http.delete(f"/api/v2/projects/{project_id}", headers=headers)
    assert gone.status_code == 204, gone.text
    await _age(deployment, "projects", "deleted_at", project_id)

    assert await cleanup.purge_trash(deployment.runtime) == {"tasks": 1, "projects": 1}
    assert await cleanup.purge_trash(deployment.runtime) == {"tasks": 0, "projects": 0}

    remaining = {row[0] for row in await deployment.rows("SELECT title FROM tasks")}
    assert remaining == {"recent", "restored"}
    assert (
        await deployment.scalar("SELECT count(*) FROM projects WHERE id = :id", id=project_id) == 0
    )
    purged = await deployment.rows(
        "SELECT entity, entity_id, actor_id FROM events WHERE action = 'purged' ORDER BY id"
    )
    assert [(e, i, a) for e, i, a in purged] == [
        ("task", old["id"], None),
        ("project", project_id, None),
    ]


async def test_the_members_of_a_purged_project_see_they_lost_it(deployment: Deployment) -> None:
    """Purged, a project has no members left, so its `purged` event reaches no one's feed; each
    member's own `removed` event does (by the system), and it is the last thing their feed
    says of the project. Before, a client that read the feed kept the project for ever, and
    one that started over saw only that it had joined it (a black-box run, 2026-12-07)."""
    owner = await deployment.user("owner@example.com")
    member = await deployment.user("member@example.com")
    project_id = await deployment.project_with(owner, (member, "editor"))
    gone = await deployment.http.delete(f"/api/v2/projects/{project_id}", headers=owner["headers"])
    assert gone.status_code == 204, gone.text
    await _age(deployment, "projects", "deleted_at", project_id)
    assert await cleanup.purge_trash(deployment.runtime) == {"tasks": 0, "projects": 1}

    for person, role in ((owner, "owner"), (member, "editor")):
        feed = await deployment.http.get(
            "/api/v2/changes", params={"limit": 1000}, headers=person["headers"]
        )
        assert feed.status_code == 200, feed.text
        of_project = [item for item in feed.json()["items"] if item["project_id"] == project_id]
        last = of_project[-1]
        assert (last["entity"], last["entity_id"], last["action"]) == (
            "member",
            person["id"],
            "removed",
        )
        assert (last["actor"], last["changes"], last["object"]) == (
            None,
            {"role": [role, None]},
            None,
        )
    # Not news to notify: the project went to the trash a retention period before.
    await outbox.fan_out(deployment.runtime)
    assert await deployment.scalar("SELECT count(*) FROM notifications WHERE kind = 'removed'") == 0


async def test_expired_records_are_removed(deployment: Deployment) -> None:
    owner = await deployment.user("owner@example.com")
    guest = await deployment.user("guest@example.com")
    project_id = await deployment.project_with(owner)
    invitation = await deployment.http.post(
        f"/api/v2/projects/{project_id}/invitations",
        json={"email": "someone@example.com", "role": "viewer"},
        headers=owner["headers"],
    )
    assert invitation.status_code == 201, invitation.text
    kept = await deployment.http.post(
        f"/api/v2/projects/{project_id}/invitations",
        json={"email": guest["email"], "role": "viewer"},
        headers=owner["headers"],
    )
    created = await deployment.http.post(
        "/api/v1/tasks",
        json={"title": "once"},
        headers={**owner["headers"], "Idempotency-Key": "k-1"},
    )
    assert created.status_code == 201, created.text
    await _age(deployment, "invitations", "expires_at", invitation.json()["id"])
    async with deployment.runtime.transaction() as db:
        await db.session.execute(
            text("UPDATE idempotency_keys SET expires_at = :when"), {"when": LONG_AGO}
        )
        await db.session.execute(
            text(
                "UPDATE refresh_tokens SET family_expires_at = :when, expires_at = :when "
                "WHERE user_id = :user"
            ),
            {"when": LONG_AGO, "user": owner["id"]},
        )

    removed = await cleanup.expire_records(deployment.runtime)
    assert removed["invitations"] == 1
    assert removed["idempotency_keys"] == 1
    assert removed["refresh_tokens"] >= 1
    assert await cleanup.expire_records(deployment.runtime) == {
        "idempotency_keys": 0,
        "refresh_tokens": 0,
        "invitations": 0,
        "events": 0,
        "webhook_deliveries": 0,
    }
    # The guest's invitation (not expired) and the guest's session are untouched.
    pending = await deployment.http.get("/api/v2/invitations", headers=guest["headers"])
    assert [item["id"] for item in pending.json()["items"]] == [kept.json()["id"]]
    assert (
        await deployment.scalar(
            "SELECT count(*) FROM refresh_tokens WHERE user_id = :user", user=guest["id"]
        )
        == 1
    )
    # Removing an invitation is recorded like any change of one, by the system.
    assert (
        await deployment.scalar(
            "SELECT count(*) FROM events WHERE entity = 'invitation' AND action = 'purged' "
            "AND actor_id IS NULL"
        )
        == 1
    )


async def test_the_delivery_log_keeps_what_the_history_keeps(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished attempts older than ACTIVITY_RETENTION_DAYS leave the webhook's delivery log
    (it grew for as long as the deployment ran, a payload in every row); an attempt still
    pending stays whatever its age, and so do the recent ones. Removed a batch at a time."""
    monkeypatch.setattr(cleanup, "DELIVERY_REMOVAL_BATCH", 2)
    owner = await deployment.user("owner@example.com")
    project_id = await deployment.project_with(owner)
    now = datetime.now(UTC)
    async with deployment.runtime.transaction() as db:
        webhook_id = (
            await db.session.execute(
                text(
                    "INSERT INTO webhooks (project_id, url, events, active, created_at, "
                    "updated_at, secret) VALUES (:project, 'https://receiver.example/', "
                    "'[\"*\"]', true, :long_ago, :long_ago, 'whsec_x') RETURNING id"
                ),
                {"project": project_id, "long_ago": LONG_AGO},
            )
        ).scalar_one()
        attempts = [
            *((f"msg_old_{n}", 1, "succeeded", LONG_AGO) for n in range(4)),
            ("msg_retried", 1, "failed", LONG_AGO),
            ("msg_retried", 2, "pending", LONG_AGO),
            ("msg_recent", 1, "failed", now),
        ]
        for message_id, attempt, status, made in attempts:
            await db.session.execute(
                text(
                    "INSERT INTO webhook_deliveries (webhook_id, message_id, type, payload, "
                    "attempt, status, created_at, next_attempt_at) VALUES (:webhook, :message, "
                    "'task.created', '{}', :attempt, :status, :made, :due)"
                ),
                {
                    "webhook": webhook_id,
                    "message": message_id,
                    "attempt": attempt,
                    "status": status,
                    "made": made,
                    "due": now + timedelta(hours=1) if status == "pending" else None,
                },
            )
    deployment.runtime.settings.activity_retention_days = 30

    removed = await cleanup.expire_records(deployment.runtime)

    assert removed["webhook_deliveries"] == 5
    log = await deployment.http.get(
        f"/api/v2/projects/{project_id}/webhooks/{webhook_id}/deliveries",
        headers=owner["headers"],
    )
    assert log.status_code == 200, log.text
    assert [(item["attempt"], item["status"]) for item in log.json()["items"]] == [
        (1, "failed"),  # the recent one, newest first
        (2, "pending"),
    ]
    assert (await cleanup.expire_records(deployment.runtime))["webhook_deliveries"] == 0


async def test_events_the_fan_out_has_not_passed_are_kept(deployment: Deployment) -> None:
    """Workers down longer than the retention period: when they come back, the events of
    that time are older than it, and the cleanup (which may run before the fan-out) keeps
    them until the fan-out has made the notifications and webhook messages they call for.
    Before, it removed them, and those were never made."""
    deployment.runtime.settings.activity_retention_days = 1
    owner = await deployment.user("owner@example.com", "Olga")
    editor = await deployment.user("editor@example.com", "Ed")
    project_id = await deployment.project_with(owner, (editor, "editor"))
    await outbox.fan_out(deployment.runtime)
    assigned = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "While down", "project_id": project_id, "assignee_ids": [editor["id"]]},
        headers=owner["headers"],
    )
    assert assigned.status_code == 201, assigned.text
    async with deployment.runtime.transaction() as db:  # two days pass, no worker running
        await db.session.execute(
            text("UPDATE events SET at = :when"), {"when": datetime.now(UTC) - timedelta(days=2)}
        )

    await cleanup.expire_records(deployment.runtime)  # those the fan-out passed may go
    task_events = "SELECT count(*) FROM events WHERE entity = 'task'"
    assert await deployment.scalar(task_events) == 1
    assert await outbox.fan_out(deployment.runtime) >= 1
    assigned_to_them = await deployment.scalar(
        "SELECT count(*) FROM notifications WHERE user_id = :user AND kind = 'assigned'",
        user=editor["id"],
    )
    assert assigned_to_them == 1
    assert (await cleanup.expire_records(deployment.runtime))["events"] >= 1  # passed: gone
    assert await deployment.scalar(task_events) == 0


async def test_the_command_makes_what_old_events_call_for_before_removing_them(
    deployment: Deployment,
) -> None:
    """`expire-events` with no worker running (PostgreSQL): the fan-out is caught up first,
    so the events go and their notifications are made, none lost."""
    owner = await deployment.user("owner@example.com", "Olga")
    editor = await deployment.user("editor@example.com", "Ed")
    project_id = await deployment.project_with(owner, (editor, "editor"))
    assigned = await deployment.http.post(
        "/api/v2/tasks",
        json={
            "title": "Before the cleanup",
            "project_id": project_id,
            "assignee_ids": [editor["id"]],
        },
        headers=owner["headers"],
    )
    assert assigned.status_code == 201, assigned.text

    assert await cli.expire_events(deployment.runtime.settings, 0) >= 1

    assert await deployment.scalar("SELECT count(*) FROM events WHERE entity = 'task'") == 0
    assigned_to_them = await deployment.scalar(
        "SELECT count(*) FROM notifications WHERE user_id = :user AND kind = 'assigned'",
        user=editor["id"],
    )
    assert assigned_to_them == 1


async def test_with_periods_of_zero_days_the_next_run_removes_what_has_passed(
    deployment: Deployment,
) -> None:
    """ACTIVITY_RETENTION_DAYS=0 and TRASH_RETENTION_DAYS=0 (decision 0040): a deployment
    that keeps no history and no trash. The next run removes the events the fan-out has
    passed, and a cursor from before them is then a 410; the trash is emptied."""
    deployment.runtime.settings.activity_retention_days = 0
    deployment.runtime.settings.trash_retention_days = 0
    owner = await deployment.user("owner@example.com")
    headers = owner["headers"]
    first = await deployment.http.get("/api/v2/changes", headers=headers)
    assert first.status_code == 200, first.text
    task = await deployment.http.post("/api/v2/tasks", json={"title": "Brief"}, headers=headers)
    assert task.status_code == 201, task.text
    deleted = await deployment.http.delete(f"/api/v2/tasks/{task.json()['id']}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    await outbox.fan_out(deployment.runtime)

    assert await cleanup.purge_trash(deployment.runtime) == {"tasks": 1, "projects": 0}
    assert (await cleanup.expire_records(deployment.runtime))["events"] >= 2
    assert await deployment.scalar("SELECT count(*) FROM events WHERE entity = 'task'") <= 1
    stale = await deployment.http.get(
        "/api/v2/changes", params={"cursor": first.json()["next_cursor"]}, headers=headers
    )
    assert stale.status_code == 410, stale.text
    assert stale.headers["content-type"] == "application/problem+json"


async def _trashed_long_ago(deployment: Deployment, owner: dict[str, object], title: str) -> int:
    headers = owner["headers"]
    assert isinstance(headers, dict)
    task = await deployment.http.post("/api/v2/tasks", json={"title": title}, headers=headers)
    task_id = int(task.json()["id"])
    deleted = await deployment.http.delete(f"/api/v2/tasks/{task_id}", headers=headers)
    assert deleted.status_code == 204
    await _age(deployment, "tasks", "deleted_at", task_id)
    return task_id


async def test_a_restore_in_progress_wins_over_the_purge(deployment: Deployment) -> None:
    if deployment.backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: a restore and a purge cannot overlap")
    owner = await deployment.user("owner@example.com")
    task_id = await _trashed_long_ago(deployment, owner, "wanted back")
    async with deployment.runtime.transaction() as db:
        # The restore has its row and has not committed when the purge runs.
        await db.session.execute(
            text("UPDATE tasks SET deleted_at = NULL WHERE id = :id"), {"id": task_id}
        )
        purged = await asyncio.wait_for(cleanup.purge_trash(deployment.runtime), timeout=30)
        assert purged["tasks"] == 0
    assert (
        await deployment.scalar("SELECT deleted_at FROM tasks WHERE id = :id", id=task_id) is None
    )


async def test_a_purge_cut_short_leaves_nothing_half_done(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await deployment.user("owner@example.com")
    first = await _trashed_long_ago(deployment, owner, "first")
    second = await _trashed_long_ago(deployment, owner, "second")

    async def dies(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the worker died between the delete and its events")

    monkeypatch.setattr(task_statements.events, "append", dies)
    with pytest.raises(RuntimeError):
        await cleanup.purge_trash(deployment.runtime)
    monkeypatch.undo()
    # Nothing was deleted without its `purged` event: both tasks are still in the trash.
    assert await deployment.scalar("SELECT count(*) FROM tasks WHERE deleted_at IS NOT NULL") == 2
    assert await deployment.scalar("SELECT count(*) FROM events WHERE action = 'purged'") == 0
    assert (await cleanup.purge_trash(deployment.runtime))["tasks"] == 2
    purged = await deployment.rows(
        "SELECT entity_id FROM events WHERE action = 'purged' ORDER BY entity_id"
    )
    assert [row[0] for row in purged] == sorted([first, second])
