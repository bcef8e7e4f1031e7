"""The app's own middleware: pure ASGI classes, one job each, outermost first.

- `RequestIdMiddleware`: the request's id (the client's `X-Request-ID` when it is plain, a new
  one otherwise), on every log line of the request and on every response;
- `RequestLogMiddleware`: the request's line in the log, once it has been answered;
- `MetricsMiddleware`: the request's count and duration in `/metrics`;
- `LastResortMiddleware`: an error nothing else handled becomes a bare 500 problem, logged;
- `QueryEncodingMiddleware`: a query string whose bytes are not UTF-8 is a 422, on any path;
- `BodySizeLimitMiddleware`: a body over the limit is a 413, counted as it arrives;
- `ProblemCORSMiddleware` (with `CORS_ORIGINS` only): Starlette's CORS, a refused preflight
  answered as a problem.

`app.main.create_app` installs them in that order; ARCHITECTURE.md shows where they stand
among FastAPI's own.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time

import structlog
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.metrics import RequestMetrics
from app.api.problems import problem_response, request_id_of, request_path
from app.core.errors import (
    BadRequest,
    InternalError,
    PayloadTooLarge,
    ValidationFailed,
    error_item,
)

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

log = structlog.get_logger("app.request")
_request_logger = logging.getLogger("app.request")

# A request that takes this long is logged like a failure, whatever its status.
SLOW_REQUEST_SECONDS = 1.0


class RequestIdMiddleware:
    """Every response carries `X-Request-ID`, and every log line of the request its id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id  # for problem bodies
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


class RequestLogMiddleware:
    """One line per answered request: method, route, path, status, duration, user.

    In production the line is written at INFO for failures (4xx, 5xx) and slow requests
    only, and at DEBUG for the rest: rendering and writing a JSON line was a tenth of a
    simple request's CPU, and /metrics counts and times every request anyway (decision 0017).
    """

    def __init__(self, app: ASGIApp, *, log_successes: bool = True) -> None:
        self.app = app
        self.log_successes = log_successes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed = time.perf_counter() - started
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
                    route=RequestMetrics.of(scope).route_label(scope),
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


class MetricsMiddleware:
    """Counts and times every request in `/metrics`, by route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            metrics = RequestMetrics.of(scope)
            metrics.observe(
                metrics.route_label(scope),
                scope["method"],
                status,
                time.perf_counter() - started,
            )


class LastResortMiddleware:
    """Any error no handler answered becomes a bare 500 problem: logged with its traceback
    here, and nothing about it (trace, SQL, path) in the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception:
            log.exception("unhandled_error")
            if response_started:
                raise
            response = problem_response(
                InternalError(), instance=request_path(scope), request_id=request_id_of(scope)
            )
            await response(scope, receive, send)


class QueryEncodingMiddleware:
    """A query string whose bytes are not UTF-8 is a 422 problem, before anything reads it.

    uvicorn refuses such a request itself; other servers pass the bytes on, and Starlette
    would decode them as Latin-1 (or fail, building the request's URL). A query that cannot
    be read is a 422 like any parameter that cannot be read (contract, section 1). What its
    escapes decode to is the route's to read (`app.api.routing`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _is_utf8(scope.get("query_string", b"")):
            error = ValidationFailed(
                "The query string is not valid UTF-8.",
                errors=[error_item(["query"], "must be valid UTF-8", "query_invalid")],
            )
            response = problem_response(
                error, instance=request_path(scope), request_id=request_id_of(scope)
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_utf8(query: bytes) -> bool:
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
                PayloadTooLarge(), instance=request_path(scope), request_id=request_id_of(scope)
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
                    # An HTTPException is the one kind of error FastAPI lets out of body
                    # parsing unchanged; the problem handler renders it as a 413 problem.
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


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, except that a preflight it refuses (an origin, method or header not
    allowed) is a 400 problem like every other error (contract section 1), not its plain
    text "Disallowed CORS origin". The problem names what was refused, never the value."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            # Starlette's own test for a preflight (`CORSMiddleware.__call__`).
            if "origin" in headers and "access-control-request-method" in headers:
                answer = self.preflight_response(request_headers=headers)
                if answer.status_code == 400:
                    refused = bytes(answer.body).decode().removeprefix("Disallowed CORS ")
                    answer = problem_response(
                        BadRequest(f"This cross-origin request is not allowed (its {refused})."),
                        instance=request_path(scope),
                        request_id=request_id_of(scope),
                        # What the refusal depends on, as Starlette's answer says.
                        headers={"Vary": answer.headers["vary"]},
                    )
                await answer(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
