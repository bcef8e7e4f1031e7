"""`/api/v1/tasks`: create, read, update, trash and restore the caller's tasks, and list them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import Header, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, StringConstraints

from app.api.conditional import ANY_VERSION, etag_for, if_match_versions, if_none_match_hits
from app.api.deps import AutocommitDb, Caller
from app.api.paging import Cursor, Limit, cursor_key, next_page_link
from app.api.problems import problem_responses, request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v1 import API_V1_PREFIX
from app.db.access import Db
from app.models.task import TaskPriority, TaskRecord, TaskStatus
from app.schemas.common import (
    NO_NUL_PATTERN,
    PYTHON_WHITESPACE,
    JsonSchemaHints,
    Page,
    Timestamp,
    reject_unstorable,
)
from app.schemas.task import TaskCreate, TaskRead, TaskUpdate, task_json
from app.services import idempotency
from app.services import task as task_service
from app.services.idempotency import StoredResponse
from app.services.task import DEFAULT_SORT, SORT_FIELDS, TaskFilters, TaskPage, TaskSort

router = api_router(f"{API_V1_PREFIX}/tasks", "tasks")

# Task ids are 64-bit on PostgreSQL; anything larger can name no task (and must not reach
# the driver, which would reject it with an error rather than find nothing).
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The task's id.")]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1024,
        description="Entity tag(s) from an earlier response: the write happens only if the "
        "task is still at that version (412 otherwise).",
    ),
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


def page_response(page: TaskPage, path: str, query: Sequence[tuple[str, str]]) -> JsonResponse:
    """A page of tasks, with `Link` to the next one when there is one."""
    link = next_page_link(path, query, page.next_cursor)
    return JsonResponse(
        {"items": [task_json(task) for task in page.items], "next_cursor": page.next_cursor},
        headers={"Link": link} if link is not None else None,
    )


def task_filters(
    status_: str | None,
    priority: str | None,
    due_before: datetime | None = None,
    due_after: datetime | None = None,
    q: str | None = None,
    deleted: bool = False,
) -> TaskFilters:
    """The listing's filters from its query parameters (422 for an unknown status or
    priority)."""
    return TaskFilters(
        statuses=_split_choice(status_, _STATUSES, "status"),
        priorities=tuple(
            TaskPriority.from_label(p).value
            for p in _split_choice(priority, _PRIORITIES, "priority")
        ),
        due_before=due_before,
        due_after=due_after,
        q=q,
        deleted=deleted,
    )


def expected_versions(header: str | None) -> frozenset[int] | None:
    versions = if_match_versions(header)
    return None if versions is None or versions is ANY_VERSION else versions  # type: ignore[return-value]


def _split_choice(raw: str | None, allowed: tuple[str, ...], name: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    values = tuple(part.strip() for part in raw.split(","))
    if not all(value in allowed for value in values):
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "type": "enum",
                    "msg": f"Each value must be one of: {', '.join(allowed)} (comma-separated)",
                }
            ]
        )
    return tuple(dict.fromkeys(values))


_STATUSES = tuple(s.value for s in TaskStatus)
_PRIORITIES = tuple(p.label for p in TaskPriority)


def _choices_pattern(allowed: tuple[str, ...]) -> str:
    """What `_split_choice` accepts, as a pattern for OpenAPI."""
    one = rf"{PYTHON_WHITESPACE}*(?:{'|'.join(allowed)}){PYTHON_WHITESPACE}*"
    return rf"^{one}(?:,{one})*$"


SORTS = tuple(f"{prefix}{field}" for field in SORT_FIELDS for prefix in ("", "-"))


def parse_sort(raw: str) -> TaskSort:
    try:
        return TaskSort.parse(raw)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "sort"), "type": "enum", "msg": str(exc)}]
        ) from None


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="1 to 255 printable ASCII characters. A retry with the same key and body "
        "within 24 hours returns the first response and creates nothing.",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses=problem_responses(401, 409, 413, 415, 422, 429, 503),
    summary="Create a task",
)
async def create_task(
    request: Request,
    data: TaskCreate,
    caller: Caller,
    db: AutocommitDb,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    if idempotency_key is None:
        return task_response(
            await task_service.create_task(db, caller, data), status.HTTP_201_CREATED
        )

    async def create(transaction: Db) -> StoredResponse:
        task = await task_service.create_task(transaction, caller, data)
        created = task_response(task, status.HTTP_201_CREATED)
        headers = {"Location": created.headers["location"], "ETag": created.headers["etag"]}
        return StoredResponse(201, bytes(created.body).decode(), headers)

    request_fingerprint = idempotency.fingerprint(
        "POST", request_path(request.scope), data.model_dump(mode="json", exclude_unset=True)
    )
    outcome = await idempotency.do_once(db, caller, idempotency_key, request_fingerprint, create)
    headers = dict(outcome.response.headers)
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        content=outcome.response.body,
        status_code=outcome.response.status,
        headers=headers,
        media_type="application/json",
    )


@router.get(
    "",
    response_model=Page[TaskRead],
    responses=problem_responses(401, 422, 429, 503),
    summary="List tasks (keyset pages)",
)
async def list_tasks(
    request: Request,
    caller: Caller,
    db: AutocommitDb,
    status_: Annotated[
        Annotated[str, JsonSchemaHints(pattern=_choices_pattern(_STATUSES))] | None,
        Query(
            alias="status",
            max_length=100,
            description="todo, in_progress, done; several separated by commas",
        ),
    ] = None,
    priority: Annotated[
        Annotated[str, JsonSchemaHints(pattern=_choices_pattern(_PRIORITIES))] | None,
        Query(max_length=100, description="low, medium, high, urgent; several separated by commas"),
    ] = None,
    due_before: Annotated[Timestamp | None, Query(description="Exclusive bound.")] = None,
    due_after: Annotated[Timestamp | None, Query(description="Inclusive bound.")] = None,
    q: Annotated[
        # Length checked on the plain string, before SafeStr's validator: after it, pydantic
        # words the rule as "items", not characters.
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=200),
            AfterValidator(reject_unstorable),
            JsonSchemaHints(pattern=NO_NUL_PATTERN),
        ]
        | None,
        Query(description="Case-insensitive text in the title or description."),
    ] = None,
    deleted: Annotated[bool, Query(description="true lists the trash.")] = False,
    sort: Annotated[
        str,
        JsonSchemaHints(enum=list(SORTS)),
        Query(
            max_length=20,
            description="created_at, updated_at, due_at or priority, "
            "optionally prefixed by - for descending.",
        ),
    ] = DEFAULT_SORT,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    page = await task_service.list_tasks(
        db,
        caller,
        filters=task_filters(status_, priority, due_before, due_after, q, deleted),
        sort=parse_sort(sort),
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "task"),
    )
    return page_response(page, request_path(request.scope), request.query_params.multi_items())


@router.get(
    "/{task_id}",
    response_model=TaskRead,
    responses={
        304: {"description": "Not modified (If-None-Match matched the current ETag)."},
        **problem_responses(401, 404, 422, 429, 503),
    },
    summary="Read a task",
)
async def read_task(
    task_id: TaskId,
    caller: Caller,
    db: AutocommitDb,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=1024)] = None,
) -> Response:
    return read_response(await task_service.get_task(db, caller, task_id), if_none_match)


@router.patch(
    "/{task_id}",
    response_model=TaskRead,
    responses=problem_responses(401, 404, 412, 413, 415, 422, 429, 503),
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
    responses=problem_responses(401, 404, 412, 422, 429, 503),
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
    responses=problem_responses(401, 404, 422, 429, 503),
    summary="Take a task out of the trash",
)
async def restore_task(task_id: TaskId, caller: Caller, db: AutocommitDb) -> Response:
    return task_response(await task_service.restore_task(db, caller, task_id))
