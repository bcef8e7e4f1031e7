"""Every job, and the procrastinate blueprint that declares them (`jobs_blueprint`).

Each is periodic and each is a sweep over durable tables (`app.jobs.outbox`, `.deliveries`,
`.mailing`, `.cleanup`): safe to run twice, and a run that is lost only delays its work to
the next period. procrastinate defers one job per period across all workers; the queueing
lock keeps at most one of each waiting, so a slow period never piles jobs up; and a stalled
job whose next period has begun is not run again (`superseded`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import procrastinate
import structlog

from app.jobs import cleanup, deliveries, mailing, outbox
from app.jobs.runtime import JobRuntime

log = structlog.get_logger("app.jobs")


@dataclass(frozen=True)
class Schedule:
    """When a periodic job is deferred: its cron line, and the length of its periods."""

    cron: str
    period_seconds: int


# Every second: notifications from events and webhook messages, reminders, deliveries (spec
# section 8: a reminder within 10 seconds of its time while a worker runs).
EVERY_SECOND = Schedule("* * * * * *", 1)
EVERY_TWO_SECONDS = Schedule("* * * * * */2", 2)
EVERY_FIVE_MINUTES = Schedule("*/5 * * * *", 300)
EVERY_MINUTE = Schedule("* * * * *", 60)
EVERY_HOUR = Schedule("0 * * * *", 3600)

# How long the engine keeps a job that ended without success (failed: it raised; aborted:
# superseded, below; cancelled): a week to look into it, and `jobs{state="failed"}` counts the
# failures of that week rather than growing for ever. Successful jobs are deleted as they end.
ENDED_JOBS_KEPT_HOURS = 7 * 24


def _runtime(context: procrastinate.JobContext) -> JobRuntime:
    runtime = context.additional_context["runtime"]
    assert isinstance(runtime, JobRuntime)
    return runtime


def _sweep(
    sweep: Callable[[JobRuntime], Awaitable[Any]],
) -> Callable[[procrastinate.JobContext], Awaitable[Any]]:
    async def work(context: procrastinate.JobContext) -> Any:
        return await sweep(_runtime(context))

    return work


async def retry_stalled_jobs(context: procrastinate.JobContext) -> Any:
    """A job whose worker stopped sending heartbeats (killed, or cut off) runs again, unless
    its next period has begun (`superseded`): then it ends as aborted."""
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs())
    now = time.time()
    for job in stalled:
        if superseded(job, now):
            await manager.finish_job(job, procrastinate.jobs.Status.ABORTED, delete_job=False)
            log.info(
                "job_superseded",
                job=_task_name(job),
                defer_timestamp=job.task_kwargs.get("timestamp"),
                job_id=job.id,
            )
        else:
            await manager.retry_job(job)
    return len(stalled)


async def remove_ended_jobs(context: procrastinate.JobContext) -> None:
    """Remove the engine's records of jobs that ended without success more than
    ENDED_JOBS_KEPT_HOURS ago (procrastinate's own query; PostgreSQL and in-memory alike)."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=ENDED_JOBS_KEPT_HOURS,
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    schedule: Schedule
    work: Callable[[procrastinate.JobContext], Awaitable[Any]]


PERIODIC_JOBS = (
    PeriodicJob("fan_out_events", EVERY_SECOND, _sweep(outbox.fan_out)),
    PeriodicJob("send_reminders", EVERY_SECOND, _sweep(outbox.send_reminders)),
    PeriodicJob("deliver_webhooks", EVERY_SECOND, _sweep(deliveries.deliver_due)),
    PeriodicJob("send_mail", EVERY_TWO_SECONDS, _sweep(mailing.send_due)),
    PeriodicJob("purge_trash", EVERY_FIVE_MINUTES, _sweep(cleanup.purge_trash)),
    PeriodicJob("expire_records", EVERY_FIVE_MINUTES, _sweep(cleanup.expire_records)),
    PeriodicJob("retry_stalled_jobs", EVERY_MINUTE, retry_stalled_jobs),
    PeriodicJob("remove_ended_jobs", EVERY_HOUR, remove_ended_jobs),
)


def superseded(job: procrastinate.jobs.Job, now: float) -> bool:
    """Whether a stalled periodic job's next period has begun, so that handing it out again
    would only repeat that period's own run, which sweeps the same tables. Its worker may
    have died (or lost the database) after the work and before procrastinate recorded the
    end: run again, the period would have run twice. A job stalled within its own period
    (the 5-minute ones, mostly) runs again."""
    periodic = _PERIODIC_BY_TASK.get(_task_name(job))
    timestamp = job.task_kwargs.get("timestamp")
    if periodic is None or not isinstance(timestamp, int):
        return False
    return now >= timestamp + periodic.schedule.period_seconds


_PERIODIC_BY_TASK = {job.name: job for job in PERIODIC_JOBS}


def _task_name(job: procrastinate.jobs.Job) -> str:
    """The job's task as PERIODIC_JOBS names it (procrastinate prefixes its namespace)."""
    return job.task_name.rpartition(":")[2]


def periodic_run(job: PeriodicJob) -> Callable[[procrastinate.JobContext, int], Awaitable[None]]:
    async def run(context: procrastinate.JobContext, timestamp: int) -> None:
        result = await job.work(context)
        _runtime(context).beat()
        # One line per completed run, with its period's timestamp (at DEBUG: several a
        # second): what the cluster test counts to show that each period's job ran once
        # whatever the number of workers.
        job_id = context.job.id
        log.debug("job_ran", job=job.name, defer_timestamp=timestamp, job_id=job_id)
        if any(result.values()) if isinstance(result, dict) else result:
            log.info("job_done", job=job.name, result=result)

    return run


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
        task = blueprint.task(name=job.name, queueing_lock=job.name, pass_context=True)(
            periodic_run(job)
        )
        blueprint.periodic(cron=job.schedule.cron, periodic_id=job.name)(task)
    return blueprint
