"""Invitations (spec api-v2 section 4): a project's, for its admins
(`/api/v2/projects/{id}/invitations`), and the caller's own (`/api/v2/invitations`), to
accept or decline."""

from __future__ import annotations

from fastapi import Request, Response, status

from app.api.deps import AutocommitDb, Caller, SettingsDep, TransactionDb
from app.api.idempotent import created_once
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.parameters import IdempotencyKeyHeader, InvitationId, ProjectId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT
from app.core.roles import ProjectRole
from app.db.access import Db
from app.schemas.common import Page
from app.schemas.project import (
    InvitationCreate,
    InvitationRead,
    MemberRead,
    invitation_json,
    member_json,
)
from app.services import invitation as invitation_service
from app.services.invitation import InvitationPage

router = api_router(f"{API_V2_PREFIX}", "invitations")


def invitation_page_response(request: Request, page: InvitationPage) -> JsonResponse:
    return page_response(
        [invitation_json(i) for i in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.post(
    "/projects/{project_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationRead,
    responses=documented(
        401,
        404,
        409,
        413,
        415,
        429,
        503,
        success={201: ("Idempotent-Replayed",), 200: ("Idempotent-Replayed",)},
        role_required=True,
    ),
    summary="Invite an address to a project (admins, below their own role); again: renewed",
)
async def invite(
    request: Request,
    project_id: ProjectId,
    data: InvitationCreate,
    caller: Caller,
    db: AutocommitDb,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    # A POST that creates honours Idempotency-Key (spec api-v2, as v1's task creation): a
    # retry gets the first answer, not the 200 of a renewal with a later expiry.
    async def create(on: Db) -> JsonResponse:
        invitation, created = await invitation_service.invite(
            on,
            caller,
            project_id,
            data.email,
            ProjectRole.from_label(data.role),
            expire_days=settings.invitation_expire_days,
        )
        return JsonResponse(invitation_json(invitation), 201 if created else 200)

    if idempotency_key is None:
        # Up to three statements that stand together: a transaction of their own.
        async with db.new_transaction() as transaction:
            return await create(transaction)
    body = data.model_dump(mode="json", exclude_unset=True)
    return await created_once(request, db, caller, body, idempotency_key, create)


@router.get(
    "/projects/{project_id}/invitations",
    response_model=Page[InvitationRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}, role_required=True),
    summary="A project's pending invitations (admins)",
)
async def list_project_invitations(
    request: Request,
    project_id: ProjectId,
    caller: Caller,
    db: AutocommitDb,
    settings: SettingsDep,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await invitation_service.list_for_project(
        db, caller, project_id, limit=limit, cursor=cursor, key=cursor_key(settings, "invitation")
    )
    return invitation_page_response(request, page)


@router.delete(
    "/projects/{project_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 429, 503, role_required=True),
    summary="Revoke an invitation (admins)",
)
async def revoke_invitation(
    project_id: ProjectId, invitation_id: InvitationId, caller: Caller, db: AutocommitDb
) -> Response:
    await invitation_service.revoke(db, caller, project_id, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/invitations",
    response_model=Page[InvitationRead],
    responses=documented(401, 429, 503, success={200: ("Link",)}),
    summary="The pending invitations to the caller's address",
)
async def list_my_invitations(
    request: Request,
    caller: Caller,
    db: AutocommitDb,
    settings: SettingsDep,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await invitation_service.list_for_caller(
        db, caller, limit=limit, cursor=cursor, key=cursor_key(settings, "my-invitation")
    )
    return invitation_page_response(request, page)


@router.post(
    "/invitations/{invitation_id}/accept",
    response_model=MemberRead,
    responses=documented(401, 404, 409, 410, 429, 503),
    summary="Accept an invitation to the caller: join the project at its role",
)
async def accept_invitation(
    invitation_id: InvitationId, caller: Caller, db: TransactionDb
) -> Response:
    return JsonResponse(member_json(await invitation_service.accept(db, caller, invitation_id)))


@router.post(
    "/invitations/{invitation_id}/decline",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 429, 503),
    summary="Decline an invitation to the caller",
)
async def decline_invitation(
    invitation_id: InvitationId, caller: Caller, db: AutocommitDb
) -> Response:
    await invitation_service.decline(db, caller, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
