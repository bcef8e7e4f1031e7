"""PostgreSQL going away and coming back, against a real server (catalogue G 43-47).

A throwaway PostgreSQL cluster owned by this module (tests/e2e/pg_cluster.py: initdb and
pg_ctl on a free loopback port, never the shared server on 5432) is migrated with Alembic and
served by `uvicorn app.main:app` as a subprocess in production mode with a 2 s connect and
pool timeout. The tests stop, kill (`-m immediate`) and restart the cluster under that one
server process and check what clients see (spec sections 1 and 5):

- while the database is down, every request that needs it is a 503 problem with
  `Retry-After`, within seconds and never a 500; `/readyz` is 503, `/healthz` 200;
- once it is back, the same process serves 2xx again, from the very first request, with
  every earlier write still there;
- a write cut off mid-way leaves nothing half-kept, and no 201 or 200 is ever lost;
- an exhausted pool is a 503 after the pool timeout, and SQLite's "database is locked"
  beyond the busy timeout is a 503 too (both in-process).

Without PostgreSQL's server binaries the PostgreSQL tests skip loudly (fail with CI=true).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.core.config import Settings
from app.db import session as db_session
from app.main import create_app
from tests.conftest import make_settings, run_alembic
from tests.e2e.pg_cluster import PgCluster, throwaway_cluster
from tests.e2e.test_server import (
    USER_PASSWORD,
    alembic_upgrade,
    assert_problem,
    bearer,
    login,
    new_email,
    register,
    serve_process,
    service_env,
)

# Functional bounds, not benchmarks: the connect timeout is 2 s, so ~2 s is expected.
OUTAGE_ANSWER_BOUND_SECONDS = 10.0
RECOVERY_BOUND_SECONDS = 10.0
DB_TIMEOUT_SECONDS = "2"
# Text that would betray the driver, the server's address or a stack trace in a problem.
LEAK_MARKERS = ("traceback", "asyncpg", "sqlalchemy", "connect call failed", "127.0.0.1:")


@dataclass
class Server:
    cluster: PgCluster
    base_url: str
    process: subprocess.Popen[bytes]
    pid: int
    log_path: Path

    def assert_same_process(self) -> None:
        assert self.process.poll() is None, f"uvicorn exited:\n{self.log_tail()}"
        assert self.process.pid == self.pid
        # The lifespan ran once: the app was never rebuilt (no reload, no second worker).
        assert self.log_path.read_text().count('"event": "startup"') == 1, self.log_tail()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def unhandled_errors(self) -> list[str]:
        """The last line of each exception the server turned into a 500, for failure messages."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"unhandled_error"' in line:
                try:
                    exception = json.loads(line).get("exception", "")
                except ValueError:
                    exception = line
                summary = [
                    text_line
                    for text_line in exception.splitlines()
                    if text_line and not text_line.startswith((" ", "(Background"))
                ]
                found.append(summary[-1] if summary else line)
        return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with throwaway_cluster() as pg:
        pg.psql_admin("CREATE DATABASE tasks")
        yield pg


@pytest.fixture(scope="module")
def server(cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = service_env(
        cluster.url("tasks"),
        BCRYPT_ROUNDS="4",
        DB_CONNECT_TIMEOUT_SECONDS=DB_TIMEOUT_SECONDS,
        DB_POOL_TIMEOUT_SECONDS=DB_TIMEOUT_SECONDS,
    )
    migrate = alembic_upgrade(env)
    assert migrate.returncode == 0, migrate.stderr
    log_path = tmp_path_factory.mktemp("outage") / "uvicorn.log"
    with serve_process(env, log_path, ready_path="/readyz") as (base_url, process):
        yield Server(cluster, base_url, process, process.pid, log_path)


@pytest.fixture
def live_server(server: Server) -> Iterator[Server]:
    """The server, with its database up before and after the test, whatever happened."""
    server.cluster.ensure_running()
    server.assert_same_process()
    try:
        yield server
    finally:
        server.cluster.ensure_running()


@pytest.fixture
def http(live_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=20) as client:
        yield client


def assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    """A 503 problem with a usable Retry-After and nothing about the driver or the server."""
    body = assert_problem(response, 503)
    assert re.fullmatch(r"[1-9][0-9]*", response.headers.get("retry-after", "")), response.headers
    lowered = response.text.lower()
    for marker in LEAK_MARKERS:
        assert marker not in lowered, response.text
    return body


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def new_user(http: httpx.Client) -> tuple[str, dict[str, str]]:
    email = new_email()
    created = register(http, email)
    assert created.status_code == 201, created.text
    return email, bearer(login(http, email, USER_PASSWORD))


def all_tasks(http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every live task of the caller, walking the cursors."""
    tasks: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = http.get("/api/v1/tasks", params=params, headers=headers)
        assert page.status_code == 200, page.text
        tasks += page.json()["items"]
        if page.json()["next_cursor"] is None:
            return tasks
        params["cursor"] = page.json()["next_cursor"]


def test_outage_is_a_503_and_the_same_process_recovers(
    live_server: Server, http: httpx.Client
) -> None:
    # 1. Baseline: the server works.
    email, headers = new_user(http)
    baseline = []
    for n in range(3):
        created = http.post(
            "/api/v1/tasks",
            json={"title": f"before outage {n}", "priority": "high"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        baseline.append(created.json())
    task_id = baseline[0]["id"]

    # 2. Down: everything that needs the database is a quick 503 problem; liveness holds.
    live_server.cluster.stop("fast")
    lost_email = new_email()
    requests: dict[str, Callable[[], httpx.Response]] = {
        "GET tasks": lambda: http.get("/api/v1/tasks", headers=headers),
        "GET task": lambda: http.get(f"/api/v1/tasks/{task_id}", headers=headers),
        "POST task": lambda: http.post(
            "/api/v1/tasks", json={"title": "written while down"}, headers=headers
        ),
        "PATCH task": lambda: http.patch(
            f"/api/v1/tasks/{task_id}", json={"title": "patched while down"}, headers=headers
        ),
        "GET me": lambda: http.get("/api/v1/users/me", headers=headers),
        "POST token": lambda: login(http, email, USER_PASSWORD),
        "POST users": lambda: register(http, lost_email),
        "GET readyz": lambda: http.get("/readyz"),
    }
    elapsed: dict[str, float] = {}
    for _round in range(2):  # the second round meets a pool that already knows it is down
        for name, call in requests.items():
            response, seconds = timed(call)
            assert_unavailable(response)
            elapsed[name] = max(elapsed.get(name, 0.0), seconds)
    assert max(elapsed.values()) < OUTAGE_ANSWER_BOUND_SECONDS, elapsed
    healthz = http.get("/healthz")
    assert healthz.status_code == 200
    assert healthz.json() == {"status": "ok"}
    live_server.assert_same_process()

    # 3. Back: the same process answers 2xx at once (no polling, no 5xx on the first ones).
    live_server.cluster.start()
    ready, seconds = timed(lambda: http.get("/readyz"))
    assert ready.status_code == 200, ready.text
    assert seconds < RECOVERY_BOUND_SECONDS
    listed = http.get("/api/v1/tasks", headers=headers)
    assert listed.status_code == 200, listed.text
    # Everything from before is there, and nothing written while down was kept.
    assert sorted(listed.json()["items"], key=lambda t: t["id"]) == baseline
    fetched = http.get(f"/api/v1/tasks/{task_id}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == baseline[0]
    me = http.get("/api/v1/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == email
    assert login(http, email, USER_PASSWORD).status_code == 200
    # The registration that got a 503 was not half-kept: the address is still free.
    assert register(http, lost_email).status_code == 201
    patched = http.patch(
        f"/api/v1/tasks/{task_id}", json={"title": "patched after"}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == baseline[0]["version"] + 1
    created = http.post("/api/v1/tasks", json={"title": "after outage"}, headers=headers)
    assert created.status_code == 201, created.text
    assert http.get("/healthz").status_code == 200
    live_server.assert_same_process()


def test_restart_without_traffic_is_invisible(live_server: Server, http: httpx.Client) -> None:
    """Pooled connections that died with the server are replaced unseen (the checkout check
    in app/db/session.py)."""
    _, headers = new_user(http)
    # Fill the pool with several connections, all of which the restart will kill.
    with ThreadPoolExecutor(8) as pool:
        warm = list(pool.map(lambda _: http.get("/api/v1/tasks", headers=headers), range(16)))
    assert {r.status_code for r in warm} == {200}

    live_server.cluster.stop("fast")
    live_server.cluster.start()

    calls: list[Callable[[], httpx.Response]] = [
        lambda: http.get("/api/v1/tasks", headers=headers),
        lambda: http.get("/api/v1/users/me", headers=headers),
        lambda: http.post("/api/v1/tasks", json={"title": "after restart"}, headers=headers),
        lambda: http.get("/readyz"),
    ] * 4
    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda call: call(), calls))
    assert [r.status_code for r in first if r.status_code >= 300] == [], [
        r.text for r in first if r.status_code >= 300
    ]
    live_server.assert_same_process()


@dataclass
class Outcome:
    started: float
    status: int | None  # None: a transport error
    response: httpx.Response | None = None


def test_restart_under_steady_traffic_is_never_a_500(
    live_server: Server, http: httpx.Client
) -> None:
    """While it goes down and comes back: 200 or 503, never a 500; all 200 once it is back."""
    _, headers = new_user(http)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    done = threading.Event()

    def traffic(worker: int) -> None:
        with httpx.Client(base_url=live_server.base_url, timeout=20) as client:
            for n in itertools.count():
                if done.is_set():
                    return
                started = time.monotonic()
                try:
                    if (worker + n) % 3 == 0:
                        response = client.get("/readyz")
                    elif (worker + n) % 3 == 1:
                        response = client.get("/api/v1/tasks", headers=headers)
                    else:
                        response = client.post(
                            "/api/v1/tasks",
                            json={"title": f"steady {worker}-{n}"},
                            headers=headers,
                        )
                except httpx.TransportError:
                    outcome = Outcome(started, None)  # the server stays up: it must answer
                else:
                    outcome = Outcome(started, response.status_code, response)
                with lock:
                    outcomes.append(outcome)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(traffic, worker) for worker in range(6)]
        try:
            time.sleep(0.8)
            went_down = time.monotonic()
            live_server.cluster.stop("fast")
            time.sleep(1.0)
            live_server.cluster.start()
            came_back = time.monotonic()
            time.sleep(1.5)
        finally:
            done.set()
        for future in futures:
            future.result()

    bad = [
        o.response.text if o.response else "no answer"
        for o in outcomes
        if o.status not in (200, 201, 503)
    ]
    assert bad == [], (bad, live_server.unhandled_errors())
    for outcome in outcomes:
        if outcome.status == 503:
            assert outcome.response is not None
            assert_unavailable(outcome.response)
    # Before the stop (leaving a margin for requests still in flight) all is well ...
    assert {o.status for o in outcomes if o.started < went_down - 0.3} <= {200, 201}
    # ... and once `pg_ctl start` has returned, every request succeeds again.
    after = [o for o in outcomes if o.started > came_back]
    assert after, "no request was made after the restart"
    assert [o.response.text for o in after if o.status not in (200, 201) and o.response] == []
    assert any(o.status == 503 for o in outcomes), "the outage was never observed"
    live_server.assert_same_process()


_REV = re.compile(r"^w(?P<worker>\d+)-n(?P<n>\d+)-rev(?P<rev>\d+)-(?P<priority>[a-z]+)$")
_PRIORITIES = ("low", "medium", "high", "urgent")
_STATUSES = ("todo", "in_progress", "done")


@dataclass
class WriterLog:
    """What one writer was told: every response, and the last confirmed state of each task."""

    statuses: list[int | None] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    # Idempotency-Key -> (body sent, task id if a 201 said so)
    posts: dict[str, tuple[dict[str, Any], int | None]] = field(default_factory=dict)
    confirmed: dict[int, dict[str, Any]] = field(default_factory=dict)


def _write_until_failure(
    base_url: str,
    headers: dict[str, str],
    worker: int,
    stop_writing: threading.Event,
    creates: threading.Semaphore,
) -> WriterLog:
    """Create tasks and PATCH them (title, priority, status together) until a request fails;
    `creates` is released for each 201."""
    log = WriterLog()

    def record(response: httpx.Response | None) -> bool:
        status = None if response is None else response.status_code
        log.statuses.append(status)
        if status == 201:
            creates.release()
        if response is not None and status not in (200, 201, 503):
            log.bad.append(
                f"{response.request.method} {response.request.url.path}: "
                f"{status} {response.text[:300]}"
            )
        if status == 503:
            assert response is not None
            try:
                assert_unavailable(response)
            except AssertionError as exc:
                log.bad.append(f"bad 503: {exc}")
        return status in (200, 201)

    with httpx.Client(base_url=base_url, timeout=20) as client:
        for n in itertools.count():
            if stop_writing.is_set():
                return log
            priority = _PRIORITIES[n % 4]
            body = {"title": f"w{worker}-n{n}-rev1-{priority}", "priority": priority}
            key = f"outage-{worker}-{n}-{uuid.uuid4().hex[:8]}"
            log.posts[key] = (body, None)
            try:
                created = client.post(
                    "/api/v1/tasks", json=body, headers={**headers, "Idempotency-Key": key}
                )
            except httpx.TransportError:
                record(None)
                return log
            if not record(created):
                return log
            task = created.json()
            log.posts[key] = (body, task["id"])
            log.confirmed[task["id"]] = task
            for step in range(2):
                version = task["version"] + 1
                priority = _PRIORITIES[(n + step + 1) % 4]
                change = {
                    "title": f"w{worker}-n{n}-rev{version}-{priority}",
                    "priority": priority,
                    "status": _STATUSES[(n + step + 1) % 3],
                }
                try:
                    patched = client.patch(
                        f"/api/v1/tasks/{task['id']}",
                        json=change,
                        headers={**headers, "If-Match": f'"{task["version"]}"'},
                    )
                except httpx.TransportError:
                    record(None)
                    return log
                if not record(patched):
                    return log
                task = patched.json()
                log.confirmed[task["id"]] = task
    raise AssertionError("unreachable")


def test_kill_mid_write_keeps_nothing_half_done(live_server: Server, http: httpx.Client) -> None:
    _, headers = new_user(http)
    # ETags as the server makes them, for If-Match.
    probe = http.post("/api/v1/tasks", json={"title": "w99-n0-rev1-medium"}, headers=headers)
    assert probe.status_code == 201
    assert probe.headers["etag"] == '"1"', "the test's If-Match assumes ETag = version"

    stop_writing = threading.Event()
    creates = threading.Semaphore(0)
    workers = 12
    with ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(
                _write_until_failure, live_server.base_url, headers, w, stop_writing, creates
            )
            for w in range(workers)
        ]
        try:
            # Writes in flight: as many created as there are writers (not a fixed sleep, which
            # on a loaded machine killed the database before most writers had written).
            deadline = time.monotonic() + 30
            written = [
                creates.acquire(timeout=max(0.0, deadline - time.monotonic()))
                for _ in range(workers)
            ]
            assert all(written), "the writers created too little in 30 s to mean anything"
            killed = time.monotonic()
            live_server.cluster.stop("immediate")
        finally:
            stop_writing.set()
        logs = [future.result(timeout=60) for future in futures]
    writers_done = time.monotonic() - killed

    statuses = [status for log in logs for status in log.statuses]
    assert [bad for log in logs for bad in log.bad] == [], live_server.unhandled_errors()
    assert set(statuses) <= {200, 201, 503, None}
    assert statuses.count(201) >= workers, "too few writes before the kill to mean anything"
    assert any(status in (503, None) for status in statuses), "no request saw the outage"
    assert writers_done < OUTAGE_ANSWER_BOUND_SECONDS + 5

    live_server.cluster.start()
    tasks = {task["id"]: task for task in all_tasks(http, headers)}

    # Every task is whole: its title says which version, priority and status it must have.
    seen: dict[tuple[str, str], int] = {}
    for task in tasks.values():
        match = _REV.match(task["title"])
        assert match is not None, task
        rev, n = int(match["rev"]), int(match["n"])
        assert task["version"] == rev, task
        assert task["priority"] == match["priority"], task
        if rev == 1:
            assert task["status"] == "todo", task
        else:
            assert task["status"] == _STATUSES[(n + rev - 1) % 3], task
        assert (task["status"] == "done") == (task["completed_at"] is not None), task
        origin = (match["worker"], match["n"])
        assert origin not in seen, f"created twice: {task} and {tasks[seen[origin]]}"
        seen[origin] = task["id"]

    # Nothing that was confirmed was lost: every 201 exists, every 200 is at least as new.
    for log in logs:
        for task_id, confirmed in log.confirmed.items():
            assert task_id in tasks, f"a confirmed task is gone: {confirmed}"
            current = tasks[task_id]
            # At most one more PATCH can have committed without its answer arriving.
            assert current["version"] in (confirmed["version"], confirmed["version"] + 1)
            if current["version"] == confirmed["version"]:
                assert current == confirmed

    # Retrying each create with its Idempotency-Key: a 201 replays the same task; an
    # unanswered one is either replayed (it was kept, with its stored response), done now
    # (nothing was kept) or still claimed (409): never a second task.
    for log in logs:
        for key, (body, task_id) in log.posts.items():
            retry = http.post(
                "/api/v1/tasks", json=body, headers={**headers, "Idempotency-Key": key}
            )
            if task_id is not None:
                assert retry.status_code == 201, retry.text
                assert retry.json()["id"] == task_id
                assert retry.headers.get("idempotent-replayed") == "true"
            else:
                assert retry.status_code in (201, 409), retry.text
                if retry.status_code == 409:
                    assert_problem(retry, 409)
    recounted: dict[tuple[str, str], int] = {}
    for task in all_tasks(http, headers):
        match = _REV.match(task["title"])
        assert match is not None
        origin = (match["worker"], match["n"])
        assert origin not in recounted, f"a retry created a second task: {task}"
        recounted[origin] = task["id"]
    live_server.assert_same_process()


# -- In-process: pool exhaustion and SQLite's lock -------------------------------------------


# The database the in-process tests are served from (created once by `pool_database_url`).
REFUSING_DATABASE = "pool"


@pytest.fixture(scope="module")
def pool_database_url(cluster: PgCluster) -> str:
    cluster.ensure_running()
    cluster.psql_admin(f"CREATE DATABASE {REFUSING_DATABASE}")
    url = cluster.url(REFUSING_DATABASE)
    run_alembic(url)
    return url


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def async_user(client: httpx.AsyncClient) -> dict[str, str]:
    email = new_email()
    created = await client.post("/api/v1/users", json={"email": email, "password": USER_PASSWORD})
    assert created.status_code == 201, created.text
    token = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": USER_PASSWORD}
    )
    return bearer(token)


def database_calls(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[Callable[[], Awaitable[httpx.Response]]]:
    """Requests that each need the database: a read, a write, authentication, readiness."""
    return [
        lambda: client.get("/api/v1/tasks", headers=headers),
        lambda: client.post("/api/v1/tasks", json={"title": "never kept"}, headers=headers),
        lambda: client.get("/api/v1/users/me", headers=headers),
        lambda: client.post(
            "/api/v1/auth/token", data={"username": "nobody@example.com", "password": "x" * 20}
        ),
        lambda: client.get("/readyz"),
    ]


async def async_timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_pool_exhaustion_is_a_503_after_the_pool_timeout(pool_database_url: str) -> None:
    settings = make_settings(
        pool_database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=1
    )
    async with in_process(settings) as (app, client):
        headers = await async_user(client)
        async with app.state.engine.connect() as held:
            await held.execute(text("SELECT 1"))  # the pool's only connection, kept checked out
            for call in database_calls(client, headers):
                response, seconds = await asyncio.wait_for(async_timed(call()), timeout=15)
                assert_unavailable(response)
                # It waited for the pool (1 s), and not for much longer: no hang.
                assert 0.9 <= seconds < 5.0, seconds
            assert (await client.get("/healthz")).status_code == 200
        # Released: served again, and the 503'd create kept nothing.
        listed = await client.get("/api/v1/tasks", headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["items"] == []
        created = await client.post("/api/v1/tasks", json={"title": "kept"}, headers=headers)
        assert created.status_code == 201, created.text
        assert (await client.get("/readyz")).status_code == 200


async def test_sqlite_locked_beyond_the_busy_timeout_is_a_503(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    run_alembic(url)
    busy_seconds = db_session.SQLITE_BUSY_TIMEOUT_MS / 1000
    async with in_process(make_settings(url)) as (_, client):
        headers = await async_user(client)
        locker = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            locker.execute("BEGIN IMMEDIATE")  # another process's write transaction
            started = time.monotonic()
            listed, created = await asyncio.wait_for(
                asyncio.gather(
                    client.get("/api/v1/tasks", headers=headers),
                    client.post("/api/v1/tasks", json={"title": "never kept"}, headers=headers),
                ),
                timeout=busy_seconds + 15,
            )
            seconds = time.monotonic() - started
            assert_unavailable(listed)
            assert_unavailable(created)
            # It waited out the busy timeout (writers queue), then gave up: no hang.
            assert busy_seconds * 0.9 <= seconds < busy_seconds + 5, seconds
            assert (await client.get("/healthz")).status_code == 200
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        listed = await client.get("/api/v1/tasks", headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["items"] == []
        created = await client.post("/api/v1/tasks", json={"title": "kept"}, headers=headers)
        assert created.status_code == 201, created.text


@asynccontextmanager
async def refusing_new_connections(cluster: PgCluster, how: str) -> AsyncIterator[None]:
    """A server that is up but turns every new connection away, until the block ends.

    "shutting-down": a smart shutdown waits for its last client, refusing newcomers with
    SQLSTATE 57P03 (as during a restart's start-up); "too-many-clients": every connection slot
    is taken (53300); "not-accepting": an operator closed the service's database to new
    connections (ALLOW_CONNECTIONS false, 55000).
    """
    import asyncpg

    async def connect() -> Any:
        return await asyncpg.connect(
            host="127.0.0.1", port=cluster.port, user="postgres", database="postgres", timeout=5
        )

    async def until_refused(error_class: type[Exception], keep: list[Any] | None) -> None:
        for _ in range(500):
            try:
                connection = await connect()
            except error_class:
                return
            if keep is None:
                connection.terminate()
                await asyncio.sleep(0.05)  # the postmaster has not taken the signal yet
            else:
                keep.append(connection)
        raise AssertionError(f"PostgreSQL never refused a connection with {error_class}")

    held: list[Any] = []
    try:
        if how == "shutting-down":
            held.append(await connect())
            cluster.stop("smart", wait=False)
            await until_refused(asyncpg.CannotConnectNowError, keep=None)
        elif how == "not-accepting":
            cluster.psql_admin(f"ALTER DATABASE {REFUSING_DATABASE} ALLOW_CONNECTIONS false")
        else:
            await until_refused(asyncpg.TooManyConnectionsError, keep=held)
        yield
    finally:
        if how == "shutting-down":
            cluster.stop("fast")
        for connection in held:
            connection.terminate()
        cluster.ensure_running()
        if how == "not-accepting":
            cluster.psql_admin(f"ALTER DATABASE {REFUSING_DATABASE} ALLOW_CONNECTIONS true")


@pytest.mark.parametrize("how", ["shutting-down", "too-many-clients", "not-accepting"])
async def test_database_refusing_connections_is_a_503(
    cluster: PgCluster, pool_database_url: str, how: str
) -> None:
    settings = make_settings(pool_database_url, db_connect_timeout_seconds=2)
    async with in_process(settings) as (app, client):
        headers = await async_user(client)
        await app.state.engine.dispose()  # every request below needs a new connection
        async with refusing_new_connections(cluster, how):
            for call in database_calls(client, headers):
                response, seconds = await asyncio.wait_for(async_timed(call()), timeout=15)
                assert_unavailable(response)
                assert seconds < OUTAGE_ANSWER_BOUND_SECONDS
            assert (await client.get("/healthz")).status_code == 200
        listed = await client.get("/api/v1/tasks", headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["items"] == []


async def test_a_database_gone_is_a_503(cluster: PgCluster) -> None:
    """The service's database dropped (or renamed) under it: the server turns each new
    connection away with 3D000, and every request that needs the database is a 503, as for
    a server that cannot be reached (readiness says the same)."""
    cluster.ensure_running()
    cluster.psql_admin("CREATE DATABASE gone")
    url = cluster.url("gone")
    run_alembic(url)
    async with in_process(make_settings(url, db_connect_timeout_seconds=2)) as (app, client):
        headers = await async_user(client)
        await app.state.engine.dispose()
        cluster.psql_admin("DROP DATABASE gone WITH (FORCE)")
        for call in database_calls(client, headers):
            response, seconds = await asyncio.wait_for(async_timed(call()), timeout=15)
            assert_unavailable(response)
            assert seconds < OUTAGE_ANSWER_BOUND_SECONDS
        assert (await client.get("/healthz")).status_code == 200
