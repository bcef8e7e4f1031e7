"""Token pair returned by login and refresh, and the refresh/logout request body."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.schemas.common import RequestModel, SafeStr


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the access token in seconds.")
    refresh_token: str


class RefreshTokenRequest(RequestModel):
    refresh_token: Annotated[SafeStr, Field(min_length=1, max_length=512)]
