"""The mail job against a real SMTP server (aiosmtpd): each notification mailed once to its
user, a server that is down retried later, a refusal for good not retried; no request waits
for any of it."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr
from sqlalchemy import text

from app.db.statements import mail_outbox
from app.jobs import mailing, outbox
from app.models.notification import Notification
from tests.e2e.test_mail import Mailbox
from tests.e2e.test_server import free_port
from tests.jobs.conftest import Deployment


@pytest.fixture
def smtp(deployment: Deployment) -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    deployment.runtime.settings.smtp_url = SecretStr(f"smtp://127.0.0.1:{port}")
    deployment.runtime.settings.public_url = "https://tasks.example.com"
    try:
        yield mailbox, port
    finally:
        controller.stop()


async def _invite(deployment: Deployment) -> tuple[dict[str, object], dict[str, object]]:
    owner = await deployment.user("owner@example.com", "Olga")
    guest = await deployment.user("guest@example.com", "Gus")
    await deployment.project_with(owner, (guest, "viewer"))
    return owner, guest


async def _mail_state(deployment: Deployment) -> list[tuple[str, int]]:
    rows = await deployment.rows("SELECT mail_status, mail_attempts FROM notifications")
    return [(str(status), int(attempts)) for status, attempts in rows]


async def test_each_notification_is_mailed_once(
    deployment: Deployment, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, _ = smtp
    await _invite(deployment)
    await outbox.fan_out(deployment.runtime)
    assert await mailing.send_due(deployment.runtime) == 1
    assert await mailing.send_due(deployment.runtime) == 0
    assert len(mailbox.envelopes) == 1
    message = email.message_from_bytes(mailbox.envelopes[0].content, policy=email.policy.default)
    assert message["To"] == "guest@example.com"
    body = message.get_content()
    assert "Olga invited you to Team as viewer" in body
    assert "https://tasks.example.com/?project=" in body
    assert await _mail_state(deployment) == [("sent", 1)]


async def test_a_server_that_is_down_is_retried_later(
    deployment: Deployment, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, _ = smtp
    await _invite(deployment)
    await outbox.fan_out(deployment.runtime)
    deployment.runtime.settings.smtp_url = SecretStr(f"smtp://127.0.0.1:{free_port()}")
    assert await mailing.send_due(deployment.runtime) == 1
    [(status, attempts)] = await _mail_state(deployment)
    assert (status, attempts) == ("pending", 1)
    # Not due again at once: backoff.
    assert await mailing.send_due(deployment.runtime) == 0
    error = await deployment.scalar("SELECT mail_error FROM notifications")
    assert error
    assert "password" not in error
    # The server is back and the retry is due.
    deployment.runtime.settings.smtp_url = SecretStr(f"smtp://127.0.0.1:{smtp[1]}")
    async with deployment.runtime.transaction() as db:
        await db.session.execute(
            text("UPDATE notifications SET mail_next_attempt_at = :now"), {"now": datetime.now(UTC)}
        )
    assert await mailing.send_due(deployment.runtime) == 1
    assert len(mailbox.envelopes) == 1
    assert await _mail_state(deployment) == [("sent", 2)]


async def test_a_refusal_for_good_is_not_retried(
    deployment: Deployment, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, _ = smtp
    mailbox.rcpt_reply = "550 No such user here"
    await _invite(deployment)
    await outbox.fan_out(deployment.runtime)
    await mailing.send_due(deployment.runtime)
    assert await _mail_state(deployment) == [("failed", 1)]
    assert mailbox.envelopes == []


async def test_without_smtp_nothing_is_owed(deployment: Deployment) -> None:
    await _invite(deployment)
    await outbox.fan_out(deployment.runtime)
    assert await deployment.scalar("SELECT count(*) FROM notifications") == 1
    assert (
        await deployment.scalar("SELECT count(*) FROM notifications WHERE mail_status IS NOT NULL")
        == 0
    )
    assert await mailing.send_due(deployment.runtime) == 0


async def test_a_mail_sent_after_a_removal_names_nothing_given_since(
    deployment: Deployment, smtp: tuple[Mailbox, int]
) -> None:
    """A mail owed to someone who is then removed from the project (sent late: the server
    was down, or the job had not run yet) names neither the task nor the project as they
    are now, as their notifications no longer do; it names only what the notification said
    when it was made. A black-box run read the task's and the project's new names in it."""
    mailbox, _ = smtp
    owner = await deployment.user("owner@example.com", "Olga")
    guest = await deployment.user("guest@example.com", "Gus")
    project_id = await deployment.project_with(owner, (guest, "editor"))
    http = deployment.http
    task = await http.post(
        "/api/v2/tasks",
        json={"title": "Plain title", "project_id": project_id, "assignee_ids": [guest["id"]]},
        headers=owner["headers"],
    )
    assert task.status_code == 201, task.text
    await outbox.fan_out(deployment.runtime)  # the `assigned` notification, its mail owed
    removed = await http.delete(
        f"/api/v2/projects/{project_id}/members/{guest['id']}", headers=owner["headers"]
    )
    assert removed.status_code == 204, removed.text
    for path, change in (
        (f"/api/v2/tasks/{task.json()['id']}", {"title": "Renamed after"}),
        (f"/api/v2/projects/{project_id}", {"name": "Renamed after too"}),
    ):
        renamed = await http.patch(path, json=change, headers=owner["headers"])
        assert renamed.status_code == 200, renamed.text
    await outbox.fan_out(deployment.runtime)  # and the `removed` one

    while await mailing.send_due(deployment.runtime):
        pass
    texts = [
        email.message_from_bytes(envelope.content, policy=email.policy.default)
        for envelope in mailbox.envelopes
        if envelope.rcpt_tos == ["guest@example.com"]
    ]
    assert {message["Subject"].split(":")[0] for message in texts} >= {
        "[Tasks] Assigned to you",
    }
    for message in texts:
        said = f"{message['Subject']}\n{message.get_content()}"
        assert "Renamed after" not in said, said
    assigned = next(m for m in texts if m["Subject"].startswith("[Tasks] Assigned to you"))
    assert "Plain title" in assigned.get_content()  # what the notification said when made


async def test_an_invitation_mailed_before_it_is_answered_names_the_project(
    deployment: Deployment, smtp: tuple[Mailbox, int]
) -> None:
    """The invitee is not a member yet, but sees the project in their invitations: the
    mail names it and links to it, as it did before mails were limited to what the
    recipient may see."""
    mailbox, _ = smtp
    owner = await deployment.user("owner@example.com", "Olga")
    await deployment.user("guest@example.com", "Gus")
    created = await deployment.http.post(
        "/api/v2/projects", json={"name": "Team"}, headers=owner["headers"]
    )
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    invited = await deployment.http.post(
        f"/api/v2/projects/{project_id}/invitations",
        json={"email": "guest@example.com", "role": "viewer"},
        headers=owner["headers"],
    )
    assert invited.status_code == 201, invited.text
    await outbox.fan_out(deployment.runtime)
    assert await mailing.send_due(deployment.runtime) == 1
    message = email.message_from_bytes(mailbox.envelopes[0].content, policy=email.policy.default)
    assert message["Subject"] == "[Tasks] Invitation: Team"
    assert f"https://tasks.example.com/?project={project_id}" in message.get_content()


async def _claimed_by_a_worker_then_killed(deployment: Deployment) -> tuple[int, datetime]:
    """A mail claimed by a worker that was then killed, its lease over: (its id, the lease
    the claim gave it)."""
    await _invite(deployment)
    await outbox.fan_out(deployment.runtime)
    now = datetime.now(UTC)
    lease_until = now - timedelta(seconds=1)  # as if claimed a lease ago
    async with deployment.runtime.transaction() as db:
        claimed = await mail_outbox.claim_due(db, now, lease_until, mailing.MAIL_BATCH)
    assert len(claimed) == 1
    return claimed[0].id, lease_until


async def test_a_mail_whose_worker_stopped_while_sending_is_not_sent_again(
    deployment: Deployment, smtp: tuple[Mailbox, int]
) -> None:
    """At most once (spec api-v2 section 8): the worker was killed while handing the message
    over, and the server may have accepted it. Before, it was sent again when the lease
    ended: a black-box run that killed workers mid-batch saw every mail of the batch twice."""
    mailbox, _ = smtp
    notification_id, lease_until = await _claimed_by_a_worker_then_killed(deployment)
    async with deployment.runtime.transaction() as db:  # it reached the message, then died
        at_the_time = lease_until - timedelta(seconds=1)
        assert await mail_outbox.mark_sending(db, notification_id, lease_until, at_the_time)

    assert await mailing.send_due(deployment.runtime) == 0
    assert mailbox.envelopes == []
    assert await _mail_state(deployment) == [("failed", 0)]
    error = await deployment.scalar("SELECT mail_error FROM notifications")
    assert error == mail_outbox.UNFINISHED_SEND


async def test_a_mail_whose_worker_stopped_before_sending_it_is_sent_once(
    deployment: Deployment, smtp: tuple[Mailbox, int]
) -> None:
    """Nothing lost (spec api-v2 section 10): a worker killed before the message left (its
    batch claimed, the server not yet given it) leaves the mail to the next claim once its
    lease ends. Before, the whole batch was given up: a black-box run that killed a worker
    under load lost 20 mails the server never saw. The killed worker's claim no longer holds
    it: had it gone on, it would not send it."""
    mailbox, _ = smtp
    notification_id, lease_until = await _claimed_by_a_worker_then_killed(deployment)
    async with deployment.runtime.transaction() as db:  # too late for the killed worker's claim
        assert not await mail_outbox.mark_sending(
            db, notification_id, lease_until, datetime.now(UTC)
        )

    assert await mailing.send_due(deployment.runtime) == 1
    assert len(mailbox.envelopes) == 1
    assert await _mail_state(deployment) == [("sent", 1)]
    async with deployment.runtime.transaction() as db:
        assert not await mail_outbox.mark_sending(
            db, notification_id, lease_until, lease_until - timedelta(seconds=1)
        )
        assert not await mail_outbox.record_outcome(
            db, notification_id, lease_until, {"mail_status": "pending"}
        )
    assert await mailing.send_due(deployment.runtime) == 0
    assert len(mailbox.envelopes) == 1
    assert await _mail_state(deployment) == [("sent", 1)]


async def test_a_mail_the_database_could_not_mark_is_not_sent_and_tried_again(
    deployment: Deployment, smtp: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database failing just before the message (a pool timeout, a lost connection):
    the message is withheld and the mail retried later, not lost nor the batch's job failed."""
    mailbox, _ = smtp
    await _invite(deployment)
    await outbox.fan_out(deployment.runtime)

    async def failing(*_args: object) -> bool:
        raise OSError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(mail_outbox, "mark_sending", failing)
        assert await mailing.send_due(deployment.runtime) == 1
    assert mailbox.envelopes == []
    assert await _mail_state(deployment) == [("pending", 1)]


@dataclass
class SlowToAnswer(Mailbox):
    """Keeps the message, then answers only after `delay` seconds (a content filter)."""

    delay: float = 3.0

    async def handle_DATA(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
    ) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        return reply


async def test_a_mail_sent_and_never_answered_is_not_sent_again(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most once: the server has the message and may have accepted it. Before, a timeout
    waiting for its answer was retried (a black-box run: every mail twice, 40 s apart)."""
    mailbox, port = SlowToAnswer(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    deployment.runtime.settings.smtp_url = SecretStr(f"smtp://127.0.0.1:{port}")
    monkeypatch.setattr(mailing, "MAIL_TIMEOUT_SECONDS", 0.5)
    try:
        await _invite(deployment)
        await outbox.fan_out(deployment.runtime)
        assert await mailing.send_due(deployment.runtime) == 1
        assert await _mail_state(deployment) == [("failed", 1)]
        async with deployment.runtime.transaction() as db:  # were it due again
            await db.session.execute(
                text("UPDATE notifications SET mail_next_attempt_at = :now"),
                {"now": datetime.now(UTC)},
            )
        assert await mailing.send_due(deployment.runtime) == 0
        assert len(mailbox.envelopes) == 1
    finally:
        controller.stop()


async def test_a_run_takes_new_batches_only_for_a_while(
    deployment: Deployment, smtp: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that a worker's graceful stop waits for one batch at most, not the whole backlog
    (a black-box run: 50 s with 300 mails owed and the server hanging); the next run goes
    on where it ended."""
    mailbox, _ = smtp
    guest = await deployment.user("guest@example.com", "Gus")
    owed = mailing.MAIL_BATCH + 5
    async with deployment.runtime.transaction() as db:
        db.session.add_all(
            Notification(
                user_id=guest["id"],
                kind="reminder",
                message=f"Reminder {number}",
                dedupe_key=f"test:{number}",
                mail_status="pending",
                mail_next_attempt_at=datetime.now(UTC),
            )
            for number in range(owed)
        )
    monkeypatch.setattr(mailing, "CLAIMING_SECONDS", 0.0)
    assert await mailing.send_due(deployment.runtime) == mailing.MAIL_BATCH
    assert await mailing.send_due(deployment.runtime) == owed - mailing.MAIL_BATCH
    assert len(mailbox.envelopes) == owed
