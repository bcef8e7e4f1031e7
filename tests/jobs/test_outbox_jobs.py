"""The jobs that read the event log (notifications) and `remind_at` (reminders), run as a
worker runs them: each safe to run twice or at once, each notification made once."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from app.db.access import Db
from app.db.statements import events
from app.db.statements import outbox as outbox_statements
from app.db.statements.events import Position
from app.jobs import outbox
from app.jobs import runtime as runtime_module
from app.jobs.runtime import JobRuntime, open_runtime
from app.models.job import OutboxCursor
from tests.jobs.conftest import Deployment


def _soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def _notifications(deployment: Deployment, user_id: int) -> list[tuple[str, str]]:
    rows = await deployment.rows(
        "SELECT kind, message FROM notifications WHERE user_id = :user ORDER BY id",
        user=user_id,
    )
    return [(str(kind), str(message)) for kind, message in rows]


async def _reminded_task(
    deployment: Deployment,
    author: dict[str, Any],
    title: str,
    *,
    in_seconds: float,
    project_id: int | None = None,
    assignee_ids: tuple[int, ...] = (),
) -> dict[str, Any]:
    """A task `author` creates (in their Inbox without `project_id`), to be reminded of
    `in_seconds` from now; the response, its ETag kept under "etag"."""
    body: dict[str, Any] = {"title": title, "remind_at": _soon(in_seconds)}
    if project_id is not None:
        body["project_id"] = project_id
    if assignee_ids:
        body["assignee_ids"] = list(assignee_ids)
    created = await deployment.http.post("/api/v2/tasks", json=body, headers=author["headers"])
    assert created.status_code == 201, created.text
    task: dict[str, Any] = created.json()
    task["etag"] = created.headers["ETag"]
    return task


async def test_events_make_each_notification_once(deployment: Deployment) -> None:
    owner = await deployment.user("owner@example.com", "Olga")
    editor = await deployment.user("editor@example.com", "Ed")
    project_id = await deployment.project_with(owner, (editor, "editor"))
    task = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Ship it", "project_id": project_id, "assignee_ids": [editor["id"]]},
        headers=owner["headers"],
    )
    assert task.status_code == 201, task.text
    # The editor comments on their own task (no notification to themselves); the owner too.
    for who in (editor, owner):
        comment = await deployment.http.post(
            f"/api/v2/tasks/{task.json()['id']}/comments",
            json={"body": "on it"},
            headers=who["headers"],
        )
        assert comment.status_code == 201, comment.text
    role = await deployment.http.patch(
        f"/api/v2/projects/{project_id}/members/{editor['id']}",
        json={"role": "commenter"},
        headers=owner["headers"],
    )
    assert role.status_code == 200, role.text

    # Twice, and twice at once: each notification is made once.
    await outbox.fan_out(deployment.runtime)
    await outbox.fan_out(deployment.runtime)
    if deployment.backend == "postgresql":
        await asyncio.gather(outbox.fan_out(deployment.runtime), outbox.fan_out(deployment.runtime))

    assert await _notifications(deployment, editor["id"]) == [
        ("invited", "Olga invited you to Team as editor"),
        ("assigned", "Olga assigned you to “Ship it”"),
        ("commented", "Olga commented on “Ship it”"),
        ("role_changed", "Olga changed your role in Team to commenter"),
    ]
    # The owner created the task: the editor's comment notifies them, their own does not.
    assert await _notifications(deployment, owner["id"]) == [
        ("commented", "Ed commented on “Ship it”")
    ]

    removed = await deployment.http.delete(
        f"/api/v2/projects/{project_id}/members/{editor['id']}", headers=owner["headers"]
    )
    assert removed.status_code == 204, removed.text
    await outbox.fan_out(deployment.runtime)
    assert (await _notifications(deployment, editor["id"]))[-1] == (
        "removed",
        "Olga removed you from Team",
    )


async def test_a_failed_fan_out_makes_nothing_and_the_next_run_does_it(
    deployment: Deployment,
) -> None:
    owner = await deployment.user("owner@example.com")
    editor = await deployment.user("editor@example.com")
    await deployment.project_with(owner, (editor, "editor"))

    async def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the database went away mid-job")

    real = outbox.statements.add_notifications
    outbox.statements.add_notifications = broken  # type: ignore[assignment]
    try:
        try:
            await outbox.fan_out(deployment.runtime)
        except RuntimeError:
            pass
    finally:
        outbox.statements.add_notifications = real  # type: ignore[assignment]
    assert await _notifications(deployment, editor["id"]) == []
    assert await deployment.scalar("SELECT count(*) FROM outbox_cursors WHERE id > 0") == 0

    await outbox.fan_out(deployment.runtime)
    assert [kind for kind, _ in await _notifications(deployment, editor["id"])] == ["invited"]


async def test_a_reminder_goes_once_to_each_assignee_and_again_when_moved(
    deployment: Deployment,
) -> None:
    owner = await deployment.user("owner@example.com")
    first = await deployment.user("first@example.com")
    second = await deployment.user("second@example.com")
    project_id = await deployment.project_with(owner, (first, "editor"), (second, "editor"))
    task = await _reminded_task(
        deployment,
        owner,
        "Call back",
        in_seconds=0.2,
        project_id=project_id,
        assignee_ids=(first["id"], second["id"]),
    )
    await asyncio.sleep(0.3)
    # Three workers at once, each with its own engine (on SQLite: three processes on one
    # file). A run that loses SQLite's write lock fails, as a job would, and the next period
    # redoes nothing.
    async with AsyncExitStack() as stack:
        runtimes = [
            await stack.enter_async_context(open_runtime(deployment.settings)) for _ in range(3)
        ]
        await asyncio.gather(
            *(outbox.send_reminders(runtime) for runtime in runtimes), return_exceptions=True
        )
        await outbox.send_reminders(runtimes[0])
    for user in (first, second):
        assert await _notifications(deployment, user["id"]) == [
            ("reminder", "Reminder: “Call back”")
        ]
    assert await _notifications(deployment, owner["id"]) == []

    # A new remind_at arms it again.
    moved = await deployment.http.patch(
        f"/api/v2/tasks/{task['id']}",
        json={"remind_at": _soon(0.1)},
        headers={**owner["headers"], "If-Match": task["etag"]},
    )
    assert moved.status_code == 200, moved.text
    await asyncio.sleep(0.2)
    await outbox.send_reminders(deployment.runtime)
    await outbox.send_reminders(deployment.runtime)
    assert [kind for kind, _ in await _notifications(deployment, first["id"])] == [
        "reminder",
        "reminder",
    ]


@pytest.mark.parametrize(
    "extra",
    [({}), ({"label_ids": []})],  # the second, a write that links, in its own transaction
    ids=["fields", "with-links"],
)
async def test_a_remind_at_set_back_to_one_that_fired_fires_again(
    deployment: Deployment, extra: dict[str, Any]
) -> None:
    """Changing remind_at arms it again (spec api-v2 section 8), also when the new value is
    one that fired before. Before, the sent record of that value stood and nothing came;
    setting the same value again is no change and arms nothing."""
    owner = await deployment.user("owner@example.com")
    first_time = _soon(0.1)
    task = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Water the plants", "remind_at": first_time},
        headers=owner["headers"],
    )
    assert task.status_code == 201, task.text
    url = f"/api/v2/tasks/{task.json()['id']}"
    await asyncio.sleep(0.2)
    await outbox.send_reminders(deployment.runtime)
    assert len(await _notifications(deployment, owner["id"])) == 1

    for remind_at in (_soon(3600), first_time):  # moved on, then back to the one that fired
        changed = await deployment.http.patch(
            url, json={"remind_at": remind_at, **extra}, headers=owner["headers"]
        )
        assert changed.status_code == 200, changed.text
    await outbox.send_reminders(deployment.runtime)
    assert len(await _notifications(deployment, owner["id"])) == 2

    unchanged = await deployment.http.patch(
        url, json={"remind_at": first_time, **extra}, headers=owner["headers"]
    )
    assert unchanged.status_code == 200, unchanged.text
    await outbox.send_reminders(deployment.runtime)
    assert len(await _notifications(deployment, owner["id"])) == 2


async def test_a_reminder_whose_creator_left_goes_to_the_projects_owners(
    deployment: Deployment,
) -> None:
    """Nobody assigned, and its creator no longer a member (removed, or the task moved to a
    project of others): before, the reminder was claimed and went to nobody."""
    owner = await deployment.user("owner@example.com")
    co_owner = await deployment.user("co-owner@example.com")
    editor = await deployment.user("editor@example.com")
    project_id = await deployment.project_with(owner, (co_owner, "owner"), (editor, "editor"))
    await _reminded_task(
        deployment, editor, "Renew the lease", in_seconds=0.3, project_id=project_id
    )
    removed = await deployment.http.delete(
        f"/api/v2/projects/{project_id}/members/{editor['id']}", headers=owner["headers"]
    )
    assert removed.status_code == 204, removed.text
    await asyncio.sleep(0.4)
    assert await outbox.send_reminders(deployment.runtime) == 2
    for someone in (owner, co_owner):
        assert await _notifications(deployment, someone["id"]) == [
            ("reminder", "Reminder: “Renew the lease”")
        ]
    assert await _notifications(deployment, editor["id"]) == []


async def test_many_reminders_due_at_once_are_made_in_one_run(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch at a time until none is due: before, a run made one batch, and thousands due
    at once took runs enough to be late past the contract's 10 seconds."""
    owner = await deployment.user("owner@example.com")
    monkeypatch.setattr(outbox, "REMINDER_BATCH", 2)
    for number in range(5):
        await _reminded_task(deployment, owner, f"Call {number}", in_seconds=0.3)
    await asyncio.sleep(0.4)
    assert await outbox.send_reminders(deployment.runtime) == 5
    assert len(await _notifications(deployment, owner["id"])) == 5


async def test_a_deactivated_account_is_notified_of_nothing(deployment: Deployment) -> None:
    """An admin deactivated the account: its owner cannot sign in to read a notification,
    and its address is not ours to mail any more."""
    owner = await deployment.user("owner@example.com")
    active = await deployment.user("active@example.com")
    gone = await deployment.user("gone@example.com")
    project_id = await deployment.project_with(owner, (active, "editor"), (gone, "editor"))
    # Theirs, nobody assigned: the reminder passes over them to the project's owners.
    await _reminded_task(deployment, gone, "Order paper", in_seconds=0.3, project_id=project_id)
    await outbox.fan_out(deployment.runtime)
    async with deployment.runtime.transaction() as db:
        await db.session.execute(
            text("UPDATE users SET is_active = false WHERE id = :id"), {"id": gone["id"]}
        )
    await _reminded_task(
        deployment,
        owner,
        "Inventory",
        in_seconds=0.3,
        project_id=project_id,
        assignee_ids=(active["id"], gone["id"]),
    )
    await outbox.fan_out(deployment.runtime)
    await asyncio.sleep(0.4)
    await outbox.send_reminders(deployment.runtime)
    assert [kind for kind, _ in await _notifications(deployment, active["id"])] == [
        "invited",
        "assigned",
        "reminder",
    ]
    assert [kind for kind, _ in await _notifications(deployment, gone["id"])] == ["invited"]
    assert await _notifications(deployment, owner["id"]) == [
        ("reminder", "Reminder: “Order paper”")
    ]


async def test_a_remind_at_that_passed_while_done_or_trashed_is_not_sent_late(
    deployment: Deployment,
) -> None:
    """A done or trashed task gets no reminder (spec api-v2 section 8): not at its time, nor
    late when it is reopened or restored after it (before, the job found it due then, up to
    a day late). Reopened before its time, or written without leaving `done`, it is
    reminded as ever."""
    owner = await deployment.user("owner@example.com")
    headers = owner["headers"]
    project_id = await deployment.project_with(owner)
    tasks = {
        name: await _reminded_task(deployment, owner, name, in_seconds=0.6, **where)
        for name, where in (
            ("done, reopened in v2", {}),
            ("done, reopened in v1", {}),
            ("trashed, restored in v2", {}),
            ("trashed, restored in v1", {}),
            ("in a trashed project", {"project_id": project_id}),
            ("done, reopened in time", {}),
            ("done, reopened with its remind_at sent again", {}),
            ("written, never done", {}),
        )
    }

    async def call(method: str, url: str, **body: Any) -> None:
        response = await deployment.http.request(method, url, json=body or None, headers=headers)
        assert response.status_code in (200, 204), response.text

    def v2(name: str) -> str:
        return f"/api/v2/tasks/{tasks[name]['id']}"

    def v1(name: str) -> str:
        return f"/api/v1/tasks/{tasks[name]['id']}"

    for name in (
        "done, reopened in v2",
        "done, reopened in v1",
        "done, reopened in time",
        "done, reopened with its remind_at sent again",
    ):
        await call("PATCH", v2(name), status="done")
    await call("DELETE", v2("trashed, restored in v2"))
    await call("DELETE", v2("trashed, restored in v1"))
    await call("DELETE", f"/api/v2/projects/{project_id}")
    await call("PATCH", v2("done, reopened in time"), status="todo")
    await asyncio.sleep(0.7)  # every remind_at has passed; no job has run
    await call("PATCH", v2("done, reopened in v2"), status="in_progress")
    await call("PATCH", v1("done, reopened in v1"), status="todo")
    await call("POST", f"{v2('trashed, restored in v2')}/restore")
    await call("POST", f"{v1('trashed, restored in v1')}/restore")
    await call("POST", f"/api/v2/projects/{project_id}/restore")
    await call("PATCH", v2("written, never done"), status="todo")
    # A client sending back the whole form: the same remind_at is no new one to arm.
    again = tasks["done, reopened with its remind_at sent again"]
    await call("PATCH", v2(again["title"]), status="todo", remind_at=again["remind_at"])

    await outbox.send_reminders(deployment.runtime)
    assert sorted(message for _, message in await _notifications(deployment, owner["id"])) == [
        "Reminder: “done, reopened in time”",
        "Reminder: “written, never done”",
    ]


async def test_no_reminder_for_done_trashed_or_day_late_tasks(deployment: Deployment) -> None:
    owner = await deployment.user("owner@example.com")
    headers = owner["headers"]
    done = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Done", "status": "done", "remind_at": _soon(0.1)},
        headers=headers,
    )
    trashed = await deployment.http.post(
        "/api/v2/tasks", json={"title": "Trashed", "remind_at": _soon(0.1)}, headers=headers
    )
    late = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Late", "remind_at": (datetime.now(UTC) - timedelta(days=2)).isoformat()},
        headers=headers,
    )
    yesterday = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Missed", "remind_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat()},
        headers=headers,
    )
    for created in (done, trashed, late, yesterday):
        assert created.status_code == 201, created.text
    deleted = await deployment.http.delete(f"/api/v2/tasks/{trashed.json()['id']}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    await asyncio.sleep(0.2)
    await outbox.send_reminders(deployment.runtime)
    # The one missed by a few hours while no worker ran is still sent (in an Inbox, to its
    # owner: nobody is assigned); the others are not.
    assert await _notifications(deployment, owner["id"]) == [("reminder", "Reminder: “Missed”")]


async def test_a_cursor_ahead_of_the_log_is_reported(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    """The fan-out's cursor is past the log's horizon only when the database is a copy
    restored since (a backup, or a dump loaded into a cluster whose transaction ids start
    lower): its new events would wait, without a word, until the log caught up. The job says
    so in its log, as an error, on every run."""
    owner = await deployment.user("owner@example.com", "Olga")
    project_id = await deployment.project_with(owner)
    await outbox.fan_out(deployment.runtime)
    async with deployment.runtime.transaction() as db:
        upto = await events.horizon(db)
        # PostgreSQL: transaction ids ahead; SQLite (xid 0): event ids ahead.
        ahead = (upto.xid + 1_000_000, upto.id) if upto.xid else (0, upto.id + 1_000_000)
        await db.session.execute(
            update(OutboxCursor)
            .where(OutboxCursor.name == outbox.OUTBOX)
            .values(xid=ahead[0], id=ahead[1])
        )
    created = await deployment.http.post(
        "/api/v2/tasks", json={"title": "After", "project_id": project_id}, headers=owner["headers"]
    )
    assert created.status_code == 201, created.text

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="app.jobs"):
        assert await outbox.fan_out(deployment.runtime) == 0
    logged = [
        record.msg
        for record in caplog.records
        if record.levelno >= logging.ERROR and isinstance(record.msg, dict)
    ]
    assert [entry["event"] for entry in logged] == ["outbox_cursor_ahead_of_the_log"]


async def test_a_run_does_not_wait_for_another_holding_the_cursor(
    deployment: Deployment,
) -> None:
    """A run whose worker froze while it held the cursor (a paused machine, a cut connection)
    held back every other worker's runs, queued behind it: a black-box run saw notifications
    and reminders 40 s late while one of three workers was stopped. Now the others pass."""
    if deployment.backend != "postgresql":
        pytest.skip("SQLite runs one transaction at a time: no run can hold the cursor so")
    owner = await deployment.user("owner@example.com", "Olga")
    await deployment.project_with(owner)
    await outbox.fan_out(deployment.runtime)
    async with deployment.runtime.transaction() as frozen:
        await frozen.session.execute(
            select(OutboxCursor.id).where(OutboxCursor.name == outbox.OUTBOX).with_for_update()
        )
        # A guard, not a measure: before, the run waited for the lock as long as it was held.
        assert await asyncio.wait_for(outbox.fan_out(deployment.runtime), timeout=10) == 0


async def test_a_run_that_another_passed_reports_nothing(
    deployment: Deployment, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run moved the cursor past the horizon this run took before it got the cursor:
    not a restored copy of the log, which the job reports (it did, 10 times in a black-box
    run with three workers)."""
    owner = await deployment.user("owner@example.com", "Olga")
    await deployment.project_with(owner)
    await outbox.fan_out(deployment.runtime)
    horizon = events.horizon
    taken: list[Position] = []

    async def taken_before_the_other_run(db: Db) -> Position:
        taken.append(await horizon(db))
        # The first, as this run took it before the other run moved the cursor past it.
        return events.START if len(taken) == 1 else taken[-1]

    monkeypatch.setattr(events, "horizon", taken_before_the_other_run)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="app.jobs"):
        assert await outbox.fan_out(deployment.runtime) == 0
    assert len(taken) == 2
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_a_frozen_runs_session_is_ended_and_its_cursor_freed(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that froze in a transaction (a paused machine, a cut connection) holds its
    locks only until PostgreSQL ends its idle session; then the other workers go on."""
    if deployment.backend != "postgresql":
        pytest.skip("SQLite: the jobs run in the API's process, one transaction at a time")
    monkeypatch.setattr(runtime_module, "JOB_IDLE_IN_TRANSACTION_SECONDS", 0.5)
    owner = await deployment.user("owner@example.com", "Olga")
    project_id = await deployment.project_with(owner)

    async def freeze_holding_the_cursor(frozen_worker: JobRuntime) -> None:
        async with frozen_worker.transaction() as frozen:
            assert await outbox_statements.lock_cursor(frozen, outbox.OUTBOX) is not None
            assert await outbox.fan_out(deployment.runtime) == 0  # passed by, not waiting
            await asyncio.sleep(1.5)  # frozen, its transaction open
            await frozen.session.execute(select(1))

    async with open_runtime(deployment.settings) as frozen_worker:
        with pytest.raises(DBAPIError):  # its session was ended
            await freeze_holding_the_cursor(frozen_worker)
    created = await deployment.http.post(
        "/api/v2/tasks", json={"title": "After", "project_id": project_id}, headers=owner["headers"]
    )
    assert created.status_code == 201, created.text
    assert await outbox.fan_out(deployment.runtime) >= 1


async def test_the_creator_is_known_after_retention_removed_the_created_event(
    deployment: Deployment,
) -> None:
    """A task nobody is assigned reminds its creator, and comments notify them (spec api-v2
    section 8), also once ACTIVITY_RETENTION_DAYS has removed its `created` event, which was
    where the creator was read from: the reminder went to nobody, marked sent."""
    owner = await deployment.user("owner@example.com", "Olga")
    editor = await deployment.user("editor@example.com", "Ed")
    project_id = await deployment.project_with(owner, (editor, "editor"))
    task = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Old one", "project_id": project_id, "remind_at": _soon(0.2)},
        headers=editor["headers"],
    )
    assert task.status_code == 201, task.text
    await outbox.fan_out(deployment.runtime)
    async with deployment.runtime.transaction() as db:  # as retention does, long after
        await db.session.execute(
            text("DELETE FROM events WHERE task_id = :task"), {"task": task.json()["id"]}
        )
    await asyncio.sleep(0.3)
    await outbox.send_reminders(deployment.runtime)
    commented = await deployment.http.post(
        f"/api/v2/tasks/{task.json()['id']}/comments",
        json={"body": "Still on?"},
        headers=owner["headers"],
    )
    assert commented.status_code == 201, commented.text
    await outbox.fan_out(deployment.runtime)

    kinds = [kind for kind, _ in await _notifications(deployment, editor["id"])]
    assert kinds == ["invited", "reminder", "commented"]


async def test_an_invitation_made_again_with_another_role_is_told(
    deployment: Deployment,
) -> None:
    """Its addressee's first notification says the old role; a second one says the new. The
    same role again (a later expiry) tells nothing new."""
    owner = await deployment.user("owner@example.com", "Olga")
    guest = await deployment.user("guest@example.com", "Gus")
    project_id = await deployment.project_with(owner)
    for role in ("editor", "viewer", "viewer"):
        invited = await deployment.http.post(
            f"/api/v2/projects/{project_id}/invitations",
            json={"email": guest["email"], "role": role},
            headers=owner["headers"],
        )
        assert invited.status_code in (200, 201), invited.text
        await outbox.fan_out(deployment.runtime)
    assert await _notifications(deployment, guest["id"]) == [
        ("invited", "Olga invited you to Team as editor"),
        ("invited", "Olga invited you to Team as viewer"),
    ]
