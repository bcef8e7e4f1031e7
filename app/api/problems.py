"""Renders every error as an RFC 9457 problem: the one place that knows the error body.

Handlers are registered for the app's own errors, request validation, Starlette's routing
errors, integrity errors, an unreachable database and a transaction the database rolled back
for a concurrent one (a 409: send it again). Anything else is caught by
`LastResortMiddleware`, which renders a bare 500 through `problem_response`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import Scope

from app.api.messages import plain_message
from app.api.rate_limit import RateLimiter
from app.core import errors
from app.core.errors import error_item, shown_name
from app.db.errors import DatabaseErrorKind, classify, sqlstate_of, unreachable

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = structlog.get_logger("app.errors")


_UNPARSABLE_BODY = error_item(["body"], "Request body could not be parsed", "json_invalid")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_body(error: errors.AppError, *, instance: str, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
        "request_id": request_id,
    }
    if error.status == 422:
        body["errors"] = error.errors or []
    body.update(error.extensions())
    return body


def problem_response(
    error: errors.AppError, *, instance: str, request_id: str, headers: Mapping[str, str] = {}
) -> ProblemResponse:
    return ProblemResponse(
        problem_body(error, instance=instance, request_id=request_id),
        status_code=error.status,
        headers={**error.headers, **headers},
    )


def request_id_of(scope: Scope) -> str:
    """The request's id (set by `RequestIdMiddleware`), which every problem body repeats."""
    return str(scope.get("state", {}).get("request_id", ""))


# The most a problem repeats of the request's path, in bytes of UTF-8 (the mark included).
INSTANCE_MAX_BYTES = 1024
_CUT_MARK = "…"
_CUT_ESCAPE = re.compile(r"%[0-9A-F]?$")


def request_path(scope: Scope) -> str:
    """The path a problem's `instance` names: the request's, as `request.url.path` spells it,
    without decoding the query string (which may not be UTF-8).

    A path longer than INSTANCE_MAX_BYTES is cut to fit, at a character boundary and not
    inside one of the %-escapes made here, and then ends with "…": whatever was sent, a
    problem stays small.
    """
    path: str = scope.get("path", "")
    path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    if len(path) <= INSTANCE_MAX_BYTES // 4:  # no character is longer than 4 bytes
        return path
    encoded = path.encode("utf-8", "surrogatepass")
    if len(encoded) <= INSTANCE_MAX_BYTES:
        return path
    budget = INSTANCE_MAX_BYTES - len(_CUT_MARK.encode())
    # "ignore" drops the character cut in two at the end (and anything not UTF-8).
    kept = encoded[:budget].decode("utf-8", "ignore")
    return _CUT_ESCAPE.sub("", kept) + _CUT_MARK


def render(request: Request, error: errors.AppError) -> ProblemResponse:
    scope = request.scope
    return problem_response(error, instance=request_path(scope), request_id=request_id_of(scope))


# How pydantic names the branches of a union in `loc` ("function-after[...]", "literal[...]",
# "int", "constrained-str", "none"). Only looked for below a field's own name: at that depth
# our request bodies (all flat) have no real keys, so a client's own key names are never
# dropped.
_UNION_BRANCH = re.compile(r"[a-z-]+\[.*|(constrained-)?(str|int|float|bool|bytes)|none")


def _field_path(loc: Sequence[Any]) -> list[str | int]:
    """Where the error is; a name the client sent (an unknown field's) only when plain."""
    path: list[str | int] = [part if isinstance(part, int) else str(part) for part in loc]
    kept = path[:2] + [
        part for part in path[2:] if not (isinstance(part, str) and _UNION_BRANCH.fullmatch(part))
    ]
    return [part if isinstance(part, int) else shown_name(part) for part in kept]


def _clean_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors in plain words (app/api/messages.py), without `input` or `ctx`: a
    problem never echoes what was sent. One more than a problem lists, at most: that is
    enough for `ValidationFailed` to say there were more, and no work is spent on the rest."""
    cleaned: list[dict[str, Any]] = []
    for item in raw:
        if len(cleaned) > errors.ERROR_ITEMS_LISTED:
            break
        if item.get("type") == "none_required" and len(item.get("loc", ())) > 2:
            # The `null` branch of an optional field: the other branch's error says what to fix.
            continue
        loc = _field_path(item.get("loc", ()))
        cleaned.append(error_item(loc, plain_message(item), str(item.get("type", "value_error"))))
    return cleaned


async def _app_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, errors.AppError)
    if isinstance(exc, errors.ServiceUnavailable) and exc.__cause__ is not None:
        await _not_served(request, exc.__cause__)
    return render(request, exc)


async def _not_served(request: Request, cause: BaseException) -> None:
    """A 503 because the database could not be reached: the request was not served, so it
    counts against no rate limit. Not when it was busy (the pool or a statement timed out):
    the request may be part of the load the limits are there to stop."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None and unreachable(cause):
        await limiter.give_back(request)


def _validation_detail(cleaned: Sequence[dict[str, Any]]) -> str | None:
    """Names the fields at fault, so the detail alone tells a person what to fix."""
    names = dict.fromkeys(
        str(item["loc"][-1])
        for item in cleaned[: errors.ERROR_ITEMS_LISTED]  # the items the problem lists
        if len(item["loc"]) > 1 and isinstance(item["loc"][-1], str)
    )
    if not names:
        return None
    return f"These fields are not valid: {', '.join(list(names)[:10])}."


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    cleaned = _clean_errors(exc.errors())
    return render(request, errors.ValidationFailed(_validation_detail(cleaned), errors=cleaned))


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's only 400 is a body it could not parse (e.g. JSON nested too deeply):
        # for a client that is the same mistake as malformed JSON, a 422.
        return render(request, errors.ValidationFailed(errors=[_UNPARSABLE_BODY]))
    error_class = errors.ERROR_BY_STATUS.get(exc.status_code)
    if error_class is None:
        body = {
            "type": "about:blank",
            "title": HTTPStatus(exc.status_code).phrase,
            "status": exc.status_code,
            "detail": "The request could not be processed.",
            "instance": request_path(request.scope),
            "request_id": request_id_of(request.scope),
        }
        return ProblemResponse(body, status_code=exc.status_code, headers=exc.headers)
    # Starlette's own detail strings ("Not Found") are replaced by ours.
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return problem_response(
        error_class(),
        instance=request_path(request.scope),
        request_id=request_id_of(request.scope),
        headers=headers,
    )


def _allowed_methods(request: Request) -> str | None:
    """Every method the resource supports (RFC 9110 15.5.6), not only the first route's.

    Each method is its own route, and Starlette fills `Allow` from the first route whose
    path matches; the routes whose template matches the path know them all.
    """
    methods = {
        method
        for route in request.app.router.routes
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE
        for method in route.methods or ()
    }
    if "GET" in methods:
        methods.add("HEAD")  # every GET route answers HEAD (app.api.routing)
    return ", ".join(sorted(methods)) if methods else None


async def _integrity_error(request: Request, exc: Exception) -> ProblemResponse:
    # Services translate the integrity errors they expect; this is the safety net.
    log.warning("integrity_error", error_class=type(exc).__name__)
    return render(request, errors.Conflict())


async def _database_unavailable(request: Request, exc: Exception) -> ProblemResponse:
    if classify(exc) is DatabaseErrorKind.CONCURRENT:
        return _concurrent_update(request, exc)
    log.warning("database_unavailable", error_class=type(exc).__name__)
    await _not_served(request, exc)
    return render(request, errors.ServiceUnavailable("The database is unavailable; retry later."))


def _concurrent_update(request: Request, exc: Exception) -> ProblemResponse:
    log.warning("concurrent_update_refused", sqlstate=sqlstate_of(exc))
    return render(request, errors.ConcurrentUpdate())


async def _dbapi_error(request: Request, exc: Exception) -> ProblemResponse:
    kind = classify(exc)
    if kind is DatabaseErrorKind.CONCURRENT:
        return _concurrent_update(request, exc)
    if kind is DatabaseErrorKind.UNAVAILABLE:
        return await _database_unavailable(request, exc)
    raise exc


# asyncpg raises plain OSErrors when it cannot connect (sqlalchemy#11956); pool exhaustion
# is SQLAlchemy's TimeoutError; a hung connect is asyncio's.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    asyncio.TimeoutError,
    TimeoutError,
)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa_exc.IntegrityError, _integrity_error)
    for error_class in DATABASE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_class, _database_unavailable)
    app.add_exception_handler(sa_exc.DBAPIError, _dbapi_error)
