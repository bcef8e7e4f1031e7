"""What every paginated route shares: its cursor key, its `limit`/`cursor` parameters, `Link`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response
from pydantic import AfterValidator, StringConstraints

from app.api.responses import JsonResponse
from app.core.bounds import CURSOR_MAX_LENGTH, PAGE_SIZE_MAX
from app.core.config import Settings
from app.core.security import derive_key
from app.schemas.common import NO_NUL_PATTERN, JsonSchemaHints, reject_unstorable

Limit = Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description="Page size.")]
Cursor = Annotated[
    Annotated[
        str,
        StringConstraints(max_length=CURSOR_MAX_LENGTH),
        AfterValidator(reject_unstorable),
        JsonSchemaHints(pattern=NO_NUL_PATTERN),
    ]
    | None,
    Query(description="The `next_cursor` of the previous page."),
]


def cursor_key(settings: Settings, resource: str) -> bytes:
    """The key that signs one resource's cursors (a sub-key of SECRET_KEY)."""
    return derive_key(settings.signing_key, f"{resource}-cursor")


def next_page_link(
    path: str, query: Sequence[tuple[str, str]], next_cursor: str | None
) -> str | None:
    """`<same query, new cursor>; rel="next"` when there is a next page.

    `query` is the request's parameters in their order (`request.query_params.multi_items()`);
    `cursor` is replaced and moved to the end (as `URL.include_query_params` does, without
    parsing the whole URL again).
    """
    if next_cursor is None:
        return None
    kept = [(k, v) for k, v in query if k != "cursor"]
    return f'<{path}?{urlencode([*kept, ("cursor", next_cursor)])}>; rel="next"'


def link_next_page(request: Request, response: Response, next_cursor: str | None) -> None:
    """`Link: <same query, new cursor>; rel="next"` when there is a next page."""
    link = next_page_link(request.url.path, request.query_params.multi_items(), next_cursor)
    if link is not None:
        response.headers["Link"] = link


def page_response(
    items: list[Any], next_cursor: str | None, path: str, query: Sequence[tuple[str, str]]
) -> JsonResponse:
    """A page (`{"items", "next_cursor"}`, the items already JSON-ready), with `Link` to the
    next one when there is one; `path` and `query` are the request's."""
    link = next_page_link(path, query, next_cursor)
    return JsonResponse(
        {"items": items, "next_cursor": next_cursor},
        headers={"Link": link} if link is not None else None,
    )
