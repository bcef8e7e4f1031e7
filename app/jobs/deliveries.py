"""The webhook delivery job (spec api-v2 section 9): send the attempts that are due, and
write down how each went.

At least once: an attempt is claimed with a lease, sent outside any transaction, and its
outcome written only while it is still pending (app.db.statements.deliveries). A failure is
retried after the next delay of `WEBHOOK_RETRY_SCHEDULE` (with jitter; `Retry-After` on a 429
or 503 when it asks for longer), as a new attempt of the same message, so the log shows every
attempt; after the last delay it is abandoned. A 410 disables the webhook; so does failing
for `WEBHOOK_DISABLE_AFTER_DAYS` without a success, and the project's admins are notified.

A run keeps up to `DELIVERY_BATCH` attempts in flight, takes new ones for `CLAIMING_SECONDS`,
and a process lets `RUNS_AT_ONCE` runs go on at once, so deliveries never take every job
place of a worker from reminders, notifications and mail. Each attempt is written down as
soon as it ends (a retry is timed from its failure) and its place goes to the next attempt
due. A slow receiver holds one place per attempt in flight, for up to
`WEBHOOK_TIMEOUT_SECONDS`, a webhook has at most `IN_FLIGHT_PER_WEBHOOK` attempts in
flight, and places are taken fairly, every webhook's first before anyone's second: backlogs
of messages to slow receivers leave places to the other webhooks.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta

import structlog

from app.core.bounds import WEBHOOK_RESPONSE_KEPT_BYTES
from app.core.destinations import InvalidWebhookUrl, allowed_networks, parse_webhook_url
from app.core.webhook_signing import headers as signed_headers
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import deliveries as statements
from app.db.statements import outbox
from app.db.statements.deliveries import DueAttempt
from app.jobs.runtime import JobRuntime
from app.jobs.webhook_http import AttemptResult, send

log = structlog.get_logger("app.jobs")

# Attempts one run sends at once. Each place is taken again as soon as its attempt is written
# down, so a slow receiver holds only the places of its own attempts in flight.
DELIVERY_BATCH = 20
# Attempts of one webhook in flight at once, in all runs and processes (two workers claiming
# at the same moment may each go up to it). Half a run's places: a backlog of messages to a
# slow receiver holds no more, and the other webhooks' attempts take the rest.
IN_FLIGHT_PER_WEBHOOK = DELIVERY_BATCH // 2
# While attempts are in flight, how often a run looks for attempts that fell due meanwhile
# (a retry after a short delay, another project's new event).
CLAIM_AGAIN_SECONDS = 0.5
# How long a run takes new attempts; then it waits for those in flight and ends, so that a
# run ends (a worker's graceful stop waits for it) and holds a worker's place no longer
# than this and one timeout. The next run, a second later, takes the attempts due by then.
CLAIMING_SECONDS = 5.0
# Delivery runs one process lets go on at once. A run starts every second, and with slow
# receivers each lasts up to CLAIMING_SECONDS and a timeout: overlapping runs took every job
# place of a worker, and reminders, notifications and mail waited for minutes. A run beyond
# these ends at once; the running ones take what is due.
RUNS_AT_ONCE = 2
# A claimed attempt is due again this long after its timeout if its worker never reports
# (killed mid-send): the attempt waits for no more than timeout + margin.
LEASE_MARGIN = timedelta(seconds=5)
# Each retry's delay varies by up to this fraction, so failures do not retry in lockstep.
JITTER = 0.1
# `Retry-After` is honoured up to this.
RETRY_AFTER_MAX = timedelta(days=1)


def retry_delay(schedule: list[float], attempt: int, retry_after: float | None) -> timedelta | None:
    """The wait before the attempt after `attempt` (1-based), or None: no retry left."""
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_MAX.total_seconds()))
    return timedelta(seconds=delay)


def _secrets(due: DueAttempt, now: datetime) -> list[str]:
    if due.previous_secret and due.previous_secret_until and due.previous_secret_until > now:
        return [due.secret, due.previous_secret]
    return [due.secret]


async def _attempt(runtime: JobRuntime, due: DueAttempt) -> AttemptResult:
    settings = runtime.settings
    now = utcnow()
    return await send(
        due.url,
        due.payload.encode(),
        signed_headers(due.message_id, now, due.payload, _secrets(due, now)),
        timeout=settings.webhook_timeout_seconds,
        allowed=allowed_networks(settings.webhook_allowed_networks),
        resolver=runtime.resolver,
        max_response_bytes=WEBHOOK_RESPONSE_KEPT_BYTES,
    )


async def _deliver(runtime: JobRuntime, due: DueAttempt) -> None:
    """Send one attempt and write down how it went, at once: its retry is timed from its
    failure, not from the end of the slowest attempt sent beside it."""
    result = await _attempt(runtime, due)
    await record_result(runtime, due, result)
    if result.error:
        log.info(
            "webhook_attempt_failed",
            webhook_id=due.webhook_id,
            delivery_id=due.id,
            attempt=due.attempt,
            error=result.error,
        )


async def _notify_disabled(
    runtime: JobRuntime, db: Db, due: DueAttempt, reason: str, now: datetime
) -> None:
    rows = [
        outbox.notification_row(
            user_id=user_id,
            kind="webhook_disabled",
            message=f"The webhook to {_receiver_host(due.url)} of this project was disabled: "
            f"{reason}",
            dedupe_key=f"webhook-disabled:{due.webhook_id}:{now.isoformat()}",
            now=now,
            mail=runtime.settings.smtp_url is not None,
            project_id=due.project_id,
            task_id=None,
            actor_id=None,
        )
        for user_id in await statements.project_admins(db, due.project_id)
    ]
    await outbox.add_notifications(db, rows)


def _receiver_host(url: str) -> str:
    """Which webhook, for its admins (a project may have several): its receiver's host. Not
    its path or query, which may be a credential (a chat's incoming-webhook URL), and the
    notification is mailed."""
    try:
        return parse_webhook_url(url).host
    except InvalidWebhookUrl:  # saved under rules since tightened
        return "its receiver"


async def record_result(runtime: JobRuntime, due: DueAttempt, result: AttemptResult) -> None:
    """Write an attempt's outcome, its next attempt and the webhook's failing state (which may
    disable it). The webhook's row is locked first, as the API's deletion and redelivery
    lock it before its attempts: taking the attempt first, each waited for the other."""
    settings = runtime.settings
    now = utcnow()
    async with runtime.transaction() as db:
        if not await statements.lock_webhook(db, due.webhook_id):
            return  # deleted meanwhile, and its attempts with it
        delay = (
            None
            if result.succeeded
            else retry_delay(
                settings.webhook_retry_schedule, due.attempt, result.retry_after_seconds
            )
        )
        if result.gone:
            delay = None
        status = (
            "succeeded" if result.succeeded else ("failed" if delay is not None else "abandoned")
        )
        written = await statements.record_outcome(
            db,
            due.id,
            {
                "status": status,
                "response_status": result.status_code,
                "duration_ms": result.duration_ms,
                "error": result.error,
                "response_body": result.response_excerpt,
                "attempted_at": now,
                "next_attempt_at": None if delay is None else now + delay,
            },
        )
        if not written:
            return
        if delay is not None:
            await statements.add_attempt(
                db,
                {
                    "webhook_id": due.webhook_id,
                    "event_id": due.event_id,
                    "message_id": due.message_id,
                    "type": due.type,
                    "payload": due.payload,
                    "attempt": due.attempt + 1,
                    "status": "pending",
                    "created_at": now,
                    "next_attempt_at": now + delay,
                },
            )
        failing_since = await statements.mark_webhook(
            db, due.webhook_id, succeeded=result.succeeded, now=now
        )
        reason = None
        if result.gone:
            reason = "the receiver answered 410 Gone"
        elif failing_since is not None and now - failing_since >= timedelta(
            days=settings.webhook_disable_after_days
        ):
            reason = f"deliveries failed for {settings.webhook_disable_after_days} days"
        if reason and await statements.disable_webhook(db, due.webhook_id, reason, now):
            await _notify_disabled(runtime, db, due, reason, now)


async def deliver_due(runtime: JobRuntime) -> int:
    """Send the attempts due now, and those that fall due while others are in flight (for
    `CLAIMING_SECONDS`), up to `DELIVERY_BATCH` at once, until none is due or in flight; how
    many were sent. None when `RUNS_AT_ONCE` runs of this process are going on already."""
    if runtime.delivery_runs >= RUNS_AT_ONCE:
        return 0
    runtime.delivery_runs += 1
    try:
        return await _deliver_for_a_while(runtime)
    finally:
        runtime.delivery_runs -= 1


async def _deliver_for_a_while(runtime: JobRuntime) -> int:
    sent = 0
    lease = timedelta(seconds=runtime.settings.webhook_timeout_seconds) + LEASE_MARGIN
    loop = asyncio.get_running_loop()
    claiming_until = loop.time() + CLAIMING_SECONDS
    in_flight: set[asyncio.Task[None]] = set()
    try:
        while True:
            if len(in_flight) < DELIVERY_BATCH and loop.time() < claiming_until:
                now = utcnow()
                async with runtime.transaction() as db:
                    claimed = await statements.claim_due(
                        db,
                        now,
                        now + lease,
                        DELIVERY_BATCH - len(in_flight),
                        per_webhook=IN_FLIGHT_PER_WEBHOOK,
                    )
                in_flight |= {asyncio.create_task(_deliver(runtime, due)) for due in claimed}
                sent += len(claimed)
            if not in_flight:
                return sent
            done, in_flight = await asyncio.wait(
                in_flight, timeout=CLAIM_AGAIN_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            # An error writing an outcome ends the run, as before (each one is read, so none
            # is left unretrieved).
            errors = [error for error in (task.exception() for task in done) if error]
            if errors:
                raise errors[0]
    except BaseException:
        # Cancelled, or failed: what is still in flight is dropped, and its lease makes it
        # due again (at least once: the receiver may see it twice, with the same id).
        for delivery in in_flight:
            delivery.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        raise
