"""A period of a periodic job is deferred once across every worker, even by one that lags
behind the others (docs/decisions/0031, procrastinate's bullet).

procrastinate's deferrer works out the periods due when its loop wakes and then defers them
one by one. It keeps only the newest period of each job in `procrastinate_periodic_defers`
(each deferral deletes the older rows), so a worker that reaches the database late (its
event loop busy, its connections made again after a database restart, its clock behind)
deferred again a period another worker had deferred, run and since forgotten: that period
ran twice. This trigger refuses, as procrastinate refuses a second deferral of one period,
any period not newer than the newest deferred. No lock is needed: a deferral deletes the
rows it supersedes and inserts its own in one transaction, so whatever snapshot the check
reads holds either the newest period's row or the row that one replaced, both as new as the
period that already ran.

A row more than `AHEAD_SECONDS` ahead of the database's clock is not believed: no deferrer
defers a period that has not begun, so it comes from a worker whose clock is ahead, and
believing it would refuse every other worker's deferral (every periodic job stopped) until
real time caught up with that clock. Such a worker's periods are then deferred beside the
others', as before this revision.

Revision ID: 0012_periodic_deferrals_in_order
Revises: 0011_task_creators
Create Date: 2026-12-07 20:00:00

PostgreSQL only: on SQLite the engine's queue is in memory, and one deferrer per process
never goes back in time.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_periodic_deferrals_in_order"
down_revision: str | None = "0011_task_creators"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = "procrastinate.refuse_stale_periodic_defer"
TRIGGER = "refuse_stale_periodic_defer"
TABLE = "procrastinate.procrastinate_periodic_defers"
# How far ahead of the database's clock a deferred period may be and still refuse others.
AHEAD_SECONDS = 60


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (
                SELECT FROM {TABLE} AS deferred
                WHERE deferred.task_name = NEW.task_name
                  AND deferred.periodic_id = NEW.periodic_id
                  AND deferred.defer_timestamp >= NEW.defer_timestamp
                  AND deferred.defer_timestamp <= extract(epoch FROM now()) + {AHEAD_SECONDS}
            ) THEN
                RETURN NULL;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP TRIGGER {TRIGGER} ON {TABLE}")
    op.execute(f"DROP FUNCTION {FUNCTION}()")
