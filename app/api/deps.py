"""Dependency aliases shared by the routers: settings, the request's session, the caller."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from app.core.security import AccessClaims
from app.db.direct import Db
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


@asynccontextmanager
async def session_scope(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session, one transaction: commit on success, roll back on any error."""
    async with sessions() as session:
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


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session, one transaction per request: commit on success, roll back on any error.

    Function scope makes FastAPI close this before the response is sent, so a failed commit
    becomes an error response instead of a 2xx for something that was never stored.
    """
    async with session_scope(request.app.state.sessionmaker) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


class BearerClaims(OAuth2PasswordBearer):
    """The bearer scheme (as OpenAPI shows it) that also verifies the token it reads.

    One dependency instead of two (the scheme, then a verifier that takes its token): every
    authenticated request resolves it, and each dependency is a resolution step.
    `auto_error=False`: a missing header must be our 401 problem, not FastAPI's plain 401.
    """

    async def __call__(self, request: Request) -> AccessClaims:  # type: ignore[override]
        """The caller's verified access token, before the database is asked anything.

        Not yet proof of a current user: the token may have been revoked (token_version
        bumped, account deactivated). `CurrentUser` checks that with a read of the user; the
        task routes check it inside their own statement (`Caller`), see docs/decisions/0017.
        """
        token = await super().__call__(request)
        if not token:
            raise Unauthorized("Authentication is required.")
        app_state = request.app.state
        claims = auth_service.access_claims(token, key=app_state.settings.signing_key)
        # Counted before the database is asked anything: a flood costs a token check only.
        await app_state.rate_limiter.hit_user(request, claims.user_id)
        request.state.user_id = claims.user_id  # for the request's log line
        return claims


get_access_claims = BearerClaims(
    tokenUrl="/api/v1/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False
)
Caller = Annotated[AccessClaims, Depends(get_access_claims)]


async def get_current_user(session: SessionDep, claims: Caller) -> User:
    return await auth_service.user_for_claims(session, claims)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_db(request: Request) -> Db:
    """The request's statements, each its own unit of work (app/db/direct.py): nothing is
    held between them, so nothing needs closing when the request ends."""
    return Db(request.app.state.sessionmaker)


DbDep = Annotated[Db, Depends(get_db)]


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


async def check_request(request: Request) -> None:
    """The checks every route makes (one dependency: each costs a resolution step)."""
    if request.scope["query_string"]:
        await reject_unknown_query_params(request)
    if request.scope["method"] in _BODY_METHODS:
        await require_json_body(request)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def require_json_body(request: Request) -> None:
    """A body sent to a JSON route must say it is JSON (415 otherwise, not a vague 422)."""
    if request.method not in _BODY_METHODS:
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
