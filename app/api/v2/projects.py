"""`/api/v2/projects`: create, list, read, change, trash and restore projects (spec api-v2
section 3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response, status

from app.api.conditional import etag_for, expected_versions, if_none_match_hits
from app.api.deps import AutocommitDb, Caller
from app.api.idempotent import created_once
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.parameters import IdempotencyKeyHeader, IfMatch, IfNoneMatch, ProjectId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT
from app.db.access import Db
from app.db.statements.projects import ProjectRecord
from app.schemas.common import Page
from app.schemas.project import ProjectCreate, ProjectRead, ProjectUpdate, project_json
from app.services import project as project_service

router = api_router(f"{API_V2_PREFIX}/projects", "projects")


def project_response(project: ProjectRecord, status_code: int = 200) -> JsonResponse:
    """The project with its ETag (and, for a new one, its Location)."""
    headers = {"ETag": etag_for(project.version)}
    if status_code == status.HTTP_201_CREATED:
        headers["Location"] = f"{API_V2_PREFIX}/projects/{project.id}"
    return JsonResponse(project_json(project), status_code, headers)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectRead,
    responses=documented(
        401, 409, 413, 415, 429, 503, success={201: ("Location", "ETag", "Idempotent-Replayed")}
    ),
    summary="Create a project (the caller becomes its owner)",
)
async def create_project(
    request: Request,
    data: ProjectCreate,
    caller: Caller,
    db: AutocommitDb,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def create(on: Db) -> JsonResponse:
        project = await project_service.create_project(on, caller, data)
        return project_response(project, status.HTTP_201_CREATED)

    if idempotency_key is None:
        # Two writes (the project, its owner) that stand together: a transaction of their own
        # (with a key, the key's transaction holds them).
        async with db.new_transaction() as transaction:
            return await create(transaction)
    body = data.model_dump(mode="json", exclude_unset=True)
    return await created_once(request, db, caller, body, idempotency_key, create)


@router.get(
    "",
    response_model=Page[ProjectRead],
    responses=documented(401, 429, 503, success={200: ("Link",)}),
    summary="List the caller's projects (by name, keyset pages)",
)
async def list_projects(
    request: Request,
    caller: Caller,
    db: AutocommitDb,
    deleted: Annotated[
        bool, Query(description="true lists the trashed projects the caller owns.")
    ] = False,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await project_service.list_projects(
        db,
        caller,
        deleted=deleted,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "project"),
    )
    return page_response(
        [project_json(p) for p in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.get(
    "/{project_id}",
    response_model=ProjectRead,
    responses=documented(401, 404, 429, 503, success={200: ("ETag",), 304: ("ETag",)}),
    summary="Read a project",
)
async def read_project(
    project_id: ProjectId, caller: Caller, db: AutocommitDb, if_none_match: IfNoneMatch = None
) -> Response:
    project = await project_service.get_project(db, caller, project_id)
    if if_none_match_hits(if_none_match, project.version):
        return Response(status_code=304, headers={"ETag": etag_for(project.version)})
    return project_response(project)


@router.patch(
    "/{project_id}",
    response_model=ProjectRead,
    responses=documented(
        401, 404, 412, 413, 415, 429, 503, success={200: ("ETag",)}, role_required=True
    ),
    summary="Rename a project or change its description (admins)",
)
async def update_project(
    project_id: ProjectId,
    data: ProjectUpdate,
    caller: Caller,
    db: AutocommitDb,
    if_match: IfMatch = None,
) -> Response:
    project = await project_service.update_project(
        db, caller, project_id, data, expected_versions=expected_versions(if_match)
    )
    return project_response(project)


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 409, 412, 429, 503, role_required=True),
    summary="Move a project to the trash with its tasks (owners; never the Inbox)",
)
async def delete_project(
    project_id: ProjectId, caller: Caller, db: AutocommitDb, if_match: IfMatch = None
) -> Response:
    await project_service.delete_project(
        db, caller, project_id, expected_versions=expected_versions(if_match)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{project_id}/restore",
    response_model=ProjectRead,
    responses=documented(401, 404, 409, 429, 503, success={200: ("ETag",)}, role_required=True),
    summary="Take a project out of the trash (owners)",
)
async def restore_project(project_id: ProjectId, caller: Caller, db: AutocommitDb) -> Response:
    return project_response(await project_service.restore_project(db, caller, project_id))
