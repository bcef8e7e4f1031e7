"""Dependency aliases shared by the routers: settings, the request's session, the caller."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, params
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.rate_limit import RateLimiter
from app.core.config import Settings
from app.core.errors import AdminRequired, AppError, Unauthorized, UnsupportedMediaType
from app.models.user import Role, User
from app.services import auth as auth_service


# Every dependency is `async def`: FastAPI runs plain `def` ones in the thread pool, where
# they would queue behind bcrypt on every request.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session, one transaction per request: commit on success, roll back on any error.

    Function scope makes FastAPI close this before the response is sent, so a failed commit
    becomes an error response instead of a 2xx for something that was never stored.
    """
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
        except AppError as error:
            if error.commit_transaction:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    """For the rare work that needs its own transaction (claiming an idempotency key)."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessions


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]

# auto_error=False: a missing header must be our 401 problem, not FastAPI's plain 401.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
    token: Annotated[str | None, Depends(_bearer)],
) -> User:
    if not token:
        raise Unauthorized("Authentication is required.")
    claims = auth_service.access_claims(token, key=settings.signing_key)
    # Counted before the database is asked anything: a flood costs a token check only.
    await limiter.hit_user(request, claims.user_id)
    user = await auth_service.user_for_claims(session, claims)
    request.state.user_id = user.id  # for the request's log line
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN:
        raise AdminRequired()
    return user


AdminUser = Annotated[User, Depends(get_current_admin)]


# Per-route facts, computed on first use. Keyed by what identifies a route (and holds its
# endpoint alive), since routes themselves are not hashable and ids can be reused.
RouteKey = tuple[str, frozenset[str], object]
_json_body_routes: dict[RouteKey, bool] = {}


def _route_key(route: APIRoute) -> RouteKey:
    return (route.path_format, frozenset(route.methods or ()), route.endpoint)


def _takes_json_body(route: APIRoute) -> bool:
    takes_json = _json_body_routes.get(_route_key(route))
    if takes_json is None:
        field = route.body_field
        takes_json = field is not None and not isinstance(field.field_info, params.Form)
        _json_body_routes[_route_key(route)] = takes_json
    return takes_json


async def require_json_body(request: Request) -> None:
    """A body sent to a JSON route must say it is JSON (415 otherwise, not a vague 422)."""
    if request.method not in {"POST", "PUT", "PATCH"}:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not _takes_json_body(route):
        return
    content_type = request.headers.get("content-type")
    if content_type is None:
        if request.headers.get("content-length", "0") == "0" and (
            "transfer-encoding" not in request.headers
        ):
            return  # no body at all: the missing-body 422 says it better
        raise UnsupportedMediaType()
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType()


_allowed_query_names: dict[RouteKey, frozenset[str]] = {}
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub_dependant in dependant.dependencies:
        names |= _query_names(sub_dependant)
    return names


async def reject_unknown_query_params(request: Request) -> None:
    """A mistyped or repeated parameter is a 422, not a silently different result."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _allowed_query_names.get(_route_key(route))
    if allowed is None:
        allowed = frozenset(_query_names(route.dependant))
        _allowed_query_names[_route_key(route)] = allowed
    problems = []
    for name in dict.fromkeys(request.query_params):
        if name not in allowed:
            problems.append(
                {
                    # A name that is not plain text is not repeated back.
                    "loc": ("query", name if _PLAIN_NAME.fullmatch(name) else "<unknown>"),
                    "msg": "Unknown query parameter",
                    "type": "extra_forbidden",
                }
            )
        elif len(request.query_params.getlist(name)) > 1:
            # Otherwise the last one would silently win; lists are comma-separated.
            problems.append(
                {
                    "loc": ("query", name),
                    "msg": "Repeated query parameter; separate several values with commas",
                    "type": "repeated_parameter",
                }
            )
    if problems:
        raise RequestValidationError(problems)
