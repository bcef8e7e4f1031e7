"""The API behind a real PgBouncer in transaction mode (decision 0034).

PgBouncer (Debian's 1.18) hands each transaction whichever server session is free, and keeps
no prepared statement across them. Its pool here has 2 server sessions for 2 uvicorn
processes' many connections, so consecutive statements of one client meet different
sessions. With `DB_TRANSACTION_POOLING=true` every kind of request succeeds under
concurrency; without it the API cannot even connect (PgBouncer refuses the `jit` startup
parameter), which shows the requests really went through the pooler.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import create_database, drop_database, running_in_ci
from tests.e2e.test_server import alembic_upgrade, free_port, serve_process, service_env

PASSWORD = "a passphrase for the pooler tests"


def _skip_or_fail(reason: str) -> None:
    if running_in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def pgbouncer(database_url: str, tmp_path: Path) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `database_url`'s server; yields the URL of
    the same database through it."""
    binary = shutil.which("pgbouncer")
    if binary is None:
        _skip_or_fail("pgbouncer is not installed (Debian package pgbouncer)")
    # PgBouncer refuses to run as root.
    prefix: list[str] = []
    if os.geteuid() == 0:
        if (
            shutil.which("runuser") is None
            or subprocess.run(["id", "postgres"], capture_output=True).returncode
        ):
            _skip_or_fail("running as root without a postgres user to run PgBouncer as")
        prefix = ["runuser", "-u", "postgres", "--"]
    url = make_url(database_url)
    port = free_port()
    # Its own folder outside pytest's (which only root may enter), readable by its user.
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o755)
    (folder / "userlist.txt").write_text(f'"{url.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{url.database} = host={url.host} port={url.port or 5432} dbname={url.database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
        "query_wait_timeout = 10\n"
    )
    if prefix:
        shutil.chown(folder, "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres")
    assert binary is not None
    with (tmp_path / "pgbouncer.log").open("w") as log:
        process = subprocess.Popen(
            [*prefix, binary, str(folder / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PgBouncer did not start:\n{(tmp_path / 'pgbouncer.log').read_text()}")
            time.sleep(0.1)
        yield url.set(host="127.0.0.1", port=port).render_as_string(False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def pooled(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A migrated database, and its URL through PgBouncer."""
    direct = await create_database("postgresql", tmp_path)
    try:
        migrated = alembic_upgrade(service_env(direct))
        assert migrated.returncode == 0, migrated.stderr
        with pgbouncer(direct, tmp_path) as through_pool:
            yield direct, through_pool
    finally:
        await drop_database(direct)


async def _a_user_at_work(base: str, number: int) -> list[str]:
    """Sign up, log in, refresh; create, read, patch with If-Match, list, comment, read the
    feed: what went wrong, if anything."""
    problems: list[str] = []

    def expect(response: httpx.Response, status: int) -> httpx.Response:
        if response.status_code != status:
            problems.append(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:200]}"
            )
        return response

    email = f"pooled-{number}-{uuid.uuid4().hex[:6]}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        expect(await http.post("/api/v1/users", json={"email": email, "password": PASSWORD}), 201)
        tokens = expect(
            await http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD}),
            200,
        ).json()
        refreshed = expect(
            await http.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            ),
            200,
        ).json()
        auth = {"Authorization": f"Bearer {refreshed['access_token']}"}
        for round_number in range(5):
            created = expect(
                await http.post(
                    "/api/v2/tasks",
                    json={"title": f"task {round_number}"},
                    headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                ),
                201,
            ).json()
            read = expect(await http.get(f"/api/v2/tasks/{created['id']}", headers=auth), 200)
            expect(
                await http.patch(
                    f"/api/v2/tasks/{created['id']}",
                    json={"title": f"task {round_number}, renamed"},
                    headers={**auth, "If-Match": read.headers.get("etag", "")},
                ),
                200,
            )
            expect(
                await http.post(
                    f"/api/v2/tasks/{created['id']}/comments", json={"body": "ok"}, headers=auth
                ),
                201,
            )
            expect(await http.get("/api/v2/tasks", params={"limit": 20}, headers=auth), 200)
            expect(await http.get("/api/v1/tasks", headers=auth), 200)
            feed = expect(await http.get("/api/v2/changes", headers=auth), 200).json()
            if not any(item.get("entity_id") == created["id"] for item in feed["items"]):
                problems.append(f"the feed lacks task {created['id']}: {feed}")
    return problems


async def test_every_kind_of_request_behind_pgbouncer(
    pooled: tuple[str, str], tmp_path: Path
) -> None:
    _direct, through_pool = pooled
    env = service_env(through_pool, DB_TRANSACTION_POOLING="true", BCRYPT_ROUNDS="4")
    env["UVICORN_WORKERS"] = "2"
    with serve_process(env, tmp_path / "api.log", ready_path="/readyz") as (base, _process):
        outcomes = await asyncio.gather(*(_a_user_at_work(base, n) for n in range(12)))
    problems = [problem for outcome in outcomes for problem in outcome]
    assert problems == [], "\n".join(problems[:20])


async def test_without_the_setting_the_api_cannot_use_the_pooler(
    pooled: tuple[str, str], tmp_path: Path
) -> None:
    _direct, through_pool = pooled
    env = service_env(through_pool, BCRYPT_ROUNDS="4")
    with serve_process(env, tmp_path / "api.log") as (base, _process):
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            ready = await http.get("/readyz")
    assert ready.status_code == 503
    # The pooler, not some other trouble, refused it.
    assert "unsupported startup parameter: jit" in (tmp_path / "pgbouncer.log").read_text()
