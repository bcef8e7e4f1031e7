"""Path and header parameters the routes share, with the bounds of `app.core.bounds`."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header, Path
from pydantic import BeforeValidator

from app.core.bounds import ENTITY_TAG_HEADER_MAX_LENGTH, IDEMPOTENCY_KEY_MAX_LENGTH, MAX_ID

_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")


def _canonical_id(value: object) -> object:
    """An id as the service writes it, and only so: `1`, not `01`, `+1`, `1.0` or ` 1`.

    Every other spelling would name the same task to us and perhaps another to a cache or a
    proxy in front; one spelling per id, the others refused like any id that is no number.
    """
    if isinstance(value, str) and not _CANONICAL_ID.fullmatch(value):
        raise ValueError("must be a whole number from 1, without sign, spaces or leading zeros")
    return value


# Ids in paths: 1 to MAX_ID (a larger number can name nothing), in their one spelling.
TaskId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The task's id."), BeforeValidator(_canonical_id)
]
UserId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The user's id."), BeforeValidator(_canonical_id)
]
ProjectId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The project's id."), BeforeValidator(_canonical_id)
]
LabelId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The label's id."), BeforeValidator(_canonical_id)
]
CommentId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The comment's id."), BeforeValidator(_canonical_id)
]
InvitationId = Annotated[
    int,
    Path(ge=1, le=MAX_ID, description="The invitation's id."),
    BeforeValidator(_canonical_id),
]
NotificationId = Annotated[
    int,
    Path(ge=1, le=MAX_ID, description="The notification's id."),
    BeforeValidator(_canonical_id),
]


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
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        pattern=r"^[\x20-\x7e]+$",
        description="1 to 255 printable ASCII characters. A retry with the same key and body "
        "within 24 hours returns the first response and creates nothing.",
    ),
]
