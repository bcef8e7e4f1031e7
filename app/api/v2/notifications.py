"""`/api/v2/notifications`: the caller's notifications, newest first, marked read one by one
or all at once (spec api-v2 section 8). Made by the jobs (`app.jobs`), never here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response, status

from app.api.deps import AutocommitDb, Caller
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, next_page_link
from app.api.parameters import NotificationId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT
from app.schemas.common import Page
from app.schemas.notification import NotificationRead, notification_json
from app.services import notification as notification_service

router = api_router(API_V2_PREFIX, "notifications")

# The caller's unread count on every page: the sidebar's badge without a second request, and
# the page keeps the shared `Page` shape (docs/decisions/0032-notifications-unread-count.md).
UNREAD_COUNT_HEADER = "X-Unread-Count"

UnreadOnly = Annotated[
    bool, Query(description="true lists only the unread ones; false (the default) all.")
]


@router.get(
    "/notifications",
    response_model=Page[NotificationRead],
    responses=documented(401, 429, 503, success={200: ("Link", UNREAD_COUNT_HEADER)}),
    summary="Your notifications, newest first (keyset pages)",
    description=f"`{UNREAD_COUNT_HEADER}` on every page: how many of yours are unread now "
    "(whatever `unread` asked for).",
)
async def list_notifications(
    request: Request,
    caller: Caller,
    db: AutocommitDb,
    unread: UnreadOnly = False,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await notification_service.list_notifications(
        db,
        caller,
        unread=unread,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "notification"),
    )
    headers = {UNREAD_COUNT_HEADER: str(page.unread_count)}
    link = next_page_link(
        request_path(request.scope), request.query_params.multi_items(), page.next_cursor
    )
    if link is not None:
        headers["Link"] = link
    return JsonResponse(
        {
            "items": [notification_json(row) for row in page.items],
            "next_cursor": page.next_cursor,
        },
        headers=headers,
    )


@router.post(
    "/notifications/read-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 429, 503),
    summary="Mark all your unread notifications read",
)
async def mark_all_read(caller: Caller, db: AutocommitDb) -> Response:
    await notification_service.mark_all_read(db, caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/notifications/{notification_id}/read",
    response_model=NotificationRead,
    responses=documented(401, 404, 429, 503),
    summary="Mark one of your notifications read (again: it keeps its first read_at)",
)
async def mark_read(notification_id: NotificationId, caller: Caller, db: AutocommitDb) -> Response:
    row = await notification_service.mark_read(db, caller, notification_id)
    return JsonResponse(notification_json(row))
