"""`make bench`: the service against its raw ASGI ceiling, under wrk, on a seeded PostgreSQL.

1. Recreate the bench database (BENCH_DATABASE_URL; its name must contain "bench", since it
   is dropped), migrate it and seed it with `python -m app.cli seed`: 100 users x 1,000 tasks
   and one user with 200,000 in their Inboxes (v1); a team of 50 users sharing 20 projects
   that hold 1,000,000 tasks, its big member in all 20, and 1,000,000 events of those tasks
   in the log (v2).
2. Time one bcrypt hash at BCRYPT_ROUNDS in this process.
3. Start the service and the ceiling (bench/ceiling.py) with `make serve` (same flags, same
   number of workers), log seeded users in, walk 100,000 tasks into the big user's list (v1)
   and the big member's (v2) for the deep-page cursors, and 500,000 events into the big
   member's change feed for its cursor, and check that both servers answer the benchmark's
   requests alike.
4. For each endpoint: a warm-up and a measured `wrk -t2 -c64 --latency` run on each server
   (`-c8` for the change feed's page of 1,000 events and the v2 list page of 100 it is held
   to), the order alternating; then the mixed, sustained run (a third creates, two thirds first
   pages of the list, BENCH_MIXED_DURATION seconds, 120 by default) on each server, with its
   workers' RSS sampled every second; then login alone; then login flooding while the list
   is measured.
5. Read each worker's RSS, stop the servers, print the table and the checks, and write them
   to bench/results/latest.md.

Everything is configurable through BENCH_* variables; see docs/performance.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/run.py` imports app.core from the checkout

from app.core.roles import Permission, least_role  # noqa: E402 - after the path is set

RESULTS = ROOT / "bench" / "results"
DATA_FILE = RESULTS / "wrk-data.lua"  # tokens: git-ignored, deleted at the end
RAW_LOG = RESULTS / "latest.raw"  # every wrk output of the last run
REPORT = RESULTS / "latest.md"
BIN = Path(sys.executable).parent


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/tasks_bench"
)
DURATION = _env_float("BENCH_DURATION", 10)
WARMUP = _env_float("BENCH_WARMUP", 3)
LOGIN_DURATION = _env_float("BENCH_LOGIN_DURATION", 20)
# The mixed run is sustained load: long enough for what short runs never see (checkpoints,
# the GIN indexes' pending lists filling and being flushed, memory creeping up).
MIXED_DURATION = _env_float("BENCH_MIXED_DURATION", 120)
# How often the workers' RSS and the machine's CPU are sampled during the mixed run.
SAMPLE_SECONDS = 1.0
# wrk drops a request that takes longer than its timeout from the latency figures (and counts
# a "timeout" error), so the timeouts are long: slow answers must show in p99, not vanish.
TIMEOUT = _env_float("BENCH_TIMEOUT", 10)
LOGIN_TIMEOUT = 60.0
CONNECTIONS = _env_int("BENCH_CONNECTIONS", 64)
THREADS = _env_int("BENCH_THREADS", 2)
ROUNDS = _env_int("BENCH_ROUNDS", 1)
TOKEN_USERS = _env_int("BENCH_TOKEN_USERS", 20)
PATCH_TASKS_PER_USER = _env_int("BENCH_PATCH_TASKS_PER_USER", 50)
USERS = _env_int("BENCH_USERS", 100)
TASKS_PER_USER = _env_int("BENCH_TASKS_PER_USER", 1000)
BIG_TASKS = _env_int("BENCH_BIG_TASKS", 200_000)
DEEP_OFFSET = _env_int("BENCH_DEEP_OFFSET", 100_000)
PASSWORD = os.environ.get("BENCH_PASSWORD", "bench accounts share this long passphrase")
SEARCH_TERM = os.environ.get("BENCH_SEARCH_TERM", "xylophone")
FILTER_QUERY = os.environ.get("BENCH_FILTER", "status=todo&priority=high")
REUSE_DB = os.environ.get("BENCH_REUSE_DB", "") == "1"
ONLY = {name for name in os.environ.get("BENCH_ONLY", "").split(",") if name}
WORKERS = _env_int("WORKERS", os.cpu_count() or 1)
BCRYPT_ROUNDS = _env_int("BCRYPT_ROUNDS", 12)
# The service's own defaults (10 + 10 per worker): with 32 requests in flight per worker,
# fewer connections make requests queue for them and inflate p99. Both servers stay up for
# the whole bench, so together they hold at most 2 x WORKERS x (size + overflow) connections
# (80 with 2 workers); lower these if PostgreSQL's max_connections is shared.
POOL_SIZE = _env_int("DB_POOL_SIZE", 10)
POOL_OVERFLOW = _env_int("DB_MAX_OVERFLOW", 10)
# v2: a team of TEAM_USERS sharing TEAM_PROJECTS projects that hold TEAM_TASKS tasks in all,
# TEAM_MEMBERS members each; its first user (the big member) is in every project.
TEAM_USERS = _env_int("BENCH_TEAM_USERS", 50)
TEAM_PROJECTS = _env_int("BENCH_TEAM_PROJECTS", 20)
TEAM_MEMBERS = _env_int("BENCH_TEAM_MEMBERS", 10)
TEAM_TASKS = _env_int("BENCH_TEAM_TASKS", 1_000_000)
# The events of the team's tasks in the log (the newest of their histories), and how far into
# the big member's change feed its measured page starts; FEED_LIMIT events a page.
TEAM_EVENTS = _env_int("BENCH_TEAM_EVENTS", 1_000_000)
FEED_OFFSET = _env_int("BENCH_FEED_OFFSET", 500_000)
FEED_LIMIT = 1000
# The feed's page and the list page of 100 it is held to are measured with this many
# connections: a page of 1,000 events (each with its task) costs tens of times a list page,
# and 64 of them in flight would each wait longer than wrk's timeout (its latency then
# measures the queue, not the page).
FEED_CONNECTIONS = _env_int("BENCH_FEED_CONNECTIONS", 8)
# The runs made with FEED_CONNECTIONS instead of CONNECTIONS.
FEED_RUNS = frozenset({"v2_list100", "v2_changes"})
TEAM_PATCH_TASKS = 1000  # patched round-robin, split between wrk's threads
TEAM_GET_TASKS = 5000  # drawn at random by the get script
USER_PREFIX, BIG_PREFIX, TEAM_PREFIX = "seed-user", "seed-big", "seed-team"

# The endpoints measured under load, in order; each runs on both servers.
ENDPOINTS = (
    "list",
    "deep",
    "filtered",
    "search",
    "get",
    "create",
    "patch",
    "v2_list",
    "v2_list100",
    "v2_deep",
    "v2_assignee",
    "v2_get",
    "v2_changes",
    "v2_create",
    "v2_patch",
)
LABELS = {
    "list": "list, first page",
    "deep": f"list, deep page ({DEEP_OFFSET:,} in)",
    "filtered": f"list, filtered ({FILTER_QUERY})",
    "search": f"search q={SEARCH_TERM}",
    "search_c1": f"search q={SEARCH_TERM}, 1 connection",
    "get": "get",
    "create": "create",
    "patch": "patch with If-Match",
    "v2_list": f"v2 list, first page ({TEAM_PROJECTS} projects)",
    "v2_list100": f"v2 list, first page of 100, {FEED_CONNECTIONS} connections",
    "v2_deep": f"v2 list, deep page ({DEEP_OFFSET:,} in)",
    "v2_assignee": "v2 list, assignee=me",
    "v2_get": "v2 get",
    "v2_changes": (
        f"v2 changes, {FEED_LIMIT:,} events ({FEED_OFFSET:,} in), {FEED_CONNECTIONS} connections"
    ),
    "v2_create": "v2 create",
    "v2_patch": "v2 patch with If-Match",
    "mixed": "mixed: 1/3 create, 2/3 list (first page)",
    "login": "login",
    "flood_list": "list while logins flood",
    "flood_login": "login while list runs",
}
# The one-path targets (issue 11): service req/s >= this share of the ceiling's, and p99 <= 2x.
THROUGHPUT_TARGETS = {"list": 0.7, "get": 0.6, "create": 0.6, "patch": 0.6}
# Issue 13's: v2 service req/s >= this share of the ceiling's (no p99 target).
V2_THROUGHPUT_TARGETS = {
    "v2_list": 0.5,
    "v2_list100": 0.5,
    "v2_deep": 0.5,
    "v2_assignee": 0.5,
    "v2_get": 0.5,
    "v2_changes": 0.5,
    "v2_create": 0.5,
    "v2_patch": 0.5,
}
# Every run name BENCH_ONLY accepts (search_c1 runs with search; the flood with login).
RUNS = (*ENDPOINTS, "mixed", "login")
SERVERS = ("service", "ceiling")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - a command-line tool


# --- processes ------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    children = _children_map()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rss_mb(pid: int) -> float:
    """Resident memory in MB; 0 for a process that has gone."""
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_times(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each process that still exists."""
    times = {}
    for pid in pids:
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return times


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two samples by the processes present in both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def _established(port: int, pids: Sequence[int]) -> list[int]:
    """How many established TCP connections to `port` each process holds (its accepted
    sockets): which share of wrk's connections each uvicorn worker got."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local address "ADDR:PORT" in hex; state 01 is ESTABLISHED
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    counts = []
    for pid in pids:
        found = 0
        try:
            for fd in (Path("/proc") / str(pid) / "fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found += 1
        except OSError:
            pass
        counts.append(found)
    return counts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    app: str
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return RESULTS / f"{self.name}.log"

    def start(self, env: dict[str, str]) -> None:
        """`make serve`, exactly as an operator runs it, in a process group of its own."""
        command = [
            "make",
            "--no-print-directory",
            "serve",
            f"APP={self.app}",
            "HOST=127.0.0.1",
            f"PORT={self.port}",
            f"WORKERS={WORKERS}",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited during startup:\n{tail}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    if len(self.workers()) >= WORKERS:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer /healthz within 120 s")

    def workers(self) -> list[int]:
        """The uvicorn worker processes (spawned children), or uvicorn itself with 1 worker."""
        if self.process is None:
            return []
        tree = _descendants(self.process.pid)
        spawned = [pid for pid in tree if "spawn_main" in _cmdline(pid)]
        if spawned:
            return spawned
        return [pid for pid in [self.process.pid, *tree] if "uvicorn" in _cmdline(pid)][-1:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


# --- database ---------------------------------------------------------------------------


def _database_name() -> str:
    name = urlsplit(DATABASE_URL).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or "bench" not in name:
        sys.exit(
            f"error: BENCH_DATABASE_URL names database {name!r}; the bench drops and recreates "
            "it, so its name must contain 'bench' (letters, digits, underscores)"
        )
    return name


def _admin_url() -> str:
    parts = urlsplit(DATABASE_URL)
    return urlunsplit(parts._replace(path="/postgres"))


class _BenchConnection:
    """The bench's own connection to its database, opened once and kept for the whole run:
    on a PostgreSQL shared with other work, a new connection in the middle of the run could
    find no free slot ("too many clients")."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection | None = None

    def run(self, method: str, sql: str, *args: Any) -> Any:
        return self.loop.run_until_complete(self._run(method, sql, *args))

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        if self.conn is None or self.conn.is_closed():
            for attempt in range(30):
                try:
                    self.conn = await asyncpg.connect(DATABASE_URL)
                    break
                except (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError):
                    if attempt == 29:
                        raise
                    await asyncio.sleep(2)
        assert self.conn is not None
        return await getattr(self.conn, method)(sql, *args)

    def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            self.loop.run_until_complete(self.conn.close())
        self.conn = None


_bench_db = _BenchConnection()


def fetch(sql: str, *args: Any) -> list[asyncpg.Record]:
    return list(_bench_db.run("fetch", sql, *args))


def execute(sql: str, *args: Any) -> None:
    _bench_db.run("execute", sql, *args)


def _seeded() -> bool:
    try:
        rows = fetch(
            "SELECT count(*) AS n FROM users WHERE email LIKE $1 OR email LIKE $2 OR email LIKE $3",
            f"{USER_PREFIX}-%",
            f"{BIG_PREFIX}-%",
            f"{TEAM_PREFIX}-%",
        )
    except (OSError, asyncpg.PostgresError):
        return False
    return int(rows[0]["n"]) >= USERS + 1 + TEAM_USERS


def prepare_database(env: dict[str, str]) -> None:
    name = _database_name()
    if REUSE_DB and _seeded():
        say(f"reusing database {name} (BENCH_REUSE_DB=1)")
        return

    async def recreate() -> None:
        conn = await asyncpg.connect(_admin_url())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    say(f"recreating database {name}")
    _bench_db.close()
    asyncio.run(recreate())
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, check=True)
    team = [
        "--projects",
        str(TEAM_PROJECTS),
        "--members-per-project",
        str(min(TEAM_MEMBERS, TEAM_USERS)),
        "--tasks-per-project",
        str(TEAM_TASKS // max(TEAM_PROJECTS, 1)),
        "--events-per-project",
        str(TEAM_EVENTS // max(TEAM_PROJECTS, 1)),
    ]
    seeds: tuple[tuple[int, int, str, list[str]], ...] = (
        (USERS, TASKS_PER_USER, USER_PREFIX, []),
        (1, BIG_TASKS, BIG_PREFIX, []),
        (TEAM_USERS, 0, TEAM_PREFIX, team),
    )
    for users, tasks, prefix, more in seeds:
        command = [
            str(BIN / "python"),
            "-m",
            "app.cli",
            "seed",
            "--users",
            str(users),
            "--tasks-per-user",
            str(tasks),
            "--email-prefix",
            prefix,
            *more,
            "--password",
            PASSWORD,
        ]
        say("$ " + " ".join(command[1:-1]) + " ***")
        subprocess.run(command, cwd=ROOT, env=env, check=True)
    say("VACUUM ANALYZE")
    execute("VACUUM ANALYZE")


def check_connection_headroom() -> str:
    rows = fetch(
        "SELECT current_setting('max_connections')::int AS max, "
        "(SELECT count(*) FROM pg_stat_activity) AS used"
    )
    limit, used = int(rows[0]["max"]), int(rows[0]["used"])
    need = 2 * WORKERS * (POOL_SIZE + POOL_OVERFLOW)
    note = f"max_connections {limit}, {used} in use before the bench, up to {need} for it"
    if used + need > limit:
        say(f"WARNING: {note}: 'too many clients' errors are possible")
    return note


# --- HTTP helpers -----------------------------------------------------------------------


def login(client: httpx.Client, base: str, email: str) -> str:
    response = client.post(
        f"{base}/api/v1/auth/token", data={"username": email, "password": PASSWORD}, timeout=120
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


# The tasks each list walks, in its order (created_at, id, descending), as SQL on the bench
# database: v1, the live tasks of the user's Inbox; v2, of every live project they belong to.
INBOX_WALK = (
    "SELECT tasks.id FROM tasks JOIN projects ON projects.id = tasks.project_id "
    "WHERE projects.inbox_user_id = $1 AND tasks.deleted_at IS NULL "
    "ORDER BY tasks.created_at DESC, tasks.id DESC"
)
TEAM_WALK = (
    "SELECT tasks.id FROM tasks JOIN project_members m ON m.project_id = tasks.project_id "
    "JOIN projects p ON p.id = tasks.project_id WHERE m.user_id = $1 "
    "AND p.deleted_at IS NULL AND tasks.deleted_at IS NULL "
    "ORDER BY tasks.created_at DESC, tasks.id DESC"
)


def deep_cursor(
    client: httpx.Client, base: str, token: str, user_id: int, path: str, walk: str
) -> str:
    """Follow `next_cursor` of `path` with limit=100 until DEEP_OFFSET tasks have been listed;
    `walk` is the list's order in SQL, to check the walk against."""
    headers = {"Authorization": f"Bearer {token}"}
    seen: set[int] = set()
    cursor: str | None = None
    last_id = 0
    while len(seen) < DEEP_OFFSET:
        params: dict[str, Any] = {"limit": min(100, DEEP_OFFSET - len(seen))}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get(f"{base}{path}", params=params, headers=headers)
        response.raise_for_status()
        page = response.json()
        ids = [item["id"] for item in page["items"]]
        if not ids or seen.intersection(ids):
            raise RuntimeError("the cursor walk repeated or ran out of tasks")
        seen.update(ids)
        last_id, cursor = ids[-1], page["next_cursor"]
        if cursor is None:
            raise RuntimeError(f"{path} of user {user_id} has fewer than {DEEP_OFFSET:,} tasks")
    expected = fetch(f"{walk} OFFSET $2 LIMIT 1", user_id, DEEP_OFFSET - 1)
    if not expected or expected[0]["id"] != last_id:
        raise RuntimeError("the cursor walk does not agree with the database's order")
    if cursor is None:  # BENCH_DEEP_OFFSET=0: the loop never ran
        raise RuntimeError("BENCH_DEEP_OFFSET must be at least 1")
    return cursor


# The events of the big member's change feed, in its order (xid, id), as SQL: those of the
# projects they belong to (where a task moved from, too) and of their own memberships.
FEED_WALK = (
    "SELECT events.id FROM events WHERE events.project_id IN "
    "(SELECT project_id FROM project_members WHERE user_id = $1) "
    "OR events.from_project_id IN (SELECT project_id FROM project_members WHERE user_id = $1) "
    "OR (events.entity = 'member' AND events.entity_id = $1) "
    "ORDER BY events.xid, events.id"
)


def feed_cursor(client: httpx.Client, base: str, token: str, user_id: int) -> str:
    """Read the change feed FEED_LIMIT events a page until FEED_OFFSET events have been read;
    the cursor there, checked against the feed's order in SQL."""
    headers = {"Authorization": f"Bearer {token}"}
    seen: set[int] = set()
    cursor: str | None = None
    last_id = 0
    while len(seen) < FEED_OFFSET:
        params: dict[str, Any] = {"limit": min(FEED_LIMIT, FEED_OFFSET - len(seen))}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get(f"{base}/api/v2/changes", params=params, headers=headers)
        response.raise_for_status()
        page = response.json()
        ids = [item["id"] for item in page["items"]]
        if not ids or seen.intersection(ids):
            raise RuntimeError(
                f"the change feed of user {user_id} repeated or has fewer than "
                f"{FEED_OFFSET:,} events"
            )
        seen.update(ids)
        last_id, cursor = ids[-1], page["next_cursor"]
    expected = fetch(f"{FEED_WALK} OFFSET $2 LIMIT 1", user_id, FEED_OFFSET - 1)
    if not expected or expected[0]["id"] != last_id:
        raise RuntimeError("the change feed's walk does not agree with the database's order")
    if cursor is None:  # BENCH_FEED_OFFSET=0: the loop never ran
        raise RuntimeError("BENCH_FEED_OFFSET must be at least 1")
    return cursor


def compare_servers(
    client: httpx.Client, servers: Sequence[Server], requests: dict[str, tuple[str, str]]
) -> list[str]:
    """Send each (path, token) to both servers; report what differs (nothing, we hope)."""
    problems = []
    for name, (path, token) in requests.items():
        answers = []
        for server in servers:
            response = client.get(server.url + path, headers={"Authorization": f"Bearer {token}"})
            answers.append(
                (
                    response.status_code,
                    response.content,
                    response.headers.get("etag"),
                    response.headers.get("link"),
                )
            )
        if answers[0] != answers[1]:
            problems.append(
                f"{name}: {answers[0][0]} {answers[0][1][:120]!r} vs ceiling "
                f"{answers[1][0]} {answers[1][1][:120]!r}"
            )
        elif answers[0][0] != 200:
            problems.append(f"{name}: both answered {answers[0][0]}")
    return problems


# --- the wrk data file --------------------------------------------------------------------


def _lua(value: Any) -> str:
    if isinstance(value, str):
        if not value.isascii() or not value.isprintable():
            raise ValueError("only printable ASCII goes into the data file")
        return json.dumps(value)
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_lua(item)}" for key, item in value.items()) + "}"
    return "{" + ", ".join(_lua(item) for item in value) + "}"


@dataclass
class BenchData:
    tokens: list[str]
    user_ids: list[int]
    big_token: str
    big_id: int
    team_token: str = ""  # the big member's
    team_id: int = 0
    cursor: str = ""
    team_cursor: str = ""
    team_feed_cursor: str = ""
    team_get_ids: list[int] = field(default_factory=list)

    def _team_patch_tasks(self) -> list[asyncpg.Record]:
        """The tasks the v2 patch script changes: live ones of the projects where the big
        member may edit, the first TEAM_PATCH_TASKS by id."""
        return fetch(
            "SELECT tasks.id, tasks.version FROM tasks "
            "JOIN project_members m ON m.project_id = tasks.project_id "
            "WHERE m.user_id = $1 AND m.role >= $2 AND tasks.deleted_at IS NULL "
            "ORDER BY tasks.id LIMIT $3",
            self.team_id,
            int(least_role(Permission.TASK_UPDATE)),
            TEAM_PATCH_TASKS,
        )

    def settle(self) -> None:
        """Wait until the tasks' versions stop moving (a wrk run ends with patches in flight)."""
        previous = None
        for _ in range(30):
            total = fetch(
                "SELECT sum(tasks.version) AS v FROM tasks "
                "JOIN projects ON projects.id = tasks.project_id "
                "WHERE projects.inbox_user_id = ANY($1::bigint[])",
                self.user_ids,
            )[0]["v"]
            total = (total, sum(row["version"] for row in self._team_patch_tasks()))
            if total == previous:
                return
            previous = total
            time.sleep(1)

    def write(self) -> None:
        """The Lua table every wrk script reads, with the tasks' current versions."""
        live = fetch(
            "SELECT projects.inbox_user_id AS owner_id, tasks.id, tasks.version FROM tasks "
            "JOIN projects ON projects.id = tasks.project_id "
            "WHERE projects.inbox_user_id = ANY($1::bigint[]) "
            "AND tasks.deleted_at IS NULL ORDER BY projects.inbox_user_id, tasks.id",
            self.user_ids,
        )
        by_owner: dict[int, list[tuple[int, int]]] = {owner: [] for owner in self.user_ids}
        for row in live:
            by_owner[row["owner_id"]].append((row["id"], row["version"]))
        ids = [[task_id for task_id, _ in by_owner[owner]] for owner in self.user_ids]
        patch = [
            [index + 1, task_id, version]
            for index, owner in enumerate(self.user_ids)
            for task_id, version in by_owner[owner][:PATCH_TASKS_PER_USER]
        ]
        emails = [f"{USER_PREFIX}-{i}@example.com" for i in range(1, len(self.tokens) + 1)]
        data = {
            "tokens": self.tokens,
            "big_token": self.big_token,
            "ids": ids,
            "patch": patch,
            "deep_cursor": self.cursor,
            "filter_query": FILTER_QUERY,
            "search_query": quote(SEARCH_TERM, safe=""),
            "login_forms": [urlencode({"username": e, "password": PASSWORD}) for e in emails],
            **self._team_data(),
        }
        DATA_FILE.write_text("return " + _lua(data) + "\n")

    def _team_data(self) -> dict[str, Any]:
        """v2's part: the big member's token, deep cursor, tasks to get and to patch, and the
        projects where they may create."""
        if not self.team_token:
            return {}
        if not self.team_get_ids:  # drawn once: a random sample of the tasks they see
            self.team_get_ids = [
                row["id"]
                for row in fetch(
                    "SELECT tasks.id FROM tasks "
                    "JOIN project_members m ON m.project_id = tasks.project_id "
                    "WHERE m.user_id = $1 AND tasks.deleted_at IS NULL "
                    "ORDER BY random() LIMIT $2",
                    self.team_id,
                    TEAM_GET_TASKS,
                )
            ]
        projects = fetch(
            "SELECT project_id FROM project_members WHERE user_id = $1 AND role >= $2 "
            "ORDER BY project_id",
            self.team_id,
            int(least_role(Permission.TASK_CREATE)),
        )
        return {
            "team_token": self.team_token,
            "team_deep_cursor": self.team_cursor,
            "team_feed_cursor": self.team_feed_cursor,
            "feed_limit": FEED_LIMIT,
            "team_ids": self.team_get_ids,
            "team_patch": [[row["id"], row["version"]] for row in self._team_patch_tasks()],
            "team_projects": [row["project_id"] for row in projects],
        }


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50: float  # milliseconds
    p90: float
    p99: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu_ms: float | None = None  # server CPU per request, all workers
    others: float | None = None  # share of the machine's CPU used by anything else meanwhile
    p999: float | None = None  # milliseconds, as the rest
    max: float | None = None

    @property
    def error_rate(self) -> float:
        return (self.non_2xx + self.socket_errors) / max(self.requests, 1)

    @classmethod
    def median(cls, results: Sequence[Result]) -> Result:
        def med(name: str) -> Any:
            values = [getattr(r, name) for r in results if getattr(r, name) is not None]
            return statistics.median(values) if values else None

        return cls(
            rps=med("rps"),
            p50=med("p50"),
            p90=med("p90"),
            p99=med("p99"),
            requests=sum(r.requests for r in results),
            non_2xx=sum(r.non_2xx for r in results),
            socket_errors=sum(r.socket_errors for r in results),
            cpu_ms=med("cpu_ms"),
            others=med("others"),
            p999=med("p999"),
            max=med("max"),
        )


def _wrk_command(
    server: Server, script: str, seconds: float, connections: int, timeout: float
) -> list[str]:
    threads = min(THREADS, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    command += ["--latency", "--timeout", f"{max(1, round(timeout))}s"]
    return [
        *command,
        "-s",
        f"bench/wrk/{script}.lua",
        server.url,
        "--",
        str(DATA_FILE),
        str(threads),
    ]


def _parse_wrk(output: str, title: str) -> Result:
    with RAW_LOG.open("a") as raw:
        raw.write(f"### {title}\n{output}\n")
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line[len("BENCH_RESULT ") :])
            break
    else:
        raise RuntimeError(f"wrk printed no result for {title}:\n{output[-2000:]}")
    return Result(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50=data["p50_us"] / 1000,
        p90=data["p90_us"] / 1000,
        p99=data["p99_us"] / 1000,
        requests=data["requests"],
        non_2xx=data["errors_status"],
        socket_errors=data["errors_connect"]
        + data["errors_read"]
        + data["errors_write"]
        + data["errors_timeout"],
        p999=data["p999_us"] / 1000 if "p999_us" in data else None,
        max=data["max_us"] / 1000,
    )


def run_wrk(
    server: Server,
    script: str,
    seconds: float,
    *,
    connections: int = CONNECTIONS,
    timeout: float = TIMEOUT,
    title: str = "",
) -> Result:
    command = _wrk_command(server, script, seconds, connections, timeout)
    pids = server.workers()
    backends = _bench_backends()
    machine_before = _proc_stat()
    ours_before = _cpu_times(pids), _cpu_times(backends), _children_cpu()
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 180, check=False
    )
    machine_after = _proc_stat()
    server_cpu = _cpu_used(ours_before[0], _cpu_times(pids))
    database_cpu = _cpu_used(ours_before[1], _cpu_times(backends))
    wrk_cpu = _children_cpu() - ours_before[2]
    result = _parse_wrk(completed.stdout + completed.stderr, title or f"{server.name} {script}")
    result.cpu_ms = server_cpu * 1000 / result.requests if result.requests else None
    busy = (machine_after[0] - machine_before[0]) / CLOCK_TICKS
    capacity = max(machine_after[2] - machine_before[2], 1) / CLOCK_TICKS
    result.others = max(0.0, busy - server_cpu - database_cpu - wrk_cpu) / capacity
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _bench_backends() -> list[int]:
    """PostgreSQL's processes working for the bench: the backends serving the bench database
    (the servers' pools), and the WAL writer, background writer and checkpointer, which under
    the create runs' writes are busy mostly for them (they are no neighbour's work)."""
    rows = fetch(
        "SELECT pid FROM pg_stat_activity WHERE (datname = current_database() "
        "AND pid <> pg_backend_pid()) "
        "OR backend_type IN ('walwriter', 'background writer', 'checkpointer')"
    )
    return [int(row["pid"]) for row in rows]


def flood(server: Server, lead: float) -> tuple[Result, Result]:
    """Logins at full speed; the list measured once the logins have filled the workers."""
    login_command = _wrk_command(server, "login", DURATION + 2 * lead, CONNECTIONS, LOGIN_TIMEOUT)
    logins = subprocess.Popen(
        login_command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        time.sleep(lead)
        listed = run_wrk(
            server,
            "list",
            DURATION,
            timeout=LOGIN_TIMEOUT,
            title=f"{server.name} list during login flood",
        )
        output, _ = logins.communicate(timeout=DURATION + 180)
    finally:
        if logins.poll() is None:
            logins.kill()
            logins.wait()
    return listed, _parse_wrk(output, f"{server.name} login flood")


# --- the mixed, sustained run ------------------------------------------------------------


@dataclass
class Sample:
    """One second of a long run."""

    seconds: float  # since the sampling started
    busy: float  # share of the machine's CPU busy (every process) during the second
    others: float  # the part of it used by processes other than the bench's own
    rss: list[float]  # MB, each worker, in the order of Server.workers()
    connections: list[int]  # wrk's connections each worker holds


class Sampler:
    """Samples the workers' RSS and the machine's CPU every SAMPLE_SECONDS in a thread, while a
    long run goes on.

    The run's report gives the RSS at the start, at the end and at its peak, and the worst
    second of other work on the machine: a long run is likely to overlap a neighbour's test
    suite for part of it, which its average hides. The whole series goes to the raw log.
    """

    def __init__(self, workers: list[int], backends: list[int], port: int) -> None:
        self.workers = workers
        self.port = port
        self.ours = [*workers, *backends]  # wrk's own process is looked up at each sample
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _our_cpu(self) -> dict[int, float]:
        wrk = [pid for pid in _children_map().get(os.getpid(), []) if "wrk" in _cmdline(pid)]
        return _cpu_times([*self.ours, *wrk])

    def _run(self) -> None:
        started = time.monotonic()
        machine, ours = _proc_stat(), self._our_cpu()
        while not self._stop.wait(SAMPLE_SECONDS):
            machine_now, ours_now = _proc_stat(), self._our_cpu()
            capacity = max(machine_now[2] - machine[2], 1) / CLOCK_TICKS
            busy = (machine_now[0] - machine[0]) / CLOCK_TICKS
            others = max(0.0, busy - _cpu_used(ours, ours_now)) / capacity
            self.samples.append(
                Sample(
                    seconds=time.monotonic() - started,
                    busy=busy / capacity,
                    others=others,
                    rss=[_rss_mb(pid) for pid in self.workers],
                    connections=_established(self.port, self.workers),
                )
            )
            machine, ours = machine_now, ours_now

    def connections(self) -> list[int]:
        """The split of wrk's connections among the workers (wrk keeps its connections for
        the whole run, so the split seen most often)."""
        splits = Counter(tuple(s.connections) for s in self.samples if sum(s.connections))
        return list(splits.most_common(1)[0][0]) if splits else []

    def peak_rss(self) -> list[float]:
        return [max(values) for values in zip(*(s.rss for s in self.samples), strict=True)]

    def log(self, title: str) -> None:
        """The series, in the raw log beside wrk's output."""
        with RAW_LOG.open("a") as raw:
            raw.write(
                f"### {title}: each second, machine CPU busy / others' / workers' RSS MB / "
                "wrk's connections per worker\n"
            )
            for sample in self.samples:
                rss = " ".join(f"{value:.0f}" for value in sample.rss)
                connections = " ".join(str(n) for n in sample.connections)
                raw.write(
                    f"{sample.seconds:6.1f} s  busy {sample.busy:4.0%}  "
                    f"others {sample.others:4.0%}  rss {rss}  connections {connections}\n"
                )


@dataclass
class MixedRun:
    """One server's mixed run: wrk's figures, the workers' memory, what it created."""

    server: str
    round: int
    result: Result
    rss_start: list[float]  # MB per worker, just before the measured run
    rss_end: list[float]  # just after it
    rss_peak: list[float]  # the highest of the samples taken each second during it
    created: int  # rows created during the measured run (about: some may land after it)
    worst_others: float  # the highest share of others' CPU in any one second
    # wrk's connections per worker. The kernel gives each new connection to whichever worker
    # accepts first, so the split is uneven and changes from run to run (20/44 was seen); a
    # worker with more connections than its pool (DB_POOL_SIZE + DB_MAX_OVERFLOW) makes
    # requests queue for a connection, which shows in the tail.
    connections: list[int]


def _max_task_id() -> int:
    return int(fetch("SELECT coalesce(max(id), 0) AS m FROM tasks")[0]["m"])


def run_mixed(server: Server, round_number: int) -> MixedRun:
    """A warm-up, then MIXED_DURATION of the mix; the rows both created are deleted after."""
    before = _max_task_id()
    if WARMUP > 0:
        run_wrk(server, "mixed", WARMUP, title=f"{server.name} mixed warm-up")
    mark = _max_task_id()
    workers = server.workers()
    rss_start = [_rss_mb(pid) for pid in workers]
    with Sampler(workers, _bench_backends(), server.port) as sampler:
        result = run_wrk(server, "mixed", MIXED_DURATION)
    rss_end = [_rss_mb(pid) for pid in workers]
    sampler.log(f"{server.name} mixed, round {round_number + 1}")
    created = int(fetch("SELECT count(*) AS n FROM tasks WHERE id > $1", mark)[0]["n"])
    # As after the create runs: the next run, on either server, starts from the same table
    # (VACUUM also empties the GIN indexes' pending lists the inserts filled).
    execute("DELETE FROM tasks WHERE id > $1", before)
    execute("VACUUM ANALYZE tasks")
    return MixedRun(
        server=server.name,
        round=round_number,
        result=result,
        rss_start=rss_start,
        rss_end=rss_end,
        rss_peak=sampler.peak_rss() if sampler.samples else rss_end,
        created=created,
        worst_others=max((s.others for s in sampler.samples), default=0.0),
        connections=sampler.connections(),
    )


# --- measuring ---------------------------------------------------------------------------


def time_bcrypt() -> float:
    """Seconds for one bcrypt hash at BCRYPT_ROUNDS, single thread, median of 5."""
    from app.core.security import hash_password, verify_password

    stored = hash_password(PASSWORD, BCRYPT_ROUNDS)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        verify_password(PASSWORD, stored)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _proc_stat() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs since boot. Busy is time spent by processes
    (user, nice, system): interrupt time, mostly the loopback traffic's, is left out."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = values[0] + values[1] + values[2]
    steal = values[7] if len(values) > 7 else 0
    return busy, steal, sum(values[:8])


def measure(
    servers: dict[str, Server], data: BenchData, hash_times: list[float]
) -> tuple[dict[str, dict[str, Result]], list[MixedRun]]:
    runs: dict[str, dict[str, list[Result]]] = {}
    mixed_runs: list[MixedRun] = []
    # 64 logins in flight share the cores: each waits about this long. Login runs last several
    # times that, since their answers come in waves.
    queue_seconds = CONNECTIONS * hash_times[0] / (os.cpu_count() or 1)
    login_seconds = max(LOGIN_DURATION, round(4 * queue_seconds))

    def record(name: str, server: Server, result: Result) -> None:
        runs.setdefault(name, {}).setdefault(server.name, []).append(result)
        say(
            f"  {LABELS[name]:<40} {server.name:<8} {result.rps:9.1f} req/s  "
            f"p50 {result.p50:8.1f} ms  p99 {result.p99:8.1f} ms  max {_fmt(result.max)} ms  "
            f"non-2xx {result.non_2xx}  socket errors {result.socket_errors}"
            + (f"  !!! {result.error_rate:.1%} ERRORS !!!" if result.error_rate > 0.01 else "")
        )

    def wanted(name: str) -> bool:
        return not ONLY or name in ONLY

    for round_number in range(ROUNDS):
        say(f"round {round_number + 1} of {ROUNDS}")
        for index, endpoint in enumerate(ENDPOINTS):
            if not wanted(endpoint):
                continue
            order = SERVERS if (round_number + index) % 2 == 0 else SERVERS[::-1]
            for name in order:
                server = servers[name]
                creates = endpoint in {"create", "v2_create"}
                patches = endpoint in {"patch", "v2_patch"}
                if creates:
                    max_id = fetch("SELECT coalesce(max(id), 0) AS m FROM tasks")[0]["m"]
                if patches:
                    data.write()  # the tasks' current versions, for If-Match
                connections = FEED_CONNECTIONS if endpoint in FEED_RUNS else CONNECTIONS
                if WARMUP > 0:
                    title = f"{name} {endpoint} warm-up"
                    run_wrk(server, endpoint, WARMUP, connections=connections, title=title)
                if patches:
                    data.settle()  # patches still in flight when the warm-up stopped
                    data.write()  # the warm-up moved the versions on
                result = run_wrk(server, endpoint, DURATION, connections=connections)
                record(endpoint, server, result)
                if creates:
                    execute("DELETE FROM tasks WHERE id > $1", max_id)
                    execute("VACUUM ANALYZE tasks")
        if wanted("search"):
            for name in SERVERS:
                record(
                    "search_c1",
                    servers[name],
                    run_wrk(servers[name], "search", DURATION, connections=1),
                )
        if wanted("mixed"):
            # Continues the alternation of the endpoints above.
            order = SERVERS if (round_number + len(ENDPOINTS)) % 2 == 0 else SERVERS[::-1]
            for name in order:
                mixed = run_mixed(servers[name], round_number)
                mixed_runs.append(mixed)
                record("mixed", servers[name], mixed.result)
                say(
                    f"    RSS MB per worker: {_mb(mixed.rss_start)} at the start, "
                    f"{_mb(mixed.rss_end)} at the end, {_mb(mixed.rss_peak)} at the peak; "
                    f"about {mixed.created:,} created; others' CPU "
                    f"{_share(mixed.result.others)}, worst second {mixed.worst_others:.0%}; "
                    f"wrk's connections per worker {_counts(mixed.connections)}"
                )
        if wanted("login"):
            # Again, just before the logins: other work on the machine may have changed.
            hash_times.append(time_bcrypt())
            say(f"  one bcrypt hash now takes {hash_times[-1] * 1000:.0f} ms")
            order = SERVERS if round_number % 2 == 0 else SERVERS[::-1]
            for name in order:
                record(
                    "login",
                    servers[name],
                    run_wrk(servers[name], "login", login_seconds, timeout=LOGIN_TIMEOUT),
                )
            for name in order:
                listed, logins = flood(servers[name], lead=min(queue_seconds, 10))
                record("flood_list", servers[name], listed)
                record("flood_login", servers[name], logins)
    medians = {
        name: {server: Result.median(results) for server, results in by_server.items()}
        for name, by_server in runs.items()
    }
    return medians, mixed_runs


# --- report ------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _mb(sizes: Sequence[float]) -> str:
    return ", ".join(f"{size:.0f}" for size in sizes) or "–"


def _counts(values: Sequence[int]) -> str:
    return " / ".join(str(value) for value in values) or "–"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}"


def _errors(results: dict[str, Result]) -> str:
    cells = []
    for name in SERVERS:
        result = results.get(name)
        if result is None:
            continue
        text = f"{result.non_2xx + result.socket_errors}"
        if result.error_rate > 0.01:
            text = (
                f"**!! {result.error_rate:.1%} FAILED ({result.non_2xx} non-2xx, "
                f"{result.socket_errors} socket) !!**"
            )
        cells.append(text)
    return " / ".join(cells)


def table(results: dict[str, dict[str, Result]]) -> list[str]:
    lines = [
        "| endpoint | service req/s | p50 ms | p99 ms | CPU ms/req | ceiling req/s | p50 ms "
        "| p99 ms | CPU ms/req | req/s ratio | p99 ratio | errors (svc / ceil) "
        "| others' CPU (svc / ceil) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, label in LABELS.items():
        if name not in results:
            continue
        service, ceiling = results[name].get("service"), results[name].get("ceiling")
        cells = [label]
        for result in (service, ceiling):
            if result is None:
                cells += ["–"] * 4
            else:
                cells += [
                    _fmt(result.rps),
                    _fmt(result.p50),
                    _fmt(result.p99),
                    _fmt(result.cpu_ms, 2),
                ]
        cells.append(_ratio(service.rps if service else None, ceiling.rps if ceiling else None))
        cells.append(_ratio(service.p99 if service else None, ceiling.p99 if ceiling else None))
        cells.append(_errors(results[name]))
        cells.append(
            " / ".join(
                "–" if r is None or r.others is None else f"{r.others:.0%}"
                for r in (service, ceiling)
            )
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mixed_table(mixed_runs: Sequence[MixedRun]) -> list[str]:
    """One row per mixed run (each server, each round): latency to the maximum, and memory."""
    if not mixed_runs:
        return []
    lines = [
        "## Mixed sustained load",
        "",
        f"`wrk -t{THREADS} -c{CONNECTIONS} -d{MIXED_DURATION:g}s` with `bench/wrk/mixed.lua` "
        f"after a {WARMUP:g} s warm-up: each request is a create (one in three, at random) or "
        "a first page of the list, for a random one of the users; the rows the run created are "
        "deleted after it. RSS is each worker's, in MB: just before the measured run, just "
        "after it, and the highest of the samples taken every second. *Connections*: how wrk's "
        f"{CONNECTIONS} connections were split among the workers (the kernel gives each to "
        "whichever worker accepts it first, so the split varies from run to run; a worker "
        "holding more than its pool's "
        f"{POOL_SIZE + POOL_OVERFLOW} connections makes requests wait for one). *Others' CPU*: "
        "the run's average, and its worst second (the series is in the raw log).",
        "",
        "| round | server | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | created "
        "| errors | RSS start | RSS end | RSS peak | connections | CPU ms/req "
        "| others' CPU (run / worst s) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---:|---|",
    ]
    for run in mixed_runs:
        result = run.result
        lines.append(
            "| "
            + " | ".join(
                [
                    str(run.round + 1),
                    run.server,
                    _fmt(result.rps),
                    _fmt(result.p50),
                    _fmt(result.p90),
                    _fmt(result.p99),
                    _fmt(result.p999),
                    _fmt(result.max),
                    f"{run.created:,} ({run.created / max(result.requests, 1):.0%})",
                    _errors({run.server: result}),
                    _mb(run.rss_start),
                    _mb(run.rss_end),
                    _mb(run.rss_peak),
                    _counts(run.connections),
                    _fmt(result.cpu_ms, 2),
                    f"{_share(result.others)} / {run.worst_others:.0%}",
                ]
            )
            + " |"
        )
    return [*lines, ""]


def checks(
    results: dict[str, dict[str, Result]], hash_seconds: float, rss: dict[str, list[float]]
) -> list[str]:
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {text}")

    def get(name: str, server: str = "service") -> Result | None:
        result = results.get(name, {}).get(server)
        if result is not None and result.requests == 0:
            lines.append(f"- FAIL: {LABELS[name]} ({server}): no request completed")
            return None
        return result

    for name, share in THROUGHPUT_TARGETS.items():
        service, ceiling = get(name), get(name, "ceiling")
        if service is None or ceiling is None:
            continue
        check(
            service.rps >= share * ceiling.rps,
            f"{LABELS[name]}: req/s {service.rps:,.0f} >= {share} x ceiling {ceiling.rps:,.0f} "
            f"(ratio {service.rps / ceiling.rps:.2f})",
        )
        check(
            service.p99 <= 2 * ceiling.p99,
            f"{LABELS[name]}: p99 {service.p99:.1f} ms <= 2 x ceiling {ceiling.p99:.1f} ms "
            f"(ratio {service.p99 / ceiling.p99:.2f})",
        )
    for name, share in V2_THROUGHPUT_TARGETS.items():
        service, ceiling = get(name), get(name, "ceiling")
        if service is None or ceiling is None:
            continue
        check(
            service.rps >= share * ceiling.rps,
            f"{LABELS[name]}: req/s {service.rps:,.0f} >= {share} x ceiling {ceiling.rps:,.0f} "
            f"(ratio {service.rps / ceiling.rps:.2f}; p99 ratio {service.p99 / ceiling.p99:.2f})",
        )
    team_first, team_deep = get("v2_list"), get("v2_deep")
    if team_first is not None and team_deep is not None:
        check(
            team_deep.p50 <= 1.2 * team_first.p50,
            f"{LABELS['v2_deep']}: p50 {team_deep.p50:.1f} ms <= 1.2 x v2 first page p50 "
            f"{team_first.p50:.1f} ms (ratio {team_deep.p50 / team_first.p50:.2f})",
        )
    team_page, feed = get("v2_list100"), get("v2_changes")
    if team_page is not None and feed is not None:
        check(
            feed.p50 <= 2 * team_page.p50,
            f"{LABELS['v2_changes']}: p50 {feed.p50:.1f} ms <= 2 x v2 list page of 100 p50 "
            f"{team_page.p50:.1f} ms (ratio {feed.p50 / team_page.p50:.2f})",
        )
    team_assigned = get("v2_assignee")
    if team_first is not None and team_assigned is not None:
        lines.append(
            f"- (info) {LABELS['v2_assignee']}: p50 {team_assigned.p50:.1f} ms, "
            f"{team_assigned.p50 / team_first.p50:.2f} x the v2 first page's"
        )
    first = get("list")
    for name in ("deep", "filtered"):
        result = get(name)
        if result is not None and first is not None:
            check(
                result.p50 <= 1.2 * first.p50,
                f"{LABELS[name]}: p50 {result.p50:.1f} ms <= 1.2 x first page p50 "
                f"{first.p50:.1f} ms (ratio {result.p50 / first.p50:.2f})",
            )
    search = get("search_c1")
    if search is not None:
        check(
            search.p50 < 25,
            f"{LABELS['search_c1']} ({BIG_TASKS + USERS * TASKS_PER_USER:,} v1 tasks, "
            f"{BIG_TASKS + USERS * TASKS_PER_USER + TEAM_TASKS:,} in the table): p50 "
            f"{search.p50:.1f} ms < 25 ms",
        )
    cores = os.cpu_count() or 1
    bound = cores / hash_seconds
    login_result = get("login")
    if login_result is not None:
        ceiling = get("login", "ceiling")
        control = f"; the ceiling: {ceiling.rps:.2f} req/s" if ceiling is not None else ""
        check(
            login_result.rps >= 0.8 * bound,
            f"login: {login_result.rps:.2f} req/s >= 0.8 x {cores} cores / "
            f"{hash_seconds * 1000:.0f} ms per hash = {0.8 * bound:.2f} req/s "
            f"(bcrypt bound {bound:.2f}/s, ratio {login_result.rps / bound:.2f}{control})",
        )
    service, ceiling = get("mixed"), get("mixed", "ceiling")
    if service is not None and ceiling is not None:
        check(
            service.p99 <= 2 * ceiling.p99,
            f"mixed: p99 {service.p99:.1f} ms <= 2 x ceiling p99 {ceiling.p99:.1f} ms "
            f"(ratio {service.p99 / ceiling.p99:.2f}; max {_fmt(service.max)} ms against "
            f"{_fmt(ceiling.max)} ms)",
        )
    flooded = get("flood_list")
    if flooded is not None and first is not None:
        check(
            flooded.p99 <= 3 * first.p99,
            f"list p99 while logins flood {flooded.p99:.1f} ms <= 3 x unloaded p99 "
            f"{first.p99:.1f} ms (ratio {flooded.p99 / first.p99:.2f})",
        )
    for name, sizes in rss.items():
        if sizes:
            listing = ", ".join(f"{size:.0f}" for size in sizes)
            if name == "service":
                check(max(sizes) < 150, f"RSS of each service worker < 150 MB: {listing} MB")
            else:
                lines.append(f"- (info) RSS of each ceiling worker: {listing} MB")
    return lines


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    pg = fetch("SELECT current_setting('server_version') AS v")[0]["v"]
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    import uvicorn

    return {
        "cores": str(os.cpu_count()),
        "CPU": cpu,
        "memory": f"{int(memory) / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "PostgreSQL": pg,
        "wrk": (wrk_version.stdout + wrk_version.stderr).split("[", 1)[0].strip(),
        "commit": git.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout else ""),
    }


def report(
    results: dict[str, dict[str, Result]],
    mixed_runs: Sequence[MixedRun],
    hash_seconds: float,
    rss: dict[str, list[float]],
    info: dict[str, str],
    notes: list[str],
) -> str:
    rows = table(results)
    verdicts = checks(results, hash_seconds, rss)
    lines = [
        "# Benchmark: the service against its raw ASGI ceiling",
        "",
        f"`make bench` on {info.pop('date')}. Compare ratios, not absolute numbers, across "
        "machines; see docs/performance.md for the method.",
        "",
        "## Machine and parameters",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        f"- load: `wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION:g}s --latency` per run after a "
        f"{WARMUP:g} s warm-up, {ROUNDS} round(s) (medians), the order of service and ceiling "
        f"alternating, `--timeout {TIMEOUT:g}s`; login without warm-up, `--timeout "
        f"{LOGIN_TIMEOUT:g}s`, at least {LOGIN_DURATION:g} s and 4 x (64 x one hash / cores); "
        "the flood: login wrk as for login, and the list wrk starting once the logins have "
        f"queued up; the mixed run: {MIXED_DURATION:g} s after the warm-up; the feed's page "
        f"and the list page of 100 it is held to: `-c{FEED_CONNECTIONS}`",
        f"- servers: `make serve` with WORKERS={WORKERS}, `--loop uvloop --http httptools "
        f"--no-access-log`; ENVIRONMENT=production, RATE_LIMIT_ENABLED=false, "
        f"BCRYPT_ROUNDS={BCRYPT_ROUNDS}, DB_POOL_SIZE={POOL_SIZE}, DB_MAX_OVERFLOW={POOL_OVERFLOW}"
        f", LOG_LEVEL={os.environ.get('LOG_LEVEL') or 'WARNING (make serve default)'}",
        f"- data: {USERS} users x {TASKS_PER_USER:,} tasks and 1 user with {BIG_TASKS:,} "
        f"in their Inboxes; {TEAM_USERS} users sharing {TEAM_PROJECTS} projects of "
        f"{TEAM_TASKS // max(TEAM_PROJECTS, 1):,} tasks, {min(TEAM_MEMBERS, TEAM_USERS)} members "
        f"each, the big member in all, and {TEAM_EVENTS // max(TEAM_PROJECTS, 1):,} events of "
        "each project's tasks in the log (`python -m app.cli seed`); tokens of "
        f"{TOKEN_USERS} users rotate in every v1 script; v2's scripts are the big member's",
        *(f"- {note}" for note in notes),
        "",
        "## Results",
        "",
        "req/s and latency from wrk; CPU ms/req is the user+system CPU of all the server's "
        "workers during the run divided by its requests (PostgreSQL and wrk not included). "
        "Ratios are service / ceiling. *Others' CPU* is the share of the machine's CPU that "
        "processes other than this benchmark (its servers, their PostgreSQL backends, "
        "PostgreSQL's WAL writer, background writer and checkpointer, and wrk) used during the "
        "run: above a few percent, the run competed with other work.",
        "",
        *rows,
        "",
        *mixed_table(mixed_runs),
        "## Checks",
        "",
        *verdicts,
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    unknown = ONLY - set(RUNS)
    if unknown:
        sys.exit(f"error: BENCH_ONLY names no run {sorted(unknown)}; the runs: {','.join(RUNS)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    RAW_LOG.write_text("")
    started = datetime.now(UTC)
    if subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True).returncode != 0:
        say("wrk is missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "DATABASE_URL": DATABASE_URL,
        "SECRET_KEY": secret,
        "RATE_LIMIT_ENABLED": "false",
        "BCRYPT_ROUNDS": str(BCRYPT_ROUNDS),
        "DB_POOL_SIZE": str(POOL_SIZE),
        "DB_MAX_OVERFLOW": str(POOL_OVERFLOW),
        # The whole bench outlasts the default 15 minutes of the tokens it logs in for.
        "ACCESS_TOKEN_EXPIRE_MINUTES": "240",
    }
    prepare_database(env)
    headroom = check_connection_headroom()
    say(f"timing one bcrypt hash at cost {BCRYPT_ROUNDS}")
    hash_times = [time_bcrypt()]
    say(f"  {hash_times[0] * 1000:.0f} ms")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    stat_before = _proc_stat()
    servers = {
        "service": Server("service", "app.main:app"),
        "ceiling": Server("ceiling", "bench.ceiling:app"),
    }
    rss: dict[str, list[float]] = {}
    notes = [headroom]
    try:
        for server in servers.values():
            say(f"starting the {server.name} on {server.url} ({WORKERS} workers)")
            server.start(env)
        users = fetch(
            "SELECT id, email FROM users WHERE email LIKE $1 ORDER BY id LIMIT $2",
            f"{USER_PREFIX}-%",
            TOKEN_USERS,
        )
        big = fetch(
            "SELECT id, email FROM users WHERE email LIKE $1 ORDER BY id LIMIT 1", f"{BIG_PREFIX}-%"
        )[0]
        member = fetch(
            "SELECT id, email FROM users WHERE email = $1", f"{TEAM_PREFIX}-1@example.com"
        )[0]
        say(f"logging {len(users) + 2} users in")
        base = servers["service"].url
        with httpx.Client(timeout=30) as client:
            with ThreadPoolExecutor(max_workers=2 * WORKERS) as pool:
                tokens = list(pool.map(lambda row: login(client, base, row["email"]), users))
            big_token = login(client, base, big["email"])
            team_token = login(client, base, member["email"])
            data = BenchData(
                tokens,
                [row["id"] for row in users],
                big_token,
                big["id"],
                team_token=team_token,
                team_id=member["id"],
            )
            walks = (
                ("big user's list", "/api/v1/tasks", big_token, big["id"], INBOX_WALK),
                ("big member's v2 list", "/api/v2/tasks", team_token, member["id"], TEAM_WALK),
            )
            cursors = []
            for title, path, token, user_id, walk in walks:
                say(f"walking {DEEP_OFFSET:,} tasks into the {title}")
                walk_started = time.perf_counter()
                cursors.append(deep_cursor(client, base, token, user_id, path, walk))
                say(f"  {time.perf_counter() - walk_started:.1f} s")
            data.cursor, data.team_cursor = cursors
            say(f"reading {FEED_OFFSET:,} events into the big member's change feed")
            walk_started = time.perf_counter()
            data.team_feed_cursor = feed_cursor(client, base, team_token, member["id"])
            say(f"  {time.perf_counter() - walk_started:.1f} s")
            data.write()
            matches = fetch(
                "SELECT count(*) AS n FROM tasks JOIN projects ON projects.id = tasks.project_id "
                "WHERE projects.inbox_user_id = $1 AND tasks.deleted_at IS NULL "
                "AND (tasks.title ILIKE $2 OR tasks.description ILIKE $2)",
                big["id"],
                f"%{SEARCH_TERM}%",
            )[0]["n"]
            notes.append(f"search term {SEARCH_TERM!r} matches {matches:,} of the big user's tasks")
            some_task = fetch(f"{INBOX_WALK} LIMIT 1", data.user_ids[0])[0]["id"]
            team_task = fetch(f"{TEAM_WALK} LIMIT 1", member["id"])[0]["id"]
            assigned = fetch(
                "SELECT count(*) AS n FROM task_assignees WHERE user_id = $1", member["id"]
            )[0]["n"]
            notes.append(f"the big member is assigned {assigned:,} tasks (assignee=me)")
            logged = fetch(
                f"SELECT count(*) AS n, count(DISTINCT task_id) AS tasks FROM ({FEED_WALK}) AS "
                "feed JOIN events USING (id)",
                member["id"],
            )[0]
            notes.append(
                f"the big member's change feed holds {logged['n']:,} events of "
                f"{logged['tasks']:,} tasks; its measured page starts {FEED_OFFSET:,} in"
            )
            differences = compare_servers(
                client,
                [servers["service"], servers["ceiling"]],
                {
                    "list": ("/api/v1/tasks", tokens[0]),
                    "deep": (f"/api/v1/tasks?cursor={data.cursor}", big_token),
                    "filtered": (f"/api/v1/tasks?{FILTER_QUERY}", big_token),
                    "search": (f"/api/v1/tasks?q={quote(SEARCH_TERM)}", big_token),
                    "get": (f"/api/v1/tasks/{some_task}", tokens[0]),
                    "v2_list": ("/api/v2/tasks", team_token),
                    "v2_list100": ("/api/v2/tasks?limit=100", team_token),
                    "v2_deep": (f"/api/v2/tasks?cursor={data.team_cursor}", team_token),
                    "v2_assignee": ("/api/v2/tasks?assignee=me", team_token),
                    "v2_get": (f"/api/v2/tasks/{team_task}", team_token),
                    "v2_changes": (
                        f"/api/v2/changes?limit={FEED_LIMIT}&cursor={data.team_feed_cursor}",
                        team_token,
                    ),
                },
            )
        if differences:
            for difference in differences:
                say(f"WARNING: service and ceiling differ: {difference}")
            notes.append("**service and ceiling answers differ:** " + "; ".join(differences))
        else:
            notes.append(
                "same JSON, ETag and Link from both servers for list, deep page, "
                "filtered list, search and get, v1 and v2, and the change feed's page (checked "
                "before the runs)"
            )
        results, mixed_runs = measure(servers, data, hash_times)
        for name, server in servers.items():
            rss[name] = [_rss_mb(pid) for pid in server.workers()]
    finally:
        for server in servers.values():
            server.stop()
        DATA_FILE.unlink(missing_ok=True)
        _bench_db.close()
    stat_after = _proc_stat()
    busy = stat_after[0] - stat_before[0]
    total = max(stat_after[2] - stat_before[2], 1)
    steal = stat_after[1] - stat_before[1]
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    info = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), **machine_info()}
    _bench_db.close()
    notes.append(
        f"machine during the runs: {busy / total:.0%} of all CPU busy, steal {steal / total:.1%}; "
        f"load average {' '.join(load_before)} before, {' '.join(load_after)} after "
        "(other processes on the machine share the cores: see the raw log for every run)"
    )
    notes.append(
        f"one bcrypt hash at cost {BCRYPT_ROUNDS}: "
        + " before the runs, ".join(f"{t * 1000:.0f} ms" for t in hash_times)
        + (" just before the logins" if len(hash_times) > 1 else "")
        + " (in-process, single thread, median of 5; the login check uses the last)"
    )
    text = report(results, mixed_runs, hash_times[-1], rss, info, notes)
    REPORT.write_text(text)
    say("")
    say(text)
    say(f"written to {REPORT.relative_to(ROOT)} (every wrk output in {RAW_LOG.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
