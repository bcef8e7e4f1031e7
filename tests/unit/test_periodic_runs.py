"""A periodic job's run that the stalled-job retry hands out again after its next period
began is skipped: its worker may have died after the work and before procrastinate recorded
the end, and the period would run twice (the cluster test saw it when work1 was killed just
after a run). A first attempt runs however late, and a retry within its period runs."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import procrastinate
import pytest
import structlog
from procrastinate.jobs import Job

from app.core.config import Settings
from app.jobs.definitions import PERIODIC_JOBS, PeriodicJob, periodic_run, superseded
from app.jobs.engine import job_app
from app.jobs.runtime import JobRuntime, open_runtime

PERIOD_START = 1_796_562_921


def _context(job: PeriodicJob, attempts: int, runtime: JobRuntime) -> procrastinate.JobContext:
    app = job_app(Settings(database_url="postgresql://postgres@127.0.0.1/never_connected"))
    return procrastinate.JobContext(
        app=app,
        job=Job(
            id=122,
            queue="default",
            lock=None,
            queueing_lock=job.name,
            task_name=f"jobs:{job.name}",
            attempts=attempts,
        ),
        start_timestamp=time.time(),
        additional_context={"runtime": runtime},
        abort_reason=lambda: None,
    )


async def _run(
    tmp_path: Path, attempts: int, late_by: float
) -> tuple[list[str], list[MutableMapping[str, Any]]]:
    """Runs a one-second job of `attempts` earlier attempts, `late_by` seconds after its
    period began; what its work saw, and what it logged."""
    worked: list[str] = []

    async def work(_context: procrastinate.JobContext) -> int:
        worked.append("ran")
        return 1

    job = PeriodicJob("send_reminders", "* * * * * *", 1, work)
    run = periodic_run(job)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}")
    async with open_runtime(settings) as runtime:
        with structlog.testing.capture_logs() as logged:
            await run(_context(job, attempts, runtime), int(time.time() - late_by))
    return worked, logged


async def test_a_retry_after_the_next_period_began_is_skipped(tmp_path: Path) -> None:
    worked, logged = await _run(tmp_path, attempts=1, late_by=40)
    assert worked == []
    assert [entry["event"] for entry in logged] == ["job_superseded"]
    assert logged[0]["job"] == "send_reminders"
    assert logged[0]["job_id"] == 122


@pytest.mark.parametrize(
    ("attempts", "late_by"),
    [(0, 0), (0, 40), (1, 0)],
    ids=["first attempt on time", "first attempt late", "retry within its period"],
)
async def test_other_runs_do_their_work(tmp_path: Path, attempts: int, late_by: float) -> None:
    worked, logged = await _run(tmp_path, attempts=attempts, late_by=late_by)
    assert worked == ["ran"]
    assert [entry["event"] for entry in logged] == ["job_ran", "job_done"]


def test_each_job_is_superseded_only_once_its_next_period_began() -> None:
    for job in PERIODIC_JOBS:
        start = PERIOD_START
        assert not superseded(job, 1, start, start + job.period_seconds - 0.001)
        assert superseded(job, 1, start, start + job.period_seconds)
        assert not superseded(job, 0, start, start + 100 * job.period_seconds)
