"""The commonest task requests, answered without FastAPI's per-request machinery.

Listing tasks, reading, creating and changing one are most of the traffic, and once each became a
single database statement (docs/decisions/0017), most of their CPU was FastAPI's: routing
through every route before them, resolving dependencies, validating each parameter through
pydantic, wrapping the endpoint (docs/performance.md, "Profile"). This middleware, the
innermost of the app's, answers those requests itself when they are plainly well formed:

- `GET /api/v1/tasks` with at most `limit`, `cursor`, `status`, `priority`, `sort`,
  `deleted` and `q`, each given once and in its plain form;
- `GET /api/v1/tasks/{task_id}`, with or without `If-None-Match`;
- `POST /api/v1/tasks` with a JSON body that `TaskCreate` accepts, without an
  `Idempotency-Key`;
- `PATCH /api/v1/tasks/{task_id}` with a JSON body that `TaskUpdate` accepts, with or
  without `If-Match`;

each with `Authorization: Bearer <a valid access token>`. Everything else goes on, untouched,
to the FastAPI route, which answers it exactly as before: a missing or malformed token, a
query parameter that is unknown, repeated or not in its plain form, any other header this
module would have to interpret, a body that does not validate (the bytes already read are
handed on as they came), other methods and paths. The rules here are stricter than the
routes' and never looser, so a request answered here is one the route would have accepted,
and it gets the same answer: the same service functions, the same response builders
(`app.api.v1.tasks`), the same rate limit, the same error handlers. Nothing is counted or
written before the decision to take the request is made, so a request handed on is counted
once, by the route. tests/api/v1/test_task_fast_path.py sends the same requests to an app
without this middleware and compares the answers. See docs/decisions/0019-task-fast-path.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.paging import cursor_key
from app.api.v1 import API_V1_PREFIX, tasks
from app.core.pagination import CURSOR_MAX_LENGTH
from app.core.security import AccessClaims
from app.db.direct import Db
from app.schemas.common import reject_unstorable
from app.schemas.task import TaskCreate, TaskUpdate
from app.services import auth as auth_service
from app.services import task as task_service

_TASKS_PATH = f"{API_V1_PREFIX}/tasks"
_TASK_PATH_PREFIX = f"{_TASKS_PATH}/"
_MAX_TASK_ID = 2**63 - 1
_TASK_ID = re.compile(r"[1-9][0-9]{0,18}")
_LIMIT = re.compile(r"[1-9][0-9]?|100")
_SORTS = frozenset(tasks.SORTS)
_BOOLEANS = {"true": True, "false": False}
# The header bounds of the routes (`Header(max_length=...)`).
_MAX_TAG_HEADER = 1024
# Media types both this module and the route's check read as JSON.
_JSON_MEDIA_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
# The headers read here; a request that repeats one of them is handed on.
_READ_HEADERS = frozenset(
    {b"authorization", b"if-match", b"if-none-match", b"content-type", b"idempotency-key"}
)

# What a taken request does once counted: prepared by a handler, which decides to take it.
Work = Callable[[], Awaitable[Response]]
Handler = Callable[[Scope, dict[str, str], AccessClaims, bytes | None], Work]


class _HandOn(Exception):
    """The request is not plainly well formed here: the FastAPI route answers it."""


class TaskFastPath:
    """Answers the plain forms of the commonest task requests; hands on everything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The routes these requests belong to, for the metrics label (`scope["route"]`).
        routes = {
            route.endpoint: route for route in tasks.router.routes if isinstance(route, APIRoute)
        }
        self._list_route = routes[tasks.list_tasks]
        self._read_route = routes[tasks.read_task]
        self._create_route = routes[tasks.create_task]
        self._update_route = routes[tasks.update_task]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == _TASKS_PATH:
            if method == "GET":
                await self._serve(scope, receive, send, self._list, self._list_route)
                return
            if method == "POST":
                await self._with_body(scope, receive, send, self._create, self._create_route)
                return
        elif path.startswith(_TASK_PATH_PREFIX):
            if method == "GET":
                await self._serve(scope, receive, send, self._read, self._read_route)
                return
            if method == "PATCH":
                await self._with_body(scope, receive, send, self._update, self._update_route)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        handler: Handler,
        route: APIRoute,
        body: bytes | None = None,
    ) -> None:
        """Run `handler` if the request is one it takes; otherwise hand the request on."""
        try:
            headers = _headers(scope)
            claims = _bearer_claims(scope, headers)
            work = handler(scope, headers, claims, body)
        except _HandOn:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        try:
            await _count_request(scope, claims)
            response = await work()
        except Exception as error:
            response = await _error_response(scope, receive, error)
        await response(scope, receive, send)

    # --- the requests --------------------------------------------------------------------

    def _read(
        self, scope: Scope, headers: dict[str, str], claims: AccessClaims, _body: bytes | None
    ) -> Work:
        task_id = _task_id(scope)
        if_none_match = _tag_header(headers, "if-none-match")
        return partial(_read_task, scope, claims, task_id, if_none_match)

    def _update(
        self, scope: Scope, headers: dict[str, str], claims: AccessClaims, body: bytes | None
    ) -> Work:
        task_id = _task_id(scope)
        if_match = _tag_header(headers, "if-match")
        data = _json_body(TaskUpdate, headers, body)
        return partial(_update_task, scope, claims, task_id, data, if_match)

    def _list(
        self, scope: Scope, _headers: dict[str, str], claims: AccessClaims, _body: bytes | None
    ) -> Work:
        if not scope["query_string"].isascii():
            raise _HandOn  # raw bytes no HTTP server here lets through: the route's business
        # Decoded as Starlette decodes `request.query_params`.
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        params = dict(query)
        if len(params) != len(query):
            raise _HandOn  # repeated: the route says why it refuses that
        limit = params.pop("limit", "20")
        cursor = params.pop("cursor", None)
        status = params.pop("status", None)
        priority = params.pop("priority", None)
        sort = params.pop("sort", task_service.DEFAULT_SORT)
        deleted = _BOOLEANS.get(params.pop("deleted", "false"))
        q = params.pop("q", None)
        if (
            params  # anything else: unknown, or a due bound (its timestamp rules are the route's)
            or not _LIMIT.fullmatch(limit)
            or sort not in _SORTS
            or deleted is None
            or not _plain_text(cursor, CURSOR_MAX_LENGTH)
            or not _plain_text(status, 100)
            or not _plain_text(priority, 100)
            or not _plain_text(q, 200)
        ):
            raise _HandOn
        try:
            filters = tasks.task_filters(status, priority, q=q, deleted=deleted)
        except Exception:
            raise _HandOn from None  # an unknown status or priority: the route's 422
        return partial(
            _list_tasks, scope, claims, filters, tasks.parse_sort(sort), int(limit), cursor, query
        )

    async def _with_body(
        self, scope: Scope, receive: Receive, send: Send, handler: Handler, route: APIRoute
    ) -> None:
        """`_serve` for a request with a JSON body: the body is read first, as FastAPI reads
        it before anything else, and handed on as received if the route is to answer.

        Nothing is read for a request the route would refuse without reading it (a query
        string, a path that is not a task's), and a body that could not be read (over the
        size limit, a broken connection) is the route's to answer, with the same error."""
        if scope["query_string"] or (scope["path"] != _TASKS_PATH and not _is_task_path(scope)):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        try:
            body = await _read_body(receive, received)
        except Exception as error:
            await self.app(scope, _replaying(received, receive, then=error), send)
            return
        replay = _replaying(received, receive)
        await self._serve(scope, replay, send, handler, route, body)

    def _create(
        self, scope: Scope, headers: dict[str, str], claims: AccessClaims, body: bytes | None
    ) -> Work:
        if "idempotency-key" in headers:
            raise _HandOn  # the claim, the task and the stored answer: the route's transaction
        data = _json_body(TaskCreate, headers, body)
        return partial(_create_task, scope, claims, data)


# --- the work, once a request is taken -----------------------------------------------------


def _db(scope: Scope) -> Db:
    return Db(scope["app"].state.sessionmaker)


async def _read_task(
    scope: Scope, claims: AccessClaims, task_id: int, if_none_match: str | None
) -> Response:
    task = await task_service.get_task(_db(scope), claims, task_id)
    return tasks.read_response(task, if_none_match)


async def _list_tasks(
    scope: Scope,
    claims: AccessClaims,
    filters: task_service.TaskFilters,
    sort: task_service.TaskSort,
    limit: int,
    cursor: str | None,
    query: Sequence[tuple[str, str]],
) -> Response:
    page = await task_service.list_tasks(
        _db(scope),
        claims,
        filters=filters,
        sort=sort,
        limit=limit,
        cursor=cursor,
        cursor_key=cursor_key(scope["app"].state.settings, "task"),
    )
    return tasks.page_response(page, scope["path"], query)


async def _create_task(scope: Scope, claims: AccessClaims, data: TaskCreate) -> Response:
    task = await task_service.create_task(_db(scope), claims, data)
    return tasks.task_response(task, 201)


async def _update_task(
    scope: Scope, claims: AccessClaims, task_id: int, data: TaskUpdate, if_match: str | None
) -> Response:
    task = await task_service.update_task(
        _db(scope), claims, task_id, data, expected_versions=tasks.expected_versions(if_match)
    )
    return tasks.task_response(task)


# --- what every taken request shares ----------------------------------------------------


def _headers(scope: Scope) -> dict[str, str]:
    """The headers this module reads, decoded as Starlette decodes them."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _READ_HEADERS:
            key = name.decode("latin-1")
            if key in found:
                raise _HandOn  # which one counts is the route's business
            found[key] = value.decode("latin-1")
    return found


def _bearer_claims(scope: Scope, headers: dict[str, str]) -> AccessClaims:
    """The claims of a valid bearer token, as `app.api.deps.BearerClaims` reads them."""
    authorization = headers.get("authorization")
    if authorization is None or not authorization.startswith("Bearer "):
        raise _HandOn  # missing, or another spelling: the route's 401 or its parsing
    token = authorization[len("Bearer ") :]
    if not token or token.strip() != token:
        raise _HandOn
    try:
        return auth_service.access_claims(token, key=scope["app"].state.settings.signing_key)
    except Exception:
        raise _HandOn from None  # invalid or expired: the route's 401


async def _count_request(scope: Scope, claims: AccessClaims) -> None:
    """What `BearerClaims` does once the token is valid: the rate limit, the log's user id."""
    limiter = scope["app"].state.rate_limiter
    if limiter.enabled:
        await limiter.hit_user(Request(scope), claims.user_id)
    scope.setdefault("state", {})["user_id"] = claims.user_id


def _is_task_path(scope: Scope) -> bool:
    """The path names one task, by an id in its plain form (as the route's `TaskId`)."""
    raw_id = scope["path"][len(_TASK_PATH_PREFIX) :]
    return _TASK_ID.fullmatch(raw_id) is not None and int(raw_id) <= _MAX_TASK_ID


def _task_id(scope: Scope) -> int:
    """The task id of the path, if the request is one to take."""
    if scope["query_string"] or not _is_task_path(scope):
        raise _HandOn  # the route's 422 for an unknown parameter, or its 404 or 422
    return int(scope["path"][len(_TASK_PATH_PREFIX) :])


def _tag_header(headers: dict[str, str], name: str) -> str | None:
    """`If-Match` or `If-None-Match`, within the routes' bound."""
    value = headers.get(name)
    if value is not None and len(value) > _MAX_TAG_HEADER:
        raise _HandOn
    return value


_Body = TypeVar("_Body", TaskCreate, TaskUpdate)


def _json_body(model: type[_Body], headers: dict[str, str], body: bytes | None) -> _Body:
    """The body as `model`, parsed and validated as FastAPI does (json.loads, then the model
    in Python mode), if it is JSON by its Content-Type; anything else is the route's to word."""
    if body is None or headers.get("content-type", "").lower() not in _JSON_MEDIA_TYPES:
        raise _HandOn
    try:
        return model.model_validate(json.loads(body))
    except Exception:
        raise _HandOn from None


def _plain_text(value: str | None, max_length: int) -> bool:
    """Absent, or 1 to `max_length` characters that any text parameter accepts."""
    if value is None:
        return True
    if not 1 <= len(value) <= max_length:
        return False
    try:
        reject_unstorable(value)
    except ValueError:
        return False
    return True


async def _read_body(receive: Receive, received: list[Message]) -> bytes | None:
    """The whole body (None when there is none or the client left), keeping each message."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            body = b"".join(chunks)
            return body or None


def _replaying(
    received: list[Message], receive: Receive, *, then: Exception | None = None
) -> Receive:
    """A `receive` that gives the messages already read again, then the rest (or raises
    `then`, the error that stopped the reading)."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            raise then
        return await receive()

    return replay


async def _error_response(scope: Scope, receive: Receive, error: Exception) -> Response:
    """The response the app's exception handlers give for `error` (as Starlette's
    ExceptionMiddleware would find the handler); re-raised when none handles it."""
    handlers = scope["app"].exception_handlers
    for error_class in type(error).__mro__:
        if error_class is Exception:
            break  # Starlette leaves that one to ServerErrorMiddleware (ours: a bare 500)
        handler = handlers.get(error_class)
        if handler is not None:
            response: Response = await handler(Request(scope, receive), error)
            return response
    raise error
