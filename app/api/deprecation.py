"""Retiring v1 (spec api-v2 section 1), as the operator configures it.

With `API_V1_DEPRECATED_AT` set, every response to a path under `/api/v1/` (errors included,
whoever answered them: a route, a problem handler, a middleware, the last resort) carries
`Deprecation: @<unix seconds>` (RFC 9745) and `Link: </api/v2>; rel="successor-version"`
(added to a `Link` the response already has, such as a page's `rel="next"`); with
`API_V1_SUNSET_AT` set as well, also `Sunset: <IMF-fixdate>` (RFC 8594). From the sunset on,
every request under `/api/v1/` is answered 410 here, before anything else reads it: no
authentication, no rate-limit count, no database.

`app.main.create_app` installs the middleware only when a deprecation is configured, so a
service that has not retired v1 does not pay for the check; it stands inside the request id,
log and metrics middleware (a 410 is logged and counted like any answer) and outside the last
resort (whose 500 is a v1 response too).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import format_datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem_response, request_id_of, request_path
from app.api.v1 import API_V1_PREFIX
from app.api.v2 import API_V2_PREFIX
from app.core.errors import Gone

SUCCESSOR_VERSION_LINK = f'<{API_V2_PREFIX}>; rel="successor-version"'

_V1_PATHS = f"{API_V1_PREFIX}/"

Headers = list[tuple[bytes, bytes]]


def is_v1_path(path: str) -> bool:
    """`/api/v1` itself and every path under `/api/v1/` (not `/api/v10`)."""
    return path == API_V1_PREFIX or path.startswith(_V1_PATHS)


def deprecation_value(instant: datetime) -> str:
    """RFC 9745's `Deprecation`: a structured-field date, `@` and whole Unix seconds."""
    return f"@{math.floor(instant.timestamp())}"


def sunset_value(instant: datetime) -> str:
    """RFC 8594's `Sunset`: an HTTP-date in the IMF-fixdate form (RFC 9110 5.6.7)."""
    return format_datetime(instant.astimezone(UTC).replace(microsecond=0), usegmt=True)


class V1DeprecationMiddleware:
    """The deprecation headers on every v1 response, and the 410 from the sunset on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        deprecated_at: datetime,
        sunset_at: datetime | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self._clock = clock
        self._notice: Headers = [(b"deprecation", deprecation_value(deprecated_at).encode())]
        self._sunset_at: float | None = None
        self._gone_detail = ""
        if sunset_at is not None:
            self._sunset_at = sunset_at.timestamp()
            self._notice.append((b"sunset", sunset_value(sunset_at).encode()))
            self._gone_detail = (
                f"API v1 was retired on {sunset_value(sunset_at)}; "
                f"use API v2 under {API_V2_PREFIX} instead."
            )
        self._link = SUCCESSOR_VERSION_LINK.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v1_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_notice(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._with_notice(message.get("headers", ()))
            await send(message)

        if self._sunset_at is not None and self._clock() >= self._sunset_at:
            response = problem_response(
                Gone(self._gone_detail),
                instance=request_path(scope),
                request_id=request_id_of(scope),
            )
            await response(scope, receive, send_with_notice)
            return
        await self.app(scope, receive, send_with_notice)

    def _with_notice(self, headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        """`headers` with the notice: the successor's link joins a `Link` already there
        (one field, comma-separated: RFC 8288 section 3), or becomes one."""
        combined: Headers = []
        linked = False
        for name, value in headers:
            if not linked and name.lower() == b"link":
                value = value + b", " + self._link
                linked = True
            combined.append((name, value))
        if not linked:
            combined.append((b"link", self._link))
        combined.extend(self._notice)
        return combined
