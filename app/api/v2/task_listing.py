"""`GET /api/v2/tasks`: the tasks of the caller's projects, keyset pages (spec api-v2 section
5, Listing).

Every v1 listing parameter (the same declarations as `app.api.v1.tasks`), and `project_id`,
`assignee`, `label_id`. A router of its own (in `app.api.v2.router`'s `ROUTERS`, tagged
`tasks` like the single-task routes of `app.api.v2.tasks`), so that the listing's parameters
and their validation stay beside each other and out of the single-task routes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import Query, Request, Response
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, PlainValidator, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from app.api.deps import AutocommitDb, Caller
from app.api.openapi import documented
from app.api.paging import Cursor, Limit, cursor_key, page_response
from app.api.problems import request_path
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v1.tasks import PriorityFilter, SearchText, SortOrder, StatusFilter
from app.api.v2 import API_V2_PREFIX
from app.core.bounds import MAX_ID, PAGE_SIZE_DEFAULT, PROJECT_FILTER_MAX
from app.models.task import TaskPriority
from app.schemas.common import COMMA_SEPARATED, CommaSeparated, Page, Timestamp
from app.schemas.task import ProjectTaskRead, project_task_json
from app.services import task_listing
from app.services.task_listing import (
    DEFAULT_SORT,
    TaskFilters,
    TaskSort,
    TeamFilters,
    TeamTaskPage,
)

# Ids as the service writes them, and only so: `7`, not `07`, `+7` or `7.0` (as path ids).
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")


def _id(text: str) -> int | None:
    """`text` as an id (1 to MAX_ID, in its one spelling), or None."""
    if not _CANONICAL_ID.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


class CommaSeparatedIds(CommaSeparated):
    """A query parameter naming one or several ids, separated by commas (`project_id=3,7`):
    at most `most` of them, each once (repeats are ignored), spaces around commas ignored."""

    def __init__(self, what: str, most: int) -> None:
        super().__init__(())
        self.most = most
        self._message = (
            f"must be one or more {what} ids (whole numbers from 1, at most {most} of them), "
            "separated by commas"
        )

    def _ids(self, value: Any) -> tuple[int, ...]:
        if not isinstance(value, str):
            raise ValueError(self._message)
        ids = tuple(_id(part.strip()) for part in value.split(","))
        chosen = tuple(dict.fromkeys(ids))
        if None in chosen or len(chosen) > self.most:
            raise ValueError(self._message)
        return chosen  # type: ignore[return-value]  # no None left

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self._ids)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            "minItems": 1,
            "maxItems": self.most,
            COMMA_SEPARATED: True,
        }


def _assignee(value: object) -> int | Literal["me", "none"]:
    if value == "me" or value == "none":
        return value
    chosen = _id(value) if isinstance(value, str) else None
    if chosen is None:
        raise ValueError("must be me, none, or a user id (a whole number from 1)")
    return chosen


def _label_id(value: object) -> int:
    chosen = _id(value) if isinstance(value, str) else None
    if chosen is None:
        raise ValueError("must be a label id (a whole number from 1)")
    return chosen


ProjectFilter = Annotated[
    tuple[int, ...] | None,
    CommaSeparatedIds("project", PROJECT_FILTER_MAX),
    Query(
        alias="project_id",
        description="One or more project ids, separated by commas (at most "
        f"{PROJECT_FILTER_MAX}); a project you are not a member of is a 422. Without it: "
        "every project you are a member of.",
    ),
]
AssigneeFilter = Annotated[
    int | Literal["me", "none"] | None,
    PlainValidator(_assignee),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": ["me", "none"]},
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            ]
        }
    ),
    Query(
        description="me: tasks assigned to you; none: tasks without assignees; a user id: "
        "tasks assigned to that user."
    ),
]
LabelFilter = Annotated[
    int | None,
    PlainValidator(_label_id),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
    Query(description="Tasks that carry this label; a label you may not see is a 422."),
]


def team_page_response(
    page: TeamTaskPage, path: str, query: Sequence[tuple[str, str]]
) -> JsonResponse:
    """A page of tasks, with `Link` to the next one when there is one."""
    items = [project_task_json(item.task, item.assignee_ids, item.label_ids) for item in page.items]
    return page_response(items, page.next_cursor, path, query)


router = api_router(f"{API_V2_PREFIX}/tasks", "tasks", operation_prefix="v2")


@router.get(
    "",
    response_model=Page[ProjectTaskRead],
    responses=documented(401, 429, 503, success={200: ("Link",)}),
    summary="List the tasks of your projects (keyset pages)",
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
    deleted: Annotated[
        bool, Query(description="true lists the trash of your projects (viewers too).")
    ] = False,
    sort: SortOrder = DEFAULT_SORT,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
    project_id: ProjectFilter = None,
    assignee: AssigneeFilter = None,
    label_id: LabelFilter = None,
) -> Response:
    filters = TaskFilters(
        statuses=status_ or (),
        priorities=tuple(TaskPriority.from_label(label).value for label in priority or ()),
        due_before=due_before,
        due_after=due_after,
        q=q,
        deleted=deleted,
    )
    team = TeamFilters(
        project_ids=project_id or (),
        assignee=caller.user_id if assignee == "me" else assignee,
        label_id=label_id,
    )
    page = await task_listing.list_team_tasks(
        db,
        caller,
        filters=filters,
        team=team,
        sort=TaskSort.parse(sort),
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(request.app.state.settings, "task-v2"),
    )
    return team_page_response(page, request_path(request.scope), request.query_params.multi_items())
