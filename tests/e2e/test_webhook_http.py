"""`app.jobs.webhook_http.send` against real HTTP receivers on the loopback interface.

Each receiver is an asyncio server on 127.0.0.1 (one on 127.0.0.2, one on ::1) that records
every connection and request and answers by path. Names are resolved by resolvers the tests
control. An autouse guard wraps the event loop's `sock_connect`, through which every TCP
connection the sender makes passes: it records each attempt and refuses any that is not to a
loopback address, so a test handing the sender a private or public destination can neither
send a packet off this machine nor pass unnoticed if the sender tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app.core.destinations import resolve_destination
from app.core.webhook_signing import headers as signed_headers
from app.core.webhook_signing import new_secret
from app.jobs import webhook_http
from app.jobs.webhook_http import MAX_RETRY_AFTER_SECONDS, AttemptResult, retry_after_seconds, send

# Non-public destinations: run in a namespace with only loopback (scripts/run-isolated-tests.sh).
pytestmark = pytest.mark.isolated_network

LOOPBACK = (ip_network("127.0.0.0/8"),)
BODY = json.dumps({"type": "ping", "timestamp": "2026-12-06T08:00:00Z", "data": {}}).encode()
HUGE_BODY_BYTES = 512 * 1024 * 1024


# --- the guard -------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    address = ip_address(host.split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@pytest.fixture(autouse=True)
def connect_attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connect made through the event loop; non-loopback ones are refused."""
    from asyncio import selector_events

    attempts: list[tuple[str, int]] = []
    original = selector_events.BaseSelectorEventLoop.sock_connect

    async def guarded(self: Any, sock: socket.socket, address: Any) -> None:
        attempts.append((str(address[0]), int(address[1])))
        if not _is_loopback(str(address[0])):
            raise OSError(errno.ENETUNREACH, "test guard: only loopback may be reached")
        await original(self, sock, address)

    monkeypatch.setattr(selector_events.BaseSelectorEventLoop, "sock_connect", guarded)
    return attempts


# --- receivers -------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    local_address: str  # the address the sender connected to


Writer = asyncio.StreamWriter


def _response(status: int, reason: str, body: bytes = b"", **extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Received] = field(default_factory=list)
    huge_bytes_sent: int = 0
    huge_done: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str, host: str | None = None, scheme: str = "http") -> str:
        shown = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{shown}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ")
            headers: dict[str, str] = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            local = writer.get_extra_info("sockname")[0]
            self.requests.append(Received(method, target, headers, body, local))
            await self._answer(target, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass  # stopped by the test: end quietly (asyncio logs a cancelled handler)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _answer(self, target: str, writer: Writer) -> None:
        path = target.split("?", 1)[0]
        if path == "/huge":
            await self._answer_huge(writer)
            return
        if path == "/slow":
            await asyncio.sleep(3)
            writer.write(_response(200, "OK", b"too late"))
        elif path == "/slow-body":
            writer.write(_response(200, "OK", b"0123456789" * 10)[:-90])
            await writer.drain()
            await asyncio.sleep(3)
        elif path == "/hang-up":
            return  # closes without an answer
        else:
            writer.write(ANSWERS.get(path, _response(404, "Not Found", b"no such hook")))
        await writer.drain()

    async def _answer_huge(self, writer: Writer) -> None:
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BODY_BYTES}\r\n\r\n".encode("ascii")
        )
        chunk = b"x" * 65536
        try:
            while self.huge_bytes_sent < HUGE_BODY_BYTES:
                writer.write(chunk)
                await writer.drain()
                self.huge_bytes_sent += len(chunk)
        finally:
            self.huge_done.set()


def _http_date(delta: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + delta, usegmt=True)


ANSWERS: dict[str, bytes] = {
    "/ok": _response(200, "OK", b"thanks"),
    "/accepted": _response(202, "Accepted"),
    "/no-content": _response(204, "No Content"),
    "/fail": _response(500, "Internal Server Error", b"boom", Retry_After="5"),
    "/busy": _response(429, "Too Many Requests", b"slow down", Retry_After="30"),
    "/busy-forever": _response(429, "Too Many Requests", Retry_After="999999999"),
    "/busy-garbled": _response(429, "Too Many Requests", Retry_After="soon"),
    "/gone": _response(410, "Gone", b"unsubscribed"),
    "/binary": _response(200, "OK", b"a\x00b\xffc"),
    "/utf8-split": _response(200, "OK", "ééé".encode()),  # cut at 3 bytes: é and half of one
}
for _code in (301, 302, 303, 307, 308):
    ANSWERS[f"/redirect-{_code}"] = _response(_code, "Redirect", Location="http://10.0.0.1/steal")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


class Resolver:
    """Answers each lookup with the next entry of a script (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        index = min(len(self.calls), len(self.answers)) - 1
        return list(self.answers[index])


async def post(
    url: str,
    *,
    timeout: float = 5.0,
    allowed: Any = LOOPBACK,
    resolver: Callable[[str, int], Awaitable[list[str]]] | None = None,
    **kwargs: Any,
) -> AttemptResult:
    headers = {"content-type": "application/json", "webhook-id": "msg_1"}
    return await send(
        url, BODY, headers, timeout=timeout, allowed=allowed, resolver=resolver, **kwargs
    )


# --- outcomes --------------------------------------------------------------------------------


async def test_2xx_is_a_success(
    receiver: Receiver, connect_attempts: list[tuple[str, int]]
) -> None:
    result = await post(receiver.url("/ok?source=tasks"))
    assert result.status_code == 200
    assert result.succeeded
    assert result.error is None
    assert result.response_excerpt == "thanks"
    assert not result.gone
    assert result.retry_after_seconds is None
    assert 0 <= result.duration_ms < 5000
    [seen] = receiver.requests
    assert (seen.method, seen.target, seen.body) == ("POST", "/ok?source=tasks", BODY)
    assert seen.headers["content-length"] == str(len(BODY))
    # The guard sees the sender's connections: the checks below that it saw none mean it.
    assert connect_attempts == [("127.0.0.1", receiver.port)]


@pytest.mark.parametrize(("path", "status"), [("/accepted", 202), ("/no-content", 204)])
async def test_other_2xx_are_successes(receiver: Receiver, path: str, status: int) -> None:
    result = await post(receiver.url(path))
    assert (result.status_code, result.succeeded, result.error) == (status, True, None)
    assert result.response_excerpt == ""


async def test_500_is_a_failure_and_its_retry_after_is_not_honoured(receiver: Receiver) -> None:
    result = await post(receiver.url("/fail"))
    assert result.status_code == 500
    assert not result.succeeded
    assert result.error == "http-status: 500"
    assert result.response_excerpt == "boom"
    assert result.retry_after_seconds is None  # honoured on 429 and 503 only


async def test_404_is_a_failure(receiver: Receiver) -> None:
    result = await post(receiver.url("/nowhere"))
    assert (result.status_code, result.error, result.succeeded) == (404, "http-status: 404", False)


async def test_429_retry_after_seconds(receiver: Receiver) -> None:
    result = await post(receiver.url("/busy"))
    assert result.status_code == 429
    assert result.error == "http-status: 429"
    assert result.retry_after_seconds == 30.0
    assert result.response_excerpt == "slow down"


async def test_503_retry_after_http_date(receiver: Receiver) -> None:
    ANSWERS["/unavailable"] = _response(
        503, "Service Unavailable", Retry_After=_http_date(timedelta(seconds=120))
    )
    result = await post(receiver.url("/unavailable"))
    assert result.status_code == 503
    assert result.retry_after_seconds is not None
    assert 110 <= result.retry_after_seconds <= 121


async def test_retry_after_is_capped_at_a_day_and_garbage_ignored(receiver: Receiver) -> None:
    capped = await post(receiver.url("/busy-forever"))
    assert capped.retry_after_seconds == MAX_RETRY_AFTER_SECONDS == 86400
    garbled = await post(receiver.url("/busy-garbled"))
    assert garbled.status_code == 429
    assert garbled.retry_after_seconds is None


def test_retry_after_values() -> None:
    now = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("0", now) == 0
    assert retry_after_seconds(" 120 ", now) == 120
    assert retry_after_seconds("Sun, 06 Dec 2026 08:02:00 GMT", now) == 120
    assert retry_after_seconds("Sun, 06 Dec 2026 07:00:00 GMT", now) == 0  # in the past
    assert retry_after_seconds("Sun, 01 Jan 2040 00:00:00 GMT", now) == 86400
    assert retry_after_seconds("-5", now) is None
    assert retry_after_seconds("1.5", now) is None
    assert retry_after_seconds("tomorrow", now) is None
    assert retry_after_seconds("", now) is None
    assert retry_after_seconds(None, now) is None


async def test_410_marks_the_webhook_gone(receiver: Receiver) -> None:
    result = await post(receiver.url("/gone"))
    assert result.status_code == 410
    assert result.gone
    assert not result.succeeded
    assert result.error == "http-status: 410"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_to_a_private_address_is_not_followed(
    receiver: Receiver, connect_attempts: list[tuple[str, int]], status: int
) -> None:
    result = await post(receiver.url(f"/redirect-{status}"))
    assert result.status_code == status
    assert not result.succeeded
    assert result.error == f"redirect-not-followed: {status}"
    assert receiver.connections == 1
    assert connect_attempts == [("127.0.0.1", receiver.port)]  # never 10.0.0.1


async def test_2xx_after_the_timeout_is_a_timeout(receiver: Receiver) -> None:
    result = await post(receiver.url("/slow"), timeout=0.5)
    assert result.status_code is None
    assert not result.succeeded
    assert result.error == "timeout"
    assert result.response_excerpt is None
    assert 450 <= result.duration_ms < 2500
    assert len(receiver.requests) == 1  # it was sent; the answer came too late


async def test_the_timeout_covers_resolution(receiver: Receiver) -> None:
    async def stuck(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return ["127.0.0.1"]

    result = await post(receiver.url("/ok", host="hooks.test"), timeout=0.3, resolver=stuck)
    assert result.error == "timeout"
    assert result.duration_ms < 2000
    assert receiver.connections == 0


async def test_status_in_time_with_a_slow_body_keeps_the_status(receiver: Receiver) -> None:
    result = await post(receiver.url("/slow-body"), timeout=0.5)
    assert result.status_code == 200
    assert result.succeeded
    assert result.response_excerpt == "0123456789"
    assert result.duration_ms < 2500


async def test_huge_body_is_read_only_up_to_the_cap(receiver: Receiver) -> None:
    result = await post(receiver.url("/huge"), max_response_bytes=1024)
    assert result.succeeded
    assert result.response_excerpt == "x" * 1024
    await asyncio.wait_for(receiver.huge_done.wait(), 10)
    # The receiver could push only what the socket buffers hold before we hung up.
    assert receiver.huge_bytes_sent < 64 * 1024 * 1024 < HUGE_BODY_BYTES


async def test_default_cap_and_small_caps(receiver: Receiver) -> None:
    assert (await post(receiver.url("/huge"))).response_excerpt == "x" * 1024
    assert (await post(receiver.url("/ok"), max_response_bytes=3)).response_excerpt == "tha"
    assert (await post(receiver.url("/ok"), max_response_bytes=0)).response_excerpt == ""


async def test_excerpt_is_decoded_leniently_and_holds_no_nul(receiver: Receiver) -> None:
    binary = await post(receiver.url("/binary"))
    assert binary.response_excerpt == "a\ufffdb\ufffdc"
    split = await post(receiver.url("/utf8-split"), max_response_bytes=3)
    assert split.response_excerpt == "é\ufffd"


async def test_receiver_hanging_up_is_a_failure(receiver: Receiver) -> None:
    result = await post(receiver.url("/hang-up"))
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith(("protocol-error: ", "connection-lost: "))


async def test_nothing_listening_is_a_connection_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await post(f"http://127.0.0.1:{port}/")
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("connection-failed: ")


async def test_invalid_url_is_a_failure_not_an_exception() -> None:
    result = await post("ftp://example.com/")
    assert result.error == "invalid-url: The webhook URL must start with http:// or https://."


# --- where it connects -------------------------------------------------------------------


async def test_headers_are_sent_and_verify_with_the_library(receiver: Receiver) -> None:
    secret = new_secret()
    sent = signed_headers("msg_42", datetime.now(UTC), BODY, [secret])
    resolver = Resolver(["127.0.0.1"])
    url = receiver.url("/ok", host="hooks.test")
    result = await send(
        url, BODY, {**sent, "Host": "evil.test"}, timeout=5, allowed=LOOPBACK, resolver=resolver
    )
    assert result.succeeded
    [seen] = receiver.requests
    assert seen.headers["host"] == f"hooks.test:{receiver.port}"  # the caller's Host ignored
    assert seen.headers["user-agent"] == sent["user-agent"]
    assert Webhook(secret).verify(seen.body, seen.headers) == json.loads(BODY)


async def test_connects_to_the_resolved_address_and_keeps_the_name(
    receiver: Receiver, connect_attempts: list[tuple[str, int]]
) -> None:
    resolver = Resolver(["127.0.0.1"])
    result = await post(receiver.url("/ok", host="Hooks.Test"), resolver=resolver)
    assert result.succeeded
    assert resolver.calls == [("hooks.test", receiver.port)]
    [seen] = receiver.requests
    assert seen.local_address == "127.0.0.1"
    assert seen.headers["host"] == f"hooks.test:{receiver.port}"
    assert connect_attempts == [("127.0.0.1", receiver.port)]


@pytest.fixture
async def second_receiver(receiver: Receiver) -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.2 at the same port as `receiver`."""
    try:
        other = await Receiver(host="127.0.0.2", port=receiver.port).start()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2:{receiver.port}: {exc}")
    yield other
    await other.stop()


async def test_dns_rebinding_after_the_check_does_not_move_the_connection(
    receiver: Receiver, second_receiver: Receiver
) -> None:
    # Only 127.0.0.1 is allowed. The name answers it once, then 127.0.0.2: a client that
    # looked the name up again would connect there.
    allowed = (ip_network("127.0.0.1/32"),)
    resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
    result = await post(receiver.url("/ok", host="hooks.test"), allowed=allowed, resolver=resolver)
    assert result.succeeded
    assert len(resolver.calls) == 1
    assert [seen.local_address for seen in receiver.requests] == ["127.0.0.1"]
    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"
    assert second_receiver.connections == 0


async def test_dns_rebinding_to_a_refused_address_is_blocked(
    receiver: Receiver, second_receiver: Receiver, connect_attempts: list[tuple[str, int]]
) -> None:
    allowed = (ip_network("127.0.0.1/32"),)
    resolver = Resolver(["127.0.0.2"], ["127.0.0.1"])
    result = await post(receiver.url("/ok", host="hooks.test"), allowed=allowed, resolver=resolver)
    assert (
        result.error == "blocked-destination: hooks.test resolves to 127.0.0.2, a loopback address"
    )
    assert len(resolver.calls) == 1
    assert receiver.connections == second_receiver.connections == 0
    assert connect_attempts == []


async def test_name_public_when_saved_and_private_when_sent_is_blocked(
    receiver: Receiver, connect_attempts: list[tuple[str, int]]
) -> None:
    resolver = Resolver(["93.184.215.14"], ["10.0.0.1"])
    url = receiver.url("/ok", host="hooks.example.com")
    saved = await resolve_destination(url, (), resolver)  # the check when the URL is saved
    assert saved.address == "93.184.215.14"
    result = await post(url, allowed=(), resolver=resolver)
    assert result.error == (
        "blocked-destination: hooks.example.com resolves to 10.0.0.1, a private address"
    )
    assert connect_attempts == []
    assert receiver.connections == 0


@pytest.mark.parametrize(
    ("answers", "allowed", "reason"),
    [
        (["10.0.0.1"], LOOPBACK, "10.0.0.1, a private address"),
        (["169.254.169.254"], LOOPBACK, "169.254.169.254, a cloud metadata address"),
        (["100.64.0.1"], LOOPBACK, "100.64.0.1, a shared (carrier-grade NAT) address"),
        (["::ffff:10.0.0.1"], LOOPBACK, "::ffff:10.0.0.1, which carries 10.0.0.1"),
        (["fd00::1"], LOOPBACK, "fd00::1, a private address"),
        (["127.0.0.1", "10.0.0.1"], LOOPBACK, "10.0.0.1, a private address"),
        (["127.0.0.1"], (), "127.0.0.1, a loopback address"),
        (["::ffff:127.0.0.1"], (), "::ffff:127.0.0.1, which carries 127.0.0.1, a loopback"),
        (["::1"], (), "::1, a loopback address"),
        (["0.0.0.0"], (), "0.0.0.0, an unspecified address"),
    ],
)
async def test_refused_resolutions_send_nothing(
    receiver: Receiver,
    connect_attempts: list[tuple[str, int]],
    answers: list[str],
    allowed: Any,
    reason: str,
) -> None:
    resolver = Resolver(answers)
    result = await post(receiver.url("/ok", host="hooks.test"), allowed=allowed, resolver=resolver)
    assert result.status_code is None
    assert not result.succeeded
    assert result.error is not None
    assert result.error.startswith(f"blocked-destination: hooks.test resolves to {reason}")
    assert connect_attempts == []
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
    ],
)
async def test_ip_spellings_of_the_receiver_are_refused_by_default(
    receiver: Receiver, connect_attempts: list[tuple[str, int]], host: str
) -> None:
    result = await post(receiver.url("/ok", host=host), allowed=())
    assert result.error is not None
    assert result.error.startswith("blocked-destination: the address is ")
    assert connect_attempts == []
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1", "127.1", "017700000001"]
)
async def test_ip_spellings_reach_the_address_they_denote_when_allowed(
    receiver: Receiver, host: str
) -> None:
    result = await post(receiver.url("/ok", host=host))
    assert result.succeeded
    assert receiver.requests[0].local_address == "127.0.0.1"
    assert receiver.requests[0].headers["host"] == f"127.0.0.1:{receiver.port}"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0xa9fea9fe/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00::1]:8080/",
        "http://100.64.0.1/",
        "http://192.168.1.1/",
    ],
)
async def test_private_literals_are_refused_before_connecting(
    url: str, connect_attempts: list[tuple[str, int]]
) -> None:
    result = await post(url, allowed=())
    assert result.error is not None
    assert result.error.startswith("blocked-destination: ")
    assert connect_attempts == []


async def test_unresolvable_name_is_a_failure(connect_attempts: list[tuple[str, int]]) -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = await post("https://nowhere.invalid/", resolver=nxdomain)
    assert result.error == "unresolvable: nowhere.invalid could not be resolved"
    assert connect_attempts == []


async def test_default_resolver_refuses_localhost(
    receiver: Receiver, connect_attempts: list[tuple[str, int]]
) -> None:
    result = await post(receiver.url("/ok", host="localhost"), allowed=())
    assert result.error is not None
    assert result.error.startswith("blocked-destination: localhost resolves to ")
    assert connect_attempts == []
    assert receiver.connections == 0


async def test_ipv6_receiver_gets_a_bracketed_host_header() -> None:
    try:
        server = await Receiver(host="::1").start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        result = await post(server.url("/ok"), allowed=(ip_network("::1/128"),))
        assert result.succeeded
        assert server.requests[0].headers["host"] == f"[::1]:{server.port}"
    finally:
        await server.stop()


# --- no proxy from the environment -------------------------------------------------------


@pytest.fixture
async def proxy() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


@pytest.fixture
def proxy_environment(monkeypatch: pytest.MonkeyPatch, proxy: Receiver) -> str:
    address = f"http://127.0.0.1:{proxy.port}"
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.setenv(name, address)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return address


async def test_proxy_settings_in_the_environment_are_ignored(
    receiver: Receiver, proxy: Receiver, proxy_environment: str
) -> None:
    assert os.environ["HTTP_PROXY"] == proxy_environment
    result = await post(receiver.url("/ok", host="hooks.test"), resolver=Resolver(["127.0.0.1"]))
    assert result.succeeded
    assert len(receiver.requests) == 1
    assert proxy.connections == 0
    # The same environment does send an ordinary httpx client through the "proxy".
    async with httpx.AsyncClient() as ordinary:
        await ordinary.post(receiver.url("/ok"), content=BODY)
    assert proxy.connections == 1
    assert len(receiver.requests) == 1


# --- TLS: certificate and SNI checked against the name, not the address ----------------------


@dataclass
class Certificates:
    ca: Path
    leaf: Path
    key: Path


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=Webhook Test CA", "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hooks.test",
        "-keyout", "leaf.key", "-out", "leaf.csr",
    )  # fmt: skip
    (folder / "leaf.ext").write_text(
        "subjectAltName=DNS:hooks.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "leaf.pem", "-extfile", "leaf.ext",
    )  # fmt: skip
    return Certificates(folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key")


@pytest.fixture
async def tls_receiver(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Receiver, list[str | None]]]:
    server_names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.leaf, certificates.key)

    def remember(_socket: Any, server_name: str | None, _context: Any) -> None:
        server_names.append(server_name)

    context.sni_callback = remember
    client = ssl.create_default_context(cafile=str(certificates.ca))
    monkeypatch.setattr(webhook_http, "_tls_context", lambda: client)
    server = await Receiver(ssl_context=context).start()
    yield server, server_names
    await server.stop()


async def test_https_checks_the_certificate_of_the_name_at_the_resolved_address(
    tls_receiver: tuple[Receiver, list[str | None]],
) -> None:
    server, server_names = tls_receiver
    resolver = Resolver(["127.0.0.1"])
    result = await post(server.url("/ok", host="hooks.test", scheme="https"), resolver=resolver)
    assert result.succeeded, result.error
    assert server_names == ["hooks.test"]  # SNI carries the name
    assert server.requests[0].headers["host"] == f"hooks.test:{server.port}"
    assert server.requests[0].local_address == "127.0.0.1"


async def test_https_refuses_a_certificate_for_another_name(
    tls_receiver: tuple[Receiver, list[str | None]],
) -> None:
    server, server_names = tls_receiver
    resolver = Resolver(["127.0.0.1"])
    result = await post(server.url("/ok", host="other.test", scheme="https"), resolver=resolver)
    assert not result.succeeded
    assert result.error is not None
    assert result.error.startswith("connection-failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert server.requests == []


async def test_https_to_the_bare_address_refuses_a_certificate_for_the_name(
    tls_receiver: tuple[Receiver, list[str | None]],
) -> None:
    server, _ = tls_receiver
    result = await post(server.url("/ok", scheme="https"))
    assert result.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert server.requests == []
