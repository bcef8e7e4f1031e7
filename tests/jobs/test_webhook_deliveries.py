"""The webhook delivery job against a real receiver: every event of the project delivered,
signed by the Standard Webhooks scheme (checked with its own library), retried as a new
attempt of the same message after a failure, abandoned after the schedule, and the webhook
disabled by a 410 or by failing for days, its admins told."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from standardwebhooks import Webhook as StandardWebhook

from app.core.webhook_signing import new_secret
from app.db.statements import deliveries as delivery_statements
from app.jobs import deliveries, outbox
from app.jobs.webhook_http import AttemptResult
from tests.jobs.conftest import Deployment
from tests.jobs.receiver import Answer, Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


async def _webhook(
    deployment: Deployment, project_id: int, url: str, events: list[str] | None = None
) -> tuple[int, str]:
    secret = new_secret()
    now = datetime.now(UTC)
    async with deployment.runtime.transaction() as db:
        found = await db.session.execute(
            text(
                "INSERT INTO webhooks (project_id, url, events, active, created_at, updated_at, "
                "secret) VALUES (:project, :url, :events, true, :now, :now, :secret) RETURNING id"
            ),
            {
                "project": project_id,
                "url": url,
                "events": json.dumps(events or ["*"]),
                "now": now,
                "secret": secret,
            },
        )
        return int(found.scalar_one()), secret


async def _log(deployment: Deployment, webhook_id: int) -> list[dict[str, Any]]:
    rows = await deployment.rows(
        "SELECT message_id, type, attempt, status, response_status, error, next_attempt_at "
        "FROM webhook_deliveries WHERE webhook_id = :id ORDER BY id",
        id=webhook_id,
    )
    keys = ("message_id", "type", "attempt", "status", "response_status", "error", "next")
    return [dict(zip(keys, row, strict=True)) for row in rows]


async def _team(deployment: Deployment) -> tuple[dict[str, Any], int]:
    owner = await deployment.user("owner@example.com", "Olga")
    project_id = await deployment.project_with(owner)
    return owner, project_id


async def _created_and_fanned_out(
    deployment: Deployment, owner: dict[str, Any], project_id: int, title: str
) -> None:
    """A task created in the project, and the fan-out run: its attempts are pending."""
    created = await deployment.http.post(
        "/api/v2/tasks", json={"title": title, "project_id": project_id}, headers=owner["headers"]
    )
    assert created.status_code == 201, created.text
    await outbox.fan_out(deployment.runtime)


async def _work(deployment: Deployment) -> None:
    await outbox.fan_out(deployment.runtime)
    await deliveries.deliver_due(deployment.runtime)


async def test_events_are_delivered_signed_with_the_object(
    deployment: Deployment, receiver: Receiver
) -> None:
    owner, project_id = await _team(deployment)
    webhook_id, secret = await _webhook(deployment, project_id, receiver.url, ["task.created"])
    task = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Hook me", "project_id": project_id},
        headers=owner["headers"],
    )
    assert task.status_code == 201, task.text
    renamed = await deployment.http.patch(
        f"/api/v2/tasks/{task.json()['id']}",
        json={"title": "Hooked"},
        headers={**owner["headers"], "If-Match": task.headers["ETag"]},
    )
    assert renamed.status_code == 200
    await _work(deployment)
    await _work(deployment)  # twice: nothing is sent twice

    # Only the subscribed type (task.created), once.
    assert len(receiver.received) == 1
    request = receiver.received[0]
    payload = StandardWebhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "task.created"
    data = payload["data"]
    assert (data["entity"], data["action"], data["entity_id"]) == (
        "task",
        "created",
        task.json()["id"],
    )
    # The object as it is now (renamed since).
    assert data["object"]["title"] == "Hooked"
    assert data["actor"] == {"id": owner["id"], "full_name": "Olga"}
    [logged] = await _log(deployment, webhook_id)
    assert logged["status"] == "succeeded"
    assert logged["response_status"] == 200
    assert logged["message_id"] == request.headers["webhook-id"]


async def test_an_event_goes_to_the_webhooks_active_when_it_happened(
    deployment: Deployment, receiver: Receiver
) -> None:
    """Whenever the fan-out comes to an event. It looked at the webhooks active when it ran:
    a black-box run saw an event made just before its webhook was disabled never delivered,
    and one made while it was disabled delivered once it was enabled again."""
    owner, project_id = await _team(deployment)
    webhook_id, _ = await _webhook(deployment, project_id, receiver.url, ["task.created"])
    webhook = f"/api/v2/projects/{project_id}/webhooks/{webhook_id}"

    async def create(title: str) -> None:
        created = await deployment.http.post(
            "/api/v2/tasks",
            json={"title": title, "project_id": project_id},
            headers=owner["headers"],
        )
        assert created.status_code == 201, created.text

    async def switch(active: bool) -> None:
        switched = await deployment.http.patch(
            webhook, json={"active": active}, headers=owner["headers"]
        )
        assert switched.status_code == 200, switched.text

    await create("before it was disabled")
    await switch(False)
    # The fan-out a second later: the attempt is made, and waits for the webhook to be on.
    await outbox.fan_out(deployment.runtime)
    await create("while it was disabled")
    await switch(False)  # again: still disabled since the first time
    await switch(True)
    await switch(True)  # again: still enabled since the first time
    await create("once it was enabled again")
    await _work(deployment)

    delivered = [
        json.loads(request.body)["data"]["object"]["title"] for request in receiver.received
    ]
    assert sorted(delivered) == ["before it was disabled", "once it was enabled again"]


async def test_a_failure_is_retried_as_the_same_message(
    deployment: Deployment, receiver: Receiver
) -> None:
    owner, project_id = await _team(deployment)
    webhook_id, secret = await _webhook(deployment, project_id, receiver.url)
    deployment.runtime.settings.webhook_retry_schedule = [0.0, 0.0, 0.0]
    receiver.answer(Answer(500, body=b"boom"), Answer(503))
    created = await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Flaky", "project_id": project_id},
        headers=owner["headers"],
    )
    assert created.status_code == 201
    for _ in range(3):
        await _work(deployment)
    task_messages = [r for r in receiver.received if b'"task.created"' in r.body]
    assert len(task_messages) == 3
    assert len({r.headers["webhook-id"] for r in task_messages}) == 1
    for request in task_messages:
        StandardWebhook(secret).verify(request.body, request.headers)
    log = [entry for entry in await _log(deployment, webhook_id) if entry["type"] == "task.created"]
    assert [(e["attempt"], e["status"], e["response_status"]) for e in log] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "succeeded", 200),
    ]
    assert log[0]["error"]
    assert "500" in log[0]["error"]


async def test_a_slow_receiver_does_not_hold_up_another_webhooks_retry(
    deployment: Deployment, receiver: Receiver
) -> None:
    """One webhook's receiver takes its time; another's fails once. The failed attempt's
    retry is sent while the slow one is still in flight, and timed from its failure. (The
    attempts sent together were written down when the slowest ended, so every retry among
    them waited for it: a black-box run saw a 1 s retry sent 12 s late.)"""
    owner, project_id = await _team(deployment)
    settings = deployment.runtime.settings
    settings.webhook_retry_schedule = [0.2]
    settings.webhook_timeout_seconds = 30
    retried = threading.Event()
    with running_receiver() as flaky:
        slow_id, _ = await _webhook(deployment, project_id, receiver.url, ["task.created"])
        flaky_id, _ = await _webhook(deployment, project_id, flaky.url, ["task.created"])
        receiver.answer(Answer(until=retried, delay=20))  # answers once the retry came
        flaky.answer(Answer(500), Answer(200, sets=retried))
        created = await deployment.http.post(
            "/api/v2/tasks",
            json={"title": "Both", "project_id": project_id},
            headers=owner["headers"],
        )
        assert created.status_code == 201, created.text
        await _work(deployment)

        assert receiver.opened == [True]  # the retry came while the slow attempt waited
        assert [(e["attempt"], e["status"]) for e in await _log(deployment, flaky_id)] == [
            (1, "failed"),
            (2, "succeeded"),
        ]
        assert [(e["attempt"], e["status"]) for e in await _log(deployment, slow_id)] == [
            (1, "succeeded")
        ]


async def _backlog_then_an_edit(
    deployment: Deployment, owner: dict[str, Any], project_id: int, tasks: int
) -> None:
    """`tasks` new tasks (`task.created` messages), then an edit of the last one (one
    `task.updated`), delivered run after run until none is left."""
    for n in range(tasks):
        created = await deployment.http.post(
            "/api/v2/tasks",
            json={"title": f"Backlog {n}", "project_id": project_id},
            headers=owner["headers"],
        )
        assert created.status_code == 201, created.text
    edited = await deployment.http.patch(
        f"/api/v2/tasks/{created.json()['id']}", json={"title": "Edited"}, headers=owner["headers"]
    )
    assert edited.status_code == 200, edited.text
    await outbox.fan_out(deployment.runtime)
    while await deliveries.deliver_due(deployment.runtime):
        pass


async def test_a_backlog_to_a_slow_receiver_leaves_places_to_other_webhooks(
    deployment: Deployment, receiver: Receiver
) -> None:
    """More messages to a slow receiver than a run has places, then one to another webhook:
    it is sent while the slow ones are still in flight (they filled every place, oldest
    first, and the other webhook waited for a timeout per round)."""
    owner, project_id = await _team(deployment)
    deployment.runtime.settings.webhook_timeout_seconds = 30
    backlog = deliveries.DELIVERY_BATCH + 5
    other_sent = threading.Event()
    with running_receiver() as other:
        slow_id, _ = await _webhook(deployment, project_id, receiver.url, ["task.created"])
        other_id, _ = await _webhook(deployment, project_id, other.url, ["task.updated"])
        receiver.answer(*[Answer(until=other_sent, delay=20)] * backlog)
        other.answer(Answer(200, sets=other_sent))
        await _backlog_then_an_edit(deployment, owner, project_id, backlog)

        # Every slow answer was released by the other webhook's delivery, none waited it out.
        assert receiver.opened == [True] * backlog
        assert [e["status"] for e in await _log(deployment, other_id)] == ["succeeded"]
        assert [e["status"] for e in await _log(deployment, slow_id)] == ["succeeded"] * backlog


async def test_backlogs_to_several_slow_receivers_leave_a_place_to_another_webhook(
    deployment: Deployment, receiver: Receiver
) -> None:
    """Enough slow webhooks, each with more messages than it may have in flight, to fill
    every place of a run, then one message to another webhook: it is sent in the first round,
    before more of theirs (taken oldest first, their backlogs filled every place, and a
    black-box run saw another user's message wait up to 100 s behind 20 slow webhooks)."""
    owner, project_id = await _team(deployment)
    deployment.runtime.settings.webhook_timeout_seconds = 30
    slow_webhooks = -(-deliveries.DELIVERY_BATCH // deliveries.IN_FLIGHT_PER_WEBHOOK)
    backlog = deliveries.IN_FLIGHT_PER_WEBHOOK + 2  # messages to each slow webhook
    other_sent = threading.Event()
    with running_receiver() as other:
        for _ in range(slow_webhooks):
            await _webhook(deployment, project_id, receiver.url, ["task.created"])
        other_id, _ = await _webhook(deployment, project_id, other.url, ["task.updated"])
        receiver.answer(*[Answer(until=other_sent, delay=20)] * (slow_webhooks * backlog))
        other.answer(Answer(200, sets=other_sent))
        await _backlog_then_an_edit(deployment, owner, project_id, backlog)

        assert receiver.opened == [True] * (slow_webhooks * backlog)
        assert [e["status"] for e in await _log(deployment, other_id)] == ["succeeded"]


async def test_a_run_ends_while_attempts_keep_falling_due(
    deployment: Deployment, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run takes new attempts for a while, then ends once those in flight are written
    down, even when more keep falling due (a worker's graceful stop waits for the run);
    the next run takes them."""
    monkeypatch.setattr(deliveries, "CLAIMING_SECONDS", 0.3)
    owner, project_id = await _team(deployment)
    deployment.runtime.settings.webhook_retry_schedule = [0.0] * 500  # each retry due at once
    webhook_id, _ = await _webhook(deployment, project_id, receiver.url, ["task.created"])
    receiver.answer(*[Answer(500)] * 1000)
    await _created_and_fanned_out(deployment, owner, project_id, "Failing")

    first_run = await deliveries.deliver_due(deployment.runtime)
    assert 0 < first_run < 500
    log = await _log(deployment, webhook_id)
    assert log[-1]["status"] == "pending"  # the next attempt is due, for the next run
    assert await deliveries.deliver_due(deployment.runtime) > 0


async def test_runs_beyond_the_limit_of_a_process_end_at_once(
    deployment: Deployment, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While as many delivery runs as a process allows wait on a slow receiver, another run
    of that process ends at once and holds no job place: reminders, notifications and mail
    keep their places (overlapping runs once took every place of a worker for minutes)."""
    monkeypatch.setattr(deliveries, "RUNS_AT_ONCE", 1)
    owner, project_id = await _team(deployment)
    deployment.runtime.settings.webhook_timeout_seconds = 30
    await _webhook(deployment, project_id, receiver.url, ["task.created"])
    released = threading.Event()
    receiver.answer(Answer(until=released, delay=20))
    created = await deployment.http.post(
        "/api/v2/tasks", json={"title": "Slow", "project_id": project_id}, headers=owner["headers"]
    )
    assert created.status_code == 201, created.text
    await outbox.fan_out(deployment.runtime)

    monkeypatch.setattr(deliveries, "CLAIMING_SECONDS", 0.1)  # the run takes no more
    running = asyncio.create_task(deliveries.deliver_due(deployment.runtime))
    while not receiver.received:  # the slow attempt is in flight
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    another = await deployment.http.post(
        "/api/v2/tasks", json={"title": "Next", "project_id": project_id}, headers=owner["headers"]
    )
    assert another.status_code == 201, another.text
    await outbox.fan_out(deployment.runtime)  # an attempt due, that only a new run would take

    assert await deliveries.deliver_due(deployment.runtime) == 0
    assert len(receiver.received) == 1
    released.set()
    assert await running == 1
    assert receiver.opened == [True]
    assert deployment.runtime.delivery_runs == 0
    assert await deliveries.deliver_due(deployment.runtime) == 1  # the next run takes it


async def test_abandoned_after_the_schedule_and_disabled_by_a_410(
    deployment: Deployment, receiver: Receiver
) -> None:
    owner, project_id = await _team(deployment)
    # A chat's incoming-webhook URL: its path is a credential.
    url = f"{receiver.url}/T0K3N?key=s3cret"
    webhook_id, _ = await _webhook(deployment, project_id, url, ["task.created"])
    deployment.runtime.settings.webhook_retry_schedule = [0.0]
    receiver.answer(Answer(500), Answer(500))
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Doomed", "project_id": project_id},
        headers=owner["headers"],
    )
    for _ in range(3):
        await _work(deployment)
    assert [(e["attempt"], e["status"]) for e in await _log(deployment, webhook_id)] == [
        (1, "failed"),
        (2, "abandoned"),
    ]

    receiver.answer(Answer(410))
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Gone", "project_id": project_id},
        headers=owner["headers"],
    )
    await _work(deployment)
    active, reason = (
        await deployment.rows(
            "SELECT active, disabled_reason FROM webhooks WHERE id = :id", id=webhook_id
        )
    )[0]
    assert not active
    assert "410" in reason
    assert (await _log(deployment, webhook_id))[-1]["status"] == "abandoned"
    told = await deployment.rows(
        "SELECT kind, user_id, message FROM notifications WHERE kind = 'webhook_disabled'"
    )
    assert [(kind, user) for kind, user, _ in told] == [("webhook_disabled", owner["id"])]
    # Which webhook, by its receiver's host (an admin may have several), never its path.
    assert told[0][2] == (
        "The webhook to 127.0.0.1 of this project was disabled: the receiver answered 410 Gone"
    )
    # Disabled: later events are not sent to it.
    sent = len(receiver.received)
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Silent", "project_id": project_id},
        headers=owner["headers"],
    )
    await _work(deployment)
    assert len(receiver.received) == sent


async def test_retry_after_is_honoured(deployment: Deployment, receiver: Receiver) -> None:
    owner, project_id = await _team(deployment)
    webhook_id, _ = await _webhook(deployment, project_id, receiver.url, ["task.created"])
    receiver.answer(Answer(429, headers={"Retry-After": "120"}))
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Busy", "project_id": project_id},
        headers=owner["headers"],
    )
    before = datetime.now(UTC)
    await _work(deployment)
    first, second = await _log(deployment, webhook_id)
    assert first["status"] == "failed"
    assert second["status"] == "pending"
    # SQLite gives the stored text back (raw SQL here), PostgreSQL an aware datetime.
    due = second["next"]
    due = datetime.fromisoformat(due) if isinstance(due, str) else due
    due = due if due.tzinfo else due.replace(tzinfo=UTC)
    assert due >= before + timedelta(seconds=119)


async def test_failing_for_days_disables_it(deployment: Deployment, receiver: Receiver) -> None:
    owner, project_id = await _team(deployment)
    webhook_id, _ = await _webhook(deployment, project_id, receiver.url, ["task.created"])
    async with deployment.runtime.transaction() as db:
        await db.session.execute(
            text("UPDATE webhooks SET failing_since = :since WHERE id = :id"),
            {"since": datetime.now(UTC) - timedelta(days=6), "id": webhook_id},
        )
    receiver.answer(Answer(500))
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Again", "project_id": project_id},
        headers=owner["headers"],
    )
    await _work(deployment)
    active, reason = (
        await deployment.rows(
            "SELECT active, disabled_reason FROM webhooks WHERE id = :id", id=webhook_id
        )
    )[0]
    assert not active
    assert "5 days" in reason


async def test_a_worker_lost_mid_delivery_only_delays_it(
    deployment: Deployment, receiver: Receiver
) -> None:
    owner, project_id = await _team(deployment)
    webhook_id, _ = await _webhook(deployment, project_id, receiver.url, ["task.created"])
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Claimed", "project_id": project_id},
        headers=owner["headers"],
    )
    await outbox.fan_out(deployment.runtime)
    # A worker claims the attempt and dies before sending (or before writing the outcome).
    now = datetime.now(UTC)
    async with deployment.runtime.transaction() as db:
        claimed = await deliveries.statements.claim_due(
            db, now, now + timedelta(minutes=1), 10, per_webhook=10
        )
    assert len(claimed) == 1
    await deliveries.deliver_due(deployment.runtime)
    assert receiver.received == []  # leased: nobody else takes it meanwhile
    async with deployment.runtime.transaction() as db:  # the lease runs out
        await db.session.execute(
            text("UPDATE webhook_deliveries SET next_attempt_at = :now"), {"now": now}
        )
    await deliveries.deliver_due(deployment.runtime)
    assert len(receiver.received) == 1
    assert [e["status"] for e in await _log(deployment, webhook_id)] == ["succeeded"]


async def test_after_a_rotation_both_secrets_sign(
    deployment: Deployment, receiver: Receiver
) -> None:
    owner, project_id = await _team(deployment)
    webhook_id, old = await _webhook(deployment, project_id, receiver.url, ["task.created"])
    new = new_secret()
    async with deployment.runtime.transaction() as db:
        await db.session.execute(
            text(
                "UPDATE webhooks SET secret = :new, previous_secret = :old, "
                "previous_secret_until = :until WHERE id = :id"
            ),
            {
                "new": new,
                "old": old,
                "until": datetime.now(UTC) + timedelta(hours=24),
                "id": webhook_id,
            },
        )
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Rotated", "project_id": project_id},
        headers=owner["headers"],
    )
    await _work(deployment)
    [request] = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        StandardWebhook(secret).verify(request.body, request.headers)
    await asyncio.sleep(0)


@pytest.mark.parametrize("fresh_url", ["postgresql"], indirect=True)
async def test_an_outcome_written_while_the_webhook_is_deleted_waits_its_turn(
    deployment: Deployment, receiver: Receiver
) -> None:
    """The API deletes a webhook (or redelivers) with its row locked first, then its
    attempts. Writing an attempt's outcome took the attempt first, then the webhook (its next
    attempt's key, its `failing_since`): each waited for the other, and PostgreSQL ended one,
    a 409 to the admin or a failed delivery run that dropped every attempt in flight (the
    black-box run: 4 deletes in 30 and 53 redeliveries in 1,888). Now the outcome takes the
    webhook's row first."""
    owner, project_id = await _team(deployment)
    webhook_id, _ = await _webhook(deployment, project_id, receiver.url)
    await _created_and_fanned_out(deployment, owner, project_id, "Hook me")
    now = datetime.now(UTC)
    async with deployment.runtime.transaction() as db:
        [due] = await delivery_statements.claim_due(
            db, now, now + timedelta(minutes=1), 10, per_webhook=10
        )
    failed = AttemptResult(
        status_code=500,
        response_excerpt="",
        error="http-500: failed",
        duration_ms=5,
        retry_after_seconds=None,
        succeeded=False,
        gone=False,
    )

    async with deployment.runtime.transaction() as api:  # the deletion, as the API runs it
        await api.session.execute(text("SET LOCAL lock_timeout = '5s'"))
        await api.session.execute(
            text("SELECT id FROM webhooks WHERE id = :id FOR UPDATE"), {"id": webhook_id}
        )
        recording = asyncio.create_task(deliveries.record_result(deployment.runtime, due, failed))
        await asyncio.sleep(0.5)  # the outcome's transaction reaches its first lock
        await api.session.execute(
            text("DELETE FROM webhook_deliveries WHERE webhook_id = :id"), {"id": webhook_id}
        )
        await api.session.execute(text("DELETE FROM webhooks WHERE id = :id"), {"id": webhook_id})
    await recording  # then finds the attempt gone, and writes nothing

    assert await _log(deployment, webhook_id) == []
