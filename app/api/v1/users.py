"""`/api/v1/users`: registration, the caller's own profile, and accounts for admins.

v2 serves the same routes under `/api/v2/users` (spec api-v2: "identically"): each route is
declared once, in `users_router`, which builds the router for a version's prefix.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.api.deps import AdminUser, CurrentUser, RateLimiterDep, SettingsDep, TransactionDb
from app.api.openapi import documented, rate_limited
from app.api.paging import Cursor, Limit, cursor_key, link_next_page
from app.api.parameters import UserId
from app.api.routing import api_router
from app.api.v1 import API_V1_PREFIX
from app.core.bounds import PAGE_SIZE_DEFAULT
from app.models.user import User
from app.schemas.common import Page
from app.schemas.user import UserAdminUpdate, UserCreate, UserRead, UserUpdateMe
from app.services import user as user_service


def users_router(version_prefix: str, *, operation_prefix: str = "") -> APIRouter:
    """The users routes under `version_prefix` (`/api/v1`, `/api/v2`); `operation_prefix`
    keeps each version's OpenAPI operation ids apart (`app.api.routing.api_router`)."""
    router = api_router(f"{version_prefix}/users", "users", operation_prefix=operation_prefix)

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        response_model=UserRead,
        responses=rate_limited(documented(409, 413, 415, 429, 503, success={201: ("Location",)})),
        summary="Register an account",
    )
    async def register_user(
        request: Request,
        data: UserCreate,
        db: TransactionDb,
        settings: SettingsDep,
        limiter: RateLimiterDep,
        response: Response,
    ) -> User:
        response.headers.update(await limiter.hit_registration(request))
        user = await user_service.create_user(db, data, rounds=settings.bcrypt_rounds)
        response.headers["Location"] = f"{version_prefix}/users/{user.id}"
        return user

    @router.get(
        "",
        response_model=Page[UserRead],
        responses=documented(401, 403, 429, 503, success={200: ("Link",)}),
        summary="List every account (admins only)",
    )
    async def list_users(
        request: Request,
        response: Response,
        admin: AdminUser,
        db: TransactionDb,
        settings: SettingsDep,
        limit: Limit = PAGE_SIZE_DEFAULT,
        cursor: Cursor = None,
    ) -> Page[UserRead]:
        users, next_cursor = await user_service.list_users(
            db,
            viewer_id=admin.id,
            limit=limit,
            cursor=cursor,
            cursor_key=cursor_key(settings, "user"),
        )
        link_next_page(request, response, next_cursor)
        return Page[UserRead](
            items=[UserRead.model_validate(user) for user in users], next_cursor=next_cursor
        )

    @router.get(
        "/me",
        response_model=UserRead,
        responses=documented(401, 429, 503),
        summary="The signed-in user",
    )
    async def read_me(user: CurrentUser) -> User:
        return user

    @router.patch(
        "/me",
        response_model=UserRead,
        responses=documented(401, 403, 413, 415, 429, 503),
        summary="Change the signed-in user's name or password",
    )
    async def update_me(
        request: Request,
        data: UserUpdateMe,
        user: CurrentUser,
        db: TransactionDb,
        settings: SettingsDep,
        limiter: RateLimiterDep,
        response: Response,
    ) -> User:
        if data.password is None:
            return await user_service.update_me(db, user, data, rounds=settings.bcrypt_rounds)
        # `current_password` is a password guess like a login: a stolen access token must not
        # buy unlimited guesses (or unlimited bcrypt work).
        response.headers.update(await limiter.hit_login(request, user.email))
        updated = await user_service.update_me(db, user, data, rounds=settings.bcrypt_rounds)
        await limiter.login_succeeded(user.email)
        return updated

    @router.get(
        "/{user_id}",
        response_model=UserRead,
        responses=documented(401, 403, 404, 429, 503),
        summary="One account (admins only)",
    )
    async def read_user(user_id: UserId, _admin: AdminUser, db: TransactionDb) -> User:
        return await user_service.get_user(db, user_id)

    @router.patch(
        "/{user_id}",
        response_model=UserRead,
        responses=documented(401, 403, 404, 409, 413, 415, 429, 503),
        summary="Change an account's role or deactivate it (admins only)",
    )
    async def administer_user(
        user_id: UserId, data: UserAdminUpdate, admin: AdminUser, db: TransactionDb
    ) -> User:
        return await user_service.administer_user(db, admin, user_id, data)

    return router


router = users_router(API_V1_PREFIX)
