"""The background work as the acceptance suite runs it: `alembic upgrade head`, `uvicorn
app.main:app` and, on PostgreSQL, two `python -m app.cli worker` processes (one of them
SIGKILLed mid-load); on SQLite uvicorn alone. A real webhook receiver that fails and
recovers, signatures checked with the `standardwebhooks` library, reminders a few seconds
ahead: every reminder exactly once per assignee, every event delivered. And a worker whose
PostgreSQL restarts under it: it reconnects, or exits non-zero for its supervisor, and no
job is lost."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as StandardWebhook

from tests.conftest import PROJECT_ROOT, create_database, drop_database
from tests.e2e.pg_cluster import throwaway_cluster
from tests.e2e.test_server import BIN, alembic_upgrade, serve, service_env, stop
from tests.jobs.receiver import Answer, Receiver, running_receiver

PASSWORD = "a passphrase for the worker tests"
# A guard against a hang, far above the 10 seconds a reminder may take.
WAIT_SECONDS = 60


@contextmanager
def worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "python"), "-m", "app.cli", "worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        stop(process)


def wait_for(what: str, check: Any, logs: list[Path]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in logs)
            pytest.fail(f"{what} did not happen in time\n{tails}")
        time.sleep(0.2)


class Api:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=10)

    def user(self, email: str) -> dict[str, Any]:
        created = self.http.post(
            "/api/v1/users", json={"email": email, "password": PASSWORD, "full_name": email[:3]}
        )
        assert created.status_code == 201, created.text
        token = self.http.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        ).json()["access_token"]
        return {
            "id": created.json()["id"],
            "email": email,
            "headers": {"Authorization": f"Bearer {token}"},
        }

    def call(self, method: str, path: str, who: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers=who["headers"], **kwargs)


def _reminders(api: Api, who: dict[str, Any]) -> list[dict[str, Any]]:
    page = api.call("GET", "/api/v2/notifications", who, params={"limit": 100})
    assert page.status_code == 200, page.text
    return [item for item in page.json()["items"] if item["kind"] == "reminder"]


def _delivered(receiver: Receiver, secret: str) -> dict[str, list[dict[str, Any]]]:
    """The messages received, by webhook-id, each verified with the library."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    with receiver.lock:
        received = list(receiver.received)
    for request in received:
        payload = StandardWebhook(secret).verify(request.body, request.headers)
        by_id.setdefault(request.headers["webhook-id"], []).append(payload)
    return by_id


def _scenario(base: str, receiver: Receiver, logs: list[Path], *, kill: Any = None) -> None:
    api = Api(base)
    owner, member = api.user("owner@example.com"), api.user("member@example.com")
    project = api.call("POST", "/api/v2/projects", owner, json={"name": "Load"}).json()
    invited = api.call(
        "POST",
        f"/api/v2/projects/{project['id']}/invitations",
        owner,
        json={"email": member["email"], "role": "editor"},
    )
    assert (
        api.call("POST", f"/api/v2/invitations/{invited.json()['id']}/accept", member).status_code
        == 200
    )
    hook = api.call(
        "POST",
        f"/api/v2/projects/{project['id']}/webhooks",
        owner,
        json={"url": receiver.url, "events": ["task.created"]},
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    # The receiver fails twice, then recovers: those deliveries are retried.
    receiver.answer(Answer(500), Answer(503))
    tasks = []
    for number in range(8):
        remind_at = datetime.now(UTC) + timedelta(seconds=2 + number % 3)
        created = api.call(
            "POST",
            "/api/v2/tasks",
            owner,
            json={
                "title": f"task {number}",
                "project_id": project["id"],
                "assignee_ids": [member["id"]],
                "remind_at": remind_at.isoformat(),
            },
        )
        assert created.status_code == 201, created.text
        tasks.append((created.json()["id"], remind_at))
        if number == 3 and kill is not None:
            kill()

    reminded = wait_for(
        "a reminder for every task",
        lambda: len(found) == len(tasks) and found if (found := _reminders(api, member)) else None,
        logs,
    )
    assert sorted(item["task"]["id"] for item in reminded) == sorted(t for t, _ in tasks)
    for item in reminded:
        sent = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
        due = dict(tasks)[item["task"]["id"]]
        # Within 10 seconds of its time, never before it (clocks of one machine).
        assert due - timedelta(seconds=1) <= sent <= due + timedelta(seconds=10)
    # Exactly once, even after more sweeps.
    time.sleep(2)
    assert len(_reminders(api, member)) == len(tasks)
    assert _reminders(api, owner) == []

    messages = wait_for(
        "every task.created delivered",
        lambda: (
            len(by_id) == len(tasks) and by_id if (by_id := _delivered(receiver, secret)) else None
        ),
        logs,
    )
    titles = sorted(payloads[0]["data"]["object"]["title"] for payloads in messages.values())
    assert titles == sorted(f"task {n}" for n in range(8))
    assert all(p["type"] == "task.created" for ps in messages.values() for p in ps)
    # The two failures were retried as the same messages.
    assert sum(len(payloads) for payloads in messages.values()) >= len(tasks) + 2
    log = api.call(
        "GET",
        f"/api/v2/projects/{project['id']}/webhooks/{hook.json()['id']}/deliveries",
        owner,
        params={"limit": 100},
    ).json()["items"]
    assert {entry["status"] for entry in log} >= {"failed", "succeeded"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


async def test_two_workers_one_killed_on_postgresql(tmp_path: Path, receiver: Receiver) -> None:
    url = await create_database("postgresql", tmp_path)
    env = service_env(url, WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8", WEBHOOK_RETRY_SCHEDULE="1,1,2")
    try:
        assert alembic_upgrade(env).returncode == 0
        logs = [tmp_path / "api.log", tmp_path / "worker1.log", tmp_path / "worker2.log"]
        with serve(env, logs[0]) as base, worker(env, logs[1]) as first, worker(env, logs[2]):

            def kill_first() -> None:
                first.send_signal(signal.SIGKILL)

            _scenario(base, receiver, logs, kill=kill_first)
            assert first.wait(timeout=10) == -signal.SIGKILL

            # Operations: the workers seen, their heartbeat's age, the backlogs.
            report = subprocess.run(
                [str(BIN / "python"), "-m", "app.cli", "jobs"],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            assert "Workers seen: " in report
            assert "Webhook attempts: " in report
            assert "succeeded" in report.split("Webhook attempts: ")[1]
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
            age = [
                line
                for line in metrics.splitlines()
                if line.startswith("job_worker_heartbeat_age_seconds ")
            ]
            assert len(age) == 1
            assert float(age[0].split()[1]) < 30
            assert 'webhook_deliveries{status="succeeded"}' in metrics
    finally:
        await drop_database(url)


async def test_the_api_alone_on_sqlite(tmp_path: Path, receiver: Receiver) -> None:
    url = await create_database("sqlite", tmp_path)
    env = service_env(url, WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8", WEBHOOK_RETRY_SCHEDULE="1,1,2")
    try:
        assert alembic_upgrade(env).returncode == 0
        log = tmp_path / "api.log"
        with serve(env, log) as base:
            _scenario(base, receiver, [log])
    finally:
        await drop_database(url)


async def test_a_worker_killed_mid_delivery(tmp_path: Path, receiver: Receiver) -> None:
    """SIGKILL while a delivery is in flight: another worker sends it again once the lease
    ends, as the same message (same webhook-id)."""
    url = await create_database("postgresql", tmp_path)
    env = service_env(
        url,
        WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOK_RETRY_SCHEDULE="1,1,2",
        WEBHOOK_TIMEOUT_SECONDS="3",
    )
    try:
        assert alembic_upgrade(env).returncode == 0
        logs = [tmp_path / "api.log", tmp_path / "worker1.log", tmp_path / "worker2.log"]
        with serve(env, logs[0]) as base:
            api = Api(base)
            owner = api.user("owner@example.com")
            project = api.call("POST", "/api/v2/projects", owner, json={"name": "P"}).json()
            hook = api.call(
                "POST",
                f"/api/v2/projects/{project['id']}/webhooks",
                owner,
                json={"url": receiver.url, "events": ["task.created"]},
            )
            assert hook.status_code == 201, hook.text
            receiver.answer(Answer(200, delay=2.5))
            with worker(env, logs[1]) as first:
                created = api.call(
                    "POST",
                    "/api/v2/tasks",
                    owner,
                    json={"title": "in flight", "project_id": project["id"]},
                )
                assert created.status_code == 201
                wait_for("the delivery in flight", lambda: len(receiver.received) == 1, logs)
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
            with worker(env, logs[2]):
                wait_for("the delivery sent again", lambda: len(receiver.received) == 2, logs)
            ids = {request.headers["webhook-id"] for request in receiver.received}
            assert len(ids) == 1
            log = api.call(
                "GET",
                f"/api/v2/projects/{project['id']}/webhooks/{hook.json()['id']}/deliveries",
                owner,
            ).json()["items"]
            assert [(entry["attempt"], entry["status"]) for entry in log] == [(1, "succeeded")]
    finally:
        await drop_database(url)


async def test_sigterm_lets_the_running_delivery_finish(tmp_path: Path, receiver: Receiver) -> None:
    url = await create_database("postgresql", tmp_path)
    env = service_env(url, WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8", WEBHOOK_TIMEOUT_SECONDS="5")
    try:
        assert alembic_upgrade(env).returncode == 0
        logs = [tmp_path / "api.log", tmp_path / "worker.log"]
        with serve(env, logs[0]) as base:
            api = Api(base)
            owner = api.user("owner@example.com")
            project = api.call("POST", "/api/v2/projects", owner, json={"name": "P"}).json()
            hook = api.call(
                "POST",
                f"/api/v2/projects/{project['id']}/webhooks",
                owner,
                json={"url": receiver.url, "events": ["task.created"]},
            )
            assert hook.status_code == 201, hook.text
            receiver.answer(Answer(200, delay=2))
            with worker(env, logs[1]) as running:
                api.call(
                    "POST",
                    "/api/v2/tasks",
                    owner,
                    json={"title": "in flight", "project_id": project["id"]},
                )
                wait_for("the delivery in flight", lambda: len(receiver.received) == 1, logs)
                running.send_signal(signal.SIGTERM)
                assert running.wait(timeout=30) == 0
            log = api.call(
                "GET",
                f"/api/v2/projects/{project['id']}/webhooks/{hook.json()['id']}/deliveries",
                owner,
            ).json()["items"]
            # The attempt in flight was let finish and written down: not sent again later.
            assert [(entry["attempt"], entry["status"]) for entry in log] == [(1, "succeeded")]
            assert len(receiver.received) == 1
    finally:
        await drop_database(url)


def test_a_worker_outlives_a_database_restart(tmp_path: Path) -> None:
    with throwaway_cluster() as cluster:
        cluster.psql_admin("CREATE DATABASE tasks")
        env = service_env(cluster.url("tasks"))
        assert alembic_upgrade(env).returncode == 0, alembic_upgrade(env).stderr
        logs = [tmp_path / "api.log", tmp_path / "worker.log"]
        with serve(env, logs[0]) as base, worker(env, logs[1]) as running:
            api = Api(base)
            owner = api.user("owner@example.com")
            time.sleep(1)
            cluster.stop("fast")
            time.sleep(1)
            cluster.start()

            def create() -> httpx.Response | None:
                response = api.call(
                    "POST",
                    "/api/v2/tasks",
                    owner,
                    json={
                        "title": "after",
                        "remind_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
                    },
                )
                return response if response.status_code == 201 else None

            wait_for("the API back", create, logs)

            def reminded() -> bool:
                if running.poll() is not None:
                    return False
                return len(_reminders(api, owner)) == 1

            deadline = time.monotonic() + 20
            while not reminded() and running.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if running.poll() is not None:
                # It gave up on the database: non-zero, for its supervisor to restart it.
                assert running.returncode != 0
                with worker(env, tmp_path / "worker2.log"):
                    wait_for("the reminder", lambda: len(_reminders(api, owner)) == 1, logs)
            else:
                assert reminded(), logs[1].read_text()[-3000:]
            time.sleep(1.5)
            assert len(_reminders(api, owner)) == 1
