"""The engine's records of jobs that ended without success (failed, aborted, cancelled) are
removed a week after they ended (`remove_ended_jobs`, hourly), so `jobs{state="failed"}`
counts a week's failures instead of growing for as long as the service runs. Before, every
job that raised during a database outage (several a second) stayed in the table for good.
On PostgreSQL: procrastinate's own tables, as migration 0007 installs them."""

from __future__ import annotations

import time

import procrastinate
import pytest
from procrastinate.jobs import Status

from app.jobs.definitions import ENDED_JOBS_KEPT_HOURS, remove_ended_jobs
from app.jobs.engine import job_app
from tests.jobs.conftest import Deployment
from tests.unit.test_periodic_runs import job_context

pytestmark = pytest.mark.parametrize("fresh_url", ["postgresql"], indirect=True)

JOBS = "procrastinate.procrastinate_jobs"


async def _ended_job(app: procrastinate.App, status: procrastinate.jobs.Status) -> int:
    """A job of the engine's that ended with `status`, as the engine ends one."""
    manager = app.job_manager
    job_id = await app.configure_task("jobs:purge_trash").defer_async(timestamp=time.time_ns())
    if status is procrastinate.jobs.Status.CANCELLED:
        assert await manager.cancel_job_by_id_async(job_id)
    else:
        [job] = await manager.list_jobs_async(id=job_id)
        await manager.finish_job(job, status, delete_job=False)
    return job_id


async def _ended_hours_ago(deployment: Deployment, job_id: int, hours: int) -> None:
    await deployment.scalar(
        "UPDATE procrastinate.procrastinate_events "
        "SET at = now() - make_interval(hours => :hours) WHERE job_id = :id RETURNING job_id",
        hours=hours,
        id=job_id,
    )


async def test_jobs_ended_without_success_are_removed_after_a_week(
    deployment: Deployment,
) -> None:
    app = job_app(deployment.settings)
    async with app.open_async():
        old = {
            status: await _ended_job(app, status)
            for status in (Status.FAILED, Status.ABORTED, Status.CANCELLED)
        }
        for job_id in old.values():
            await _ended_hours_ago(deployment, job_id, ENDED_JOBS_KEPT_HOURS + 1)
        recent_failure = await _ended_job(app, Status.FAILED)
        await _ended_hours_ago(deployment, recent_failure, ENDED_JOBS_KEPT_HOURS - 1)
        # Waiting for its period: never removed, however long it has waited.
        waiting = await app.configure_task("jobs:expire_records").defer_async(timestamp=1)
        await _ended_hours_ago(deployment, waiting, ENDED_JOBS_KEPT_HOURS + 1)

        await remove_ended_jobs(job_context(app))

    remaining = await deployment.rows(f"SELECT id, status::text FROM {JOBS} ORDER BY id")
    assert [(job_id, status) for job_id, status in remaining] == [
        (recent_failure, "failed"),
        (waiting, "todo"),
    ]
