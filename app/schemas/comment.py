"""Comment request and response bodies (spec api-v2 section 6)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from app.core.bounds import COMMENT_BODY_MAX_LENGTH
from app.schemas.common import (
    VISIBLE_TEXT_PATTERN,
    JsonSchemaHints,
    RequestModel,
    ResponseModel,
    UTCTimestamp,
    reject_controls_in_text,
    require_visible,
)

# Multi-line text as a task's description (tab and line breaks allowed, other controls,
# direction overrides and noncharacters not), 1 to COMMENT_BODY_MAX_LENGTH characters, kept
# as sent; it must show something (a comment of spaces or line breaks says nothing).
CommentBody = Annotated[
    str,
    StringConstraints(min_length=1, max_length=COMMENT_BODY_MAX_LENGTH),
    AfterValidator(reject_controls_in_text),
    AfterValidator(require_visible),
    JsonSchemaHints(pattern=VISIBLE_TEXT_PATTERN),
]


class CommentCreate(RequestModel):
    body: CommentBody


class CommentUpdate(RequestModel):
    body: CommentBody


class CommentAuthor(ResponseModel):
    id: int
    full_name: str | None


class CommentRead(ResponseModel):
    id: int
    task_id: int
    author: CommentAuthor
    body: str
    created_at: UTCTimestamp
    updated_at: UTCTimestamp
