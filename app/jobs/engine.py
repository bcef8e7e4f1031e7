"""The job engine: procrastinate, its connector, and how a process runs the jobs
(docs/decisions/0031).

- **PostgreSQL**: the queue is in the database (procrastinate's tables, in the schema
  `procrastinate` that migration 0007 installs). `python -m app.cli worker` runs a worker;
  any number of them on any number of hosts share the jobs, and each periodic job is deferred
  once per period whatever their number (procrastinate's periodic deferrer inserts a job per
  (task, period); the database refuses a second, and, since migration 0012, a period not
  newer than the newest deferred, from a worker that reached it late). A worker stops taking
  jobs on SIGTERM and lets the running ones finish. Procrastinate talks to PostgreSQL through
  psycopg 3 (its own small pool); the jobs' own work goes through the service's SQLAlchemy
  engine (asyncpg).
- **SQLite** (one host by nature): the API process runs a worker on procrastinate's in-memory
  connector in its lifespan, with the same job functions. Nothing of the queue is kept, and
  nothing needs to be: every job is a sweep over durable tables (`app.jobs.definitions`), so a
  job lost with the process only delays its work until the next period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import procrastinate
import structlog
from procrastinate.testing import InMemoryConnector
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.db.access import Sessions
from app.db.session import idle_in_transaction_setting
from app.db.statements.job_status import JOB_SCHEMA
from app.jobs.definitions import jobs_blueprint
from app.jobs.runtime import JOB_IDLE_IN_TRANSACTION_SECONDS, JobRuntime, open_runtime

log = structlog.get_logger("app.jobs")

# How many jobs a worker runs at once: deliveries and mail wait on the network, not the CPU.
WORKER_CONCURRENCY = 8
# A worker's heartbeat, and how long without one makes it (and its running jobs) stalled.
HEARTBEAT_SECONDS = 5.0
STALLED_WORKER_SECONDS = 30.0
# A worker stopped by a lost database starts again after this pause, doubling up to the max.
RESTART_PAUSE_MIN_SECONDS = 0.5
RESTART_PAUSE_MAX_SECONDS = 5.0


def job_conninfo(settings: Settings) -> str:
    """The libpq URL of the database for procrastinate (psycopg), from DATABASE_URL."""
    url = make_url(settings.database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _job_session_options() -> str:
    """The engine's session settings: its own schema, and the jobs' idle limit (its
    transactions, too, held locks every worker waited for while a frozen one sat on them)."""
    settings = {
        "search_path": JOB_SCHEMA,
        **idle_in_transaction_setting(JOB_IDLE_IN_TRANSACTION_SECONDS),
    }
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


def job_app(settings: Settings) -> procrastinate.App:
    """A procrastinate app with every job, on the database's connector."""
    connector: Any
    if settings.sqlalchemy_url.get_backend_name() == "postgresql":
        connector = procrastinate.PsycopgConnector(
            conninfo=job_conninfo(settings),
            # procrastinate's SQL names its tables unqualified: they live in their own schema.
            kwargs={"options": _job_session_options(), "connect_timeout": 5},
            min_size=1,
            max_size=WORKER_CONCURRENCY + 2,
        )
    else:
        connector = InMemoryConnector()
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(jobs_blueprint(), namespace="jobs")
    return app


def _quiet_engine_logs() -> None:
    # procrastinate logs every job's start and end at INFO: several lines a second with
    # periodic sweeps. Its warnings and errors (a failed job, a lost connection) still show.
    logging.getLogger("procrastinate").setLevel(logging.WARNING)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGTERM or SIGINT (running jobs finish first).

    procrastinate stops a worker whose connection to the database fails (its listener or
    deferrer cannot go on); this one then starts again after a pause, for as long as it
    takes the database to come back, so a database restart needs nobody to restart the
    workers. Nothing is lost meanwhile: the work is in the tables (module docstring).
    """
    _quiet_engine_logs()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    current: asyncio.Task[None] | None = None

    def stop() -> None:
        stopping.set()
        if current is not None:
            # procrastinate takes a cancellation as a graceful stop: no new job, running
            # ones finish.
            current.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    async with open_runtime(settings) as runtime:
        pause = RESTART_PAUSE_MIN_SECONDS
        while not stopping.is_set():
            app = job_app(settings)
            try:
                async with app.open_async():
                    log.info("worker_started", worker=worker_name())
                    current = asyncio.create_task(
                        app.run_worker_async(
                            name=worker_name(),
                            concurrency=WORKER_CONCURRENCY,
                            additional_context={"runtime": runtime},
                            install_signal_handlers=False,
                            update_heartbeat_interval=HEARTBEAT_SECONDS,
                            stalled_worker_timeout=STALLED_WORKER_SECONDS,
                            delete_jobs="successful",
                            fetch_job_polling_interval=1.0,
                        )
                    )
                    with contextlib.suppress(asyncio.CancelledError):
                        await current
                    pause = RESTART_PAUSE_MIN_SECONDS
            except (OSError, procrastinate.exceptions.ConnectorException) as exc:
                log.warning("worker_database_unavailable", error=type(exc).__name__)
            finally:
                current = None
            if not stopping.is_set():
                log.warning("worker_restarting", pause_seconds=pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=pause)
                pause = min(pause * 2, RESTART_PAUSE_MAX_SECONDS)
    log.info("worker_stopped", worker=worker_name())


@contextlib.asynccontextmanager
async def jobs_in_process(
    settings: Settings, sessions: Sessions | None = None
) -> AsyncIterator[JobRuntime]:
    """Run the jobs in this process (the API on SQLite) while the context is open.

    On SQLite they use the API's own connection (`sessions`): their transactions queue for
    the file's one writer with the requests', in order, instead of polling for its lock beside
    them (app/db/session.py). Without `sessions` (PostgreSQL with `JOBS_IN_API=true`) they
    have an engine of their own, so that they never take the requests' pooled connections.
    """
    _quiet_engine_logs()
    async with contextlib.AsyncExitStack() as stack:
        runtime = (
            JobRuntime(settings, sessions)
            if sessions is not None
            else await stack.enter_async_context(open_runtime(settings))
        )
        app = job_app(settings)
        await stack.enter_async_context(app.open_async())
        task = asyncio.create_task(
            app.run_worker_async(
                name=f"api:{worker_name()}",
                concurrency=WORKER_CONCURRENCY,
                additional_context={"runtime": runtime},
                install_signal_handlers=False,
                delete_jobs="successful",
                fetch_job_polling_interval=0.5,
            ),
            name="jobs-in-process",
        )
        try:
            yield runtime
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
