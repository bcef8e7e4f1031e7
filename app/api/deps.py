"""The routes' dependencies: settings, the rate limiter, the database in the route's mode, and
the caller. Every one is `async def`: `CompiledRoute` refuses a sync dependency (FastAPI would
run it in the thread pool, where it would queue behind bcrypt)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends, Request, Response
from fastapi.security import OAuth2PasswordBearer

from app.api.rate_limit import RateLimiter
from app.core.config import Settings
from app.core.errors import AdminRequired, Unauthorized
from app.core.security import AccessClaims
from app.db.access import Db
from app.models.user import Role, User
from app.services import auth as auth_service


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


# --- the database: a route declares the mode its work needs (ARCHITECTURE.md) -----------


async def autocommit_db(request: Request) -> Db:
    """Each statement its own unit of work (app/db/access.py): nothing is held between them,
    so nothing needs closing when the request ends."""
    return Db.autocommit(request.app.state.sessionmaker)


AutocommitDb = Annotated[Db, Depends(autocommit_db)]


async def transaction_db(request: Request) -> AsyncIterator[Db]:
    """One transaction for the request: committed when the endpoint has returned, rolled back
    on any error.

    Function scope closes it before the response is sent, so a failed commit becomes an
    error response instead of a 2xx for something that was never stored.
    """
    async with Db.transaction_for(request.app.state.sessionmaker) as db:
        yield db


TransactionDb = Annotated[Db, Depends(transaction_db, scope="function")]


# --- the caller ----------------------------------------------------------------------------


class BearerClaims(OAuth2PasswordBearer):
    """The bearer scheme (as OpenAPI shows it) that also verifies the token it reads.

    The header is read by FastAPI's `OAuth2PasswordBearer` (the one reader of it), and the
    token by `auth_service.access_claims` (the one reader of the token format).
    `auto_error=False`: a missing header must be our 401 problem, not FastAPI's plain 401.
    """

    async def __call__(  # type: ignore[override]
        self, request: Request, response: Response
    ) -> AccessClaims:
        """The caller's verified access token, before the database is asked anything.

        Not yet proof of a current user: the token may have been revoked (token_version
        bumped, account deactivated). `CurrentUser` checks that with a read of the user; the
        task routes check it inside their own statement (`Caller`), see docs/decisions/0017.
        The user's rate limit is counted here (or, without a valid token, the client
        address's anonymous limit), and its headers set on the answer.
        """
        token = await super().__call__(request)
        app_state = request.app.state
        limiter: RateLimiter = app_state.rate_limiter
        try:
            if len(request.headers.getlist("authorization")) > 1:
                # One request, one reading (decision 0010): FastAPI reads the first header,
                # a proxy in front may read the last.
                raise Unauthorized("Send one Authorization header.", invalid_token=True)
            if not token:
                raise Unauthorized("Authentication is required.")
            claims = auth_service.access_claims(token, key=app_state.settings.signing_key)
        except Unauthorized:
            # No valid token: counted for the client's address (429 once that is spent),
            # since there is no user to count it for.
            response.headers.update(await limiter.hit_anonymous(request))
            raise
        # Counted before the database is asked anything: a flood costs a token check only.
        rate_limit_headers = await limiter.hit_user(request, claims.user_id)
        if rate_limit_headers:
            response.headers.update(rate_limit_headers)
        structlog.contextvars.bind_contextvars(user_id=claims.user_id)  # on the request's log
        return claims


get_access_claims = BearerClaims(
    tokenUrl="/api/v1/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False
)
Caller = Annotated[AccessClaims, Depends(get_access_claims)]


async def get_current_user(db: TransactionDb, claims: Caller) -> User:
    return await auth_service.user_for_claims(db, claims)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN:
        raise AdminRequired()
    return user


AdminUser = Annotated[User, Depends(get_current_admin)]
