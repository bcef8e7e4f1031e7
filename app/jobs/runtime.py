"""What every job needs from its process: the settings and a way to the database.

A worker (or the API on SQLite) opens one `JobRuntime` for its life; each job takes a `Db`
transaction from it for its own unit of work (services never commit; a job, like a route,
decides its unit of work).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.core.config import Settings
from app.core.destinations import Resolver
from app.db.access import Db, Sessions
from app.db.session import create_engine_for, create_sessionmaker

# A job's session left idle in a transaction this long is ended by PostgreSQL, and its locks
# with it. A job's transactions send their statements one after another (nothing waits on the
# network inside one): only a worker that froze (a paused machine, a connection cut off) idles
# in one, and until its session ended it held back the jobs of every other worker that needed
# what it had locked (a black-box run: notifications and reminders 40 s late).
JOB_IDLE_IN_TRANSACTION_SECONDS = 10.0


@dataclass(slots=True)
class JobRuntime:
    settings: Settings
    sessions: Sessions
    # How webhook hosts are resolved (tests give their own; None: the system's resolver).
    resolver: Resolver | None = None
    # When a job of this process last ran to its end (the in-process heartbeat on SQLite).
    last_beat: datetime | None = field(default=None)
    # Delivery runs going on in this process (app.jobs.deliveries.RUNS_AT_ONCE).
    delivery_runs: int = field(default=0)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Db]:
        return Db.transaction_for(self.sessions)

    def autocommit(self) -> Db:
        return Db.autocommit(self.sessions)

    def beat(self) -> None:
        self.last_beat = datetime.now(UTC)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, resolver: Resolver | None = None
) -> AsyncIterator[JobRuntime]:
    engine = create_engine_for(
        settings, idle_in_transaction_seconds=JOB_IDLE_IN_TRANSACTION_SECONDS
    )
    try:
        yield JobRuntime(settings, create_sessionmaker(engine), resolver=resolver)
    finally:
        await engine.dispose()
