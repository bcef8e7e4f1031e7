"""Every job, as procrastinate tasks on one blueprint (`app.jobs.engine` adds it to an app).

Each is periodic and each is a sweep over durable tables (`app.jobs.outbox`, `.deliveries`,
`.mailing`, `.cleanup`): safe to run twice, and a run that is lost only delays its work to
the next period. procrastinate defers one job per period across all workers; the queueing
lock keeps at most one of each waiting, so a slow period never piles jobs up.
"""

from __future__ import annotations

from typing import Any

import procrastinate
import structlog

from app.jobs import cleanup, deliveries, mailing, outbox
from app.jobs.runtime import JobRuntime

log = structlog.get_logger("app.jobs")

blueprint = procrastinate.Blueprint()

# Every second: notifications from events and webhook messages, reminders, deliveries (spec
# section 8: a reminder within 10 seconds of its time while a worker runs).
EVERY_SECOND = "* * * * * *"
EVERY_TWO_SECONDS = "* * * * * */2"
EVERY_FIVE_MINUTES = "*/5 * * * *"
EVERY_MINUTE = "* * * * *"


def _runtime(context: procrastinate.JobContext) -> JobRuntime:
    runtime = context.additional_context["runtime"]
    assert isinstance(runtime, JobRuntime)
    return runtime


async def _ran(context: procrastinate.JobContext, name: str, result: Any) -> None:
    _runtime(context).beat()
    if any(result.values()) if isinstance(result, dict) else result:
        log.info("job_done", job=name, result=result)


@blueprint.periodic(cron=EVERY_SECOND, periodic_id="fan_out_events")
@blueprint.task(name="fan_out_events", queueing_lock="fan_out_events", pass_context=True)
async def fan_out_events(context: procrastinate.JobContext, timestamp: int) -> None:  # noqa: ARG001
    await _ran(context, "fan_out_events", await outbox.fan_out(_runtime(context)))


@blueprint.periodic(cron=EVERY_SECOND, periodic_id="send_reminders")
@blueprint.task(name="send_reminders", queueing_lock="send_reminders", pass_context=True)
async def send_reminders(context: procrastinate.JobContext, timestamp: int) -> None:  # noqa: ARG001
    await _ran(context, "send_reminders", await outbox.send_reminders(_runtime(context)))


@blueprint.periodic(cron=EVERY_SECOND, periodic_id="deliver_webhooks")
@blueprint.task(name="deliver_webhooks", queueing_lock="deliver_webhooks", pass_context=True)
async def deliver_webhooks(context: procrastinate.JobContext, timestamp: int) -> None:  # noqa: ARG001
    await _ran(context, "deliver_webhooks", await deliveries.deliver_due(_runtime(context)))


@blueprint.periodic(cron=EVERY_TWO_SECONDS, periodic_id="send_mail")
@blueprint.task(name="send_mail", queueing_lock="send_mail", pass_context=True)
async def send_mail(context: procrastinate.JobContext, timestamp: int) -> None:  # noqa: ARG001
    await _ran(context, "send_mail", await mailing.send_due(_runtime(context)))


@blueprint.periodic(cron=EVERY_FIVE_MINUTES, periodic_id="purge_trash")
@blueprint.task(name="purge_trash", queueing_lock="purge_trash", pass_context=True)
async def purge_trash(context: procrastinate.JobContext, timestamp: int) -> None:  # noqa: ARG001
    await _ran(context, "purge_trash", await cleanup.purge_trash(_runtime(context)))


@blueprint.periodic(cron=EVERY_FIVE_MINUTES, periodic_id="expire_records")
@blueprint.task(name="expire_records", queueing_lock="expire_records", pass_context=True)
async def expire_records(context: procrastinate.JobContext, timestamp: int) -> None:  # noqa: ARG001
    await _ran(context, "expire_records", await cleanup.expire_records(_runtime(context)))


@blueprint.periodic(cron=EVERY_MINUTE, periodic_id="retry_stalled_jobs")
@blueprint.task(name="retry_stalled_jobs", queueing_lock="retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:  # noqa: ARG001
    """A job whose worker stopped sending heartbeats (killed, or cut off) runs again."""
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs())
    for job in stalled:
        await manager.retry_job(job)
    await _ran(context, "retry_stalled_jobs", len(stalled))
