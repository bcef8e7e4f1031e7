"""`make cluster-test`: the service on several hosts, under load, while hosts die.

Builds the hosts (tests/cluster/hosts.py) and their processes (tests/cluster/services.py),
runs the load driver on the client host (tests/cluster/load.py), and meanwhile, at moments
drawn from `CLUSTER_SEED`, in an order drawn from it too:

- SIGKILLs api1 (uvicorn and its workers) and brings it back;
- SIGKILLs work1 while it is in the middle of a job, and brings it back;
- cuts api2 off from PgBouncer for a few seconds (its packets vanish);
- restarts PostgreSQL.

Once every fault has ended and HAProxy sees both API hosts up ("faults over"), it restarts
api1 and then api2 the way docs/deploying.md tells an operator to (drain, SIGTERM, start,
ready): the load must see no failed request at all then. The load driver checks what the
clients saw (load-result.json); this program checks what only the hosts know (each periodic
job ran once per period, from the workers' `job_ran` lines), prints every figure, and exits
non-zero when anything failed. Everything it made (namespaces, bridge, processes, files) is
removed at the end, also on failure or Ctrl-C; `CLUSTER_KEEP=1` keeps the logs' folder.

Run as root: `sudo make cluster-test` (or `CLUSTER_SEED=7 make cluster-test`).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tests.cluster import hosts
from tests.cluster.hosts import say
from tests.cluster.services import (
    BIN,
    LOGIN_ACCOUNT_LIMIT,
    PROJECT_ROOT,
    Cluster,
    http_status,
    missing_programs,
    wait_until,
)

ROLES = ["db", "pool", "cache", "api1", "api2", "work1", "work2", "lb", "client"]
# The jobs that run every second or two: their periods are short enough to count in a run.
FREQUENT_JOBS = {
    "fan_out_events": 1,
    "send_reminders": 1,
    "deliver_webhooks": 1,
    "send_mail": 2,
}
LOAD_SETUP_SECONDS = 180
# The run's folder in the temporary directory: this prefix, then the run's pid.
WORKDIR_PREFIX = "cluster-test-"
# A run's folder kept with CLUSTER_KEEP holds this file: later runs leave it alone.
KEPT_MARK = "kept"
# How long the orchestrator waits for work1 to be in the middle of a delivery.
MID_JOB_WAIT_SECONDS = 30
# The faults are over once everything has answered this long without a break.
RECOVERED_SECONDS = 3.0
# Periods in a row that may go without a run of their own outside the database's restart.
MAX_GAP_PERIODS = 5
WORKER_RECONNECT_SECONDS = 10
LOAD_DRAIN_SECONDS = 240


@dataclass
class Fault:
    """A fault, or the rolling restart: when it ran (monotonic, and wall-clock seconds for
    the job periods, which are Unix times)."""

    name: str
    start: float
    end: float
    detail: str = ""
    wall_start: float = 0.0
    wall_end: float = 0.0


def main() -> int:
    if os.geteuid() != 0:
        say("cluster-test: needs root (network namespaces); run it as root or with sudo")
        return 2
    missing = missing_programs()
    if missing:
        say(f"cluster-test: missing programs: {', '.join(missing)}")
        return 2
    seed = int(os.environ.get("CLUSTER_SEED", "1"))
    rng = random.Random(seed)
    say(f"cluster-test: seed {seed} (CLUSTER_SEED moves the faults' order and moments)")

    def interrupted(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(f"cluster-test: stopped by signal {signum}; cleaning up")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    for leftover in [*hosts.remove_leftovers(), *_remove_leftover_folders()]:
        say(f"cluster-test: removed {leftover}, left by a run that was killed")
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    workdir.chmod(0o755)
    network: hosts.Network | None = None
    cluster: Cluster | None = None
    driver: subprocess.Popen[bytes] | None = None
    # What failed, said again as the run's last lines (the log tails come before them).
    failures: list[str] = []
    ok = False
    try:
        network = hosts.build(ROLES)
        say(f"cluster-test: hosts on {network.subnet} (bridge {network.bridge}):")
        for host in network.hosts.values():
            say(f"  {host.role:<6} {host.address}  netns {host.netns}")
        cluster = Cluster(network, workdir, secret_key=secrets.token_urlsafe(48))
        _start(cluster)
        driver, control = _start_load(cluster, workdir, seed)
        faults, faults_over, rolling = _inject_faults(cluster, rng, control, driver)
        _write_timeline(control, faults, faults_over, rolling)
        (control / "stop-load").touch()
        say("cluster-test: load stopped; the driver drains and checks")
        try:
            driver.wait(timeout=LOAD_DRAIN_SECONDS)
        except subprocess.TimeoutExpired:
            driver.kill()
            say("cluster-test: the load driver did not finish its checks in time")
            failures.append("the load driver did not finish its checks in time")
        failures += _load_failures(control, driver.returncode)
        failures += _check_periodic_jobs(cluster, faults)
        _print_pool_figures(cluster)
        ok = not failures
    except BaseException as error:
        failures.append(f"{type(error).__name__}: {error}")
        say(f"cluster-test: FAILED: {type(error).__name__}: {error}")
        raise
    finally:
        # A second Ctrl-C or a SIGTERM must not cut the cleanup short; each step is tried
        # whatever the one before it did.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        _cleanup(driver, cluster, network, workdir, show_logs=not ok)
        if failures:
            say(f"cluster-test: FAILED (CLUSTER_SEED={seed}):")
            for failure in failures:
                say(f"  - {failure}")
    if ok:
        say(f"cluster-test: PASSED (CLUSTER_SEED={seed})")
    return 0 if ok else 1


def _keep(workdir: Path) -> None:
    (workdir / KEPT_MARK).touch()
    say(f"cluster-test: files kept in {workdir}")


def _remove_leftover_folders() -> list[str]:
    """The work folders of earlier runs whose process no longer exists (named with it), but
    those kept on purpose (CLUSTER_KEEP)."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if (folder / KEPT_MARK).exists():
            continue
        if pid.isdigit() and not hosts.is_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"folder {folder}")
    return removed


def _cleanup(
    driver: subprocess.Popen[bytes] | None,
    cluster: Cluster | None,
    network: hosts.Network | None,
    workdir: Path,
    *,
    show_logs: bool,
) -> None:
    steps: list[tuple[str, Callable[[], None]]] = []
    if driver is not None:
        steps.append(("stop the load driver", lambda: _kill(driver)))
    if cluster is not None:
        if show_logs:
            steps.append(("show the logs", lambda: _print_log_tails(cluster)))
        steps.append(("stop the processes", cluster.stop_all))
    if network is not None:
        steps.append(("remove the hosts and the bridge", network.remove))
    if os.environ.get("CLUSTER_KEEP"):
        steps.append(("keep the files", lambda: _keep(workdir)))
    else:
        steps.append(("remove the files", lambda: shutil.rmtree(workdir, ignore_errors=True)))
    for name, step in steps:
        try:
            step()
        except Exception as error:  # the next step must still run
            say(f"cluster-test: cleanup could not {name}: {type(error).__name__}: {error}")
    say("cluster-test: hosts, bridge and processes removed")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def _start(cluster: Cluster) -> None:
    started = time.monotonic()
    cluster.start_database()
    hosts.check_reachable(cluster.network, cluster.host("db"), 5432)
    cluster.migrate()
    cluster.start_pool()
    cluster.start_cache()
    for role in ("api1", "api2"):
        cluster.processes[role] = cluster.api_process(role)
        cluster.processes[role].start()
    for role in ("api1", "api2"):
        cluster.wait_api_ready(role)
    for role in ("work1", "work2"):
        cluster.start_worker(role)
    cluster.start_lb()
    say(f"cluster-test: every host up in {time.monotonic() - started:.1f} s")


def _start_load(cluster: Cluster, workdir: Path, seed: int) -> tuple[subprocess.Popen[bytes], Path]:
    control = workdir / "control"
    control.mkdir()
    client = cluster.host("client")
    config = {
        "lb_url": cluster.lb_url,
        "api_urls": [cluster.api_url("api1"), cluster.api_url("api2")],
        "receiver_host": client.address,
        "receiver_port": 9000,
        "seed": seed,
        "control_dir": str(control),
        "login_account_limit": LOGIN_ACCOUNT_LIMIT,
    }
    config_path = workdir / "load-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    # The driver's output goes to this program's own: its figures are part of the report.
    driver = subprocess.Popen(
        client.command(str(BIN / "python"), "-m", "tests.cluster.load", str(config_path)),
        cwd=PROJECT_ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"},
    )

    def started() -> bool:
        if driver.poll() is not None:
            raise RuntimeError(f"the load driver exited ({driver.returncode}) during set-up")
        return (control / "load-started").exists()

    wait_until("the load driver starts its load", started, LOAD_SETUP_SECONDS)
    return driver, control


def _inject_faults(
    cluster: Cluster,
    rng: random.Random,
    control: Path,
    driver: subprocess.Popen[bytes],
) -> tuple[list[Fault], float, Fault]:
    def kill_api1() -> str:
        cluster.processes["api1"].kill()
        down = rng.uniform(2, 5)
        time.sleep(down)
        cluster.start_api("api1")
        return f"down {down:.1f} s, then started again"

    def kill_work1() -> str:
        # The receiver holds the next webhook delivery from work1 open: work1 is then in the
        # middle of a job (a delivery leased, sent, not yet written down) when it dies.
        (control / "hold-from").write_text(cluster.host("work1").address)
        try:
            wait_until(
                "work1 in the middle of a webhook delivery",
                (control / "holding").exists,
                MID_JOB_WAIT_SECONDS,
            )
            cluster.processes["work1"].kill()
        finally:
            (control / "hold-from").unlink(missing_ok=True)
        down = rng.uniform(1, 4)
        time.sleep(down)
        cluster.start_worker("work1")
        return f"in the middle of a webhook delivery; down {down:.1f} s"

    def cut_api2() -> str:
        cut = rng.uniform(3, 6)
        hosts.cut_off(cluster.host("api2"), cluster.host("pool"))
        time.sleep(cut)
        hosts.reconnect(cluster.host("api2"), cluster.host("pool"))
        return f"api2's packets to the pool dropped for {cut:.1f} s"

    def restart_db() -> str:
        down = rng.uniform(1, 3)
        how = cluster.restart_database(down)
        return f"{how}, down {down:.1f} s, started"

    plan: list[tuple[str, Callable[[], str]]] = [
        ("kill api1", kill_api1),
        ("kill work1", kill_work1),
        ("cut api2 from the pool", cut_api2),
        ("restart postgresql", restart_db),
    ]
    rng.shuffle(plan)
    load_started = float((control / "load-started").read_text())
    time.sleep(max(0.0, load_started + rng.uniform(3, 8) - time.monotonic()))
    faults: list[Fault] = []
    for name, act in plan:
        if driver.poll() is not None:
            raise RuntimeError(f"the load driver exited ({driver.returncode}) mid-run")
        start = time.monotonic()
        detail = act()
        fault = Fault(
            name,
            start,
            time.monotonic(),
            detail,
            wall_start=time.time() - (time.monotonic() - start),
            wall_end=time.time(),
        )
        faults.append(fault)
        say(
            f"cluster-test: fault {name} at +{start - load_started:.1f} s "
            f"for {fault.end - start:.1f} s: {detail}"
        )
        time.sleep(rng.uniform(2, 6))
    _wait_recovered(cluster)
    faults_over = time.monotonic()
    say(f"cluster-test: faults over at +{faults_over - load_started:.1f} s")
    time.sleep(rng.uniform(2, 5))
    start = time.monotonic()
    for role in ("api1", "api2"):
        cluster.rolling_restart(role)
    rolling = Fault("rolling restart", start, time.monotonic(), "api1, then api2")
    say(
        f"cluster-test: rolling restart of api1 then api2 at +{start - load_started:.1f} s, "
        f"{rolling.end - start:.1f} s"
    )
    time.sleep(max(8.0, load_started + 60 - time.monotonic()))
    return faults, faults_over, rolling


def _wait_recovered(cluster: Cluster) -> None:
    """The faults are over once every part answers again, steadily: HAProxy has seen both
    API hosts up for RECOVERED_SECONDS without a break, and each host's /readyz answers 200
    on both of its processes' turns (a connection that the cut left stuck may take a few
    seconds more than the cut itself)."""
    deadline = time.monotonic() + 90
    steady_since: float | None = None
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster did not recover from the faults within 90 s")
        up = cluster.both_api_hosts_up() and all(
            http_status(cluster.host("lb"), f"{cluster.api_url(role)}/readyz") == 200
            for role in ("api1", "api2", "api1", "api2")
        )
        if not up:
            steady_since = None
        elif steady_since is None:
            steady_since = time.monotonic()
        elif time.monotonic() - steady_since >= RECOVERED_SECONDS:
            return
        time.sleep(0.3)


def _write_timeline(control: Path, faults: list[Fault], faults_over: float, rolling: Fault) -> None:
    timeline = {
        "faults": [{"name": f.name, "start": f.start, "end": f.end} for f in faults],
        "faults_over": faults_over,
        "rolling_restart": {"start": rolling.start, "end": rolling.end},
    }
    # Written whole, then renamed: the driver never reads half of it.
    written = control / "timeline.json.new"
    written.write_text(json.dumps(timeline, indent=2))
    written.rename(control / "timeline.json")


def _load_failures(control: Path, returncode: int | None) -> list[str]:
    """The load checks that failed, each with its reason, from the driver's result."""
    path = control / "load-result.json"
    if not path.exists():
        return [f"the load driver wrote no result (exit code {returncode})"]
    result: dict[str, Any] = json.loads(path.read_text())
    failed = [
        f"load check: {check['name']}" + (f" -> {check['detail']}" if check["detail"] else "")
        for check in result.get("checks", [])
        if not check["ok"]
    ]
    if not failed and (returncode != 0 or not result.get("ok")):
        failed.append(f"the load driver exited with {returncode}")
    return failed


def _check_periodic_jobs(cluster: Cluster, faults: list[Fault]) -> list[str]:
    """Each frequent periodic job ran at most once per period across both workers (and
    work1's restarts), and kept running: periods may go without a run of their own (one
    job waiting already absorbs the next, by its queueing lock) for at most
    MAX_GAP_PERIODS, except while PostgreSQL was away and its workers reconnected."""
    runs: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    # Stalled jobs not handed out again because their next period had begun (a worker
    # killed after a run's work and before its end was recorded).
    superseded: dict[str, int] = defaultdict(int)
    for role in ("work1", "work2"):
        for line in (cluster.logs / f"{role}.log").read_text(errors="replace").splitlines():
            if '"job_ran"' not in line and '"job_superseded"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry["event"] == "job_superseded":
                superseded[entry["job"]] += 1
            else:
                runs[entry["job"]][int(entry["defer_timestamp"])] += 1
    # The database's absence, and the workers' pause (up to 5 s) before they reconnect.
    outages = [
        (f.wall_start - 1, f.wall_end + WORKER_RECONNECT_SECONDS)
        for f in faults
        if f.name == "restart postgresql"
    ]
    failures: list[str] = []
    say("cluster-test: periodic jobs (from the workers' job_ran lines)")
    for job, period in FREQUENT_JOBS.items():
        counts = runs.get(job, {})
        if not counts:
            say(f"  {job}: never ran: FAILED")
            failures.append(f"periodic job {job} never ran")
            continue
        periods = sorted(counts)
        twice = [p for p in periods if counts[p] > 1]
        span = (periods[-1] - periods[0]) // period + 1
        gaps = list(zip(periods, periods[1:], strict=False))
        unexplained = [
            (a, b)
            for a, b in gaps
            if b - a > MAX_GAP_PERIODS * period
            and not any(a < end and b > start for start, end in outages)
        ]
        longest = max((b - a for a, b in gaps), default=0)
        job_ok = not twice and not unexplained
        if not job_ok:
            failures.append(
                f"periodic job {job}: ran twice in periods {twice[:5]}, "
                f"gaps outside the restart {unexplained[:5]}"
            )
        say(
            f"  {job}: every {period} s, {len(periods)} periods ran of {span} in the run, "
            f"{len(twice)} ran twice, {superseded[job]} stalled jobs superseded (not run again), "
            f"longest gap {longest} s, "
            f"{len(unexplained)} gaps over {MAX_GAP_PERIODS} periods outside the database's "
            f"restart: {'ok' if job_ok else 'FAILED'}"
        )
    return failures


def _print_pool_figures(cluster: Cluster) -> None:
    """Who holds PostgreSQL sessions at the end (the API only through the pool, the workers
    straight), and PgBouncer's own totals."""
    sessions = cluster.sql(
        "SELECT coalesce(nullif(application_name, ''), '-'), client_addr, count(*) "
        "FROM pg_stat_activity WHERE datname = 'tasks' GROUP BY 1, 2 ORDER BY 2"
    )
    roles = {host.address: host.role for host in cluster.network.hosts.values()}
    say("cluster-test: PostgreSQL sessions at the end (application, from host, count):")
    for application, address, count in sessions:
        say(f"  {application:<12} {roles.get(address, address):<6} {count}")
    say("cluster-test: PgBouncer (SHOW STATS):")
    for line in cluster.pool_stats():
        say(f"  {line}")


def _print_log_tails(cluster: Cluster) -> None:
    for path in sorted(cluster.logs.iterdir()):
        # The workers log at DEBUG for their job_ran lines; the tail skips that chatter.
        lines = [
            line
            for line in path.read_text(errors="replace").splitlines()
            if '"level": "debug"' not in line
        ]
        tail = "\n".join(lines[-40:])
        say(f"----- {path.name} (last lines)\n{tail}")


if __name__ == "__main__":
    sys.exit(main())
