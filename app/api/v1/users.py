"""`/api/v1/users`: registration and the caller's own profile."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api.deps import CurrentUser, SessionDep, SettingsDep
from app.api.problems import problem_responses
from app.api.v1 import API_V1_PREFIX
from app.models.user import User
from app.schemas.user import UserCreate, UserRead, UserUpdateMe
from app.services import user as user_service

router = APIRouter(prefix="/users", tags=["users"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(409, 413, 415, 422, 429, 503),
    summary="Register an account",
)
async def register_user(
    data: UserCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> User:
    user = await user_service.create_user(session, data, rounds=settings.bcrypt_rounds)
    response.headers["Location"] = f"{API_V1_PREFIX}/users/{user.id}"
    return user


@router.get(
    "/me",
    response_model=UserRead,
    responses=problem_responses(401, 503),
    summary="The signed-in user",
)
async def read_me(user: CurrentUser) -> User:
    return user


@router.patch(
    "/me",
    response_model=UserRead,
    responses=problem_responses(401, 403, 413, 415, 422, 503),
    summary="Change the signed-in user's name or password",
)
async def update_me(
    data: UserUpdateMe, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> User:
    return await user_service.update_me(session, user, data, rounds=settings.bcrypt_rounds)
