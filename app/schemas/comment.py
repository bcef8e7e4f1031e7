"""Comment request and response bodies (spec api-v2 section 6), and a comment's v2 document."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

from app.core.bounds import COMMENT_BODY_MAX_LENGTH
from app.db.statements.comments import CommentRecord
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


def comment_json(comment: CommentRecord) -> dict[str, Any]:
    """The `CommentRead` document of a comment."""
    read = CommentRead(
        id=comment.id,
        task_id=comment.task_id,
        author=CommentAuthor(id=comment.author_id, full_name=comment.author_full_name),
        body=comment.body,
        created_at=comment.created_at,
        updated_at=comment.updated_at,
    )
    return read.model_dump(mode="json")
