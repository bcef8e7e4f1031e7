"""A periodic job whose worker stopped sending heartbeats is not handed out again once its
next period has begun: it ends as aborted (`job_superseded`), since that period's own run
sweeps the same tables. Its worker may have died after the work and before procrastinate
recorded the end (the cluster test saw it when work1 was killed just after a run, and when
PostgreSQL restarted under one): run again, the period ran twice. A job stalled within its
own period runs again.

The jobs run through procrastinate's in-memory connector, as its own tests do: the same
job manager calls, no database."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import procrastinate
import pytest
from procrastinate.testing import InMemoryConnector

from app.core.logging import configure_logging
from app.jobs.definitions import PERIODIC_JOBS, jobs_blueprint, retry_stalled_jobs

# A worker that never sent a heartbeat: its jobs are stalled at once.
DEAD_WORKER = 999


@pytest.fixture
async def job_app() -> AsyncIterator[tuple[procrastinate.App, InMemoryConnector]]:
    configure_logging()  # as a worker does: its lines go through the standard logging
    connector = InMemoryConnector()
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(jobs_blueprint(), namespace="jobs")
    async with app.open_async():
        yield app, connector


def job_context(app: procrastinate.App) -> procrastinate.JobContext:
    """The context a worker gives a job of `app`'s (for jobs that use the engine itself)."""
    return procrastinate.JobContext(
        app=app,
        job=procrastinate.jobs.Job(
            id=1, queue="default", lock=None, queueing_lock=None, task_name="jobs:any"
        ),
        start_timestamp=time.time(),
        abort_reason=lambda: None,
    )


async def stalled_job(
    app: procrastinate.App, connector: InMemoryConnector, name: str, period_start: int
) -> int:
    """A job of `name` for the period starting at `period_start`, taken by a dead worker."""
    job_id = await app.configure_task(f"jobs:{name}").defer_async(timestamp=period_start)
    connector.jobs[job_id].update(status="doing", worker_id=DEAD_WORKER)
    return job_id


async def sweep_stalled(
    app: procrastinate.App, caplog: pytest.LogCaptureFixture
) -> list[dict[str, Any]]:
    """Run `retry_stalled_jobs` as a worker would; what it logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="app.jobs"):
        await retry_stalled_jobs(job_context(app))
    return [record.msg for record in caplog.records if isinstance(record.msg, dict)]


@pytest.mark.parametrize("job", PERIODIC_JOBS, ids=lambda job: job.name)
async def test_a_stalled_job_whose_next_period_began_ends_aborted(
    job_app: tuple[procrastinate.App, InMemoryConnector],
    job: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, connector = job_app
    job_id = await stalled_job(
        app, connector, job.name, int(time.time()) - job.schedule.period_seconds
    )

    logged = await sweep_stalled(app, caplog)

    assert connector.jobs[job_id]["status"] == "aborted"
    assert [(entry["event"], entry["job"], entry["job_id"]) for entry in logged] == [
        ("job_superseded", job.name, job_id)
    ]
    # Its queueing lock is free: the next period's job is deferred.
    assert await app.configure_task(f"jobs:{job.name}").defer_async(timestamp=int(time.time()))


@pytest.mark.parametrize(
    "job",
    [job for job in PERIODIC_JOBS if job.schedule.period_seconds >= 60],
    ids=lambda job: job.name,
)
async def test_a_job_stalled_within_its_period_runs_again(
    job_app: tuple[procrastinate.App, InMemoryConnector],
    job: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, connector = job_app
    job_id = await stalled_job(app, connector, job.name, int(time.time()) - 1)

    logged = await sweep_stalled(app, caplog)

    assert connector.jobs[job_id]["status"] == "todo"
    assert connector.jobs[job_id]["attempts"] == 1
    assert logged == []


async def test_a_job_of_no_known_period_runs_again(
    job_app: tuple[procrastinate.App, InMemoryConnector], caplog: pytest.LogCaptureFixture
) -> None:
    app, connector = job_app
    job_id = await stalled_job(app, connector, "send_mail", int(time.time()) - 600)
    connector.jobs[job_id]["args"] = {}  # deferred by hand, without its period

    await sweep_stalled(app, caplog)

    assert connector.jobs[job_id]["status"] == "todo"
