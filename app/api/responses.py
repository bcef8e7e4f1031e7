"""JSON responses serialised with orjson, for the routes that build their documents themselves.

FastAPI validates and serialises an endpoint's return value through its `response_model`;
for the task routes that work (a pydantic model per task, validated, then dumped) costs more
than the database read. Those routes return a `JsonResponse` of plain values instead, and
keep `response_model` for OpenAPI only (a returned Response is passed through as is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response


class JsonResponse(Response):
    """`application/json`, rendered by orjson; its headers built directly (Starlette's
    `Response.__init__` generalises over media types and charsets, at a cost on every task
    request)."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        self.background = background
        self.body = body = self.render(content)
        raw_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        raw_headers.append((b"content-length", str(len(body)).encode("latin-1")))
        raw_headers.append((b"content-type", b"application/json"))
        self.raw_headers = raw_headers

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
