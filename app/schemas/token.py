"""Token pair returned by login and refresh, and the refresh/logout request body."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from app.core.bounds import REFRESH_TOKEN_MAX_LENGTH
from app.schemas.common import (
    NO_NUL_PATTERN,
    JsonSchemaHints,
    RequestModel,
    ResponseModel,
    reject_unstorable,
)


class TokenPair(ResponseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the access token in seconds.")
    refresh_token: str


class RefreshTokenRequest(RequestModel):
    refresh_token: Annotated[
        str,
        StringConstraints(min_length=1, max_length=REFRESH_TOKEN_MAX_LENGTH),
        AfterValidator(reject_unstorable),
        JsonSchemaHints(pattern=NO_NUL_PATTERN),
    ]
