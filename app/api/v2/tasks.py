"""`/api/v2/tasks`: create, read, update (and move), trash and restore a task of one of the
caller's projects, with its assignees, labels and reminder (spec api-v2 section 5); the
listing across projects is `app.api.v2.task_listing`'s, registered at the end of this file.

The same task as v1's (id, `version`, `ETag`), in a project: an `ETag` read in one version
works as `If-Match` in the other.
"""

from __future__ import annotations

from fastapi import Request, Response, status

from app.api.conditional import etag_for, expected_versions, if_none_match_hits
from app.api.deps import AutocommitDb, Caller
from app.api.idempotent import created_once
from app.api.openapi import documented
from app.api.parameters import IdempotencyKeyHeader, IfMatch, IfNoneMatch, TaskId
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.db.access import Db
from app.schemas.task import (
    ProjectTaskCreate,
    ProjectTaskRead,
    ProjectTaskUpdate,
    project_task_json,
)
from app.services import task as task_service
from app.services.task import TaskDetail

# Operation ids `v2-tasks-...`, apart from v1's `tasks-...`.
router = api_router(f"{API_V2_PREFIX}/tasks", "tasks", operation_prefix="v2")


def task_response(found: TaskDetail, status_code: int = 200) -> JsonResponse:
    """The task's v2 document with its ETag (and, for a new task, its Location)."""
    headers = {"ETag": etag_for(found.task.version)}
    if status_code == status.HTTP_201_CREATED:
        headers["Location"] = f"{API_V2_PREFIX}/tasks/{found.task.id}"
    body = project_task_json(found.task, found.assignee_ids, found.label_ids)
    return JsonResponse(body, status_code, headers)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectTaskRead,
    responses=documented(
        401,
        409,
        413,
        415,
        429,
        503,
        success={201: ("Location", "ETag", "Idempotent-Replayed")},
        role_required=True,
    ),
    summary="Create a task in a project (your Inbox by default)",
)
async def create_task(
    request: Request,
    data: ProjectTaskCreate,
    caller: Caller,
    db: AutocommitDb,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def create(on: Db) -> JsonResponse:
        task = await task_service.create_project_task(on, caller, data)
        return task_response(task, status.HTTP_201_CREATED)

    body = data.model_dump(mode="json", exclude_unset=True)
    return await created_once(request, db, caller, body, idempotency_key, create)


@router.get(
    "/{task_id}",
    response_model=ProjectTaskRead,
    responses=documented(401, 404, 429, 503, success={200: ("ETag",), 304: ("ETag",)}),
    summary="Read a task",
)
async def read_task(
    task_id: TaskId,
    caller: Caller,
    db: AutocommitDb,
    if_none_match: IfNoneMatch = None,
) -> Response:
    found = await task_service.get_project_task(db, caller, task_id)
    if if_none_match_hits(if_none_match, found.task.version):
        return Response(status_code=304, headers={"ETag": etag_for(found.task.version)})
    return task_response(found)


@router.patch(
    "/{task_id}",
    response_model=ProjectTaskRead,
    # 409: rolled back for a concurrent write of the same rows (decision 0036).
    responses=documented(
        401, 404, 409, 412, 413, 415, 429, 503, success={200: ("ETag",)}, role_required=True
    ),
    summary="Change some fields of a task, its assignees or labels, or move it",
)
async def update_task(
    task_id: TaskId,
    data: ProjectTaskUpdate,
    caller: Caller,
    db: AutocommitDb,
    if_match: IfMatch = None,
) -> Response:
    updated = await task_service.update_project_task(
        db, caller, task_id, data, expected_versions=expected_versions(if_match)
    )
    return task_response(updated)


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    # 409: made again after a concurrent change refused it, five times (decision 0036).
    responses=documented(401, 404, 409, 412, 429, 503, role_required=True),
    summary="Move a task to the trash",
)
async def delete_task(
    task_id: TaskId, caller: Caller, db: AutocommitDb, if_match: IfMatch = None
) -> Response:
    await task_service.delete_project_task(
        db, caller, task_id, expected_versions=expected_versions(if_match)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{task_id}/restore",
    response_model=ProjectTaskRead,
    responses=documented(401, 404, 409, 429, 503, success={200: ("ETag",)}, role_required=True),
    summary="Take a task out of the trash",
)
async def restore_task(task_id: TaskId, caller: Caller, db: AutocommitDb) -> Response:
    return task_response(await task_service.restore_project_task(db, caller, task_id))
