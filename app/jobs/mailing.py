"""The mail job (spec api-v2 section 8): with `SMTP_URL` set, each notification is mailed
to its user once; a failure is retried with backoff (`app.jobs.mail.mail_retry_delay`) up to
`MAIL_MAX_ATTEMPTS`, and a refusal that will not change (a 5xx) is not retried. Requests
never wait for mail: notifications are made by jobs, and mailed by this one.

Once the server has accepted a mail it is marked sent and never sent again. A worker killed
between the server's acceptance and that mark leaves the mail pending, and it is sent again
when its lease ends: the one window where a user may get a mail twice.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from app.db.base import utcnow
from app.db.statements import mail_outbox
from app.db.statements.mail_outbox import OwedMail
from app.jobs.mail import (
    MAIL_MAX_ATTEMPTS,
    MailResult,
    SmtpServer,
    mail_retry_delay,
    notification_mail,
    send_mail,
    smtp_server,
)
from app.jobs.runtime import JobRuntime

MAIL_BATCH = 20
MAIL_TIMEOUT_SECONDS = 10.0
# A claimed mail is due again this long after it was claimed if its worker never reports.
LEASE = timedelta(seconds=MAIL_TIMEOUT_SECONDS + 5)


async def _send(runtime: JobRuntime, server: SmtpServer, owed: OwedMail) -> MailResult:
    settings = runtime.settings
    mail = notification_mail(
        to=owed.email,
        kind=owed.kind,
        message=owed.message,
        project=(owed.project_id, owed.project_name)
        if owed.project_id is not None and owed.project_name is not None
        else None,
        task=(owed.task_id, owed.task_title)
        if owed.task_id is not None and owed.task_title is not None
        else None,
        public_url=settings.public_url,
    )
    return await send_mail(server, settings.mail_from, mail, timeout=MAIL_TIMEOUT_SECONDS)


async def send_due(runtime: JobRuntime) -> int:
    """Mail what is owed and due (a batch at a time); how many were tried."""
    server = smtp_server(runtime.settings)
    if server is None:
        return 0
    tried = 0
    while True:
        now = utcnow()
        async with runtime.transaction() as db:
            claimed = await mail_outbox.claim_due(db, now, now + LEASE, MAIL_BATCH)
        if not claimed:
            return tried
        results = await asyncio.gather(*(_send(runtime, server, owed) for owed in claimed))
        async with runtime.transaction() as db:
            for owed, result in zip(claimed, results, strict=True):
                now = utcnow()
                attempts = owed.attempts + 1
                values: dict[str, object]
                if result.sent:
                    values = {"mail_status": "sent", "mail_next_attempt_at": None}
                elif result.permanent or attempts >= MAIL_MAX_ATTEMPTS:
                    values = {"mail_status": "failed", "mail_next_attempt_at": None}
                else:
                    values = {"mail_next_attempt_at": now + mail_retry_delay(attempts)}
                values |= {"mail_attempts": attempts, "mail_error": result.error}
                await mail_outbox.record_outcome(db, owed.id, values)
        tried += len(claimed)
        if len(claimed) < MAIL_BATCH:
            return tried
