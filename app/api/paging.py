"""What every paginated route shares: its cursor key, its `limit`/`cursor` parameters, `Link`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from app.core.config import Settings
from app.core.pagination import CURSOR_MAX_LENGTH
from app.core.security import derive_key
from app.schemas.common import SafeStr

Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[
    SafeStr | None,
    Query(max_length=CURSOR_MAX_LENGTH, description="The `next_cursor` of the previous page."),
]


def cursor_key(settings: Settings, resource: str) -> bytes:
    """The key that signs one resource's cursors (a sub-key of SECRET_KEY)."""
    return derive_key(settings.signing_key, f"{resource}-cursor")


def link_next_page(request: Request, response: Response, next_cursor: str | None) -> None:
    """`Link: <same query, new cursor>; rel="next"` when there is a next page."""
    if next_cursor is not None:
        next_url = request.url.include_query_params(cursor=next_cursor)
        response.headers["Link"] = f'<{next_url.path}?{next_url.query}>; rel="next"'
