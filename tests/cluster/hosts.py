"""The cluster's hosts: one network namespace per host, joined by veth pairs to a private
bridge that this run creates and removes.

Every name carries the run's process id, so two runs (or a run and whatever else the machine
has) never meet: namespaces `tc<pid>-<role>`, bridge `tcbr<pid>`, veth ends `tcv<pid>x<n>`.
The subnet is a 10.213.x.0/24 that no route or address of the machine's own namespace uses;
the bridge itself has no address, so nothing outside it is reachable from a host, and
nothing of the machine's is reachable from them. `Network.remove` undoes all of it (the
processes inside a namespace are killed first) and is safe to call twice.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


def say(text: str) -> None:
    """A line of the cluster test's report, at once (its output is read as it runs)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, capture_output=True, text=True)


@dataclass(frozen=True)
class Host:
    role: str
    netns: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*self.command(*argv), check=check)


@dataclass
class Network:
    subnet: ipaddress.IPv4Network
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)
    _veths: list[str] = field(default_factory=list)
    _removed: bool = False

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        for host in self.hosts.values():
            _kill_namespace_processes(host.netns)
            run("ip", "netns", "del", host.netns, check=False)
        for veth in self._veths:  # gone with their namespace's end; a half-made one is not
            run("ip", "link", "del", veth, check=False)
        run("ip", "link", "del", self.bridge, check=False)


def _kill_namespace_processes(netns: str) -> None:
    listed = run("ip", "netns", "pids", netns, check=False)
    for pid in listed.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not run("ip", "netns", "pids", netns, check=False).stdout.strip():
            return
        time.sleep(0.05)


def remove_leftovers() -> list[str]:
    """The namespaces and bridges of earlier runs whose process no longer exists (a run that
    was SIGKILLed could not clean up): removed, processes inside first. Names are only ever
    this test's (`tc<pid>-<role>`, `tcbr<pid>`), and only those of dead pids are touched."""
    removed: list[str] = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = _owner_pid(name, prefix="tc", separator="-")
        if pid is not None and not is_alive(pid):
            _kill_namespace_processes(name)
            run("ip", "netns", "del", name, check=False)
            removed.append(f"namespace {name}")
    for line in run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        parts = line.split(":")
        name = parts[1].strip() if len(parts) > 1 else ""
        pid = _owner_pid(name, prefix="tcbr", separator=None)
        if pid is not None and not is_alive(pid):
            run("ip", "link", "del", name, check=False)
            removed.append(f"bridge {name}")
    return removed


def _owner_pid(name: str, *, prefix: str, separator: str | None) -> int | None:
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    digits = rest.split(separator, 1)[0] if separator else rest
    if separator and separator not in rest:
        return None
    return int(digits) if digits.isdigit() else None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that no address or route of this namespace overlaps."""
    used: list[ipaddress.IPv4Network] = []
    for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            first = line.split()[1] if len(line.split()) > 1 else ""
        try:
            used.append(ipaddress.IPv4Network(first, strict=False))
        except ValueError:
            continue
    for line in run("ip", "-4", "-o", "addr").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            used.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    # Start from a place that depends on the pid, so that concurrent runs rarely race.
    for offset in range(256):
        candidate = ipaddress.IPv4Network(f"10.213.{(os.getpid() + offset) % 256}.0/24")
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise RuntimeError("no free 10.213.x.0/24 subnet for the cluster")


def build(roles: Sequence[str]) -> Network:
    """A bridge and one namespace per role, each with `eth0` on the bridge and `lo` up.
    On any failure what was made so far is removed before the error propagates."""
    pid = os.getpid()
    subnet = free_subnet()
    network = Network(subnet=subnet, bridge=f"tcbr{pid}")
    try:
        run("ip", "link", "add", network.bridge, "type", "bridge")
        run("ip", "link", "set", network.bridge, "up")
        addresses = list(subnet.hosts())
        for number, role in enumerate(roles):
            netns = f"tc{pid}-{role}"
            address = str(addresses[10 + number])
            veth = f"tcv{pid}x{number}"
            run("ip", "netns", "add", netns)
            host = Host(role=role, netns=netns, address=address)
            network.hosts[role] = host
            network._veths.append(veth)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            run("ip", "link", "set", veth, "master", network.bridge)
            run("ip", "link", "set", veth, "up")
            host.run("ip", "link", "set", "lo", "up")
            host.run("ip", "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
            host.run("ip", "link", "set", "eth0", "up")
    except BaseException:
        network.remove()
        raise
    return network


def check_reachable(network: Network, target: Host, port: int) -> None:
    """Every host opens a TCP connection to `target`'s port (the bridge forwards): a firewall
    of the machine that drops bridged traffic would otherwise show up later as a confusing
    timeout."""
    probe = (
        "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()"
    )
    for host in network.hosts.values():
        if host is target:
            continue
        answered = host.run("python3", "-c", probe, target.address, str(port), check=False)
        if answered.returncode != 0:
            raise RuntimeError(
                f"host {host.role} cannot reach {target.role}:{port} across bridge "
                f"{network.bridge}: does a firewall drop bridged traffic "
                "(net.bridge.bridge-nf-call-iptables)?"
            )


def cut_off(host: Host, destination: Host) -> None:
    """Packets from `host` to `destination` vanish (a network partition: no error, no reset)."""
    host.run("ip", "route", "add", "blackhole", f"{destination.address}/32")


def reconnect(host: Host, destination: Host) -> None:
    host.run("ip", "route", "del", "blackhole", f"{destination.address}/32", check=False)
