"""One attempt to POST a webhook delivery, safe against server-side request forgery.

Spec api-v2 section 9. `send` resolves the URL's host once (`resolve_destination`, which
refuses any address that is not public unless WEBHOOK_ALLOWED_NETWORKS allows it) and then
connects to exactly that address, keeping the host name for the Host header, TLS SNI and the
certificate check: the connection pool's network backend dials the checked address whatever
host it is asked for, so a second lookup (DNS rebinding) cannot change where it goes.

Redirects are never followed (a 3xx is a failure), no proxy is taken from the environment
(httpcore is used directly; it reads no environment variables), one deadline covers
resolution, connecting, sending and the response headers, and at most `max_response_bytes` of
the body are read. `send` never raises for anything the receiver or the network does: every
outcome is an `AttemptResult` for the delivery log.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import certifi
import httpcore

from app.core.bounds import WEBHOOK_RESPONSE_KEPT_BYTES
from app.core.destinations import (
    BlockedDestination,
    Destination,
    InvalidWebhookUrl,
    IPNetwork,
    Resolver,
    UnresolvableDestination,
    resolve_destination,
)

__all__ = ["MAX_RETRY_AFTER_SECONDS", "AttemptResult", "retry_after_seconds", "send"]

# A Retry-After further away than this is read as this: a receiver cannot park a delivery.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
# Largest read from the connection at once, so little is read past max_response_bytes.
_READ_CHUNK_BYTES = 8 * 1024
_ERROR_TAIL_CHARACTERS = 200
# Headers the sender sets itself (from the URL and the body), whatever the caller passes.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt did, as the delivery log records it."""

    status_code: int | None  # the receiver's status, None if none arrived in time
    response_excerpt: str | None  # at most max_response_bytes of the body, decoded leniently
    error: str | None  # "<code>: <detail>" for a failure, None on success
    duration_ms: int
    retry_after_seconds: float | None  # from Retry-After on a 429 or 503, capped at a day
    succeeded: bool  # a 2xx within the timeout
    gone: bool  # a 410: the webhook is to be disabled


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # The CA bundle httpx uses; built once, as loading it takes a while.
    return ssl.create_default_context(cafile=certifi.where())


class _CappedStream(httpcore.AsyncNetworkStream):
    """A connection whose reads are small, so the body is not read far past the cap."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(min(max_bytes, _READ_CHUNK_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _CappedStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials the checked address, whatever host httpcore asks for (it asks for the name)."""

    def __init__(self, destination: Destination) -> None:
        self._destination = destination
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # A pool is made for one destination: anything else asked of it is a bug.
        if (host, port) != (self._destination.host, self._destination.port):
            raise httpcore.ConnectError("the connection is not to the checked destination")
        stream = await self._backend.connect_tcp(
            self._destination.address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        return _CappedStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _clean(text: str) -> str:
    # The log lives in PostgreSQL text columns, which cannot hold NUL.
    return text.replace("\x00", "\ufffd")


def _tail(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return _clean(text[:_ERROR_TAIL_CHARACTERS])


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date), capped at a day."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC without saying so
        when = when.replace(tzinfo=UTC)
    delay = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delay, 0.0), MAX_RETRY_AFTER_SECONDS)


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _status_error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"redirect-not-followed: {status}"
    return f"http-status: {status}"


def _request_headers(
    destination: Destination, headers: Mapping[str, str]
) -> list[tuple[bytes, bytes]]:
    own = [(b"Host", destination.host_header.encode("ascii"))]
    given = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.items()
        if name.lower() not in _OWN_HEADERS
    ]
    return own + given


async def _read_excerpt(response: httpcore.Response, limit: int, kept: bytearray) -> None:
    """Append up to `limit` bytes of the body to `kept` (which keeps them if time runs out)."""
    if limit <= 0:
        return
    async for chunk in response.aiter_stream():
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break  # the rest is never read: closing the response drops the connection


class _Timing:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


async def _post(
    destination: Destination,
    body: bytes,
    headers: Mapping[str, str],
    deadline: float,
    max_response_bytes: int,
    timing: _Timing,
) -> AttemptResult:
    loop = asyncio.get_running_loop()
    budget = max(deadline - loop.time(), 0.001)
    pool = httpcore.AsyncConnectionPool(
        ssl_context=_tls_context(),
        max_connections=1,
        keepalive_expiry=0,
        http1=True,
        http2=False,
        retries=0,
        network_backend=_PinnedBackend(destination),
    )
    url = httpcore.URL(
        scheme=destination.scheme.encode("ascii"),
        host=destination.host.encode("ascii"),
        port=destination.port,
        target=destination.target.encode("ascii"),
    )
    extensions = {
        "timeout": {"connect": budget, "read": budget, "write": budget, "pool": budget},
    }
    async with pool, contextlib.AsyncExitStack() as exchange:
        async with asyncio.timeout_at(deadline):
            response = await exchange.enter_async_context(
                pool.stream(
                    "POST",
                    url,
                    headers=_request_headers(destination, headers),
                    content=body,
                    extensions=extensions,
                )
            )
        status = response.status
        excerpt = bytearray()
        try:
            # The status arrived in time; the body is read for the log within what is left
            # of the deadline, and a slow or broken body only shortens the excerpt.
            async with asyncio.timeout_at(deadline):
                await _read_excerpt(response, max_response_bytes, excerpt)
        except (
            TimeoutError,
            httpcore.TimeoutException,
            httpcore.ReadError,
            httpcore.RemoteProtocolError,
        ):
            pass
    retry_after = (
        retry_after_seconds(_header(response, b"retry-after")) if status in (429, 503) else None
    )
    return AttemptResult(
        status_code=status,
        response_excerpt=_clean(bytes(excerpt).decode("utf-8", errors="replace")),
        error=_status_error(status),
        duration_ms=timing.elapsed_ms(),
        retry_after_seconds=retry_after,
        succeeded=200 <= status < 300,
        gone=status == 410,
    )


def _failure(error: str, timing: _Timing) -> AttemptResult:
    return AttemptResult(
        status_code=None,
        response_excerpt=None,
        error=error,
        duration_ms=timing.elapsed_ms(),
        retry_after_seconds=None,
        succeeded=False,
        gone=False,
    )


async def send(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allowed: Sequence[IPNetwork],
    resolver: Resolver | None = None,
    max_response_bytes: int = WEBHOOK_RESPONSE_KEPT_BYTES,
) -> AttemptResult:
    """POST `body` to `url` once; report what happened, never raising for the far side.

    `timeout` seconds cover resolving, connecting, sending and receiving the status: a 2xx
    that arrives later is a "timeout" failure.
    """
    timing = _Timing()
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            destination = await resolve_destination(url, allowed, resolver)
        return await _post(destination, body, headers, deadline, max_response_bytes, timing)
    except (TimeoutError, httpcore.TimeoutException):
        return _failure("timeout", timing)
    except InvalidWebhookUrl as exc:
        return _failure(f"invalid-url: {_tail(exc)}", timing)
    except BlockedDestination as exc:
        return _failure(f"blocked-destination: {_tail(exc)}", timing)
    except UnresolvableDestination as exc:
        return _failure(f"unresolvable: {_tail(exc)}", timing)
    except httpcore.ConnectError as exc:
        return _failure(f"connection-failed: {_tail(exc)}", timing)
    except (httpcore.ReadError, httpcore.WriteError) as exc:
        return _failure(f"connection-lost: {_tail(exc)}", timing)
    except httpcore.ProtocolError as exc:
        return _failure(f"protocol-error: {_tail(exc)}", timing)
    except (httpcore.NetworkError, httpcore.UnsupportedProtocol, OSError) as exc:
        # ssl.SSLError and socket errors that escaped httpcore's mapping are OSErrors.
        return _failure(f"connection-failed: {_tail(exc)}", timing)
