"""The mail job (spec api-v2 section 8): with `SMTP_URL` set, each notification is mailed
to its user once; a failure is retried with backoff (`app.jobs.mail.mail_retry_delay`) up to
`MAIL_MAX_ATTEMPTS`, and a refusal that will not change (a 5xx) is not retried. Requests
never wait for mail: notifications are made by jobs, and mailed by this one.

A mail is mailed at most once, and none is lost to a worker killed before it reached the
server. A claim leases a batch; each mail becomes `sending` only once the server has accepted
its envelope, just before the message itself, and its outcome is written as soon as it is
known. A worker killed meanwhile leaves its mails leased: when the lease ends, one still
`pending` is due again (its message never left), and one `sending` is given up (`failed`),
not sent again, since the server may have accepted it: a black-box run that killed workers
mid-batch saw every mail of the batch twice when all were sent again, and, once the whole
batch was marked `sending` at its claim, another lost the 20 of a batch none of which had
reached the server. So is a mail whose message was sent and whose answer never came
(`MailOutcome.UNKNOWN`: a server slow to answer past the timeout, a connection lost): another
black-box run, with a server that took 13 s to answer, got every mail twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

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

log = structlog.get_logger("app.jobs")

MAIL_BATCH = 20
MAIL_TIMEOUT_SECONDS = 10.0
# How long a claim holds its mails: one whose worker has not reported by then is claimed
# again if its message never left (`pending`), given up if it may have (`sending`).
LEASE = timedelta(seconds=MAIL_TIMEOUT_SECONDS + 5)
# How long a run claims new batches; then it ends with the batch it is sending, so that a
# worker's graceful stop waits at most this and one timeout (a black-box run with the server
# hanging and 300 mails owed saw workers take 50 s to stop, then be killed, which now gives
# up the mail they were sending). The next run, two seconds later, goes on.
CLAIMING_SECONDS = 5.0


async def _send(
    runtime: JobRuntime, server: SmtpServer, owed: OwedMail, lease_until: datetime
) -> MailResult:
    async def before_message() -> bool:
        try:
            async with runtime.transaction() as db:
                return await mail_outbox.mark_sending(db, owed.id, lease_until, utcnow())
        except Exception:  # the database, not the server: withheld, and sent again later
            log.exception("mail_not_marked_sending", notification_id=owed.id)
            return False

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
    return await send_mail(
        server,
        settings.mail_from,
        mail,
        timeout=MAIL_TIMEOUT_SECONDS,
        before_message=before_message,
    )


async def send_due(runtime: JobRuntime) -> int:
    """Mail what is owed and due (a batch at a time); how many were tried."""
    server = smtp_server(runtime.settings)
    if server is None:
        return 0
    async with runtime.transaction() as db:
        given_up = await mail_outbox.give_up_unfinished(db, utcnow())
    if given_up:
        log.warning("mail_given_up_unfinished", count=given_up)
    tried = 0
    claiming_until = asyncio.get_running_loop().time() + CLAIMING_SECONDS
    while True:
        now = utcnow()
        lease_until = now + LEASE
        async with runtime.transaction() as db:
            claimed = await mail_outbox.claim_due(db, now, lease_until, MAIL_BATCH)
        if not claimed:
            return tried
        # Each outcome is written as soon as it is known: a worker stopped meanwhile leaves
        # unfinished only the mails it was sending, the batch's at once; those whose message
        # had not left are sent again after the lease, the others given up.
        await asyncio.gather(
            *(_send_and_record(runtime, server, owed, lease_until) for owed in claimed)
        )
        tried += len(claimed)
        if len(claimed) < MAIL_BATCH or asyncio.get_running_loop().time() >= claiming_until:
            return tried


async def _send_and_record(
    runtime: JobRuntime, server: SmtpServer, owed: OwedMail, lease_until: datetime
) -> None:
    result = await _send(runtime, server, owed, lease_until)
    attempts = owed.attempts + 1
    values: dict[str, object]
    if result.sent:
        values = {"mail_status": "sent", "mail_next_attempt_at": None}
    elif result.permanent or result.unknown or attempts >= MAIL_MAX_ATTEMPTS:
        values = {"mail_status": "failed", "mail_next_attempt_at": None}
    else:
        values = {
            "mail_status": "pending",
            "mail_next_attempt_at": utcnow() + mail_retry_delay(attempts),
        }
    values |= {"mail_attempts": attempts, "mail_error": result.error}
    async with runtime.transaction() as db:
        await mail_outbox.record_outcome(db, owed.id, lease_until, values)
