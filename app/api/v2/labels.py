"""`/api/v2/projects/{id}/labels`: a project's labels, listed by name, created, renamed,
recoloured and deleted (spec api-v2 section 6)."""

from __future__ import annotations

from fastapi import Request, Response, status

from app.api.deps import AutocommitDb, Caller, TransactionDb
from app.api.idempotent import created_once
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.parameters import IdempotencyKeyHeader, LabelId, ProjectId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT
from app.db.access import Db
from app.schemas.common import Page
from app.schemas.label import LabelCreate, LabelRead, LabelUpdate, label_json
from app.services import label as label_service
from app.services.label import LabelRecord

router = api_router(f"{API_V2_PREFIX}/projects", "labels")


def _label_url(label: LabelRecord) -> str:
    return f"{API_V2_PREFIX}/projects/{label.project_id}/labels/{label.id}"


@router.get(
    "/{project_id}/labels",
    response_model=Page[LabelRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}),
    summary="List a project's labels by name (keyset pages)",
)
async def list_labels(
    request: Request,
    project_id: ProjectId,
    caller: Caller,
    db: AutocommitDb,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await label_service.list_labels(
        db,
        caller,
        project_id,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "label"),
    )
    return page_response(
        [label_json(label) for label in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.post(
    "/{project_id}/labels",
    status_code=status.HTTP_201_CREATED,
    response_model=LabelRead,
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
    summary="Create a label (editors)",
)
async def create_label(
    request: Request,
    project_id: ProjectId,
    data: LabelCreate,
    caller: Caller,
    db: AutocommitDb,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def create(on: Db) -> JsonResponse:
        label = await label_service.create_label(on, caller, project_id, data)
        return JsonResponse(label_json(label), 201, {"Location": _label_url(label)})

    body = data.model_dump(mode="json", exclude_unset=True)
    return await created_once(request, db, caller, body, idempotency_key, create)


@router.get(
    "/{project_id}/labels/{label_id}",
    response_model=LabelRead,
    responses=documented(401, 404, 429, 503),
    summary="Read a label",
)
async def read_label(
    project_id: ProjectId, label_id: LabelId, caller: Caller, db: AutocommitDb
) -> Response:
    return JsonResponse(label_json(await label_service.get_label(db, caller, project_id, label_id)))


@router.patch(
    "/{project_id}/labels/{label_id}",
    response_model=LabelRead,
    responses=documented(401, 404, 409, 413, 415, 429, 503, role_required=True),
    summary="Rename or recolour a label (editors)",
)
async def update_label(
    project_id: ProjectId, label_id: LabelId, data: LabelUpdate, caller: Caller, db: AutocommitDb
) -> Response:
    label = await label_service.update_label(db, caller, project_id, label_id, data)
    return JsonResponse(label_json(label))


@router.delete(
    "/{project_id}/labels/{label_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    # 409: rolled back for a concurrent write of the same rows (decision 0036).
    responses=documented(401, 404, 409, 429, 503, role_required=True),
    summary="Delete a label and take it off its tasks (editors)",
)
async def delete_label(
    project_id: ProjectId, label_id: LabelId, caller: Caller, db: TransactionDb
) -> Response:
    # One transaction: the label goes, and each task that carried it gets a new version.
    await label_service.delete_label(db, caller, project_id, label_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
