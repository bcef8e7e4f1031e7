"""The ceiling: the benchmarked endpoints as a bare ASGI callable on asyncpg.

No framework, no ORM, no validation library on the request path: one function per route,
the service's own SQL through an asyncpg pool, orjson out. It is served exactly as the
service is (`make serve APP=bench.ceiling:app`: same uvicorn flags, same number of workers)
and answers the requests `make bench` sends with what the service would send:

- the same verification of the bearer token (`app.core.security.decode_access_token`), and
  the same check that it is still current (user active, same token version), which the
  service folds into each statement;
- the same statements, with the same values: the statement functions of
  `app.db.statements.tasks`, `app.db.statements.task_listing`, `app.db.statements.events` and
  `app.db.statements.event_objects` run unchanged on `RawDb`,
  which sends each statement as SQLAlchemy compiled it once (`Statement.driver_arguments`,
  what the service's `Db` does on PostgreSQL) straight to an asyncpg connection, so the SQL
  cannot drift from the service's when the statements change. Per request: one statement (a
  keyset page, across the caller's projects for v2, in pieces when the walk is cut; a get;
  an `INSERT ... SELECT ... RETURNING`; a versioned `UPDATE ... RETURNING`), and the same
  second statement when one matched nothing (401, 403, 404, 412, 422), chosen as the
  service's rules (`app.services.task`, `app.services.task_listing`) choose it; a page of
  the change feed is the service's four (horizon, the page, retention mark, its tasks as
  they are now), as `app.services.history.changes` runs them;
- the same JSON (field order, `Z` timestamps with milliseconds, priority labels; v2's
  `project_id`, `assignee_ids`, `label_ids`, `remind_at`; a feed item's event as
  `app.schemas.event.event_json` writes it, with its task), the same signed cursors
  (`app.core.pagination`, same keys and bindings), the same `ETag`, `Location`, `Link`,
  `X-Request-ID` and `Cache-Control` headers;
- login: the same `SELECT` by `lower(email)`, the same bcrypt verification in a worker thread
  (anyio, as the service), the same refresh-token `INSERT` and access-token encoding.

What it leaves out is what a ceiling should: no middleware, no dependency injection, no
pydantic, no metrics, no per-request log line, no rate limiting (the bench disables it in the
service too), no transaction around login's statements, no SQLAlchemy pool (nor its check-in
reset), and only the validation the benchmark's requests need. It implements only the
routes and parameters `make bench` uses (v1 and v2 list with `status`, `priority`, `q`,
`limit`, `cursor` on the default sort, and v2's `assignee`, `project_id`, `label_id`; get;
create, without assignees or labels in v2; patch of fields with `If-Match`; the change feed
with `limit` and `cursor`, of task events; login). Not for production.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
import asyncpg
import orjson
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import Executable

from app.api.conditional import AnyVersion, etag_for, if_match_versions, if_none_match_hits
from app.core.bounds import (
    CURSOR_MAX_LENGTH,
    FEED_PAGE_SIZE_DEFAULT,
    FEED_PAGE_SIZE_MAX,
    PASSWORD_MAX_LENGTH,
)
from app.core.config import get_settings
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.roles import Permission, ProjectRole, least_role
from app.core.security import (
    AccessClaims,
    InvalidToken,
    create_access_token,
    decode_access_token,
    derive_key,
    dummy_hash,
    new_refresh_token,
    normalize_password,
    verify_password,
)
from app.db.access import Db, Statement
from app.db.statements import event_objects, events
from app.db.statements import task_listing as listing
from app.db.statements import tasks as statements
from app.db.statements.task_listing import (
    DEFAULT_SORT,
    Position,
    TaskFilters,
    TaskSort,
    TeamFilters,
)
from app.db.statements.tasks import Completion, TaskDetail, caller_params
from app.models.task import TaskRecord
from app.schemas.event import event_json

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

SETTINGS = get_settings()
SIGNING_KEY = SETTINGS.signing_key
# As app.api.paging.cursor_key: one key per resource.
CURSOR_KEY = derive_key(SIGNING_KEY, "task-cursor")
TEAM_CURSOR_KEY = derive_key(SIGNING_KEY, "task-v2-cursor")
CHANGES_CURSOR_KEY = derive_key(SIGNING_KEY, "changes-cursor")
API = "/api/v1"
API_V2 = "/api/v2"

STATUSES = ("todo", "in_progress", "done")
PRIORITY_LABELS = {1: "low", 2: "medium", 3: "high", 4: "urgent"}
PRIORITY_RANKS = {label: rank for rank, label in PRIORITY_LABELS.items()}
SORT = TaskSort.parse(DEFAULT_SORT)
# The least roles of the v2 actions served, from the one table (app.core.roles).
READ, CREATE, UPDATE = (
    least_role(Permission.TASK_READ),
    least_role(Permission.TASK_CREATE),
    least_role(Permission.TASK_UPDATE),
)
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ID = re.compile(r"[1-9][0-9]{0,18}")

# --- SQL: login's statements by hand; the tasks' are the service's own (RawDb) ------------

USER_COLUMNS = (
    "users.id, users.email, users.full_name, users.password_hash, users.role, "
    "users.is_active, users.token_version, users.created_at, users.updated_at"
)
USER_BY_EMAIL = f"SELECT {USER_COLUMNS} \nFROM users \nWHERE lower(users.email) = $1::VARCHAR"
INSERT_REFRESH_TOKEN = (
    "INSERT INTO refresh_tokens (user_id, token_hash, family_id, parent_id, created_at, "
    "expires_at, family_expires_at, used_at, revoked_at) VALUES ($1::BIGINT, $2::VARCHAR, "
    "$3::VARCHAR, $4::BIGINT, $5::TIMESTAMP WITH TIME ZONE, $6::TIMESTAMP WITH TIME ZONE, "
    "$7::TIMESTAMP WITH TIME ZONE, $8::TIMESTAMP WITH TIME ZONE, "
    "$9::TIMESTAMP WITH TIME ZONE) RETURNING refresh_tokens.id"
)
# The dialect the statements are compiled for, as the service's engine compiles them.
DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

_state: dict[str, Any] = {}


class RawDb:
    """What the statement functions need of `app.db.access.Db`, on one asyncpg connection.

    A statement goes out as `Db` sends it on PostgreSQL in autocommit mode: compiled once
    (`Statement.driver_arguments`), then `fetch` on the driver, nothing in between; a block
    under `transaction()` (the text search's `SET LOCAL`) is one driver transaction.
    """

    __slots__ = ("_conn",)
    dialect = DIALECT

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def rows(self, statement: Statement, params: dict[str, Any]) -> Sequence[Any]:
        sql, values = statement.driver_arguments(DIALECT, params)
        rows: Sequence[Any] = await self._conn.fetch(sql, *values)
        return rows

    async def first(self, statement: Statement, params: dict[str, Any]) -> Any:
        found = await self.rows(statement, params)
        return found[0] if found else None

    async def execute(self, statement: Executable) -> None:
        await self._conn.execute(str(statement))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._conn.transaction():
            yield


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, slug: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.slug = status, title, detail, slug


def _unauthorized() -> Problem:
    return Problem(401, "Unauthorized", "The access token is invalid or expired.", "unauthorized")


def _not_found() -> Problem:
    return Problem(404, "Not found", "Task not found.", "not-found")


def _invalid(detail: str) -> Problem:
    return Problem(422, "Validation error", detail, "validation-error")


def _role_required(role: int, least: ProjectRole) -> Problem:
    return Problem(
        403,
        "Forbidden",
        f"Your role {ProjectRole(role).label} is below {least.label}.",
        "role-required",
    )


def _precondition_failed() -> Problem:
    return Problem(412, "Precondition failed", "The task has changed.", "precondition")


# --- plumbing ---------------------------------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _task(task: TaskRecord) -> dict[str, Any]:
    """v1's document of a task."""
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": PRIORITY_LABELS[task.priority],
        "due_at": _ts(task.due_at),
        "created_at": _ts(task.created_at),
        "updated_at": _ts(task.updated_at),
        "completed_at": _ts(task.completed_at),
        "deleted_at": _ts(task.deleted_at),
        "version": task.version,
    }


def _team_task(found: TaskDetail) -> dict[str, Any]:
    """v2's document of a task: v1's, its project, assignees, labels and reminder."""
    document = _task(found.task)
    document["project_id"] = found.task.project_id
    document["assignee_ids"] = list(found.assignee_ids)
    document["label_ids"] = list(found.label_ids)
    document["remind_at"] = _ts(found.task.remind_at)
    return document


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers,
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", content_type),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _invalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _invalid("The body must be a JSON object.")
    return data


def _title(value: Any) -> str:
    if not isinstance(value, str) or _CONTROL.search(value):
        raise _invalid("title must be a string without control characters")
    title: str = value.strip()
    if not 1 <= len(title) <= 200:
        raise _invalid("title must be 1 to 200 characters after trimming")
    return title


def _optional_text(value: Any, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 10_000):
        raise _invalid(f"{name} must be a string of at most 10000 characters or null")
    return value


def _timestamp(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _invalid(f"{name} must be an RFC 3339 timestamp with an offset")
    return parsed.astimezone(UTC)


def _choice(value: Any, allowed: tuple[str, ...] | dict[str, int], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _invalid(f"{name} must be one of {', '.join(allowed)}")
    return value


def _caller(scope: Scope) -> AccessClaims:
    """The bearer token's claims, verified as the service does; the users table is checked
    inside each statement."""
    authorization = _header(scope, b"authorization")
    if authorization is None or authorization[:7].lower() != "bearer ":
        raise _unauthorized()
    try:
        return decode_access_token(authorization[7:].strip(), key=SIGNING_KEY)
    except InvalidToken:
        raise _unauthorized() from None


def _task_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 2**63 - 1:
        raise _invalid("task_id must be an integer between 1 and 2^63 - 1")
    return int(raw)


# --- routes ---------------------------------------------------------------------------


def _db(conn: Any) -> Db:
    """The statement functions take a `Db`; `RawDb` is the part of it they use."""
    return cast(Db, RawDb(conn))


def _query(scope: Scope, allowed: set[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    params = dict(query)
    if len(params) != len(query) or not params.keys() <= allowed:
        raise _invalid("Unknown or repeated query parameter (the ceiling serves a subset)")
    if params.get("sort", DEFAULT_SORT) != DEFAULT_SORT:
        raise _invalid("The ceiling serves the default sort only")
    return query, params


def _filters(params: dict[str, str]) -> tuple[TaskFilters, int]:
    """The v1 filters the ceiling serves, and the page size."""
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise _invalid("limit must be an integer") from None
    if not 1 <= limit <= 100:
        raise _invalid("limit must be between 1 and 100")
    statuses: tuple[str, ...] = ()
    if "status" in params:
        statuses = tuple(
            dict.fromkeys(
                _choice(s.strip(), STATUSES, "status") for s in params["status"].split(",")
            )
        )
    priorities: tuple[int, ...] = ()
    if "priority" in params:
        labels = (
            _choice(p.strip(), PRIORITY_RANKS, "priority") for p in params["priority"].split(",")
        )
        priorities = tuple(PRIORITY_RANKS[label] for label in dict.fromkeys(labels))
    q = params.get("q")
    if q is not None and not 1 <= len(q) <= 200:
        raise _invalid("q must be 1 to 200 characters")
    return TaskFilters(statuses=statuses, priorities=priorities, q=q), limit


def _start(params: dict[str, str], binding: str, key: bytes) -> Position | None:
    """Where the page starts (the default sort's key is a timestamp)."""
    cursor = params.get("cursor")
    if cursor is None:
        return None
    try:
        if len(cursor) > CURSOR_MAX_LENGTH:
            raise InvalidCursor()
        position = decode_cursor(cursor, binding=binding, key=key)
        if not isinstance(position.key, str):
            raise InvalidCursor()
        return Position(datetime.fromisoformat(position.key), position.last_id)
    except (InvalidCursor, ValueError):
        raise _invalid("The cursor is invalid or does not belong to this query.") from None


def _page(
    scope: Scope,
    query: list[tuple[str, str]],
    items: list[dict[str, Any]],
    last: TaskRecord | None,
    binding: str,
    key: bytes,
) -> tuple[int, bytes, Headers]:
    """The page's JSON and `Link`; `last` is the page's last task when there is a next page."""
    next_cursor = None
    headers: Headers = []
    if last is not None:
        next_cursor = encode_cursor(
            CursorPosition(last.created_at.isoformat(), last.id), binding=binding, key=key
        )
        # As app.api.paging.next_page_link: the cursor replaces any old one, at the end.
        next_query = urlencode(
            [(k, v) for k, v in query if k != "cursor"] + [("cursor", next_cursor)]
        )
        headers.append((b"link", f'<{scope["path"]}?{next_query}>; rel="next"'.encode()))
    body = orjson.dumps({"items": items, "next_cursor": next_cursor})
    return 200, body, headers


def _versions(scope: Scope) -> list[int] | None:
    """If-Match as the versions a write may find (None: any), sorted as the service's."""
    versions = if_match_versions(_header(scope, b"if-match"))
    return None if versions is None or isinstance(versions, AnyVersion) else sorted(versions)


def _changes(data: dict[str, Any], extra: set[str]) -> tuple[dict[str, Any], Completion]:
    """A PATCH body's fields as columns, and what the change does to completed_at."""
    if not data.keys() <= {"title", "description", "status", "priority", "due_at"} | extra:
        raise _invalid("Unknown field (the ceiling serves a subset)")
    changes: dict[str, Any] = {}
    completion: Completion = None
    if "title" in data:
        changes["title"] = _title(data["title"])
    if "description" in data:
        changes["description"] = _optional_text(data["description"], "description")
    if "status" in data:
        changes["status"] = _choice(data["status"], STATUSES, "status")
        completion = "keep-first" if changes["status"] == "done" else "clear"
    if "priority" in data:
        changes["priority"] = PRIORITY_RANKS[_choice(data["priority"], PRIORITY_RANKS, "priority")]
    if "due_at" in data:
        changes["due_at"] = _timestamp(data["due_at"], "due_at")
    if "remind_at" in data:
        changes["remind_at"] = _timestamp(data["remind_at"], "remind_at")
    return changes, completion


def _new_values(data: dict[str, Any], now: datetime, extra: set[str]) -> dict[str, Any]:
    """A POST body as the new task's columns (as app.services.task._new_values)."""
    if not data.keys() <= {"title", "description", "status", "priority", "due_at"} | extra:
        raise _invalid("Unknown field (the ceiling serves a subset)")
    if "title" not in data:
        raise _invalid("title is required")
    status = _choice(data.get("status", "todo"), STATUSES, "status")
    return {
        "title": _title(data["title"]),
        "description": _optional_text(data.get("description"), "description"),
        "status": status,
        "priority": PRIORITY_RANKS[
            _choice(data.get("priority", "medium"), PRIORITY_RANKS, "priority")
        ],
        "due_at": _timestamp(data.get("due_at"), "due_at"),
        "completed_at": now if status == "done" else None,
    }


# --- v1 routes: the caller's Inbox ------------------------------------------------------


async def list_tasks(scope: Scope, db: Db, caller: AccessClaims) -> tuple[int, bytes, Headers]:
    query, params = _query(scope, {"status", "priority", "q", "limit", "cursor", "sort"})
    filters, limit = _filters(params)
    binding = binding_digest(user=caller.user_id, filters=filters.binding(), sort=DEFAULT_SORT)
    position = _start(params, binding, CURSOR_KEY)
    tasks = await listing.list_rows(db, caller, filters, SORT, position, limit + 1)
    if not tasks and not await statements.caller_is_still_current(db, caller):
        raise _unauthorized()  # an empty page, or a token no longer current
    last = tasks[limit - 1] if len(tasks) > limit else None
    items = [_task(task) for task in tasks[:limit]]
    return _page(scope, query, items, last, binding, CURSOR_KEY)


async def get_task(
    scope: Scope, db: Db, caller: AccessClaims, task_id: int
) -> tuple[int, bytes, Headers]:
    task = await statements.fetch(db, caller, task_id)
    if task is None:
        current, _ = await statements.diagnose(db, caller, task_id)
        raise _unauthorized() if not current else _not_found()
    etag = etag_for(task.version).encode()
    if if_none_match_hits(_header(scope, b"if-none-match"), task.version):
        return 304, b"", [(b"etag", etag)]
    return 200, orjson.dumps(_task(task)), [(b"etag", etag)]


async def create_task(db: Db, caller: AccessClaims, body: bytes) -> tuple[int, bytes, Headers]:
    now = datetime.now(UTC)
    values = _new_values(_parse_json_object(body), now, set())
    task = await statements.insert_task(db, caller, values, now)
    if task is None:  # the one thing that stops the insert: the caller is not current
        raise _unauthorized()
    headers = [
        (b"location", f"{API}/tasks/{task.id}".encode()),
        (b"etag", etag_for(task.version).encode()),
    ]
    return 201, orjson.dumps(_task(task)), headers


async def update_task(
    scope: Scope, db: Db, caller: AccessClaims, task_id: int, body: bytes
) -> tuple[int, bytes, Headers]:
    changes, completion = _changes(_parse_json_object(body), set())
    expected = _versions(scope)
    if not changes:
        status, task_body, headers = await get_task(scope, db, caller, task_id)
        if expected is not None and orjson.loads(task_body)["version"] not in expected:
            raise _precondition_failed()
        return status, task_body, headers
    # If-Match naming no strong tag of ours can match nothing: no write is even tried.
    task = None
    if expected != []:
        task = await statements.update_task(
            db,
            caller,
            task_id,
            changes,
            now=datetime.now(UTC),
            completion=completion,
            in_trash=False,
            expected_versions=expected,
        )
    if task is None:
        current, version = await statements.diagnose(db, caller, task_id)
        if not current:
            raise _unauthorized()
        if version is not None and expected is not None:
            raise _precondition_failed()
        raise _not_found()
    return 200, orjson.dumps(_task(task)), [(b"etag", etag_for(task.version).encode())]


# --- v2 routes: the caller's projects, at roles -------------------------------------------


def _assignee(value: str | None, caller: AccessClaims) -> int | Literal["none"] | None:
    if value is None:
        return None
    if value == "me":
        return caller.user_id
    if value == "none":
        return "none"
    if not _ID.fullmatch(value):
        raise _invalid("assignee must be me, none, or a user id")
    return int(value)


def _id_list(value: str | None, name: str) -> tuple[int, ...]:
    if value is None:
        return ()
    parts = [part.strip() for part in value.split(",")]
    if not all(_ID.fullmatch(part) for part in parts):
        raise _invalid(f"{name} must be ids separated by commas")
    return tuple(dict.fromkeys(int(part) for part in parts))


async def list_team_tasks(scope: Scope, db: Db, caller: AccessClaims) -> tuple[int, bytes, Headers]:
    allowed = {"status", "priority", "q", "limit", "cursor", "sort", "assignee", "project_id"}
    query, params = _query(scope, allowed | {"label_id"})
    filters, limit = _filters(params)
    labels = _id_list(params.get("label_id"), "label_id")
    if len(labels) > 1:
        raise _invalid("label_id must be one id")
    team = TeamFilters(
        project_ids=_id_list(params.get("project_id"), "project_id"),
        assignee=_assignee(params.get("assignee"), caller),
        label_id=labels[0] if labels else None,
    )
    binding = binding_digest(
        user=caller.user_id, filters=filters.binding() | team.binding(), sort=DEFAULT_SORT
    )
    position = _start(params, binding, TEAM_CURSOR_KEY)
    listed = await listing.list_team_rows(db, caller, filters, team, SORT, position, limit + 1)
    if not listed:
        current, projects_seen, label_seen = await listing.team_diagnosis(db, caller, team)
        if not current:
            raise _unauthorized()
        if not (projects_seen and label_seen):
            raise _invalid("Names a project or label that you may not see")
    last = listed[limit - 1].task if len(listed) > limit else None
    items = [_team_task(found) for found in listed[:limit]]
    return _page(scope, query, items, last, binding, TEAM_CURSOR_KEY)


async def _why_missed(
    db: Db, caller: AccessClaims, task_id: int, least: ProjectRole, expected: list[int] | None
) -> Problem:
    """As app.services.task._why_missed: 401, 404 (not visible), 403 (role), 412, 404."""
    current, version, role = await statements.diagnose_role(db, caller, task_id, view="live")
    if not current:
        return _unauthorized()
    if role is None:
        return _not_found()
    if role < least:
        return _role_required(role, least)
    if version is not None and expected is not None:
        return _precondition_failed()
    return _not_found()


def _team_task_answer(found: TaskDetail, status: int = 200) -> tuple[int, bytes, Headers]:
    headers = [(b"etag", etag_for(found.task.version).encode())]
    if status == 201:
        headers.insert(0, (b"location", f"{API_V2}/tasks/{found.task.id}".encode()))
    return status, orjson.dumps(_team_task(found)), headers


async def get_team_task(
    scope: Scope, db: Db, caller: AccessClaims, task_id: int
) -> tuple[int, bytes, Headers]:
    found = await statements.fetch_detail(db, caller, task_id, READ)
    if found is None:
        raise await _why_missed(db, caller, task_id, READ, None)
    if if_none_match_hits(_header(scope, b"if-none-match"), found.task.version):
        return 304, b"", [(b"etag", etag_for(found.task.version).encode())]
    return _team_task_answer(found)


async def create_team_task(db: Db, caller: AccessClaims, body: bytes) -> tuple[int, bytes, Headers]:
    data = _parse_json_object(body)
    if data.get("assignee_ids") or data.get("label_ids"):
        raise _invalid("The ceiling creates tasks without assignees or labels")
    project_id = data.get("project_id")
    if project_id is not None and (not isinstance(project_id, int) or project_id < 1):
        raise _invalid("project_id must be a project id")
    now = datetime.now(UTC)
    values = _new_values(data, now, {"project_id", "assignee_ids", "label_ids", "remind_at"})
    values["remind_at"] = _timestamp(data.get("remind_at"), "remind_at")
    task = await statements.insert_into_project(db, caller, project_id, values, now, least=CREATE)
    if task is None:
        current, role = await statements.project_role(db, caller, project_id)
        if not current:
            raise _unauthorized()
        if role is None:
            raise _invalid("project_id must be the id of a project you are a member of")
        if role < CREATE:
            raise _role_required(role, CREATE)
        raise Problem(409, "Conflict", "The project's members changed meanwhile.", "conflict")
    return _team_task_answer(TaskDetail(task, (), ()), 201)


async def update_team_task(
    scope: Scope, db: Db, caller: AccessClaims, task_id: int, body: bytes
) -> tuple[int, bytes, Headers]:
    changes, completion = _changes(_parse_json_object(body), {"remind_at"})
    expected = _versions(scope)
    if not changes:
        found = await statements.fetch_detail(db, caller, task_id, UPDATE)
        if found is None:
            raise await _why_missed(db, caller, task_id, UPDATE, None)
        if expected is not None and found.task.version not in expected:
            raise _precondition_failed()
        return _team_task_answer(found)
    updated = None
    if expected != []:  # If-Match naming no strong tag of ours can match nothing
        updated = await statements.update_detail(
            db,
            caller,
            task_id,
            changes,
            least=UPDATE,
            now=datetime.now(UTC),
            completion=completion,
            in_trash=False,
            expected_versions=expected,
        )
    if updated is None:
        raise await _why_missed(db, caller, task_id, UPDATE, expected)
    return _team_task_answer(updated)


# --- v2 change feed ---------------------------------------------------------------------


def _feed_start(params: dict[str, str], binding: str) -> events.Position | None:
    """Where the feed reads on from (as app.services.history._feed_position)."""
    cursor = params.get("cursor")
    if cursor is None:
        return None
    try:
        if len(cursor) > CURSOR_MAX_LENGTH:
            raise InvalidCursor()
        position = decode_cursor(cursor, binding=binding, key=CHANGES_CURSOR_KEY)
    except InvalidCursor:
        raise _invalid("The cursor is invalid or does not belong to this query.") from None
    if not isinstance(position.key, int) or isinstance(position.key, bool):
        raise _invalid("The cursor is invalid or does not belong to this query.")
    return events.Position(position.key, position.last_id)


async def changes(scope: Scope, db: Db, caller: AccessClaims) -> tuple[int, bytes, Headers]:
    """As app.services.history.changes and its route: the caller's events after the cursor,
    each with its task as a GET shows it now (task events only: the bench's)."""
    query, params = _query(scope, {"limit", "cursor"})
    try:
        limit = int(params.get("limit", FEED_PAGE_SIZE_DEFAULT))
    except ValueError:
        raise _invalid("limit must be an integer") from None
    if not 1 <= limit <= FEED_PAGE_SIZE_MAX:
        raise _invalid(f"limit must be between 1 and {FEED_PAGE_SIZE_MAX}")
    binding = binding_digest(user=caller.user_id, resource="changes")
    start = _feed_start(params, binding)
    after = events.START if start is None else start
    upto = await events.horizon(db)
    values = caller_params(caller)
    rows = await events.feed(db, values, after=after, upto=upto, limit=limit + 1)
    if start is not None:  # the retention mark, read after the page (as the service)
        removed = await events.removed_through(db)
        if removed is not None and after < removed:
            raise Problem(410, "Gone", "Events after this cursor have been removed.", "gone")
    if not rows and not await statements.caller_is_still_current(db, caller):
        raise _unauthorized()
    has_more = len(rows) > limit
    rows = rows[:limit]
    reached = events.Position(rows[-1].xid, rows[-1].id) if has_more else max(upto, after)
    wanted: dict[str, set[tuple[int, int]]] = {}
    for row in rows:
        if row.entity != "task":
            raise Problem(501, "Not implemented", "The ceiling serves task events.", "ceiling")
        wanted.setdefault(row.entity, set()).add((row.project_id, row.entity_id))
    found = await event_objects.objects(db, values, wanted)
    items = []
    for row in rows:
        item = event_json(row)
        task = found.get(("task", 0, row.entity_id))
        item["object"] = None if task is None else _team_task(cast(TaskDetail, task))
        items.append(item)
    next_cursor = encode_cursor(
        CursorPosition(reached.xid, reached.id), binding=binding, key=CHANGES_CURSOR_KEY
    )
    body = orjson.dumps({"items": items, "next_cursor": next_cursor, "has_more": has_more})
    headers: Headers = []
    if has_more:  # `Link` to read on at once, as app.api.v2.history.changes
        next_query = urlencode(
            [(k, v) for k, v in query if k != "cursor"] + [("cursor", next_cursor)]
        )
        headers.append((b"link", f'<{scope["path"]}?{next_query}>; rel="next"'.encode()))
    return 200, body, headers


async def login(body: bytes) -> tuple[int, bytes, Headers]:
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        raise _invalid("username and password are required")
    rounds = SETTINGS.bcrypt_rounds
    invalid = Problem(401, "Unauthorized", "Incorrect email or password.", "invalid-credentials")
    if len(normalize_password(password)) > PASSWORD_MAX_LENGTH or "\x00" in password:
        await anyio.to_thread.run_sync(verify_password, "", dummy_hash(rounds))
        raise invalid
    pool = _state["pool"]
    user = await pool.fetchrow(USER_BY_EMAIL, username.strip().lower())
    if user is None:
        await anyio.to_thread.run_sync(verify_password, password, dummy_hash(rounds))
        raise invalid
    if not await anyio.to_thread.run_sync(verify_password, password, user["password_hash"]):
        raise invalid
    if not user["is_active"]:
        raise Problem(403, "Forbidden", "This account is deactivated.", "account-disabled")
    access_token, expires_in = create_access_token(
        user_id=user["id"],
        token_version=user["token_version"],
        key=SIGNING_KEY,
        expire_minutes=SETTINGS.access_token_expire_minutes,
    )
    refresh_token, digest = new_refresh_token()
    now = datetime.now(UTC)
    family_expires_at = now + timedelta(days=SETTINGS.refresh_token_expire_days)
    expires_at = min(family_expires_at, now + timedelta(days=SETTINGS.refresh_token_idle_days))
    await pool.fetchval(
        INSERT_REFRESH_TOKEN,
        user["id"],
        digest,
        uuid.uuid4().hex,
        None,
        now,
        expires_at,
        family_expires_at,
        None,
        None,
    )
    body = orjson.dumps(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "refresh_token": refresh_token,
        }
    )
    return 200, body, [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


async def _route(scope: Scope, receive: Receive) -> tuple[int, bytes, Headers]:
    path: str = scope["path"]
    method: str = scope["method"]
    if path == "/healthz" and method == "GET":
        return 200, b'{"status":"ok"}', []
    if path == f"{API}/auth/token" and method == "POST":
        return await login(await _body(receive))
    if path == f"{API_V2}/changes" and method == "GET":
        caller = _caller(scope)
        async with _state["pool"].acquire() as conn:
            return await changes(scope, _db(conn), caller)
    for prefix in (API, API_V2):
        if path == f"{prefix}/tasks" or path.startswith(f"{prefix}/tasks/"):
            return await _task_route(scope, receive, prefix == API_V2)
    raise Problem(404, "Not found", "Not served by the ceiling.", "not-found")


async def _task_route(scope: Scope, receive: Receive, v2: bool) -> tuple[int, bytes, Headers]:
    path: str = scope["path"]
    method: str = scope["method"]
    task_id = None
    if path != f"{API_V2 if v2 else API}/tasks":
        task_id = _task_id(path[len(API) + 7 :])
    body = await _body(receive) if method in {"POST", "PATCH"} else b""
    caller = _caller(scope)
    async with _state["pool"].acquire() as conn:
        db = _db(conn)
        if task_id is None and method == "GET":
            return await (list_team_tasks if v2 else list_tasks)(scope, db, caller)
        if task_id is None and method == "POST":
            return await (create_team_task if v2 else create_task)(db, caller, body)
        if task_id is not None and method == "GET":
            return await (get_team_task if v2 else get_task)(scope, db, caller, task_id)
        if task_id is not None and method == "PATCH":
            update = update_team_task if v2 else update_task
            return await update(scope, db, caller, task_id, body)
    raise Problem(405, "Method not allowed", "Not served by the ceiling.", "method")


async def _no_reset(_conn: Any) -> None:
    """Connections go back to the pool as they are: no statement here changes session state,
    so asyncpg's default reset (one more round trip per request) is skipped."""


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                dsn = SETTINGS.sqlalchemy_url.set(drivername="postgresql")
                _state["pool"] = await asyncpg.create_pool(
                    dsn.render_as_string(hide_password=False),
                    # As the service's pool: at most pool size + overflow connections.
                    min_size=0,
                    max_size=SETTINGS.db_pool_size + SETTINGS.db_max_overflow,
                    max_inactive_connection_lifetime=float(
                        os.environ.get("CEILING_POOL_IDLE_SECONDS", "10")
                    ),
                    reset=_no_reset,
                    timeout=SETTINGS.db_connect_timeout_seconds,
                    command_timeout=30,
                    server_settings={"jit": "off", "application_name": "tasks-api-ceiling"},
                )
            except Exception as exc:  # reported to uvicorn, which exits
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            pool = _state.pop("pool", None)
            if pool is not None:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    client_id = _header(scope, b"x-request-id")
    request_id = (
        client_id
        if client_id is not None and _CLIENT_REQUEST_ID.fullmatch(client_id)
        else uuid.uuid4().hex
    )
    request_header = (b"x-request-id", request_id.encode("ascii"))
    try:
        status, body, headers = await _route(scope, receive)
    except Problem as problem:
        body = orjson.dumps(
            {
                "type": f"urn:tasks-api:problem:{problem.slug}",
                "title": problem.title,
                "status": problem.status,
                "detail": problem.detail,
                "instance": scope["path"],
                "request_id": request_id,
            }
        )
        extra = [(b"www-authenticate", b"Bearer")] if problem.status == 401 else []
        await _respond(
            send, problem.status, body, [*extra, request_header], b"application/problem+json"
        )
        return
    await _respond(send, status, body, [*headers, request_header])
