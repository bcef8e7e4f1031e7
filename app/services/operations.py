"""How the background work stands (`/metrics`, `python -m app.cli jobs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.db.access import Db
from app.db.statements import job_status


@dataclass(frozen=True, slots=True)
class JobReport:
    # (job, state, count) of the engine's queue: todo, doing, succeeded, failed, ...
    queue: list[tuple[str, str, int]] = field(default_factory=list)
    # (worker id, last heartbeat), newest first.
    workers: list[tuple[int, datetime]] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=dict)
    mail: dict[str, int] = field(default_factory=dict)

    def newest_heartbeat(self, in_process: datetime | None = None) -> datetime | None:
        beats = [beat for _, beat in self.workers]
        if in_process is not None:
            beats.append(in_process)
        return max(beats) if beats else None


async def job_report(db: Db) -> JobReport:
    """Read inside one transaction (`db` in transaction mode)."""
    return JobReport(
        queue=await job_status.queue_counts(db),
        workers=await job_status.workers(db),
        deliveries=await job_status.delivery_counts(db),
        mail=await job_status.mail_counts(db),
    )
