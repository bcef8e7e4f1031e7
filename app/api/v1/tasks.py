"""`/api/v1/tasks`: create, read, update, trash and restore the caller's tasks, and list them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Query, Request, Response, status
from pydantic import (
    AfterValidator,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

from app.api.conditional import etag_for, expected_versions, if_none_match_hits
from app.api.deps import AutocommitDb, Caller
from app.api.idempotent import created_once
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.parameters import IdempotencyKeyHeader, IfMatch, IfNoneMatch, TaskId
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v1 import API_V1_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT, SEARCH_MAX_LENGTH
from app.db.access import Db
from app.models.task import TaskPriority, TaskRecord, TaskStatus
from app.schemas.common import (
    NO_NUL_PATTERN,
    CommaSeparated,
    JsonSchemaHints,
    Page,
    Timestamp,
    reject_unstorable,
)
from app.schemas.task import TaskCreate, TaskRead, TaskUpdate, task_json
from app.services import task as task_service
from app.services import task_listing
from app.services.task_listing import (
    DEFAULT_SORT,
    SORT_FIELDS,
    TaskFilters,
    TaskPage,
    TaskSort,
)

router = api_router(f"{API_V1_PREFIX}/tasks", "tasks")

STATUSES = tuple(status.value for status in TaskStatus)
PRIORITIES = tuple(priority.label for priority in TaskPriority)
SORTS = tuple(f"{prefix}{field}" for field in SORT_FIELDS for prefix in ("", "-"))


def _sort_name(value: object) -> str:
    if value not in SORTS:
        raise ValueError(f"must be one of: {', '.join(SORTS)}")
    assert isinstance(value, str)
    return value


# The listing's parameters: lists comma-separated, the sort a name (`-` for descending).
StatusFilter = Annotated[
    tuple[str, ...] | None,
    CommaSeparated(STATUSES),
    Query(alias="status", description="One or more statuses, separated by commas."),
]
PriorityFilter = Annotated[
    tuple[str, ...] | None,
    CommaSeparated(PRIORITIES),
    Query(description="One or more priorities, separated by commas."),
]
SortOrder = Annotated[
    str,
    PlainValidator(_sort_name),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(SORTS),
            # Names for generated clients: "-created_at" would otherwise have none.
            "x-enum-varnames": [
                sort.lstrip("-").upper() + ("_DESC" if sort.startswith("-") else "")
                for sort in SORTS
            ],
        }
    ),
    Query(
        description="created_at, updated_at, due_at or priority, ascending; prefixed by - "
        "for descending. Ties break on id; tasks without due_at come last both ways."
    ),
]
SearchText = Annotated[
    # Length checked on the plain string, before the storable-text rule: after it, pydantic
    # would word the bound as "items", not characters.
    Annotated[
        str,
        StringConstraints(min_length=1, max_length=SEARCH_MAX_LENGTH),
        AfterValidator(reject_unstorable),
        JsonSchemaHints(pattern=NO_NUL_PATTERN),
    ]
    | None,
    Query(description="Case-insensitive text in the title or description."),
]


def task_response(task: TaskRecord, status_code: int = 200) -> JsonResponse:
    """The task document with its ETag (and, for a new task, its Location)."""
    headers = {"ETag": etag_for(task.version)}
    if status_code == status.HTTP_201_CREATED:
        headers["Location"] = f"{API_V1_PREFIX}/tasks/{task.id}"
    return JsonResponse(task_json(task), status_code, headers)


def read_response(task: TaskRecord, if_none_match: str | None) -> Response:
    """The task, or 304 when `If-None-Match` names its current version."""
    if if_none_match_hits(if_none_match, task.version):
        return Response(status_code=304, headers={"ETag": etag_for(task.version)})
    return task_response(task)


def task_page_response(page: TaskPage, path: str, query: Sequence[tuple[str, str]]) -> JsonResponse:
    """A page of tasks, with `Link` to the next one when there is one."""
    return page_response([task_json(task) for task in page.items], page.next_cursor, path, query)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses=documented(
        401,
        409,
        413,
        415,
        429,
        503,
        success={201: ("Location", "ETag", "Idempotent-Replayed")},
    ),
    summary="Create a task",
)
async def create_task(
    request: Request,
    data: TaskCreate,
    caller: Caller,
    db: AutocommitDb,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def create(on: Db) -> JsonResponse:
        task = await task_service.create_task(on, caller, data)
        return task_response(task, status.HTTP_201_CREATED)

    body = data.model_dump(mode="json", exclude_unset=True)
    return await created_once(request, db, caller, body, idempotency_key, create)


@router.get(
    "",
    response_model=Page[TaskRead],
    responses=documented(401, 429, 503, success={200: ("Link",)}),
    summary="List tasks (keyset pages)",
)
async def list_tasks(
    request: Request,
    caller: Caller,
    db: AutocommitDb,
    status_: StatusFilter = None,
    priority: PriorityFilter = None,
    due_before: Annotated[Timestamp | None, Query(description="Exclusive bound.")] = None,
    due_after: Annotated[Timestamp | None, Query(description="Inclusive bound.")] = None,
    q: SearchText = None,
    deleted: Annotated[bool, Query(description="true lists the trash.")] = False,
    sort: SortOrder = DEFAULT_SORT,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> Response:
    filters = TaskFilters(
        statuses=status_ or (),
        priorities=tuple(TaskPriority.from_label(label).value for label in priority or ()),
        due_before=due_before,
        due_after=due_after,
        q=q,
        deleted=deleted,
    )
    page = await task_listing.list_tasks(
        db,
        caller,
        filters=filters,
        sort=TaskSort.parse(sort),
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "task"),
    )
    return task_page_response(page, request_path(request.scope), request.query_params.multi_items())


@router.get(
    "/{task_id}",
    response_model=TaskRead,
    responses=documented(401, 404, 429, 503, success={200: ("ETag",), 304: ("ETag",)}),
    summary="Read a task",
)
async def read_task(
    task_id: TaskId,
    caller: Caller,
    db: AutocommitDb,
    if_none_match: IfNoneMatch = None,
) -> Response:
    return read_response(await task_service.get_task(db, caller, task_id), if_none_match)


@router.patch(
    "/{task_id}",
    response_model=TaskRead,
    responses=documented(401, 404, 412, 413, 415, 429, 503, success={200: ("ETag",)}),
    summary="Change some fields of a task",
)
async def update_task(
    task_id: TaskId, data: TaskUpdate, caller: Caller, db: AutocommitDb, if_match: IfMatch = None
) -> Response:
    task = await task_service.update_task(
        db, caller, task_id, data, expected_versions=expected_versions(if_match)
    )
    return task_response(task)


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(401, 404, 412, 429, 503),
    summary="Move a task to the trash",
)
async def delete_task(
    task_id: TaskId, caller: Caller, db: AutocommitDb, if_match: IfMatch = None
) -> Response:
    await task_service.delete_task(
        db, caller, task_id, expected_versions=expected_versions(if_match)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{task_id}/restore",
    response_model=TaskRead,
    responses=documented(401, 404, 429, 503, success={200: ("ETag",)}),
    summary="Take a task out of the trash",
)
async def restore_task(task_id: TaskId, caller: Caller, db: AutocommitDb) -> Response:
    return task_response(await task_service.restore_task(db, caller, task_id))
