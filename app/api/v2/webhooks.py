"""`/api/v2/projects/{id}/webhooks`: a project's webhooks, managed by its admins, with their
secrets (shown once), pings and delivery logs (spec api-v2 section 9; docs/decisions/0033).

The routes write what is to be sent (a ping, a redelivery: a pending attempt); the delivery
job sends it. A webhook URL is resolved when it is saved, through the `destination_policy`
dependency: WEBHOOK_ALLOWED_NETWORKS, and the resolver in `app.state.webhook_resolver` when
one is set (tests), else the system's.
"""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import Depends, Path, Request, Response, status
from pydantic import BeforeValidator

from app.api.deps import AutocommitDb, Caller
from app.api.idempotent import created_once
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.parameters import IdempotencyKeyHeader, ProjectId, TaskId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import MAX_ID, PAGE_SIZE_DEFAULT
from app.core.destinations import allowed_networks
from app.db.access import Db
from app.db.statements.webhooks import WebhookRecord
from app.schemas.common import Page
from app.schemas.webhook import (
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
    delivery_json,
    webhook_created_json,
    webhook_json,
)
from app.services import webhook as webhook_service
from app.services.webhook import DestinationPolicy

router = api_router(f"{API_V2_PREFIX}/projects", "webhooks")

# The rules of every id in a path (app/api/parameters.py): 1 to MAX_ID, in one spelling.
_CANONICAL = next(rule for rule in get_args(TaskId) if isinstance(rule, BeforeValidator))
WebhookId = Annotated[int, Path(ge=1, le=MAX_ID, description="The webhook's id."), _CANONICAL]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID, description="The delivery's id."), _CANONICAL]

# A secret in a response: never kept by a cache on the way.
_NO_STORE = {"Cache-Control": "no-store"}


async def destination_policy(request: Request) -> DestinationPolicy:
    """Where webhook URLs may point: the operator's allowed networks, and the resolver the
    app was given (tests) or the system's."""
    state = request.app.state
    return DestinationPolicy(
        allowed=allowed_networks(state.settings.webhook_allowed_networks),
        resolver=getattr(state, "webhook_resolver", None),
    )


Destinations = Annotated[DestinationPolicy, Depends(destination_policy)]


def _webhook_url(webhook: WebhookRecord) -> str:
    return f"{API_V2_PREFIX}/projects/{webhook.project_id}/webhooks/{webhook.id}"


@router.get(
    "/{project_id}/webhooks",
    response_model=Page[WebhookRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}, role_required=True),
    summary="List a project's webhooks, oldest first (admins; keyset pages, no secrets)",
)
async def list_webhooks(
    request: Request,
    project_id: ProjectId,
    caller: Caller,
    db: AutocommitDb,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await webhook_service.list_webhooks(
        db,
        caller,
        project_id,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "webhook"),
    )
    return page_response(
        [webhook_json(webhook) for webhook in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.post(
    "/{project_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=documented(
        401,
        404,
        409,
        413,
        415,
        429,
        503,
        success={201: ("Location", "Idempotent-Replayed", "Cache-Control")},
        role_required=True,
    ),
    summary="Add a webhook (admins); its secret is in this response only",
)
async def create_webhook(
    request: Request,
    project_id: ProjectId,
    data: WebhookCreate,
    caller: Caller,
    db: AutocommitDb,
    destinations: Destinations,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    # The caller's role and the URL are checked before anything is written (or a key looked
    # up): a name is resolved only for those who may add a webhook.
    await webhook_service.prepare_create(db, caller, project_id, data, destinations)

    async def create(on: Db) -> JsonResponse:
        webhook, secret = await webhook_service.create_webhook(on, caller, project_id, data)
        document = webhook_created_json(webhook, secret)
        return JsonResponse(document, 201, {"Location": _webhook_url(webhook), **_NO_STORE})

    body = data.model_dump(mode="json", exclude_unset=True)
    return await created_once(request, db, caller, body, idempotency_key, create)


@router.get(
    "/{project_id}/webhooks/{webhook_id}",
    response_model=WebhookRead,
    responses=documented(401, 404, 429, 503, role_required=True),
    summary="Read a webhook (admins; no secret)",
)
async def read_webhook(
    project_id: ProjectId, webhook_id: WebhookId, caller: Caller, db: AutocommitDb
) -> Response:
    webhook = await webhook_service.get_webhook(db, caller, project_id, webhook_id)
    return JsonResponse(webhook_json(webhook))


@router.patch(
    "/{project_id}/webhooks/{webhook_id}",
    response_model=WebhookRead,
    responses=documented(401, 404, 413, 415, 429, 503, role_required=True),
    summary="Change a webhook's URL, events, description, or enable or disable it (admins)",
)
async def update_webhook(
    project_id: ProjectId,
    webhook_id: WebhookId,
    data: WebhookUpdate,
    caller: Caller,
    db: AutocommitDb,
    destinations: Destinations,
) -> Response:
    webhook = await webhook_service.update_webhook(
        db, caller, project_id, webhook_id, data, destinations
    )
    return JsonResponse(webhook_json(webhook))


@router.delete(
    "/{project_id}/webhooks/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 429, 503, role_required=True),
    summary="Delete a webhook and its delivery log (admins)",
)
async def delete_webhook(
    project_id: ProjectId, webhook_id: WebhookId, caller: Caller, db: AutocommitDb
) -> Response:
    await webhook_service.delete_webhook(db, caller, project_id, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{project_id}/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookCreated,
    responses=documented(401, 404, 429, 503, success={200: ("Cache-Control",)}, role_required=True),
    summary="Give a webhook a new secret, shown in this response only (admins); the old "
    "one signs beside it for 24 hours",
)
async def rotate_secret(
    project_id: ProjectId, webhook_id: WebhookId, caller: Caller, db: AutocommitDb
) -> Response:
    webhook, secret = await webhook_service.rotate_secret(db, caller, project_id, webhook_id)
    return JsonResponse(webhook_created_json(webhook, secret), headers=_NO_STORE)


@router.post(
    "/{project_id}/webhooks/{webhook_id}/ping",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    responses=documented(401, 404, 429, 503, success={202: ()}, role_required=True),
    summary="Send a webhook a ping (admins), also a disabled one: the pending attempt, sent "
    "by a worker",
)
async def ping_webhook(
    project_id: ProjectId, webhook_id: WebhookId, caller: Caller, db: AutocommitDb
) -> Response:
    delivery = await webhook_service.ping_webhook(db, caller, project_id, webhook_id)
    return JsonResponse(delivery_json(delivery), status.HTTP_202_ACCEPTED)


@router.get(
    "/{project_id}/webhooks/{webhook_id}/deliveries",
    response_model=Page[DeliveryRead],
    responses=documented(401, 404, 429, 503, success={200: ("Link",)}, role_required=True),
    summary="A webhook's delivery log, newest attempt first (admins; keyset pages)",
)
async def list_deliveries(
    request: Request,
    project_id: ProjectId,
    webhook_id: WebhookId,
    caller: Caller,
    db: AutocommitDb,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    page = await webhook_service.list_deliveries(
        db,
        caller,
        project_id,
        webhook_id,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "webhook-delivery"),
    )
    return page_response(
        [delivery_json(delivery) for delivery in page.items],
        page.next_cursor,
        request_path(request.scope),
        request.query_params.multi_items(),
    )


@router.post(
    "/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    responses=documented(401, 404, 409, 429, 503, success={202: ()}, role_required=True),
    summary="Send a delivery's message again (admins): a new pending attempt, same "
    "`webhook-id` and body",
)
async def redeliver(
    project_id: ProjectId,
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    caller: Caller,
    db: AutocommitDb,
) -> Response:
    delivery = await webhook_service.redeliver(db, caller, project_id, webhook_id, delivery_id)
    return JsonResponse(delivery_json(delivery), status.HTTP_202_ACCEPTED)
