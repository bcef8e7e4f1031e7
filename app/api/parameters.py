"""Path and header parameters the routes share, with the bounds of `app.core.bounds`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path

from app.core.bounds import ENTITY_TAG_HEADER_MAX_LENGTH, MAX_ID

# Ids in paths: 1 to MAX_ID (a larger number can name nothing).
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="The task's id.")]
UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="The user's id.")]


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=ENTITY_TAG_HEADER_MAX_LENGTH,
        description="Entity tag(s) from an earlier response: the write happens only if the "
        "resource is still at that version (412 otherwise).",
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        max_length=ENTITY_TAG_HEADER_MAX_LENGTH,
        description="Entity tag(s) from an earlier response: 304 while one is still current.",
    ),
]
