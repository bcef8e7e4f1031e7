"""How the background work stands, for `/metrics` and `python -m app.cli jobs`: the job
engine's queue and workers (PostgreSQL: procrastinate's tables, in their own schema), and
the durable backlogs the jobs work through (webhook attempts, mail)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text

from app.db.access import Db
from app.models.notification import Notification
from app.models.webhook import WebhookDelivery

# The PostgreSQL schema of the job engine's tables (migration 0007 creates it).
JOB_SCHEMA = "procrastinate"


async def queue_counts(db: Db) -> list[tuple[str, str, int]]:
    """(job, state, how many) of the engine's queue (PostgreSQL; SQLite keeps none)."""
    if db.dialect.name != "postgresql":
        return []
    result = await db.session.execute(
        text(
            f"SELECT task_name, status::text, count(*) FROM {JOB_SCHEMA}.procrastinate_jobs "
            "GROUP BY task_name, status ORDER BY task_name, status"
        )
    )
    return [(str(name), str(state), int(count)) for name, state, count in result.all()]


async def workers(db: Db) -> list[tuple[int, datetime]]:
    """(id, last heartbeat) of the workers the engine knows, newest heartbeat first."""
    if db.dialect.name != "postgresql":
        return []
    result = await db.session.execute(
        text(
            f"SELECT id, last_heartbeat FROM {JOB_SCHEMA}.procrastinate_workers "
            "ORDER BY last_heartbeat DESC"
        )
    )
    return [(int(worker_id), beat) for worker_id, beat in result.all()]


async def delivery_counts(db: Db) -> dict[str, int]:
    result = await db.session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    )
    return {str(status): int(count) for status, count in result.all()}


async def mail_counts(db: Db) -> dict[str, int]:
    result = await db.session.execute(
        select(Notification.mail_status, func.count())
        .where(Notification.mail_status.is_not(None))
        .group_by(Notification.mail_status)
    )
    return {str(status): int(count) for status, count in result.all()}
