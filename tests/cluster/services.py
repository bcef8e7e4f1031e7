"""The cluster's processes, each on its host: PostgreSQL (from the server binaries, its own
data directory), PgBouncer in transaction mode, Redis, two API hosts (uvicorn, 2 worker
processes each) behind HAProxy, and two job workers that talk straight to PostgreSQL.

Each process runs in its own process group, so that a SIGKILL takes a uvicorn supervisor and
its workers together, as a host that dies would. Configuration files and logs live in the
run's work directory; what each host is told (its environment) is what docs/deploying.md
tells an operator to set.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.hosts import Host, Network

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = PROJECT_ROOT / ".venv" / "bin"
API_PORT = 8000
LB_PORT = 8080
POOL_PORT = 6432
DATABASE = "tasks"
# The limit the cross-host check counts to; the others are raised out of the load's way (the
# load comes from one client address).
LOGIN_ACCOUNT_LIMIT = 5
# How long a fast shutdown of PostgreSQL may take before it is made an immediate one.
FAST_SHUTDOWN_SECONDS = 10
# The header on HAProxy's own error answers.
LB_ERROR_HEADER = "X-Load-Balancer-Error"


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL's server binaries (pg_ctl) are not installed")
    return Path(found[-1]).parent


def missing_programs() -> list[str]:
    needed = ["haproxy", "pgbouncer", "redis-server", "ip", "runuser", "psql"]
    missing = [name for name in needed if shutil.which(name) is None]
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        missing.append("pg_ctl (postgresql server binaries)")
    return missing


@dataclass
class Process:
    """One long-running program on a host, started (and started again) the same way."""

    name: str
    host: Host
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        with self.log_path.open("ab") as log:
            log.write(f"=== start {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.host.command(*prefix, *self.argv),
                cwd=PROJECT_ROOT,
                env={**_base_env(), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """As a host that dies: the whole process group at once, no goodbye."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL if it outlasts `timeout`."""
        if self.popen is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


def _base_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ")
    return {name: os.environ[name] for name in keep if name in os.environ}


def wait_until(what: str, check: Callable[[], bool], timeout: float, *, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def http_status(host: Host, url: str) -> int | None:
    """The status of a GET from `host` (None when nothing answered)."""
    probe = (
        "import sys,urllib.request,urllib.error\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "except Exception:\n"
        "    print(0)\n"
    )
    answered = host.run("python3", "-c", probe, url, check=False)
    status = int(answered.stdout.strip() or 0)
    return status or None


class Cluster:
    """Every host's processes, their configuration and the operations the test performs."""

    def __init__(self, network: Network, workdir: Path, secret_key: str) -> None:
        self.network = network
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.logs, "postgres", "postgres")  # pg_ctl writes its log itself
        self.secret_key = secret_key
        self.pg_bin = postgres_bin()
        self.pg_data = workdir / "pgdata"
        self.haproxy_socket = workdir / "haproxy.sock"
        self.processes: dict[str, Process] = {}

    def host(self, role: str) -> Host:
        return self.network[role]

    # --- configuration -------------------------------------------------------------------

    @property
    def direct_database_url(self) -> str:
        return f"postgresql://postgres@{self.host('db').address}:5432/{DATABASE}"

    @property
    def pooled_database_url(self) -> str:
        return f"postgresql://postgres@{self.host('pool').address}:{POOL_PORT}/{DATABASE}"

    def api_url(self, role: str) -> str:
        return f"http://{self.host(role).address}:{API_PORT}"

    @property
    def lb_url(self) -> str:
        return f"http://{self.host('lb').address}:{LB_PORT}"

    def _service_env(self) -> dict[str, str]:
        """What API hosts and workers are both given (docs/deploying.md, "Settings per
        host")."""
        return {
            "ENVIRONMENT": "production",
            "SECRET_KEY": self.secret_key,
            # The cluster signs up and logs in many users: cost 4 keeps bcrypt out of the way
            # of what is being tested (2 cores run every host).
            "BCRYPT_ROUNDS": "4",
            "WEBHOOK_ALLOWED_NETWORKS": str(self.network.subnet),
            "WEBHOOK_RETRY_SCHEDULE": "1,2,4,8",
            "WEBHOOK_TIMEOUT_SECONDS": "5",
            "LOG_LEVEL": "INFO",
        }

    def api_env(self) -> dict[str, str]:
        return {
            **self._service_env(),
            "DATABASE_URL": self.pooled_database_url,
            "DB_TRANSACTION_POOLING": "true",
            "DB_POOL_SIZE": "5",
            "DB_MAX_OVERFLOW": "5",
            "DB_POOL_TIMEOUT_SECONDS": "5",
            "REDIS_URL": f"redis://{self.host('cache').address}:6379/0",
            "TRUSTED_PROXIES": self.host("lb").address,
            # The limit the cross-host check counts to; the others are raised out of the
            # load's way (the load comes from one client address).
            "RATE_LIMIT_LOGIN_ACCOUNT": f"{LOGIN_ACCOUNT_LIMIT}/minute",
            "RATE_LIMIT_LOGIN_IP": "100000/minute",
            "RATE_LIMIT_REGISTER_IP": "100000/hour",
            "RATE_LIMIT_USER": "100000/minute",
            "RATE_LIMIT_ANONYMOUS_IP": "100000/minute",
        }

    def worker_env(self) -> dict[str, str]:
        return {
            **self._service_env(),
            # Straight to PostgreSQL: the job engine listens for new jobs (LISTEN/NOTIFY)
            # and keeps session state that a transaction pooler would not keep.
            "DATABASE_URL": self.direct_database_url,
            # One line per job run (`job_ran`): what the once-per-period check counts.
            "LOG_LEVEL": "DEBUG",
        }

    # --- the database -----------------------------------------------------------------------

    def start_database(self) -> None:
        db = self.host("db")
        self.pg_data.mkdir()
        shutil.chown(self.pg_data, "postgres", "postgres")
        self._as_postgres(
            db,
            str(self.pg_bin / "initdb"),
            "-D",
            str(self.pg_data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        with (self.pg_data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{db.address}'\nport = 5432\n"
                f"unix_socket_directories = '{self.pg_data}'\n"
                "max_connections = 200\n"
                # PgBouncer refuses startup parameters it does not know, so the API cannot
                # ask for jit off per session behind it: the database says it.
                "jit = off\n"
                # The restarts here are clean shutdowns, which write everything out; fsync
                # would only slow the 2 cores that run every host.
                "fsync = off\n"
            )
        with (self.pg_data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.network.subnet} trust\n")
        self.pg_ctl("start")
        db.run("createdb", "-h", db.address, "-U", "postgres", DATABASE)

    def pg_ctl(self, action: str, *extra: str, wait_seconds: int = 60) -> None:
        self._as_postgres(
            self.host("db"),
            str(self.pg_bin / "pg_ctl"),
            "-D",
            str(self.pg_data),
            "-l",
            str(self.logs / "postgresql.log"),
            "-w",
            "-t",
            str(wait_seconds),
            action,
            *extra,
        )

    def restart_database(self, down_seconds: float) -> str:
        """A fast shutdown (sessions ended, as a restart for an upgrade does), a pause, a
        start. A fast shutdown once waited a full minute for one backend (seen once, not
        explained); after FAST_SHUTDOWN_SECONDS it becomes an immediate one (crash recovery
        at the start, nothing lost), as an operator would do. Says which it was."""
        how = "fast shutdown"
        try:
            self.pg_ctl("stop", "-m", "fast", wait_seconds=FAST_SHUTDOWN_SECONDS)
        except RuntimeError:
            self.pg_ctl("stop", "-m", "immediate")
            how = f"fast shutdown still waiting after {FAST_SHUTDOWN_SECONDS} s, then immediate"
        time.sleep(down_seconds)
        self.pg_ctl("start")
        return how

    def _as_postgres(self, host: Host, *argv: str) -> None:
        done = host.run("runuser", "-u", "postgres", "--", *argv, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def sql(self, statement: str) -> list[list[str]]:
        db = self.host("db")
        done = db.run(
            "psql",
            "-h",
            db.address,
            "-U",
            "postgres",
            "-d",
            DATABASE,
            "-AtF",
            "\t",
            "-c",
            statement,
        )
        return [line.split("\t") for line in done.stdout.splitlines() if line]

    def pool_stats(self) -> list[str]:
        """PgBouncer's SHOW STATS for the database, through its admin console."""
        pool = self.host("pool")
        done = pool.run(
            "psql",
            "-h",
            pool.address,
            "-p",
            str(POOL_PORT),
            "-U",
            "postgres",
            "-d",
            "pgbouncer",
            "-c",
            "SHOW STATS",
            check=False,
        )
        return done.stdout.splitlines() if done.returncode == 0 else [done.stderr.strip()]

    def migrate(self) -> None:
        done = subprocess.run(
            self.host("work1").command(str(BIN / "alembic"), "upgrade", "head"),
            cwd=PROJECT_ROOT,
            env={**_base_env(), **self.worker_env(), "LOG_LEVEL": "INFO"},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"alembic upgrade head failed:\n{done.stdout}{done.stderr}")

    # --- the other services -----------------------------------------------------------------

    def start_pool(self) -> None:
        pool = self.host("pool")
        directory = self.workdir / "pgbouncer"
        directory.mkdir()
        (directory / "userlist.txt").write_text('"postgres" ""\n')
        (directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{DATABASE} = host={self.host('db').address} port=5432 dbname={DATABASE}\n"
            "[pgbouncer]\n"
            f"listen_addr = {pool.address}\nlisten_port = {POOL_PORT}\n"
            f"unix_socket_dir = {directory}\n"
            "auth_type = trust\n"
            f"auth_file = {directory / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            # 2 API hosts x 2 processes x (DB_POOL_SIZE + DB_MAX_OVERFLOW) = 40 clients.
            "max_client_conn = 400\n"
            "default_pool_size = 20\n"
            # A client waiting for a server (the database restarting) gives up after this,
            # and the API answers 503 with Retry-After, rather than hanging.
            "query_wait_timeout = 5\n"
            "server_connect_timeout = 3\n"
            "server_login_retry = 1\n"
            "admin_users = postgres\n"
        )
        shutil.chown(directory, "postgres", "postgres")
        for path in directory.iterdir():
            shutil.chown(path, "postgres", "postgres")
        self._add(
            Process(
                "pool",
                pool,
                ["pgbouncer", str(directory / "pgbouncer.ini")],
                self.logs / "pgbouncer.log",
                user="postgres",
            )
        )
        wait_until("PgBouncer listens", lambda: _listening(pool, pool.address, POOL_PORT), 15)

    def start_cache(self) -> None:
        cache = self.host("cache")
        self._add(
            Process(
                "cache",
                cache,
                [
                    "redis-server",
                    "--bind",
                    cache.address,
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                self.logs / "redis.log",
            )
        )
        wait_until("Redis listens", lambda: _listening(cache, cache.address, 6379), 15)

    def api_process(self, role: str) -> Process:
        host = self.host(role)
        return Process(
            role,
            host,
            [
                str(BIN / "uvicorn"),
                "app.main:app",
                "--host",
                host.address,
                "--port",
                str(API_PORT),
                "--workers",
                "2",
                "--timeout-graceful-shutdown",
                "10",
                "--no-access-log",
            ],
            self.logs / f"{role}.log",
            env=self.api_env(),
        )

    def worker_process(self, role: str) -> Process:
        return Process(
            role,
            self.host(role),
            [str(BIN / "python"), "-m", "app.cli", "worker"],
            self.logs / f"{role}.log",
            env=self.worker_env(),
        )

    def start_api(self, role: str) -> None:
        process = self.processes.get(role) or self.api_process(role)
        self.processes[role] = process
        process.start()
        self.wait_api_ready(role)

    def wait_api_ready(self, role: str, timeout: float = 60) -> None:
        url = f"{self.api_url(role)}/readyz"
        # Each probe starts a Python in the host: every 0.3 s is enough.
        wait_until(
            f"{role} ready",
            lambda: http_status(self.host("lb"), url) == 200,
            timeout,
            every=0.3,
        )

    def start_worker(self, role: str) -> None:
        process = self.processes.get(role) or self.worker_process(role)
        self.processes[role] = process
        process.start()

    def start_lb(self) -> None:
        lb = self.host("lb")
        directory = self.workdir / "haproxy"
        directory.mkdir()
        body = json.dumps(
            {
                "type": "urn:tasks-api:problem:service-unavailable",
                "title": "Service unavailable",
                "status": 503,
                "detail": "No API host could answer; retry later.",
            }
        )
        # HAProxy's own answers (no host up, a host that died mid-request, a timeout) are
        # one 503 problem with Retry-After: a client retries it, as it retries the API's own.
        (directory / "503.http").write_text(
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/problem+json\r\n"
            "Retry-After: 1\r\n"
            "Cache-Control: no-store\r\n"
            # Which 503s the load balancer made (a host died or timed out mid-request: the
            # outcome of a request that was not retried is unknown), for the figures.
            f"{LB_ERROR_HEADER}: 1\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n"
            "\r\n"
            f"{body}"
        )
        servers = "\n".join(
            f"    server {role} {self.host(role).address}:{API_PORT}" for role in ("api1", "api2")
        )
        config = HAPROXY_CONFIG.format(
            socket=self.haproxy_socket,
            errorfile=directory / "503.http",
            bind=f"{lb.address}:{LB_PORT}",
            servers=servers,
        )
        (directory / "haproxy.cfg").write_text(config)
        checked = lb.run("haproxy", "-c", "-f", str(directory / "haproxy.cfg"), check=False)
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy.cfg refused:\n{checked.stdout}{checked.stderr}")
        self._add(
            Process(
                "lb",
                lb,
                ["haproxy", "-db", "-f", str(directory / "haproxy.cfg")],
                self.logs / "haproxy.log",
            )
        )
        wait_until("HAProxy sees both API hosts up", self.both_api_hosts_up, 30)

    def _add(self, process: Process) -> None:
        self.processes[process.name] = process
        process.start()

    # --- HAProxy's runtime API ----------------------------------------------------------------

    def haproxy(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(self.haproxy_socket))
            connection.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's `show stat` for the API hosts: status (UP, DOWN, DRAIN, MAINT), scur..."""
        lines = self.haproxy("show stat").splitlines()
        if not lines:
            return {}
        header = lines[0].lstrip("# ").split(",")
        rows: dict[str, dict[str, str]] = {}
        for line in lines[1:]:
            values = dict(zip(header, line.split(","), strict=False))
            if values.get("pxname") == "be_api" and values.get("svname") in ("api1", "api2"):
                rows[values["svname"]] = values
        return rows

    def both_api_hosts_up(self) -> bool:
        try:
            stats = self.server_stats()
        except OSError:
            return False
        return all(stats.get(role, {}).get("status") == "UP" for role in ("api1", "api2"))

    def rolling_restart(self, role: str) -> None:
        """Take one API host out of rotation without failing a request: drain it in the load
        balancer, wait for its requests to finish, stop it gracefully, start it, and put it
        back once it is ready and HAProxy's checks see it up."""
        self.haproxy(f"set server be_api/{role} state drain")
        wait_until(
            f"{role} drained",
            lambda: self.server_stats().get(role, {}).get("scur") == "0",
            30,
        )
        self.processes[role].stop()
        self.start_api(role)
        self.haproxy(f"set server be_api/{role} state ready")
        wait_until(f"HAProxy sees {role} up", self.both_api_hosts_up, 30)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes.values())):
            try:
                process.stop(timeout=10)
            except (OSError, subprocess.SubprocessError):
                pass  # the namespace's removal kills whatever is left
        if (self.pg_data / "postmaster.pid").exists():
            try:
                self.pg_ctl("stop", "-m", "immediate")
            except RuntimeError:
                pass


def _listening(host: Host, address: str, port: int) -> bool:
    probe = (
        "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()"
    )
    return host.run("python3", "-c", probe, address, str(port), check=False).returncode == 0


HAPROXY_CONFIG = """\
global
    maxconn 4000
    stats socket {socket} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 35s
    timeout check 4s
    timeout http-request 10s
    retries 3
    option redispatch 1
    option http-buffer-request
    # A new connection to a host for each request: reusing idle ones races with the host
    # closing them (uvicorn's keep-alive timeout, a restart) (docs/deploying.md).
    option http-server-close
    errorfile 502 {errorfile}
    errorfile 503 {errorfile}
    errorfile 504 {errorfile}

frontend fe_api
    bind {bind}
    option forwardfor
    http-request deny deny_status 404 if {{ path /metrics }}
    default_backend be_api

backend be_api
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server check inter 500ms fall 3 rise 2
    retry-on conn-failure empty-response response-timeout 502 503 504
    acl replayable method GET HEAD PUT DELETE OPTIONS
    acl keyed req.hdr(Idempotency-Key) -m found
    http-request disable-l7-retry unless replayable || keyed
{servers}
"""
