"""Operator commands: `python -m app.cli worker` (runs the background jobs until SIGTERM),
`jobs` (how the background work stands), `create-admin --email E --password P`, `purge-trash`,
`expire-events`,
`seed --users N --tasks-per-user M [--projects P --members-per-project K --tasks-per-project T
--events-per-project E]`
(test and benchmark data; see app/services/seed.py).

They use the same settings (DATABASE_URL) and services as the API, and commit themselves:
a command is its own unit of work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import psycopg
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from app.core.config import ConfigurationError, Settings, get_settings
from app.core.logging import configure_logging
from app.core.security import hash_password_async
from app.db.access import Db
from app.db.base import utcnow
from app.db.session import create_engine_for, create_sessionmaker
from app.jobs import cleanup, outbox
from app.jobs.engine import run_worker
from app.jobs.runtime import open_runtime
from app.models.user import Role, User
from app.schemas.user import UserCreate, check_password_policy, normalize_email
from app.services import auth as auth_service
from app.services import operations
from app.services import seed as seed_service
from app.services import user as user_service


async def create_admin(settings: Settings, email: str, password: str) -> str:
    """Create an admin, or promote (and re-password) an existing account; returns a message."""
    data = UserCreate(email=email, password=password)
    engine = create_engine_for(settings)
    try:
        async with Db.transaction_for(create_sessionmaker(engine)) as db:
            session = db.session
            user = await session.scalar(select(User).where(func.lower(User.email) == data.email))
            if user is None:
                user = await user_service.create_user(
                    db, data, rounds=settings.bcrypt_rounds, role=Role.ADMIN
                )
                return f"Created admin {user.email} (id {user.id})."
            user.role = Role.ADMIN.value
            user.is_active = True
            user.password_hash = await hash_password_async(data.password, settings.bcrypt_rounds)
            # A new password and role: every earlier token of the account stops working.
            user.token_version = User.token_version + 1
            user.updated_at = utcnow()
            await session.flush()
            await auth_service.revoke_all_refresh_tokens(db, user.id)
            return f"Promoted existing user {user.email} (id {user.id}) to admin."
    finally:
        await engine.dispose()


async def purge_trash(settings: Settings, older_than_days: int) -> dict[str, int]:
    """Delete for good the tasks and projects that have been in the trash longer than the
    retention, as the cleanup job does (each leaves a `purged` event)."""
    async with open_runtime(settings) as runtime:
        return await cleanup.purge_trash(runtime, older_than_days)


async def expire_events(settings: Settings, older_than_days: int) -> int:
    """Remove the events older than the retention (a feed cursor from before them is then a
    410), as the cleanup job does: none the fan-out has not passed. So the fan-out is caught
    up first, making the notifications and webhook messages they call for, as a worker
    would: without a worker running (PostgreSQL), the command removed nothing, ever."""
    async with open_runtime(settings) as runtime:
        await outbox.fan_out(runtime)
        return await cleanup.expire_events(runtime, older_than_days)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    if args.users < 1 or args.tasks_per_user < 0:
        print("error: --users must be at least 1 and --tasks-per-user at least 0", file=sys.stderr)
        return 2
    first_email = seed_service.seed_emails(args.email_prefix, 1)[0]
    try:
        valid = normalize_email(first_email) == first_email  # as the API will see it at login
    except ValueError:
        valid = False
    if not valid:
        print("error: --email-prefix must make valid email addresses", file=sys.stderr)
        return 2
    members = (
        min(seed_service.DEFAULT_MEMBERS_PER_PROJECT, args.users)
        if args.members_per_project is None
        else args.members_per_project
    )
    if min(args.projects, args.tasks_per_project, args.labels_per_project) < 0 or (
        args.events_per_project < 0
    ):
        print(
            "error: --projects, --tasks-per-project, --labels-per-project and "
            "--events-per-project must be at least 0",
            file=sys.stderr,
        )
        return 2
    if not 1 <= members <= args.users:
        print("error: --members-per-project must be between 1 and --users", file=sys.stderr)
        return 2
    try:
        check_password_policy(args.password)
    except ValueError as exc:
        print(f"error: password {exc}", file=sys.stderr)
        return 2
    options = seed_service.SeedOptions(
        users=args.users,
        tasks_per_user=args.tasks_per_user,
        seed=args.seed,
        password=args.password,
        email_prefix=args.email_prefix,
        projects=args.projects,
        members_per_project=members,
        tasks_per_project=args.tasks_per_project,
        labels_per_project=args.labels_per_project,
        events_per_project=args.events_per_project,
    )
    result = asyncio.run(seed_service.seed_database(settings, options))
    print(result.summary())
    return 0


def _worker(settings: Settings) -> int:
    """Run a worker in the foreground until SIGTERM/SIGINT (it outlives a database restart:
    app.jobs.engine.run_worker). Anything else that stops it exits non-zero, for its
    supervisor to restart it; no job is lost, each being a sweep over durable tables."""
    configure_logging(settings.log_level)
    if settings.sqlalchemy_url.get_backend_name() != "postgresql":
        print(
            "note: on SQLite the API process runs the jobs itself; this worker runs them too "
            "(each job is safe to run twice)",
            file=sys.stderr,
        )
    try:
        asyncio.run(run_worker(settings))
    except (OSError, psycopg.OperationalError, DBAPIError) as exc:
        print(f"error: the worker lost the database: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


async def jobs_report(settings: Settings) -> str:
    """`python -m app.cli jobs`: the engine's queue by job and state, the workers seen, and
    the backlogs of webhook attempts and mail."""
    engine = create_engine_for(settings)
    try:
        async with Db.transaction_for(create_sessionmaker(engine)) as db:
            report = await operations.job_report(db)
    finally:
        await engine.dispose()
    lines = ["Jobs (job, state, count):"]
    if settings.sqlalchemy_url.get_backend_name() != "postgresql":
        lines.append("  none queued: on SQLite the API process runs the jobs as they come")
    lines += [f"  {name:<24} {state:<10} {count:>8}" for name, state, count in report.queue]
    failed = sum(count for _, state, count in report.queue if state == "failed")
    lines.append(f"Failed jobs: {failed}")
    now = utcnow()
    lines.append(f"Workers seen: {len(report.workers)}")
    lines += [
        f"  worker {worker_id}: last heartbeat {(now - beat).total_seconds():.0f} s ago"
        for worker_id, beat in report.workers
    ]
    for title, counts in (("Webhook attempts", report.deliveries), ("Mail", report.mail)):
        shown = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
        lines.append(f"{title}: {shown or 'none'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "worker",
        help="run the background jobs (any number, on any number of hosts; SIGTERM lets "
        "running jobs finish)",
    )
    commands.add_parser("jobs", help="queue depth, failures, workers seen, backlogs")
    admin = commands.add_parser("create-admin", help="create an admin or promote a user")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    purge = commands.add_parser("purge-trash", help="delete tasks and projects trashed long ago")
    purge.add_argument("--older-than-days", type=int, default=None)
    expire = commands.add_parser(
        "expire-events", help="remove events older than ACTIVITY_RETENTION_DAYS"
    )
    expire.add_argument("--older-than-days", type=int, default=None)
    seed = commands.add_parser(
        "seed",
        help="fill the database with realistic users and tasks",
        description="Create (or reuse) N users and top each one's Inbox up to M tasks, "
        "trashed ones included: a rerun with the same arguments adds nothing. New users share "
        "one password; existing ones keep theirs. With --projects P, also P shared projects "
        "'PREFIX project 1' ... 'PREFIX project P', each with K of the N users as members at "
        "mixed roles (PREFIX-1, the big member, in every one), labels, and T tasks with "
        "assignees and labels: --projects 20 --tasks-per-project 50000 makes a member of 20 "
        "projects holding 1,000,000 tasks; --events-per-project 50000 gives them a million "
        "events in the log.",
    )
    seed.add_argument("--users", type=int, required=True, metavar="N")
    seed.add_argument("--tasks-per-user", type=int, required=True, metavar="M")
    seed.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    seed.add_argument(
        "--password",
        default=seed_service.DEFAULT_PASSWORD,
        help=f"password of the new users (default {seed_service.DEFAULT_PASSWORD!r})",
    )
    seed.add_argument(
        "--email-prefix",
        default=seed_service.DEFAULT_EMAIL_PREFIX,
        help="users are PREFIX-1@example.com ... PREFIX-N@example.com "
        f"(default {seed_service.DEFAULT_EMAIL_PREFIX!r})",
    )
    seed.add_argument(
        "--projects", type=int, default=0, metavar="P", help="shared projects (default 0)"
    )
    seed.add_argument(
        "--members-per-project",
        type=int,
        default=None,
        metavar="K",
        help="members of each shared project, PREFIX-1 included, at most N "
        f"(default {seed_service.DEFAULT_MEMBERS_PER_PROJECT}, or N if fewer)",
    )
    seed.add_argument(
        "--tasks-per-project",
        type=int,
        default=0,
        metavar="T",
        help="top each shared project up to T tasks, trashed ones included (default 0)",
    )
    seed.add_argument(
        "--labels-per-project",
        type=int,
        default=seed_service.DEFAULT_LABELS_PER_PROJECT,
        metavar="L",
        help=f"labels of each shared project (default {seed_service.DEFAULT_LABELS_PER_PROJECT})",
    )
    seed.add_argument(
        "--events-per-project",
        type=int,
        default=0,
        metavar="E",
        help="the newest E events of each shared project's task histories, in a log that has "
        "none yet (default 0)",
    )
    args = parser.parse_args(argv)
    try:
        return _run(args, get_settings())
    except ConfigurationError as exc:  # e.g. production on a SQLite file that does not exist
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "seed":
        return _seed(settings, args)
    if args.command == "worker":
        return _worker(settings)
    if args.command == "jobs":
        print(asyncio.run(jobs_report(settings)))
        return 0

    if args.command == "create-admin":
        try:
            message = asyncio.run(create_admin(settings, args.email, args.password))
        except ValidationError as exc:
            print(f"error: {_validation_message(exc)}", file=sys.stderr)
            return 2
        print(message)
        return 0
    default = (
        settings.trash_retention_days
        if args.command == "purge-trash"
        else settings.activity_retention_days
    )
    days = default if args.older_than_days is None else args.older_than_days
    if days < 0:
        print("error: --older-than-days must be at least 0", file=sys.stderr)
        return 2
    if args.command == "purge-trash":
        purged = asyncio.run(purge_trash(settings, days))
        print(
            f"Purged {purged['tasks']} task(s) and {purged['projects']} project(s) trashed "
            f"more than {days} day(s) ago."
        )
    else:
        count = asyncio.run(expire_events(settings, days))
        print(f"Removed {count} event(s) older than {days} day(s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
