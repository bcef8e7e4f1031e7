"""`/api/v2/tasks/{id}/comments`: a task's comments, oldest first; written by commenters,
changed by their authors, deleted by their authors or an admin (spec api-v2 section 6)."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response, status

from app.api.deps import AutocommitDb, Caller
from app.api.idempotent import created_once
from app.api.openapi import PROBLEM_SCHEMA_REF, ROLE_REQUIRED_SCHEMA_REF, documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.parameters import CommentId, IdempotencyKeyHeader, TaskId
from app.api.problems import PROBLEM_MEDIA_TYPE, request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT
from app.db.access import Db
from app.schemas.comment import CommentCreate, CommentRead, CommentUpdate, comment_json
from app.schemas.common import Page
from app.services import comment as comment_service
from app.services.comment import CommentRecord

router = api_router(f"{API_V2_PREFIX}/tasks", "comments")


def _author_only(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """A change's 403 is either of two problems: not the author (`not-comment-author`, a
    plain problem: no role would do), or an author no longer a commenter (`role-required`,
    with `role` and `required_role`). Its schema says so: one of the two problems."""
    forbidden = responses[403]
    forbidden["description"] = "Not the comment's author, or a role too low"
    forbidden["content"][PROBLEM_MEDIA_TYPE]["schema"] = {
        "oneOf": [PROBLEM_SCHEMA_REF, ROLE_REQUIRED_SCHEMA_REF]
    }
    return responses


def _comment_url(comment: CommentRecord) -> str:
    return f"{API_V2_PREFIX}/tasks/{comment.task_id}/comments/{comment.id}"


@router.get(
    "/{task_id}/comments",
    response_model=Page[CommentRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}),
    summary="List a task's comments, oldest first (keyset pages)",
)
async def list_comments(
    request: Request,
    task_id: TaskId,
    caller: Caller,
    db: AutocommitDb,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await comment_service.list_comments(
        db,
        caller,
        task_id,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "comment"),
    )
    return page_response(
        [comment_json(comment) for comment in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.post(
    "/{task_id}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=CommentRead,
    responses=documented(
        401,
        404,
        409,
        413,
        415,
        429,
        503,
        success={201: ("Location", "Idempotent-Replayed")},
        role_required=True,
    ),
    summary="Comment on a task (commenters)",
)
async def create_comment(
    request: Request,
    task_id: TaskId,
    data: CommentCreate,
    caller: Caller,
    db: AutocommitDb,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def create(on: Db) -> JsonResponse:
        comment = await comment_service.create_comment(on, caller, task_id, data)
        return JsonResponse(comment_json(comment), 201, {"Location": _comment_url(comment)})

    body = data.model_dump(mode="json", exclude_unset=True)
    return await created_once(request, db, caller, body, idempotency_key, create)


@router.get(
    "/{task_id}/comments/{comment_id}",
    response_model=CommentRead,
    responses=documented(401, 404, 429, 503),
    summary="Read a comment",
)
async def read_comment(
    task_id: TaskId, comment_id: CommentId, caller: Caller, db: AutocommitDb
) -> Response:
    return JsonResponse(
        comment_json(await comment_service.get_comment(db, caller, task_id, comment_id))
    )


@router.patch(
    "/{task_id}/comments/{comment_id}",
    response_model=CommentRead,
    responses=_author_only(documented(401, 404, 413, 415, 429, 503, role_required=True)),
    summary="Change one's own comment",
)
async def update_comment(
    task_id: TaskId, comment_id: CommentId, data: CommentUpdate, caller: Caller, db: AutocommitDb
) -> Response:
    comment = await comment_service.update_comment(db, caller, task_id, comment_id, data)
    return JsonResponse(comment_json(comment))


@router.delete(
    "/{task_id}/comments/{comment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 429, 503, role_required=True),
    summary="Delete a comment (its author, or an admin)",
)
async def delete_comment(
    task_id: TaskId, comment_id: CommentId, caller: Caller, db: AutocommitDb
) -> Response:
    await comment_service.delete_comment(db, caller, task_id, comment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
