"""`/api/v1/auth`: the OAuth2 password grant, refresh-token rotation and logout.

v2 serves the same routes under `/api/v2/auth` (spec api-v2: "identically"; a token from
either version works on both): each route is declared once, in `auth_router`, which builds
the router for a version's prefix. The rate limits count the client, account or address
whatever the version, so both versions' routes spend the same budgets.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.api.deps import RateLimiterDep, SettingsDep, TransactionDb
from app.api.openapi import documented, rate_limited
from app.api.routing import api_router
from app.api.v1 import API_V1_PREFIX
from app.schemas.token import RefreshTokenRequest, TokenPair
from app.services import auth as auth_service
from app.services.auth import IssuedTokens

# Token responses must never be cached (RFC 6749 section 5.1).
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _refresh_token_link(operation_id: str, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "requestBody": {"refresh_token": "{$response.body#/refresh_token}"},
        "description": description,
    }


def _token_pair_links(operation_prefix: str) -> dict[str, Any]:
    """OpenAPI links from a token pair to what its refresh token is for, in the same version
    (stateful fuzzers follow them)."""
    ids = {name: f"auth-{name}" for name in ("refresh_tokens", "logout")}
    if operation_prefix:
        ids = {name: f"{operation_prefix}-{id_}" for name, id_ in ids.items()}
    return {
        "Refresh": _refresh_token_link(
            ids["refresh_tokens"], "Trade the refresh token for a new token pair."
        ),
        "Logout": _refresh_token_link(ids["logout"], "End the login it belongs to."),
    }


# Token responses must never be cached (RFC 6749 section 5.1).
_TOKEN_HEADERS = {200: ("Cache-Control", "Pragma")}


_SECRET: dict[str, Any] = {"format": "password"}
_PasswordGrantType = Annotated[str, StringConstraints(pattern="^password$")]


class PasswordGrantForm(OAuth2PasswordRequestForm):
    """FastAPI's password grant form, described as it is read.

    FastAPI reads an empty form field as a missing one, so `username` and `password` are
    non-empty; and a form has no `null`, so the optional fields are plain strings.
    """

    def __init__(
        self,
        *,
        grant_type: Annotated[_PasswordGrantType | SkipJsonSchema[None], Form()] = None,
        username: Annotated[str, Form(min_length=1)],
        password: Annotated[str, Form(min_length=1, json_schema_extra=_SECRET)],
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | SkipJsonSchema[None], Form()] = None,
        client_secret: Annotated[
            str | SkipJsonSchema[None], Form(json_schema_extra=_SECRET)
        ] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


def _token_pair(issued: IssuedTokens, response: Response) -> TokenPair:
    response.headers.update(_NO_STORE)
    return TokenPair(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )


def auth_router(version_prefix: str, *, operation_prefix: str = "") -> APIRouter:
    """The authentication routes under `version_prefix` (`/api/v1`, `/api/v2`);
    `operation_prefix` keeps each version's OpenAPI operation ids apart
    (`app.api.routing.api_router`)."""
    router = api_router(f"{version_prefix}/auth", "auth", operation_prefix=operation_prefix)
    links = _token_pair_links(operation_prefix)

    @router.post(
        "/token",
        response_model=TokenPair,
        responses=rate_limited(
            documented(401, 403, 413, 415, 429, 503, success=_TOKEN_HEADERS, links=links)
        ),
        summary="Log in with email and password",
    )
    async def login(
        request: Request,
        form: Annotated[PasswordGrantForm, Depends()],
        db: TransactionDb,
        settings: SettingsDep,
        limiter: RateLimiterDep,
        response: Response,
    ) -> TokenPair:
        account = auth_service.login_account(form.username)
        # Counted before the password is checked, so a parallel flood cannot overshoot.
        response.headers.update(await limiter.hit_login(request, account))
        user = await auth_service.authenticate(
            db, form.username, form.password, rounds=settings.bcrypt_rounds
        )
        await limiter.login_succeeded(account)
        return _token_pair(await auth_service.issue_tokens(db, user, settings), response)

    @router.post(
        "/refresh",
        response_model=TokenPair,
        responses=rate_limited(
            documented(401, 413, 415, 429, 503, success=_TOKEN_HEADERS, links=links)
        ),
        summary="Trade a refresh token for a new token pair (the old one is spent)",
    )
    async def refresh_tokens(
        request: Request,
        data: RefreshTokenRequest,
        db: TransactionDb,
        settings: SettingsDep,
        limiter: RateLimiterDep,
        response: Response,
    ) -> TokenPair:
        # The request carries no access token: counted for the client address (before the
        # database is asked anything), like every request without a valid credential.
        response.headers.update(await limiter.hit_anonymous(request))
        issued = await auth_service.refresh(db, data.refresh_token, settings)
        return _token_pair(issued, response)

    @router.post(
        "/logout",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=rate_limited(
            documented(401, 413, 415, 429, 503, success={204: ("Cache-Control", "Pragma")})
        ),
        summary="End the login a refresh token belongs to",
    )
    async def logout(
        request: Request,
        data: RefreshTokenRequest,
        db: TransactionDb,
        limiter: RateLimiterDep,
        response: Response,
    ) -> Response:
        response.headers.update(await limiter.hit_anonymous(request))
        await auth_service.logout(db, data.refresh_token)
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_NO_STORE)

    return router


router = auth_router(API_V1_PREFIX)
