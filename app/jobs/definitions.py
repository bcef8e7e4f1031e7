"""Every job, and the procrastinate blueprint that declares them (`jobs_blueprint`).

Each is periodic and each is a sweep over durable tables (`app.jobs.outbox`, `.deliveries`,
`.mailing`, `.cleanup`): safe to run twice, and a run that is lost only delays its work to
the next period. procrastinate defers one job per period across all workers; the queueing
lock keeps at most one of each waiting, so a slow period never piles jobs up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import procrastinate
import structlog

from app.jobs import cleanup, deliveries, mailing, outbox
from app.jobs.runtime import JobRuntime

log = structlog.get_logger("app.jobs")

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


async def _ran(context: procrastinate.JobContext, name: str, timestamp: int, result: Any) -> None:
    _runtime(context).beat()
    # One line per completed run, with its period's timestamp (at DEBUG: several a second):
    # what the cluster test counts to show that each period's job ran once whatever the
    # number of workers.
    job_id = context.job.id if context.job is not None else None
    log.debug("job_ran", job=name, defer_timestamp=timestamp, job_id=job_id)
    if any(result.values()) if isinstance(result, dict) else result:
        log.info("job_done", job=name, result=result)


async def fan_out_events(context: procrastinate.JobContext, timestamp: int) -> None:
    await _ran(context, "fan_out_events", timestamp, await outbox.fan_out(_runtime(context)))


async def send_reminders(context: procrastinate.JobContext, timestamp: int) -> None:
    await _ran(context, "send_reminders", timestamp, await outbox.send_reminders(_runtime(context)))


async def deliver_webhooks(context: procrastinate.JobContext, timestamp: int) -> None:
    await _ran(
        context, "deliver_webhooks", timestamp, await deliveries.deliver_due(_runtime(context))
    )


async def send_mail(context: procrastinate.JobContext, timestamp: int) -> None:
    await _ran(context, "send_mail", timestamp, await mailing.send_due(_runtime(context)))


async def purge_trash(context: procrastinate.JobContext, timestamp: int) -> None:
    await _ran(context, "purge_trash", timestamp, await cleanup.purge_trash(_runtime(context)))


async def expire_records(context: procrastinate.JobContext, timestamp: int) -> None:
    await _ran(
        context, "expire_records", timestamp, await cleanup.expire_records(_runtime(context))
    )


async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
    """A job whose worker stopped sending heartbeats (killed, or cut off) runs again."""
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs())
    for job in stalled:
        await manager.retry_job(job)
    await _ran(context, "retry_stalled_jobs", timestamp, len(stalled))


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    cron: str
    run: Callable[[procrastinate.JobContext, int], Awaitable[None]]


PERIODIC_JOBS = (
    PeriodicJob("fan_out_events", EVERY_SECOND, fan_out_events),
    PeriodicJob("send_reminders", EVERY_SECOND, send_reminders),
    PeriodicJob("deliver_webhooks", EVERY_SECOND, deliver_webhooks),
    PeriodicJob("send_mail", EVERY_TWO_SECONDS, send_mail),
    PeriodicJob("purge_trash", EVERY_FIVE_MINUTES, purge_trash),
    PeriodicJob("expire_records", EVERY_FIVE_MINUTES, expire_records),
    PeriodicJob("retry_stalled_jobs", EVERY_MINUTE, retry_stalled_jobs),
)


def jobs_blueprint() -> procrastinate.Blueprint:
    """A new blueprint declaring every job: periodic, one period's job deferred once across
    all workers, and (the queueing lock) at most one of each waiting.

    New for each app: procrastinate's `App.add_tasks_from` renames the tasks of the blueprint
    it is given (it prefixes their namespace), so a second app made in the same process from
    one shared blueprint would name its jobs `jobs:jobs:...` and find none of the jobs the
    other workers defer (a worker that restarts in-process after losing its database did).
    """
    blueprint = procrastinate.Blueprint()
    for job in PERIODIC_JOBS:
        task = blueprint.task(name=job.name, queueing_lock=job.name, pass_context=True)(job.run)
        blueprint.periodic(cron=job.cron, periodic_id=job.name)(task)
    return blueprint
