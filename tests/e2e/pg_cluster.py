"""A throwaway PostgreSQL cluster that a test owns and may stop, kill and start at will.

`initdb` makes it in a fresh temporary folder, `pg_ctl` runs it on a free loopback port with
its socket in that folder, trust authentication and `fsync=off` (the tests crash PostgreSQL,
never the machine, so a committed transaction is still in the kernel's page cache). Running as
root, every PostgreSQL binary runs as the `postgres` OS user, which owns the folder. The
shared server on 5432 is never touched.

`throwaway_cluster()` skips the test, loudly, when no PostgreSQL binaries are installed, and
fails it instead with CI=true.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import running_in_ci

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_OS_USER = "postgres"
COMMAND_TIMEOUT_SECONDS = 60
START_TIMEOUT_SECONDS = 30


def find_pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, else PATH's."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=version, reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def skip_or_fail(reason: str) -> NoReturn:
    """Skip loudly (a warning in the summary as well as the skip), or fail with CI=true."""
    if running_in_ci():
        pytest.fail(f"CI=true but a throwaway PostgreSQL cluster is unavailable: {reason}")
    warnings.warn(
        f"POSTGRESQL OUTAGE TESTS SKIPPED: {reason}. Install PostgreSQL's server binaries "
        f"({PG_BIN_GLOB}) to run them.",
        stacklevel=2,
    )
    pytest.skip(f"throwaway PostgreSQL cluster unavailable: {reason}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgCluster:
    """One PostgreSQL cluster in `root`, listening on 127.0.0.1:`port`."""

    def __init__(self, bin_dir: Path, root: Path, port: int, run_as: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.log_file = root / "postgresql.log"
        self.port = port
        self.run_as = run_as

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} {' '.join(args[1:3])} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self.log_tail()}"
            )
        return result

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start and wait until it accepts connections (`pg_ctl -w`)."""
        options = (
            f"-k {self.root} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off "
            "-c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "start",
        )

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """`pg_ctl stop -m smart|fast|immediate`, by default waiting until the postmaster is gone.

        `smart` without waiting leaves a postmaster that refuses new connections ("the
        database system is shutting down") until its last client leaves.
        """
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w" if wait else "-W", "stop")

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def ensure_running(self) -> None:
        if not self.is_running():
            self.start()

    def psql_admin(self, sql: str) -> None:
        """Run one statement as the superuser through the cluster's own socket."""
        self._run(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        )


@contextmanager
def throwaway_cluster() -> Iterator[PgCluster]:
    """A started cluster; stopped (immediately) and deleted when the block ends."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        skip_or_fail(f"no initdb/pg_ctl under {PG_BIN_GLOB} or on PATH")
    run_as: str | None = None
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        try:
            owner = pwd.getpwnam(PG_OS_USER)
        except KeyError:
            skip_or_fail(f"running as root and there is no {PG_OS_USER!r} OS user")
        run_as = PG_OS_USER
    # Under /tmp itself: pytest's own tmp folders are private to the user running pytest.
    root = Path(tempfile.mkdtemp(prefix="pg-outage-"))
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        cluster = PgCluster(bin_dir, root, free_port(), run_as)
        cluster.initdb()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.is_running():
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
