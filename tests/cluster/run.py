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
LOAD_DRAIN_SECONDS = 240


@dataclass
class Fault:
    name: str
    start: float
    end: float
    detail: str = ""


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

    workdir = Path(tempfile.mkdtemp(prefix="cluster-test-"))
    workdir.chmod(0o755)
    network: hosts.Network | None = None
    cluster: Cluster | None = None
    driver: subprocess.Popen[bytes] | None = None
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
        load_ok = driver.returncode == 0 and _load_result_ok(control)
        jobs_ok = _check_periodic_jobs(cluster, faults)
        _print_pool_figures(cluster)
        ok = load_ok and jobs_ok
        say(
            f"cluster-test: load checks {'passed' if load_ok else 'FAILED'}, "
            f"periodic jobs {'passed' if jobs_ok else 'FAILED'}"
        )
    except BaseException as error:
        say(f"cluster-test: FAILED: {type(error).__name__}: {error}")
        raise
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        if cluster is not None:
            if not ok:
                _print_log_tails(cluster)
            cluster.stop_all()
        if network is not None:
            network.remove()
        if os.environ.get("CLUSTER_KEEP"):
            say(f"cluster-test: logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        say("cluster-test: hosts, bridge and processes removed")
    say("cluster-test: PASSED" if ok else "cluster-test: FAILED")
    return 0 if ok else 1


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
        "duration_seconds": 60,
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
        mid_job = _wait_mid_job(cluster, "work1", timeout=5)
        cluster.processes["work1"].kill()
        down = rng.uniform(1, 4)
        time.sleep(down)
        cluster.start_worker("work1")
        return (
            f"{'in the middle of a job' if mid_job else 'no job seen running'}; down {down:.1f} s"
        )

    def cut_api2() -> str:
        cut = rng.uniform(3, 6)
        hosts.cut_off(cluster.host("api2"), cluster.host("pool"))
        time.sleep(cut)
        hosts.reconnect(cluster.host("api2"), cluster.host("pool"))
        return f"api2's packets to the pool dropped for {cut:.1f} s"

    def restart_db() -> str:
        down = rng.uniform(1, 3)
        cluster.restart_database(down)
        return f"fast shutdown, down {down:.1f} s, started"

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
        fault = Fault(name, start, time.monotonic(), detail)
        faults.append(fault)
        say(
            f"cluster-test: fault {name} at +{start - load_started:.1f} s "
            f"for {fault.end - start:.1f} s: {detail}"
        )
        time.sleep(rng.uniform(2, 6))
    wait_until("HAProxy sees both API hosts up after the faults", cluster.both_api_hosts_up, 60)
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


def _wait_mid_job(cluster: Cluster, role: str, timeout: float) -> bool:
    """Whether `role` was seen with a statement running or a transaction open (a job's work,
    not its idle listening connection) before `timeout`."""
    address = cluster.host(role).address
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = cluster.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE client_addr = "
            f"'{address}' AND state IN ('active', 'idle in transaction') "
            "AND pid <> pg_backend_pid()"
        )
        if busy and int(busy[0][0]) > 0:
            return True
        time.sleep(0.02)
    return False


def _write_timeline(control: Path, faults: list[Fault], faults_over: float, rolling: Fault) -> None:
    timeline = {
        "faults": [{"name": f.name, "start": f.start, "end": f.end} for f in faults],
        "faults_over": faults_over,
        "rolling_restart": {"start": rolling.start, "end": rolling.end},
    }
    (control / "timeline.json").write_text(json.dumps(timeline, indent=2))


def _load_result_ok(control: Path) -> bool:
    path = control / "load-result.json"
    if not path.exists():
        say("cluster-test: the load driver wrote no result")
        return False
    result: dict[str, Any] = json.loads(path.read_text())
    return bool(result.get("ok"))


def _check_periodic_jobs(cluster: Cluster, faults: list[Fault]) -> bool:
    """Each frequent periodic job ran at most once per period across both workers (and
    work1's restarts), and kept running: the longest gap between two periods that ran is
    printed, and must stay under the time the database was away plus a few periods."""
    runs: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for role in ("work1", "work2"):
        for line in (cluster.logs / f"{role}.log").read_text(errors="replace").splitlines():
            if '"job_ran"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            runs[entry["job"]][int(entry["period"])] += 1
    db_down = max((f.end - f.start for f in faults if f.name == "restart postgresql"), default=0.0)
    allowed_gap = db_down + 10  # the workers pause up to 5 s before reconnecting
    ok = True
    say("cluster-test: periodic jobs (from the workers' job_ran lines)")
    for job, period in FREQUENT_JOBS.items():
        counts = runs.get(job, {})
        if not counts:
            say(f"  {job}: never ran: FAILED")
            ok = False
            continue
        periods = sorted(counts)
        twice = [p for p in periods if counts[p] > 1]
        span = (periods[-1] - periods[0]) // period + 1
        gaps = [b - a for a, b in zip(periods, periods[1:], strict=False)]
        longest = max(gaps, default=0)
        job_ok = not twice and longest <= allowed_gap
        ok = ok and job_ok
        say(
            f"  {job}: every {period} s, {len(periods)} periods ran of {span} in the run, "
            f"{len(twice)} ran twice, longest gap {longest} s (allowed {allowed_gap:.0f}): "
            f"{'ok' if job_ok else 'FAILED'}"
        )
    return ok


def _print_pool_figures(cluster: Cluster) -> None:
    busy = cluster.sql(
        "SELECT application_name, client_addr, count(*) FROM pg_stat_activity "
        "WHERE datname = 'tasks' GROUP BY 1, 2 ORDER BY 2"
    )
    say("cluster-test: PostgreSQL sessions at the end (application, from, count):")
    for row in busy:
        say(f"  {' '.join(row)}")


def _print_log_tails(cluster: Cluster) -> None:
    for path in sorted(cluster.logs.iterdir()):
        text = path.read_text(errors="replace")
        tail = "\n".join(line for line in text.splitlines()[-40:] if '"job_ran"' not in line)
        say(f"----- {path.name} (last lines)\n{tail}")


if __name__ == "__main__":
    sys.exit(main())
