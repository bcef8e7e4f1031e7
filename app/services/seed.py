"""Fill a database with realistic users, projects and tasks, fast: the data the benchmarks
run on.

`python -m app.cli seed --users N --tasks-per-user M` (see app/cli.py) calls `seed_database`.

Users are `{prefix}-{i}@example.com` for i in 1..N, found again by lower(email): a rerun
creates no duplicate and leaves an existing account (and its password) alone. New accounts
share one password, hashed once, since a bcrypt hash per user would take longer than the
whole data set. Every seeded account has its Inbox, as `app.services.user.create_user` makes
it (named Inbox, version 1, the account its owner); one that lacks it (inserted by hand) gets
it.

Tasks: each seeded user's Inbox is topped up to M tasks, trashed ones included. A rerun with
the same arguments inserts nothing; a larger M adds only the difference. The rows are a
spread of statuses (`done` ones have `completed_at`), priorities 1..4, due dates (none, past
so overdue, future), creation times over two years with `updated_at >= created_at`, about 3%
in the trash, and titles and descriptions drawn from a small vocabulary with a skewed
frequency, so a text search can match a third of the rows or a handful of them.

Shared projects (`--projects P --members-per-project K --tasks-per-project T
[--labels-per-project L]`): P projects named `{prefix} project {p}`, found again by that name
among the live projects of `{prefix}-1`. That account, the big member, is a member of every
project, at a role that varies from project to project (owner of the first); K - 1 other
seeded users join each project in turn, at mixed roles (mostly editors), and every project
has an owner. Each project has L labels and is topped up to T tasks like an Inbox; its tasks
have 0 to 2 assignees among its members and 0 to 3 of its labels. `--projects 20
--tasks-per-project 50000` is the benchmark's member of 20 projects holding a million tasks.
A rerun adds no project, membership or label, and keeps the roles found.

The rows are a function of `seed`, the user's email (or the project's name) and how many
tasks it had: the same arguments on the same UTC day give the same rows (times are offsets
from the start of the day). Generation works on integer milliseconds and precomputed text,
and the database gets them in bulk: PostgreSQL through binary COPY (asyncpg), SQLite through
batched executemany of one compiled INSERT. Ids come from the table's own sequence (a shared
project's, taken before its tasks are written, so that assignees and labels can name them),
so inserts made afterwards by the API never collide. PostgreSQL's statistics are refreshed
(ANALYZE) at the end.

Transactions: the accounts, their Inboxes and the Inboxes' tasks, and the shared projects
with their members and labels are written in one transaction. The shared projects' tasks
come after it, on PostgreSQL in two transactions at once, each with about half the projects:
PostgreSQL serves a COPY stream with one backend on one core, and most of a task row's cost
is its indexes, so two streams make a million tasks about a minute instead of nearly two on
two cores. A failure there leaves some projects short of T tasks; a rerun tops them up.

The event log (`--events-per-project E`, with shared projects): each shared project whose
log holds no task event yet gets the newest E events of its tasks' histories, as the API
would have written them: a task's `created` event at its creation (its title, description,
status, priority, due date), then one event per later version (`version` counts the
changes) up to its `updated_at`: priority changes, then its status on the way to the current
one (`completed_at` with `done`), and `deleted` last for a trashed task; each by one of the
project's members who may edit tasks. A task with many versions has more events than E can
hold in all, so a project's log starts part-way into the history (as one does after
retention). The events of all the projects go in, oldest first, in one transaction, after
the tasks: ids (and, on PostgreSQL, the one transaction id) follow time, as a live log's do.
A project whose log has task events already (seeded before, or written through the API) is
left alone.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO, TypeAlias, TypeVar

import orjson
from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tqdm import tqdm  # type: ignore[import-untyped]

from app.core.config import Settings
from app.core.roles import Permission, ProjectRole, least_role
from app.core.security import hash_password_async
from app.db.base import Base
from app.db.session import create_engine_for
from app.models.event import Event
from app.models.label import Label, TaskLabel
from app.models.project import INBOX_NAME, Project, ProjectMember
from app.models.task import INSERT_COLUMNS, Task, TaskAssignee, TaskStatus
from app.models.user import Role, User

DEFAULT_PASSWORD = "seeded accounts share this passphrase"
DEFAULT_EMAIL_PREFIX = "seed-user"
EMAIL_DOMAIN = "example.com"

DEFAULT_MEMBERS_PER_PROJECT = 5
DEFAULT_LABELS_PER_PROJECT = 8

# Rows per progress step and per SQLite executemany; IDs per IN (...) list; tasks of a shared
# project per chunk (its ids, then its tasks, assignees and labels).
BATCH_SIZE = 10_000
_LOOKUP_BATCH = 1_000
_CHUNK = 50_000
# Transactions writing the shared projects' tasks at once on PostgreSQL: each COPY stream is
# one backend's work on one core, most of it the table's indexes (the trigram ones above all).
_WRITERS = 2
# A COPY of a million rows outlasts the connection's 30-second statement timeout.
_COPY_TIMEOUT_SECONDS = 3600.0

T = TypeVar("T")
# One task in INSERT_COLUMNS order; T is how a timestamp is handed to the driver.
TaskRow: TypeAlias = tuple[
    int, str, str | None, str, int, T | None, T, T, T | None, T | None, int, T | None, int | None
]

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
# The big member's role in shared project p (owner of the first), the others' in turn: mostly
# editors, a few of each other role.
_BIG_MEMBER_ROLES = (
    ProjectRole.OWNER, ProjectRole.EDITOR, ProjectRole.ADMIN, ProjectRole.EDITOR,
    ProjectRole.VIEWER, ProjectRole.EDITOR, ProjectRole.COMMENTER, ProjectRole.OWNER,
)  # fmt: skip
_MEMBER_ROLES = (
    ProjectRole.EDITOR, ProjectRole.ADMIN, ProjectRole.EDITOR, ProjectRole.COMMENTER,
    ProjectRole.EDITOR, ProjectRole.VIEWER, ProjectRole.EDITOR, ProjectRole.OWNER,
)  # fmt: skip
# Labels of a shared project, the first used most (then "bug 2", ... if more are asked).
_LABELS = (
    ("bug", "#d73a4a"), ("feature", "#0e8a16"), ("design", "#c5def5"), ("backend", "#5319e7"),
    ("frontend", "#fbca04"), ("docs", "#0075ca"), ("ops", "#b60205"), ("blocked", "#000000"),
    ("customer", "#e99695"), ("research", "#d4c5f9"), ("security", "#ee0701"),
    ("performance", "#f9d0c4"), ("quick win", "#c2e0c6"), ("later", "#bfdadc"),
)  # fmt: skip
# Refreshed after seeding, so the planner knows the new rows at once.
_ANALYZED = (
    "users",
    "projects",
    "project_members",
    "labels",
    "tasks",
    "task_assignees",
    "task_labels",
    "events",
)
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
    project_id: int,
    count: int,
    *,
    now_ms: int,
    text: TextPools,
    stamp: Callable[[int], T],
) -> Iterator[TaskRow[T]]:
    """`count` tasks of one project; times are Unix milliseconds before or after `now_ms`."""
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
            project_id,
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
            None,  # remind_at
            None,  # creator_id: seeded histories name no creator
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
    # Shared projects (see the module docstring); none unless `projects` > 0.
    projects: int = 0
    members_per_project: int = DEFAULT_MEMBERS_PER_PROJECT
    tasks_per_project: int = 0
    labels_per_project: int = DEFAULT_LABELS_PER_PROJECT
    # Task events per shared project (see the module docstring); none unless > 0.
    events_per_project: int = 0


@dataclass(frozen=True, slots=True)
class SeedResult:
    users_created: int
    users_reused: int
    tasks_inserted: int
    seconds: float
    projects_created: int = 0
    projects_reused: int = 0
    memberships_inserted: int = 0
    labels_inserted: int = 0
    assignees_inserted: int = 0
    task_labels_inserted: int = 0
    events_inserted: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.tasks_inserted / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        projects = ""
        if self.projects_created or self.projects_reused:
            projects = (
                f", {self.projects_created + self.projects_reused} shared project(s) "
                f"({self.projects_created} created, {self.projects_reused} reused) with "
                f"{self.memberships_inserted:,} new membership(s), "
                f"{self.labels_inserted:,} label(s), {self.assignees_inserted:,} assignee(s) "
                f"and {self.task_labels_inserted:,} task label(s)"
            )
        if self.events_inserted:
            projects += f", {self.events_inserted:,} event(s)"
        return (
            f"Seeded {self.users_created + self.users_reused} user(s) "
            f"({self.users_created} created, {self.users_reused} reused) and inserted "
            f"{self.tasks_inserted:,} task(s){projects} in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s)."
        )


def seed_emails(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}@{EMAIL_DOMAIN}".lower() for i in range(1, count + 1)]


def project_name(prefix: str, number: int) -> str:
    """The name of shared project `number` (1-based) of the accounts `prefix`-i."""
    return f"{prefix} project {number}"


@dataclass(frozen=True, slots=True)
class _Target:
    """Where tasks go: an Inbox or a shared project, and how many tasks it holds already.

    `key` names it in the random streams (the owner's email for an Inbox, as before shared
    projects existed, so an Inbox gets the same rows; the name for a shared project).
    `member_ids` and `label_ids` are what its tasks are assigned and labelled with (none for
    an Inbox).
    """

    key: str
    project_id: int
    existing_tasks: int
    member_ids: tuple[int, ...] = ()
    label_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ProjectPlan:
    """A shared project to find or make: its name and its members' (user id, role)."""

    name: str
    members: tuple[tuple[int, ProjectRole], ...]


def plan_projects(user_ids: Sequence[int], options: SeedOptions) -> list[ProjectPlan]:
    """Who is a member of which shared project, at which role.

    The first account (the big member) is in every project, at a role that cycles through
    `_BIG_MEMBER_ROLES` (owner of the first); the others take turns: project p has the next
    `members_per_project - 1` accounts after those of project p - 1, wrapping around. A
    project whose big member is not its owner gets its first other member as owner.
    """
    big, others = user_ids[0], list(user_ids[1:])
    plans = []
    for p in range(options.projects):
        big_role = _BIG_MEMBER_ROLES[p % len(_BIG_MEMBER_ROLES)]
        count = min(options.members_per_project - 1, len(others))
        start = p * count
        chosen = [others[(start + j) % len(others)] for j in range(count)]
        if not chosen:
            big_role = ProjectRole.OWNER  # a project needs an owner
        members = [(big, big_role)]
        for j, user_id in enumerate(chosen):
            role = _MEMBER_ROLES[(p + j) % len(_MEMBER_ROLES)]
            if j == 0 and big_role != ProjectRole.OWNER:
                role = ProjectRole.OWNER
            members.append((user_id, role))
        plans.append(ProjectPlan(project_name(options.email_prefix, p + 1), tuple(members)))
    return plans


def label_names(count: int) -> list[tuple[str, str]]:
    """(name, colour) of a shared project's `count` labels."""
    names = []
    for i in range(count):
        name, color = _LABELS[i % len(_LABELS)]
        round_ = i // len(_LABELS)
        names.append((f"{name} {round_ + 1}" if round_ else name, color))
    return names


def generate_links(
    rng: random.Random, task_ids: Sequence[int], member_ids: Sequence[int], label_ids: Sequence[int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Assignees and labels of tasks: (task id, user id) and (task id, label id) rows.

    About a third of the tasks have no assignee, half one, the rest two; 40 % have no label,
    then one to three, the first labels much more often than the last (a skewed spread, as
    teams use labels).
    """
    rand = rng.random
    assignees: list[tuple[int, int]] = []
    labels: list[tuple[int, int]] = []
    n_members, n_labels = len(member_ids), len(label_ids)
    for task_id in task_ids:
        if n_members:
            u = rand()
            wanted = 0 if u < 0.35 else 1 if u < 0.85 else 2
            picked = {member_ids[int(rand() * n_members)] for _ in range(wanted)}
            assignees.extend((task_id, user_id) for user_id in sorted(picked))
        if n_labels:
            u = rand()
            wanted = 0 if u < 0.4 else 1 if u < 0.8 else 2 if u < 0.95 else 3
            chosen = {label_ids[int(rand() * rand() * n_labels)] for _ in range(wanted)}
            labels.extend((task_id, label_id) for label_id in sorted(chosen))
    return assignees, labels


class SeededTask(NamedTuple):
    """What a task's history is made from: its row as stored."""

    id: int
    title: str
    description: str | None
    status: str
    priority: int
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    version: int


class SeededEvent(NamedTuple):
    """One task event (its entity is the task), as `_seed_events` writes it out."""

    at: datetime
    actor_id: int
    project_id: int
    task_id: int
    action: str
    changes: dict[str, list[Any]]  # {column: [old, new]} in the columns' stored form


# The events' columns as the seed writes them (xid, id and from_project_id by default).
EVENT_COLUMNS = (
    "at",
    "actor_id",
    "project_id",
    "entity",
    "entity_id",
    "task_id",
    "action",
    "changes",
)
# A priority change's new value, by the old one.
_OTHER_PRIORITIES = {1: (2, 3, 4), 2: (1, 3, 4), 3: (1, 2, 4), 4: (1, 2, 3)}


def _iso(value: datetime | None) -> str | None:
    """A timestamp as `changes` holds it (as `app.db.statements.events.json_value`)."""
    return None if value is None else value.isoformat()


def task_history(
    rng: random.Random, project_id: int, task: SeededTask, actors: Sequence[int]
) -> list[SeededEvent]:
    """A task's events, oldest first, ending at its current state (see the module docstring).

    The task was created `todo` at a priority from which priority changes lead to its
    current one, then moved to its current status in one or two steps (completed_at set
    with `done`), then trashed if it is; `version` - 1 changes in all. A task without room
    for those steps was created as it is now.
    """
    rand = rng.random
    trashed = task.deleted_at is not None
    updates = task.version - 1 - trashed
    status_steps: tuple[tuple[str, str], ...] = ()
    if updates > 0 and task.status != _TODO:
        if task.status == _DONE and updates >= 2 and rand() < 0.5:
            status_steps = ((_TODO, _IN_PROGRESS), (_IN_PROGRESS, _DONE))
        else:
            status_steps = ((_TODO, task.status),)
    priorities = [task.priority]  # backwards from the current one
    for _ in range(updates - len(status_steps)):
        priorities.append(_OTHER_PRIORITIES[priorities[-1]][int(rand() * 3)])
    priorities.reverse()
    created: dict[str, list[Any]] = {"title": [None, task.title]}
    if task.description is not None:
        created["description"] = [None, task.description]
    created["status"] = [None, _TODO if status_steps else task.status]
    created["priority"] = [None, priorities[0]]
    if task.due_at is not None:
        created["due_at"] = [None, _iso(task.due_at)]
    if not status_steps and task.completed_at is not None:
        created["completed_at"] = [None, _iso(task.completed_at)]
    changes: list[tuple[str, dict[str, list[Any]]]] = [("created", created)]
    for i in range(1, len(priorities)):
        changes.append(("updated", {"priority": [priorities[i - 1], priorities[i]]}))
    for old, new in status_steps:
        if new == _DONE:
            changes.append(
                ("updated", {"status": [old, new], "completed_at": [None, _iso(task.completed_at)]})
            )
        else:
            changes.append(("updated", {"status": [old, new]}))
    if trashed:
        changes.append(("deleted", {"deleted_at": [None, _iso(task.deleted_at)]}))
    # Times: creation, the changes in between at random, the last one at updated_at (a
    # completion at completed_at, which is updated_at or before it).
    created_at, last = task.created_at, len(changes) - 1
    times = [created_at]
    if last > 1:
        span = task.updated_at - created_at
        times += sorted(created_at + span * rand() for _ in range(last - 1))
    if last > 0:
        times.append(task.updated_at)
    if status_steps and status_steps[-1][1] == _DONE and task.completed_at is not None:
        done = last - trashed
        times[done] = completed_at = task.completed_at
        times[:done] = [min(at, completed_at) for at in times[:done]]
    n_actors = len(actors)
    return [
        SeededEvent(at, actors[int(rand() * n_actors)], project_id, task.id, action, change)
        for at, (action, change) in zip(times, changes, strict=True)
    ]


class NewestEvents:
    """The newest `count` events of the histories of tasks given latest change first.

    None of a task's events is after its `updated_at`, so once `count` events newer than
    the next task's `updated_at` are found, no later task can add one: `add` says so, and
    the rest of a long history (older than what the log keeps) is never made.
    """

    def __init__(
        self, rng: random.Random, project_id: int, actors: Sequence[int], count: int
    ) -> None:
        self.rng, self.project_id, self.actors, self.count = rng, project_id, actors, count
        self.found: list[SeededEvent] = []
        self.newest: list[datetime] = []  # a min-heap of the newest `count` times found

    def add(self, task: SeededTask) -> bool:
        """Add the task's events; False (and nothing added) once no task from here on can
        have an event among the newest `count`."""
        newest, count = self.newest, self.count
        if count <= 0 or (len(newest) == count and newest[0] >= task.updated_at):
            return False
        for event in task_history(self.rng, self.project_id, task, self.actors):
            self.found.append(event)
            if len(newest) < count:
                heapq.heappush(newest, event.at)
            elif event.at > newest[0]:
                heapq.heapreplace(newest, event.at)
        return True

    def events(self) -> list[SeededEvent]:
        """The newest `count` events, oldest first."""
        self.found.sort(key=lambda event: event.at)  # stable: a task's events keep their order
        return self.found[-self.count :] if self.count > 0 else []


def newest_events(
    rng: random.Random,
    project_id: int,
    tasks: Iterable[SeededTask],
    actors: Sequence[int],
    count: int,
) -> list[SeededEvent]:
    """The newest `count` events of the tasks' histories, oldest first."""
    log = NewestEvents(rng, project_id, actors, count)
    for task in sorted(tasks, key=_latest_change_first):
        if not log.add(task):
            break
    return log.events()


def _latest_change_first(task: SeededTask) -> tuple[float, int]:
    return (-task.updated_at.timestamp(), -task.id)


@dataclass(slots=True)
class _SharedCounts:
    """What the shared projects' part inserted (or found), for the summary."""

    projects_created: int = 0
    projects_reused: int = 0
    memberships: int = 0
    labels: int = 0
    assignees: int = 0
    task_labels: int = 0

    def any(self) -> bool:
        return bool(self.projects_created or self.memberships or self.labels)


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
    shared = _SharedCounts()
    writer: _TaskWriter | None = None
    shared_projects: list[_Target] = []
    events_inserted = 0
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
            inboxes = await _ensure_inboxes(conn, list(ids.values()), anchor)
            counts = await _task_counts(conn, list(inboxes.values()))
            targets = [
                _Target(email, inboxes[ids[email]], counts.get(inboxes[ids[email]], 0))
                for email in emails
            ]
            inbox_plan = [(t, options.tasks_per_user - t.existing_tasks) for t in targets]
            project_plan: list[tuple[_Target, int]] = []
            if options.projects:
                projects = await _ensure_projects(
                    conn, [ids[email] for email in emails], options, anchor, shared
                )
                shared_projects = projects
                project_plan = [(t, options.tasks_per_project - t.existing_tasks) for t in projects]
            inbox_plan = [(target, count) for target, count in inbox_plan if count > 0]
            project_plan = [(target, count) for target, count in project_plan if count > 0]
            inserted = sum(count for _, count in inbox_plan + project_plan)
            if inserted:
                writer = _TaskWriter(
                    inserted,
                    options,
                    now_ms,
                    shared,
                    postgres=engine.dialect.name == "postgresql",
                    progress=progress,
                    progress_file=progress_file,
                )
            if writer is not None and inbox_plan:
                await writer.inboxes(conn, inbox_plan)
        if writer is not None:
            # The shared projects' tasks, by several transactions at once on PostgreSQL
            # (SQLite has one writer): see the module docstring.
            writers = _WRITERS if engine.dialect.name == "postgresql" else 1
            async with asyncio.TaskGroup() as group:
                for share in _shares(project_plan, writers):
                    group.create_task(writer.projects(engine, share))
        if options.events_per_project > 0 and shared_projects:
            events_inserted = await _seed_events(
                engine, shared_projects, options, progress=progress, progress_file=progress_file
            )
        if engine.dialect.name == "postgresql" and (inserted or shared.any() or events_inserted):
            async with engine.connect() as conn:
                for table in _ANALYZED:
                    await conn.exec_driver_sql(f"ANALYZE {table}")
                await conn.commit()
    finally:
        if writer is not None:
            writer.bar.close()
        await engine.dispose()
    return SeedResult(
        users_created=len(missing),
        users_reused=len(emails) - len(missing),
        tasks_inserted=inserted,
        seconds=time.perf_counter() - started,
        projects_created=shared.projects_created,
        projects_reused=shared.projects_reused,
        memberships_inserted=shared.memberships,
        labels_inserted=shared.labels,
        assignees_inserted=shared.assignees,
        task_labels_inserted=shared.task_labels,
        events_inserted=events_inserted,
    )


async def _seed_events(
    engine: AsyncEngine,
    targets: Sequence[_Target],
    options: SeedOptions,
    *,
    progress: bool | None,
    progress_file: TextIO | None,
) -> int:
    """The shared projects' task events (see the module docstring), in one transaction;
    how many were inserted."""
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as conn:
        project_ids = [target.project_id for target in targets]
        logged = await conn.execute(
            select(Event.project_id)
            .where(Event.project_id.in_(project_ids), Event.entity == "task")
            .group_by(Event.project_id)
        )
        done = set(logged.scalars().all())
        editors = await conn.execute(
            select(ProjectMember.project_id, ProjectMember.user_id)
            .where(
                ProjectMember.project_id.in_(project_ids),
                ProjectMember.role >= least_role(Permission.TASK_UPDATE).value,
            )
            .order_by(ProjectMember.project_id, ProjectMember.user_id)
        )
        actors: dict[int, list[int]] = {}
        for project_id, user_id in editors.all():
            actors.setdefault(project_id, []).append(user_id)
        logs: list[list[SeededEvent]] = []
        for target in targets:
            if target.project_id in done or not actors.get(target.project_id):
                continue
            rng = random.Random(f"{options.seed}:{target.key}:events")
            log = NewestEvents(
                rng, target.project_id, actors[target.project_id], options.events_per_project
            )
            logs.append(await _project_log(conn, log))
        total = sum(len(log) for log in logs)
        stamp: Callable[[datetime], Any] = (
            (lambda at: at) if postgres else (lambda at: at.strftime("%Y-%m-%d %H:%M:%S.%f"))
        )
        bar = tqdm(
            total=total,
            desc="seeding events",
            unit=" events",
            file=progress_file if progress_file is not None else sys.stderr,
            disable=None if progress is None else not progress,
            mininterval=0.5,
        )

        def rows() -> Iterator[tuple[Any, ...]]:
            # Oldest first across the projects, so that ids follow time.
            merged = heapq.merge(*logs, key=lambda event: event.at)
            for n, event in enumerate(merged, 1):
                at, actor_id, project_id, task_id, action, changes = event
                # JSON text only now: most events of a history are older than the newest E.
                json = orjson.dumps(changes).decode()
                yield (stamp(at), actor_id, project_id, "task", task_id, task_id, action, json)
                if n % BATCH_SIZE == 0:
                    bar.update(BATCH_SIZE)
            bar.update(total % BATCH_SIZE)

        try:
            await _bulk_insert(conn, Event, EVENT_COLUMNS, rows())
        finally:
            bar.close()
    return total


async def _project_log(conn: AsyncConnection, log: NewestEvents) -> list[SeededEvent]:
    """The newest events of a project's tasks (trashed ones included), read latest change
    first and only as far as `log` needs them (two in five, for the benchmark's)."""
    result = await conn.stream(
        select(*(Task.__table__.c[name] for name in SeededTask._fields))
        .where(Task.project_id == log.project_id)
        .order_by(Task.updated_at.desc(), Task.id.desc())
    )
    try:
        async for rows in result.partitions(BATCH_SIZE):
            if not all(log.add(SeededTask._make(row)) for row in rows):
                break
    finally:
        await result.close()
    return log.events()


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
    statement = _dialect_insert(conn)(User).on_conflict_do_nothing()
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


async def _ensure_inboxes(
    conn: AsyncConnection, user_ids: Sequence[int], now: datetime
) -> dict[int, int]:
    """Each account's Inbox project id, made (with its owner membership) where missing.

    As `app.services.user.create_user` makes them: named Inbox, version 1, the account its
    only member, an owner. Accounts made by the API or the migration have theirs already;
    one inserted by hand (or by an older seed) gets it here. ON CONFLICT DO NOTHING: an Inbox
    made meanwhile is simply reused.
    """
    inboxes = await _inbox_ids(conn, user_ids)
    missing = [user_id for user_id in user_ids if user_id not in inboxes]
    insert_for: Any = _dialect_insert(conn)
    for batch in _batches(missing, _LOOKUP_BATCH):
        await conn.execute(
            insert_for(Project).on_conflict_do_nothing(),
            [
                {
                    "name": INBOX_NAME,
                    "inbox_user_id": user_id,
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
                for user_id in batch
            ],
        )
    if missing:
        inboxes = await _inbox_ids(conn, user_ids)
        await _insert_memberships(
            conn,
            [(inboxes[user_id], user_id, ProjectRole.OWNER.value) for user_id in missing],
            now,
        )
    return inboxes


async def _inbox_ids(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for batch in _batches(user_ids, _LOOKUP_BATCH):
        result = await conn.execute(
            select(Project.inbox_user_id, Project.id).where(Project.inbox_user_id.in_(batch))
        )
        found.update((user_id, project_id) for user_id, project_id in result.all() if user_id)
    return found


async def _insert_memberships(
    conn: AsyncConnection, members: Sequence[tuple[int, int, int]], now: datetime
) -> None:
    """(project id, user id, role) rows; a membership that exists already is left alone."""
    insert_for: Any = _dialect_insert(conn)
    for batch in _batches(members, _LOOKUP_BATCH):
        await conn.execute(
            insert_for(ProjectMember).on_conflict_do_nothing(),
            [
                {"project_id": project_id, "user_id": user_id, "role": role, "added_at": now}
                for project_id, user_id, role in batch
            ],
        )


def _dialect_insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def _task_counts(conn: AsyncConnection, project_ids: Sequence[int]) -> dict[int, int]:
    """Tasks per project, trashed ones included."""
    counts: dict[int, int] = {}
    for batch in _batches(project_ids, _LOOKUP_BATCH):
        result = await conn.execute(
            select(Task.project_id, func.count())
            .where(Task.project_id.in_(batch))
            .group_by(Task.project_id)
        )
        counts.update(result.all())
    return counts


async def _ensure_projects(
    conn: AsyncConnection,
    user_ids: Sequence[int],
    options: SeedOptions,
    now: datetime,
    counts: _SharedCounts,
) -> list[_Target]:
    """The shared projects, their memberships and labels, made where missing.

    A project is found again by its name among the live, non-Inbox projects the big member
    belongs to (the oldest if several): a rerun makes nothing new, and an existing
    membership keeps its role (a person may have been promoted through the API since).
    """
    plans = plan_projects(user_ids, options)
    found = await _shared_project_ids(conn, [plan.name for plan in plans], user_ids[0])
    counts.projects_reused = len(found)
    for plan in plans:
        if plan.name not in found:
            found[plan.name] = (
                await conn.execute(
                    insert(Project)
                    .values(name=plan.name, created_at=now, updated_at=now, version=1)
                    .returning(Project.id)
                )
            ).scalar_one()
            counts.projects_created += 1
    project_ids = [found[plan.name] for plan in plans]

    members = await conn.execute(
        select(ProjectMember.project_id, ProjectMember.user_id).where(
            ProjectMember.project_id.in_(project_ids)
        )
    )
    present = set(members.all())
    new_members = [
        (found[plan.name], user_id, role.value)
        for plan in plans
        for user_id, role in plan.members
        if (found[plan.name], user_id) not in present
    ]
    await _insert_memberships(conn, new_members, now)
    counts.memberships = len(new_members)

    wanted = label_names(options.labels_per_project)
    labels = await _label_ids(conn, project_ids)
    new_labels = [
        {"project_id": project_id, "name": name, "color": color, "created_at": now}
        for project_id in project_ids
        for name, color in wanted
        if (project_id, name.lower()) not in labels
    ]
    for batch in _batches(new_labels, _LOOKUP_BATCH):
        await conn.execute(_dialect_insert(conn)(Label).on_conflict_do_nothing(), batch)
    counts.labels = len(new_labels)
    if new_labels:
        labels = await _label_ids(conn, project_ids)

    tasks = await _task_counts(conn, project_ids)
    return [
        _Target(
            plan.name,
            project_id,
            tasks.get(project_id, 0),
            member_ids=tuple(user_id for user_id, _ in plan.members),
            label_ids=tuple(
                labels[(project_id, name.lower())]
                for name, _ in wanted
                if (project_id, name.lower()) in labels
            ),
        )
        for plan, project_id in zip(plans, project_ids, strict=True)
    ]


async def _shared_project_ids(
    conn: AsyncConnection, names: Sequence[str], member_id: int
) -> dict[str, int]:
    """Live, non-Inbox projects of `member_id` by name (the oldest of each name)."""
    found: dict[str, int] = {}
    for batch in _batches(names, _LOOKUP_BATCH):
        result = await conn.execute(
            select(Project.name, func.min(Project.id))
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(
                Project.name.in_(batch),
                Project.inbox_user_id.is_(None),
                Project.deleted_at.is_(None),
                ProjectMember.user_id == member_id,
            )
            .group_by(Project.name)
        )
        found.update(result.all())
    return found


async def _label_ids(
    conn: AsyncConnection, project_ids: Sequence[int]
) -> dict[tuple[int, str], int]:
    """Labels of the projects by (project id, lower-case name), as their unique index."""
    found: dict[tuple[int, str], int] = {}
    for batch in _batches(project_ids, _LOOKUP_BATCH):
        result = await conn.execute(
            select(Label.project_id, Label.name, Label.id).where(Label.project_id.in_(batch))
        )
        found.update(((project_id, name.lower()), id_) for project_id, name, id_ in result.all())
    return found


class _TaskWriter:
    """Writes the planned tasks (`count` new ones per target) and, for a shared project, their
    assignees and labels; one progress bar for all of them."""

    def __init__(
        self,
        total: int,
        options: SeedOptions,
        now_ms: int,
        counts: _SharedCounts,
        *,
        postgres: bool,
        progress: bool | None,
        progress_file: TextIO | None,
    ) -> None:
        self.options = options
        self.now_ms = now_ms
        self.counts = counts
        self.pools = build_text_pools(options.seed)
        self.stamp: Callable[[int], Any] = datetime_stamp if postgres else sqlite_stamp()
        self.bar = tqdm(
            total=total,
            desc="seeding tasks",
            unit=" tasks",
            file=progress_file if progress_file is not None else sys.stderr,
            disable=None if progress is None else not progress,
            mininterval=0.5,
        )

    def _rows(self, target: _Target, count: int) -> Iterator[TaskRow[Any]]:
        # Per target and starting point: a top-up adds new rows, not copies of old ones.
        rng = random.Random(f"{self.options.seed}:{target.key}:{target.existing_tasks}")
        return generate_task_rows(
            rng, target.project_id, count, now_ms=self.now_ms, text=self.pools, stamp=self.stamp
        )

    async def inboxes(self, conn: AsyncConnection, plan: Sequence[tuple[_Target, int]]) -> None:
        """One stream of rows, ids from the sequence as the rows arrive."""

        def rows() -> Iterator[TaskRow[Any]]:
            for target, count in plan:
                generated = self._rows(target, count)
                while batch := list(itertools.islice(generated, BATCH_SIZE)):
                    yield from batch
                    self.bar.update(len(batch))

        await _bulk_insert(conn, Task, INSERT_COLUMNS, rows())

    async def projects(self, engine: AsyncEngine, plan: Sequence[tuple[_Target, int]]) -> None:
        """In a transaction of its own, in chunks, each chunk's ids taken from the sequence
        first, so that its assignees and labels can name its tasks."""
        async with engine.begin() as conn:
            for target, count in plan:
                rows = self._rows(target, count)
                key = f"{self.options.seed}:{target.key}:{target.existing_tasks}:links"
                links = random.Random(key)
                while chunk := list(itertools.islice(rows, _CHUNK)):
                    task_ids = await _reserve_task_ids(conn, len(chunk))
                    tasks = [(id_, *row) for id_, row in zip(task_ids, chunk, strict=True)]
                    await _bulk_insert(conn, Task, ("id", *INSERT_COLUMNS), tasks)
                    assignees, labels = generate_links(
                        links, task_ids, target.member_ids, target.label_ids
                    )
                    await _bulk_insert(conn, TaskAssignee, ("task_id", "user_id"), assignees)
                    await _bulk_insert(conn, TaskLabel, ("task_id", "label_id"), labels)
                    self.counts.assignees += len(assignees)
                    self.counts.task_labels += len(labels)
                    self.bar.update(len(chunk))


def _shares(plan: Sequence[tuple[_Target, int]], writers: int) -> list[list[tuple[_Target, int]]]:
    """The plan split among `writers`, about the same number of tasks each (largest first, to
    the least loaded)."""
    shares: list[list[tuple[_Target, int]]] = [[] for _ in range(writers)]
    loads = [0] * writers
    for target, count in sorted(plan, key=lambda item: -item[1]):
        least = loads.index(min(loads))
        shares[least].append((target, count))
        loads[least] += count
    return [share for share in shares if share]


async def _reserve_task_ids(conn: AsyncConnection, count: int) -> list[int]:
    """`count` ids no other insert will take: from the table's own sequence on PostgreSQL
    (not necessarily consecutive, if the API inserts meanwhile); on SQLite, the ids after
    the largest, which stay ours since every transaction there holds the write lock
    (BEGIN IMMEDIATE, app/db/session.py)."""
    if conn.dialect.name == "postgresql":
        result = await conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('tasks', 'id')) FROM generate_series(1, :n)"
            ),
            {"n": count},
        )
        return list(result.scalars().all())
    largest = int(await conn.scalar(select(func.coalesce(func.max(Task.id), 0))) or 0)
    return list(range(largest + 1, largest + 1 + count))


async def _bulk_insert(
    conn: AsyncConnection,
    model: type[Base],
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    """Rows (tuples in `columns` order) in bulk, on the connection's own transaction.

    PostgreSQL: one binary COPY (asyncpg), which reads `rows` as it goes. SQLite: batched
    executemany of one compiled INSERT.
    """
    if conn.dialect.name == "postgresql":
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        assert raw.is_in_transaction()  # begun by the statements before: one unit of work
        await raw.copy_records_to_table(
            model.__tablename__,
            records=rows,
            columns=list(columns),
            timeout=_COPY_TIMEOUT_SECONDS,
        )
        return
    compiled = insert(model).compile(dialect=conn.dialect, column_keys=list(columns))
    assert tuple(compiled.positiontup or ()) == tuple(columns)  # rows are tuples
    for batch in _batches_of(rows, BATCH_SIZE):
        await conn.exec_driver_sql(str(compiled), batch)


def _batches_of(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
