"""`/api/v2/projects/{id}/members`: a project's members, a change of role, a removal or a
departure (spec api-v2 sections 2 and 4)."""

from __future__ import annotations

from fastapi import Request, Response, status

from app.api.deps import AutocommitDb, Caller, TransactionDb
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.parameters import ProjectId, UserId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT
from app.core.roles import ProjectRole
from app.schemas.common import Page
from app.schemas.project import MemberRead, MemberRoleUpdate, member_json
from app.services import member as member_service

router = api_router(f"{API_V2_PREFIX}/projects", "members")


@router.get(
    "/{project_id}/members",
    response_model=Page[MemberRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}),
    summary="List a project's members (owners first, keyset pages)",
)
async def list_members(
    request: Request,
    project_id: ProjectId,
    caller: Caller,
    db: AutocommitDb,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await member_service.list_members(
        db,
        caller,
        project_id,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "member"),
    )
    return page_response(
        [member_json(m) for m in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.patch(
    "/{project_id}/members/{user_id}",
    response_model=MemberRead,
    responses=documented(401, 404, 409, 413, 415, 429, 503, role_required=True),
    summary="Change a member's role (admins, below their own role; anyone lowers their own)",
)
async def change_role(
    project_id: ProjectId,
    user_id: UserId,
    data: MemberRoleUpdate,
    caller: Caller,
    db: TransactionDb,
) -> Response:
    member = await member_service.change_role(
        db, caller, project_id, user_id, ProjectRole.from_label(data.role)
    )
    return JsonResponse(member_json(member))


@router.delete(
    "/{project_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 409, 429, 503, role_required=True),
    summary="Remove a member (admins, below their own role), or leave (one's own id)",
)
async def remove_member(
    project_id: ProjectId, user_id: UserId, caller: Caller, db: TransactionDb
) -> Response:
    await member_service.remove_member(db, caller, project_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
