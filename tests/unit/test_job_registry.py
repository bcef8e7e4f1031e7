"""Every procrastinate app the process makes names the jobs alike: a worker that starts
again in-process after losing its database makes a second app, and its jobs must still be
the ones the other workers defer (they were `jobs:jobs:...` once, and none ran)."""

from __future__ import annotations

from app.core.config import Settings
from app.jobs.definitions import PERIODIC_JOBS
from app.jobs.engine import job_app


def _job_names(settings: Settings) -> tuple[set[str], set[str]]:
    app = job_app(settings)
    tasks = {name for name in app.tasks if name.startswith("jobs")}
    periodic = {task.task.name for task in app.periodic_registry.periodic_tasks.values()}
    return tasks, periodic


def test_a_second_app_in_the_process_names_every_job_as_the_first() -> None:
    settings = Settings(database_url="postgresql://postgres@127.0.0.1/never_connected")
    expected = {f"jobs:{job.name}" for job in PERIODIC_JOBS}
    for _ in range(3):
        tasks, periodic = _job_names(settings)
        assert tasks == expected
        assert periodic == expected
