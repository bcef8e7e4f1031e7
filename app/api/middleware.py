"""Pure ASGI middleware: request id, per-request log line, last-resort 500 problem."""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time

import structlog
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem_response
from app.core.errors import InternalError, PayloadTooLarge, ValidationFailed

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

log = structlog.get_logger("app.request")
_request_logger = logging.getLogger("app.request")

# A request that takes this long is logged like a failure, whatever its status.
SLOW_REQUEST_SECONDS = 1.0


class RequestContextMiddleware:
    """Gives every response an `X-Request-ID` and turns any unhandled error into a bare 500.

    It sits just inside Starlette's ServerErrorMiddleware, so even a crash gets a problem
    body carrying the request id, and nothing else (no trace, no SQL, no path).
    """

    def __init__(self, app: ASGIApp, *, log_successes: bool = True) -> None:
        self.app = app
        # In production the per-request line is written at INFO for failures (4xx, 5xx)
        # and slow requests only, and at DEBUG for the rest: rendering and writing a JSON
        # line was a tenth of a simple request's CPU, and /metrics already counts and times
        # every request. See docs/decisions/0017-authenticated-read-round-trips.md.
        self.log_successes = log_successes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        header = (b"x-request-id", request_id.encode("ascii"))
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [*message.get("headers", []), header]
                # Headers decided before the response existed (rate-limit state), unless the
                # response already carries them (a 429 does).
                extra: dict[str, str] = scope["state"].get("response_headers", {})
                if extra:
                    present = {name.lower() for name, _ in headers}
                    headers += [
                        (name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in extra.items()
                        if name.lower().encode("latin-1") not in present
                    ]
                message["headers"] = headers
            await send(message)

        try:
            if not _query_is_text(scope):
                # Starlette decodes the query as UTF-8 wherever it builds the request's URL
                # (routes, problem handlers) and would fail with a 500. uvicorn refuses such
                # a request itself; other servers pass the bytes on. A 422 like any query
                # parameter that cannot be read (contract, section 1).
                response = problem_response(
                    ValidationFailed(
                        "The query string is not valid UTF-8.",
                        errors=[_UNDECODABLE_QUERY],
                    ),
                    instance=scope.get("path", ""),
                    request_id=request_id,
                )
                await response(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_error")
            if response_started:
                raise
            response = problem_response(
                InternalError(), instance=scope.get("path", ""), request_id=request_id
            )
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
            route = metrics.route_label(scope) if metrics is not None else None
            if metrics is not None and route is not None:
                metrics.observe(route, str(scope.get("method", "")), status, elapsed)
            if self.log_successes or status >= 400 or elapsed >= SLOW_REQUEST_SECONDS:
                emit = log.info
            elif _request_logger.isEnabledFor(logging.DEBUG):
                emit = log.debug
            else:
                emit = None
            if emit is not None:
                emit(
                    "request",
                    method=scope.get("method"),
                    route=route,
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    user_id=scope["state"].get("user_id"),
                )


_UNDECODABLE_QUERY = {"loc": ["query"], "msg": "Not valid UTF-8", "type": "query_invalid"}


def _query_is_text(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    if query.isascii():
        return True
    try:
        query.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            try:
                candidate: str = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _CLIENT_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return new_request_id()


class _RequestIds:
    """32 hex digits: a random prefix per process and a counter (no syscall per request,
    unlike uuid4). A forked child draws a new prefix."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(secrets.randbelow(2**32))

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


new_request_id = _RequestIds()


class BodySizeLimitMiddleware:
    """413 for bodies over `max_bytes`, counted on the bytes actually received.

    A declared Content-Length over the limit is refused before reading anything; a chunked
    or lying body is cut off as soon as the running count passes the limit, so memory never
    holds more than the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = problem_response(
                PayloadTooLarge(),
                instance=scope.get("path", ""),
                request_id=scope.get("state", {}).get("request_id", ""),
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException is the one kind FastAPI lets out of body parsing
                    # unchanged; the problem handler renders it as a 413 problem.
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
