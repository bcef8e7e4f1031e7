"""The cleanup job: what has outlived its retention goes (spec api-v2 section 10).

Tasks and projects in the trash longer than `TRASH_RETENTION_DAYS` (each leaving a `purged`
event), events older than `ACTIVITY_RETENTION_DAYS` that the fan-out has passed, the webhook
delivery log's finished attempts older than that too (decision 0033), and expired
idempotency keys, refresh token families and invitations. Each removal is its own
transaction of conditional deletes, so a run cut short (a worker killed) leaves every removal
whole or not begun, and the next run finishes the work.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from app.db.base import utcnow
from app.db.statements import cleanup
from app.db.statements import outbox as outbox_statements
from app.db.statements import tasks as task_statements
from app.jobs.outbox import OUTBOX
from app.jobs.runtime import JobRuntime
from app.services import history

log = structlog.get_logger("app.jobs")

# Delivery attempts removed per transaction (each row holds its message's payload).
DELIVERY_REMOVAL_BATCH = 5_000


async def purge_trash(runtime: JobRuntime, older_than_days: int | None = None) -> dict[str, int]:
    """Delete for good the tasks, then the projects, trashed more than `older_than_days`
    (by default TRASH_RETENTION_DAYS) ago; how many of each."""
    now = utcnow()
    days = runtime.settings.trash_retention_days if older_than_days is None else older_than_days
    cutoff = now - timedelta(days=days)
    async with runtime.transaction() as db:
        tasks = await task_statements.purge_trashed(db, cutoff, now)
    async with runtime.transaction() as db:
        projects = await cleanup.purge_trashed_projects(db, cutoff, now)
    return {"tasks": tasks, "projects": projects}


async def expire_records(runtime: JobRuntime) -> dict[str, int]:
    now = utcnow()
    removed: dict[str, int] = {}
    async with runtime.transaction() as db:
        removed["idempotency_keys"] = await cleanup.remove_expired_idempotency_keys(db, now)
    async with runtime.transaction() as db:
        removed["refresh_tokens"] = await cleanup.remove_expired_refresh_tokens(db, now)
    async with runtime.transaction() as db:
        removed["invitations"] = await cleanup.remove_expired_invitations(db, now)
    removed["events"] = await expire_events(runtime)
    removed["webhook_deliveries"] = await expire_delivery_log(runtime)
    return removed


async def expire_delivery_log(runtime: JobRuntime) -> int:
    """Remove the webhook delivery log's finished attempts made more than
    ACTIVITY_RETENTION_DAYS ago, a batch per transaction; how many."""
    cutoff = utcnow() - timedelta(days=runtime.settings.activity_retention_days)
    removed = 0
    while True:
        async with runtime.transaction() as db:
            batch = await cleanup.remove_old_finished_attempts(db, cutoff, DELIVERY_REMOVAL_BATCH)
        removed += batch
        if batch < DELIVERY_REMOVAL_BATCH:
            return removed


async def expire_events(runtime: JobRuntime, older_than_days: int | None = None) -> int:
    """Remove the events older than `older_than_days` (by default ACTIVITY_RETENTION_DAYS),
    none the fan-out has not passed: workers down longer than the retention period come back
    to the notifications and webhook messages those events call for; how many."""
    days = runtime.settings.activity_retention_days if older_than_days is None else older_than_days
    async with runtime.transaction() as db:
        return await history.remove_expired(
            db, utcnow(), days, not_past=await outbox_statements.cursor(db, OUTBOX)
        )
