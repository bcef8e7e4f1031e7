"""`/api/v2/tasks/{id}/activity`, `/api/v2/projects/{id}/activity` and `/api/v2/changes`:
the history of a task and of a project, and the change feed (spec api-v2 section 7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from app.api.deps import AutocommitDb, Caller
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, next_page_link, page_response
from app.api.parameters import ProjectId, TaskId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import FEED_PAGE_SIZE_DEFAULT, FEED_PAGE_SIZE_MAX, PAGE_SIZE_DEFAULT
from app.schemas.common import Page
from app.schemas.event import EventRead, FeedPage, event_json, feed_items_json
from app.services import history
from app.services.history import EventPage

router = api_router(API_V2_PREFIX, "history")

FeedLimit = Annotated[
    int, Query(ge=1, le=FEED_PAGE_SIZE_MAX, description="How many events at most.")
]


def _activity_response(request: Request, page: EventPage) -> JsonResponse:
    return page_response(
        [event_json(event) for event in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.get(
    "/tasks/{task_id}/activity",
    response_model=Page[EventRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}),
    summary="A task's history (its comments' too), newest first (keyset pages)",
)
async def task_activity(
    request: Request,
    task_id: TaskId,
    caller: Caller,
    db: AutocommitDb,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await history.task_activity(
        db,
        caller,
        task_id,
        limit=limit,
        cursor=cursor,
        key=cursor_key(request.app.state.settings, "activity"),
    )
    return _activity_response(request, page)


@router.get(
    "/projects/{project_id}/activity",
    response_model=Page[EventRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}),
    summary="A project's history, newest first (keyset pages)",
)
async def project_activity(
    request: Request,
    project_id: ProjectId,
    caller: Caller,
    db: AutocommitDb,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await history.project_activity(
        db,
        caller,
        project_id,
        limit=limit,
        cursor=cursor,
        key=cursor_key(request.app.state.settings, "activity"),
    )
    return _activity_response(request, page)


@router.get(
    "/changes",
    response_model=FeedPage,
    responses=documented(401, 410, 429, 503, success={200: ("Link",)}),
    summary="The change feed: every event after the cursor, once, in commit order",
)
async def changes(
    request: Request,
    caller: Caller,
    db: AutocommitDb,
    limit: FeedLimit = FEED_PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await history.changes(
        db,
        caller,
        limit=limit,
        cursor=cursor,
        key=cursor_key(request.app.state.settings, "changes"),
    )
    # An entity changed several times on the page is shown (as it is now) once, and shared.
    items = feed_items_json(page.items)
    # `Link` to read on at once, as on every page; a client polling later keeps the cursor.
    link = next_page_link(
        request_path(request.scope),
        request.query_params.multi_items(),
        page.next_cursor if page.has_more else None,
    )
    return JsonResponse(
        {"items": items, "next_cursor": page.next_cursor, "has_more": page.has_more},
        headers={"Link": link} if link is not None else None,
    )
