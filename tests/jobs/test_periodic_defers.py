"""Each period of a periodic job is deferred once across every worker's deferrer, even one
that lags behind the others (on PostgreSQL: procrastinate's tables, as migrations 0007 and
0012 install them).

procrastinate's deferrer works out the periods due from the time its loop woke, then defers
them one by one; a worker whose loop runs late (its event loop busy, its connections being
made again after a database restart) reaches the database after another worker has deferred
the next period. procrastinate then keeps only the newest period of each job, so the late
one's period was deferred a second time and ran twice (the cluster test saw it). Migration
0012 makes the database refuse a period not newer than the newest deferred."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import procrastinate
import pytest
from procrastinate.jobs import Status
from procrastinate.periodic import PeriodicDeferrer
from sqlalchemy import text

from app.jobs.definitions import EVERY_SECOND, PERIODIC_JOBS
from app.jobs.engine import job_app
from tests.jobs.conftest import Deployment

pytestmark = pytest.mark.parametrize("fresh_url", ["postgresql"], indirect=True)

EVERY_SECOND_JOBS = sorted(
    f"jobs:{job.name}" for job in PERIODIC_JOBS if job.schedule == EVERY_SECOND
)


@pytest.fixture
async def engine(deployment: Deployment) -> AsyncIterator[procrastinate.App]:
    app = job_app(deployment.settings)
    async with app.open_async():
        yield app


async def run_every_waiting_job(app: procrastinate.App) -> list[tuple[str, int]]:
    """Hand out every waiting job and end it as a successful run does (deleted); which
    they were, as (task, period)."""
    manager = app.job_manager
    worker_id = await manager.register_worker()
    ran = []
    while (job := await manager.fetch_job(queues=None, worker_id=worker_id)) is not None:
        await manager.finish_job(job, Status.SUCCEEDED, delete_job=True)
        ran.append((job.task_name, int(job.task_kwargs["timestamp"])))
    await manager.unregister_worker(worker_id)
    return sorted(ran)


async def defer_due(app: procrastinate.App, period: int) -> None:
    """What a worker's deferrer does when its loop wakes within the second `period` (just
    after its start, as procrastinate's does): defer the periods due."""
    deferrer = PeriodicDeferrer(registry=app.periodic_registry)
    await deferrer.defer_jobs(deferrer.get_previous_tasks(at=period + 0.5))


async def test_a_deferrer_a_period_behind_defers_nothing(engine: procrastinate.App) -> None:
    period = int(time.time())
    await defer_due(engine, period)
    assert [name for name, _ in await run_every_waiting_job(engine) if name in EVERY_SECOND_JOBS]
    await defer_due(engine, period + 1)
    next_period = await run_every_waiting_job(engine)
    assert {name for name, at in next_period if at == period + 1} >= set(EVERY_SECOND_JOBS)

    # A worker whose loop woke in `period` and reaches the database only now.
    await defer_due(engine, period)

    assert await run_every_waiting_job(engine) == []


async def test_a_late_deferral_beside_one_under_way_defers_nothing(
    deployment: Deployment, engine: procrastinate.App
) -> None:
    name = "jobs:send_reminders"
    period = int(time.time())
    await defer_due(engine, period)
    await run_every_waiting_job(engine)

    # Another worker defers the next period, and its job is handed out as soon as that
    # commits (here: in the same transaction, so that nothing comes between them).
    async with deployment.runtime.transaction() as db:
        await db.session.execute(text("SET LOCAL search_path = procrastinate"))
        next_id = await db.session.scalar(
            text(
                "SELECT procrastinate_defer_periodic_job_v2("
                "'default', NULL, :lock, :name, 0, :periodic_id, :period, CAST(:args AS jsonb))"
            ),
            {
                "lock": name.removeprefix("jobs:"),
                "name": name,
                "periodic_id": name.removeprefix("jobs:"),
                "period": period + 1,
                "args": f'{{"timestamp": {period + 1}}}',
            },
        )
        await db.session.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = :id"), {"id": next_id}
        )
        # A late worker's deferrer reaches the database while that deferral is under way.
        late = asyncio.create_task(defer_due(engine, period))
        await asyncio.sleep(0.5)
    await late

    assert await run_every_waiting_job(engine) == []


async def test_a_period_deferred_by_a_clock_ahead_refuses_no_other(
    engine: procrastinate.App,
) -> None:
    """A worker whose clock is an hour ahead deferred its period: believed, it refused every
    other worker's deferral (every periodic job stopped) until real time caught up."""
    period = int(time.time())
    await defer_due(engine, period + 3600)
    await run_every_waiting_job(engine)

    await defer_due(engine, period)

    ran = await run_every_waiting_job(engine)
    assert {name for name, at in ran if at == period} >= set(EVERY_SECOND_JOBS)
