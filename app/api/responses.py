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
    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, self.media_type, background)

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
