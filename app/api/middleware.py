"""Pure ASGI middleware: request id, per-request log line, last-resort 500 problem."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem_response
from app.core.errors import InternalError, PayloadTooLarge

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

log = structlog.get_logger("app.request")


class RequestContextMiddleware:
    """Gives every response an `X-Request-ID` and turns any unhandled error into a bare 500.

    It sits just inside Starlette's ServerErrorMiddleware, so even a crash gets a problem
    body carrying the request id, and nothing else (no trace, no SQL, no path).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            log.info(
                "request",
                method=scope.get("method"),
                route=route,
                path=scope.get("path"),
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                user_id=scope["state"].get("user_id"),
            )


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
    return uuid.uuid4().hex


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
