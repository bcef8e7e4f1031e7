"""Fill a database with realistic users and tasks, fast: the data the benchmarks run on.

`python -m app.cli seed --users N --tasks-per-user M` (see app/cli.py) calls `seed_database`.

Users are `{prefix}-{i}@example.com` for i in 1..N, found again by lower(email): a rerun
creates no duplicate and leaves an existing account (and its password) alone. New accounts
share one password, hashed once, since a bcrypt hash per user would take longer than the
whole data set.

Tasks: each seeded user is topped up to M tasks, trashed ones included. A rerun with the same
arguments inserts nothing; a larger M adds only the difference. The rows are a spread of
statuses (`done` ones have `completed_at`), priorities 1..4, due dates (none, past so
overdue, future), creation times over two years with `updated_at >= created_at`, about 3%
in the trash, and titles and descriptions drawn from a small vocabulary with a skewed
frequency, so a text search can match a third of the rows or a handful of them.

The rows are a function of `seed`, the user's email and how many tasks the user had: the
same arguments on the same UTC day give the same rows (times are offsets from the start of
the day). Generation works on integer milliseconds and precomputed text, and the database
gets them in bulk: PostgreSQL through one binary COPY (asyncpg), SQLite through batched
executemany of one compiled INSERT. Ids come from the table's own sequence, so inserts made
afterwards by the API never collide. PostgreSQL's statistics are refreshed (ANALYZE) at
the end.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO, TypeAlias, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from tqdm import tqdm  # type: ignore[import-untyped]

from app.core.config import Settings
from app.core.security import hash_password_async
from app.db.session import create_engine_for
from app.models.task import INSERT_COLUMNS, Task, TaskStatus
from app.models.user import Role, User

DEFAULT_PASSWORD = "seeded accounts share this passphrase"
DEFAULT_EMAIL_PREFIX = "seed-user"
EMAIL_DOMAIN = "example.com"

# Rows per progress step, per SQLite executemany and per IN (...) list.
BATCH_SIZE = 10_000
_LOOKUP_BATCH = 1_000
# A COPY of a million rows outlasts the connection's 30-second statement timeout.
_COPY_TIMEOUT_SECONDS = 3600.0

T = TypeVar("T")
# One task in INSERT_COLUMNS order; T is how a timestamp is handed to the driver.
TaskRow: TypeAlias = tuple[int, str, str | None, str, int, T | None, T, T, T | None, T | None, int]

_DAY_MS = 86_400_000
_SPAN_MS = 730 * _DAY_MS  # creation times spread over two years
_TODO: str = TaskStatus.TODO.value
_IN_PROGRESS: str = TaskStatus.IN_PROGRESS.value
_DONE: str = TaskStatus.DONE.value

# The vocabulary. Common words land in many rows, rare ones in a few: text search gets both
# broad and selective terms. Weights are relative frequencies.
_VERBS = (
    "Review", "Update", "Fix", "Write", "Plan", "Call", "Email", "Prepare", "Schedule",
    "Draft", "Send", "Check", "Clean up", "Book", "Organise", "Test", "Deploy", "Refactor",
    "Document", "Research", "Buy", "Renew", "Cancel", "Submit", "Archive", "Discuss",
)  # fmt: skip
_ADJECTIVES = (
    "", "", "", "", "quarterly", "weekly", "monthly", "annual", "new", "old", "shared",
    "final", "team", "client", "personal", "pending", "broken", "draft", "urgent", "internal",
)  # fmt: skip
_NOUNS = (
    "report", "invoice", "budget", "presentation", "meeting notes", "roadmap", "backlog",
    "dentist appointment", "car insurance", "passport", "newsletter", "release notes",
    "database backup", "login page", "onboarding guide", "expense claim", "tax return",
    "contract", "proposal", "slides", "survey results", "test plan", "bug report",
    "design review", "sprint goals", "travel plans", "birthday gift", "garden shed",
    "server migration", "API docs", "price list", "supplier order", "team offsite",
    "performance review", "security audit", "style guide", "landing page", "podcast episode",
)  # fmt: skip
_SUFFIXES = (
    "", "", "", "", "", "", "", "", "", "", " before Friday", " for Monday",
    " with Alice", " with Bob", " with the finance team", " for the Berlin office",
    " for the Lisbon office", " (follow-up)", " (second pass)", " again", " today",
    " this week", " next month", " for the board", " for the customer",
)  # fmt: skip
# (word, weight): the first ones are everywhere, the last ones almost nowhere.
_WORDS = (
    ("the", 60), ("and", 40), ("to", 40), ("for", 30), ("with", 20), ("team", 14),
    ("client", 12), ("before", 10), ("after", 10), ("meeting", 10), ("review", 9),
    ("deadline", 8), ("notes", 8), ("check", 8), ("numbers", 7), ("draft", 7), ("send", 7),
    ("update", 6), ("budget", 6), ("feedback", 6), ("call", 5), ("invoice", 5),
    ("schedule", 5), ("agenda", 5), ("summary", 4), ("office", 4), ("project", 4),
    ("release", 4), ("customer", 4), ("approval", 3), ("quarter", 3), ("report", 3),
    ("document", 3), ("shared", 3), ("folder", 3), ("spreadsheet", 2), ("contract", 2),
    ("supplier", 2), ("version", 2), ("printer", 2), ("ticket", 2), ("migration", 2),
    ("warehouse", 1), ("legal", 1), ("payroll", 1), ("recipe", 1), ("vacation", 1),
    ("kubernetes", 1), ("firmware", 1), ("newsletter", 1), ("harbour", 1), ("violin", 1),
    ("zeppelin", 0.2), ("quokka", 0.2), ("marzipan", 0.2), ("obsidian", 0.2),
    ("tamarind", 0.1), ("xylophone", 0.1), ("fjord", 0.1), ("origami", 0.1),
)  # fmt: skip
_TITLE_POOL = 2048
_SENTENCE_POOL = 4096


@dataclass(frozen=True, slots=True)
class TextPools:
    """Precomputed titles, title endings and description sentences; rows only pick."""

    titles: tuple[str, ...]
    suffixes: tuple[str, ...]
    sentences: tuple[str, ...]


def build_text_pools(seed: int) -> TextPools:
    rng = random.Random(f"{seed}:text")
    titles = []
    for _ in range(_TITLE_POOL):
        adjective = rng.choice(_ADJECTIVES)
        words = [rng.choice(_VERBS), rng.choice(("the", "the", "a", "our", "my"))]
        words += [adjective] if adjective else []
        words.append(rng.choice(_NOUNS))
        titles.append(" ".join(words))
    vocabulary = [word for word, _ in _WORDS]
    weights = list(itertools.accumulate(weight for _, weight in _WORDS))
    sentences = []
    for _ in range(_SENTENCE_POOL):
        words = rng.choices(vocabulary, cum_weights=weights, k=rng.randint(6, 16))
        sentences.append(" ".join(words).capitalize() + ".")
    return TextPools(tuple(titles), _SUFFIXES, tuple(sentences))


def generate_task_rows(
    rng: random.Random,
    owner_id: int,
    count: int,
    *,
    now_ms: int,
    text: TextPools,
    stamp: Callable[[int], T],
) -> Iterator[TaskRow[T]]:
    """`count` tasks of one owner; times are Unix milliseconds before or after `now_ms`."""
    rand = rng.random
    titles, suffixes, sentences = text.titles, text.suffixes, text.sentences
    n_titles, n_suffixes, n_sentences = len(titles), len(suffixes), len(sentences)
    for _ in range(count):
        age = int(rand() * _SPAN_MS)
        created_ms = now_ms - age
        # Older tasks are likelier to be done (20% for new ones, 80% for two-year-old ones).
        done_share = 0.2 + 0.6 * age / _SPAN_MS
        u = rand()
        if u < done_share:
            status = _DONE
        elif u < done_share + (1.0 - done_share) * 0.35:
            status = _IN_PROGRESS
        else:
            status = _TODO
        u = rand()
        priority = 1 if u < 0.3 else 2 if u < 0.7 else 3 if u < 0.9 else 4
        created = stamp(created_ms)
        if rand() < 0.3:
            updated_ms, updated, version = created_ms, created, 1
        else:
            # Skewed towards soon after creation.
            updated_ms = created_ms + int(rand() * rand() * age)
            updated, version = stamp(updated_ms), 2 + int(rand() * 4)
        u = rand()
        if u < 0.35:
            due = None
        elif u < 0.75:  # due soon after creation: mostly in the past, so overdue if not done
            due = stamp(created_ms + int((0.5 + rand() * 45.0) * _DAY_MS))
        else:  # due around now, mostly ahead
            due = stamp(now_ms + int((rand() * 200.0 - 20.0) * _DAY_MS))
        # The last change completed the task, or moved it to the trash (as the API does).
        completed = updated if status == _DONE else None
        deleted = None
        if rand() < 0.03:
            deleted, version = updated, version + 1
        title = titles[int(rand() * n_titles)] + suffixes[int(rand() * n_suffixes)]
        u = rand()
        if u < 0.35:
            description = None
        else:
            description = sentences[int(rand() * n_sentences)]
            if u >= 0.7:
                description += " " + sentences[int(rand() * n_sentences)]
            if u >= 0.9:
                description += " " + sentences[int(rand() * n_sentences)]
        yield (
            owner_id,
            title,
            description,
            status,
            priority,
            due,
            created,
            updated,
            completed,
            deleted,
            version,
        )


def datetime_stamp(ms: int) -> datetime:
    """Unix milliseconds as an aware datetime (exact: ms / 1000 is within 0.5 µs)."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def sqlite_stamp() -> Callable[[int], str]:
    """Unix milliseconds in the form SQLAlchemy stores SQLite datetimes in, by table lookup.

    `YYYY-MM-DD HH:MM:SS.ffffff`, naive UTC, as `UTCDateTime` writes it (text that sorts).
    """
    days: dict[int, str] = {}
    minutes = [f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
    millis = [f"{ms // 1000:02d}.{ms % 1000:03d}000" for ms in range(60_000)]

    def stamp(ms: int) -> str:
        day, rest = divmod(ms, _DAY_MS)
        prefix = days.get(day)
        if prefix is None:
            prefix = days[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d ")
        minute, rest = divmod(rest, 60_000)
        return prefix + minutes[minute] + millis[rest]

    return stamp


@dataclass(frozen=True, slots=True)
class SeedOptions:
    users: int
    tasks_per_user: int
    seed: int = 0
    password: str = DEFAULT_PASSWORD
    email_prefix: str = DEFAULT_EMAIL_PREFIX


@dataclass(frozen=True, slots=True)
class SeedResult:
    users_created: int
    users_reused: int
    tasks_inserted: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.tasks_inserted / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"Seeded {self.users_created + self.users_reused} user(s) "
            f"({self.users_created} created, {self.users_reused} reused) and inserted "
            f"{self.tasks_inserted:,} task(s) in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s)."
        )


def seed_emails(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}@{EMAIL_DOMAIN}".lower() for i in range(1, count + 1)]


@dataclass(frozen=True, slots=True)
class _Owner:
    id: int
    email: str
    existing_tasks: int


async def seed_database(
    settings: Settings,
    options: SeedOptions,
    *,
    progress: bool | None = None,
    progress_file: TextIO | None = None,
    now: datetime | None = None,
) -> SeedResult:
    """Seed the database of `settings`; see the module docstring for what and how.

    The progress bar goes to `progress_file` (stderr by default). `progress=None` shows it
    only when that file is a terminal.
    """
    started = time.perf_counter()
    anchor = (now or datetime.now(UTC)).astimezone(UTC)
    now_ms = int(anchor.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * 1000
    emails = seed_emails(options.email_prefix, options.users)
    engine = create_engine_for(settings)
    try:
        async with engine.connect() as conn:
            existing = await _user_ids(conn, emails)
        missing = [email for email in emails if email not in existing]
        # One hash for every new account, computed before any connection is held.
        password_hash = (
            await hash_password_async(options.password, settings.bcrypt_rounds) if missing else ""
        )
        async with engine.begin() as conn:
            if missing:
                await _insert_users(conn, missing, password_hash, anchor)
            ids = await _user_ids(conn, emails)
            counts = await _task_counts(conn, list(ids.values()))
            owners = [_Owner(ids[email], email, counts.get(ids[email], 0)) for email in emails]
            inserted = await _insert_tasks(
                conn, owners, options, now_ms, progress=progress, progress_file=progress_file
            )
        if engine.dialect.name == "postgresql" and inserted:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("ANALYZE tasks")
                await conn.exec_driver_sql("ANALYZE users")
                await conn.commit()
    finally:
        await engine.dispose()
    return SeedResult(
        users_created=len(missing),
        users_reused=len(emails) - len(missing),
        tasks_inserted=inserted,
        seconds=time.perf_counter() - started,
    )


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _user_ids(conn: AsyncConnection, emails: Sequence[str]) -> dict[str, int]:
    """Existing accounts among `emails` (lower-case), by lower(email), as the unique index."""
    found: dict[str, int] = {}
    lowered = func.lower(User.email)
    for batch in _batches(emails, _LOOKUP_BATCH):
        result = await conn.execute(select(lowered, User.id).where(lowered.in_(batch)))
        found.update(result.all())
    return found


async def _insert_users(
    conn: AsyncConnection, emails: Sequence[str], password_hash: str, now: datetime
) -> None:
    # ON CONFLICT DO NOTHING: an account created meanwhile (by another run) is simply reused.
    dialect_insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = dialect_insert(User).on_conflict_do_nothing()
    for batch in _batches(emails, _LOOKUP_BATCH):
        await conn.execute(
            statement,
            [
                {
                    "email": email,
                    "full_name": "Seed " + email.split("@", 1)[0].replace("-", " ").title(),
                    "password_hash": password_hash,
                    "role": Role.USER.value,
                    "is_active": True,
                    "token_version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for email in batch
            ],
        )


async def _task_counts(conn: AsyncConnection, owner_ids: Sequence[int]) -> dict[int, int]:
    """Tasks per owner, trashed ones included."""
    counts: dict[int, int] = {}
    for batch in _batches(owner_ids, _LOOKUP_BATCH):
        result = await conn.execute(
            select(Task.owner_id, func.count())
            .where(Task.owner_id.in_(batch))
            .group_by(Task.owner_id)
        )
        counts.update(result.all())
    return counts


async def _insert_tasks(
    conn: AsyncConnection,
    owners: Sequence[_Owner],
    options: SeedOptions,
    now_ms: int,
    *,
    progress: bool | None,
    progress_file: TextIO | None,
) -> int:
    plan = [
        (owner, options.tasks_per_user - owner.existing_tasks)
        for owner in owners
        if owner.existing_tasks < options.tasks_per_user
    ]
    total = sum(count for _, count in plan)
    if total == 0:
        return 0
    text = build_text_pools(options.seed)
    postgres = conn.dialect.name == "postgresql"
    stamp: Callable[[int], Any] = datetime_stamp if postgres else sqlite_stamp()
    bar = tqdm(
        total=total,
        desc="seeding tasks",
        unit=" tasks",
        file=progress_file if progress_file is not None else sys.stderr,
        disable=None if progress is None else not progress,
        mininterval=0.5,
    )

    def batches() -> Iterator[list[TaskRow[Any]]]:
        for owner, count in plan:
            # Per owner and starting point: a top-up adds new rows, not copies of old ones.
            rng = random.Random(f"{options.seed}:{owner.email}:{owner.existing_tasks}")
            rows = generate_task_rows(rng, owner.id, count, now_ms=now_ms, text=text, stamp=stamp)
            while batch := list(itertools.islice(rows, BATCH_SIZE)):
                yield batch
                bar.update(len(batch))

    try:
        if postgres:
            await _copy_rows(conn, itertools.chain.from_iterable(batches()))
        else:
            columns = list(INSERT_COLUMNS)
            compiled = insert(Task).compile(dialect=conn.dialect, column_keys=columns)
            assert tuple(compiled.positiontup or ()) == INSERT_COLUMNS  # rows are tuples
            for batch in batches():
                await conn.exec_driver_sql(str(compiled), batch)
    finally:
        bar.close()
    return total


async def _copy_rows(conn: AsyncConnection, rows: Iterable[TaskRow[Any]]) -> None:
    """One binary COPY on the connection's own transaction; ids come from the sequence."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    assert raw.is_in_transaction()  # begun by the statements before: one unit of work
    await raw.copy_records_to_table(
        Task.__tablename__,
        records=rows,
        columns=list(INSERT_COLUMNS),
        timeout=_COPY_TIMEOUT_SECONDS,
    )
