"""`/api/v1/auth`: the OAuth2 password grant (so the docs page's Authorize button works)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import SessionDep, SettingsDep
from app.api.problems import problem_responses
from app.schemas.token import TokenPair
from app.services import auth as auth_service

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenPair,
    responses=problem_responses(401, 403, 413, 415, 422, 429, 503),
    summary="Log in with email and password",
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> TokenPair:
    user = await auth_service.authenticate(
        session, form.username, form.password, rounds=settings.bcrypt_rounds
    )
    issued = await auth_service.issue_tokens(session, user, settings)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return TokenPair(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
    )
