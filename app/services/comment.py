"""Comment rules: who may read, write, change and delete a task's comments; what a miss answers.

The statements (`app.db.statements.comments`) carry the authorization; when one matches
nothing, `_refusal` reads why and answers in the contract's order (spec api-v2 section 2):
a token no longer current is a 401; a task the caller may not see (not a member of its live
project, in the trash, or no such task) a 404, as is a comment that is not under the task of
the path; then the 403s:

- writing a comment needs a commenter (`RoleRequired`, naming both roles);
- changing one is for its author alone: anyone else gets `NotCommentAuthor` (a plain 403,
  since no role would let them), and an author who is no longer a commenter (demoted to
  viewer) gets `RoleRequired`;
- deleting one is for its author while a commenter, or for an admin: an author below
  commenter, and anyone else below admin, get `RoleRequired` with the role that would do.

A comment does not change its task's version. Each write appends its event in the same
transaction as the write (the statements do).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from app.core.errors import AppError, Forbidden, NotFound
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.roles import Permission, least_role, role_required
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import comments as statements
from app.db.statements.comments import CommentRecord
from app.schemas.comment import CommentCreate, CommentUpdate
from app.services import retries
from app.services.task import TaskNotFound, token_revoked

__all__ = [
    "CommentNotFound",
    "CommentPage",
    "CommentRecord",
    "NotCommentAuthor",
    "create_comment",
    "delete_comment",
    "get_comment",
    "list_comments",
    "update_comment",
]


class CommentNotFound(NotFound):
    default_detail = "Comment not found."


class NotCommentAuthor(Forbidden):
    slug = "not-comment-author"
    title = "Not the comment's author"
    default_detail = "Only the author of a comment may change it."


@dataclass(frozen=True, slots=True)
class CommentPage:
    items: list[CommentRecord]
    next_cursor: str | None


async def _refusal(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    permission: Permission,
    comment_id: int | None = None,
) -> AppError | None:
    """Why a statement on the task's comments matched nothing, as the error to answer (None:
    nothing refuses it now, and `retries` makes it again).

    `permission`: the action's (for a change or a deletion, the author's own one).
    """
    current, role, author_id = await statements.diagnose(db, caller, task_id, comment_id)
    if not current:
        return token_revoked()
    if role is None:
        return TaskNotFound()
    if comment_id is not None and author_id is None:
        return CommentNotFound()
    own = author_id == caller.user_id
    if permission is Permission.COMMENT_UPDATE_OWN and not own:
        return NotCommentAuthor()
    if permission is Permission.COMMENT_DELETE_OWN and not own:
        permission = Permission.COMMENT_DELETE_ANY
    if role < least_role(permission):
        return role_required(role, least_role(permission))
    # Allowed now, though the statement found it not: a membership changed in between the
    # two statements (a black-box run toggling a member's role saw 404s for their own
    # comment, there all along). The statement is made again.
    return None


def _binding(caller: AccessClaims, task_id: int) -> str:
    return binding_digest(user=caller.user_id, task=task_id, sort="id")


async def list_comments(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    *,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> CommentPage:
    """A page of the task's comments, oldest first."""
    binding = _binding(caller, task_id)
    after_id = None
    if cursor is not None:
        position = decode_cursor(cursor, binding=binding, key=cursor_key)
        if position.key is not None:
            raise InvalidCursor()
        after_id = position.last_id
    comments = await statements.list_rows(db, caller, task_id, after_id, limit + 1)
    if not comments:
        # An empty page, or a caller who may not see the task (or is no longer current).
        current, role, _ = await statements.diagnose(db, caller, task_id)
        if not current:
            raise token_revoked()
        if role is None:
            raise TaskNotFound()
    next_cursor = None
    if len(comments) > limit:
        comments = comments[:limit]
        next_cursor = encode_cursor(
            CursorPosition(None, comments[-1].id), binding=binding, key=cursor_key
        )
    return CommentPage(comments, next_cursor)


async def get_comment(db: Db, caller: AccessClaims, task_id: int, comment_id: int) -> CommentRecord:
    async def read() -> CommentRecord | None:
        return await statements.fetch(db, caller, task_id, comment_id)

    return await retries.made_again_while_allowed(
        read, partial(_refusal, db, caller, task_id, Permission.COMMENT_READ, comment_id)
    )


async def create_comment(
    db: Db, caller: AccessClaims, task_id: int, data: CommentCreate
) -> CommentRecord:

    async def insert() -> CommentRecord | None:
        return await statements.insert_comment(db, caller, task_id, data.body, utcnow())

    return await retries.made_again_while_allowed(
        insert, partial(_refusal, db, caller, task_id, Permission.COMMENT_CREATE)
    )


async def update_comment(
    db: Db, caller: AccessClaims, task_id: int, comment_id: int, data: CommentUpdate
) -> CommentRecord:
    """Change the body of one's own comment (`updated_at` moves only if it changes)."""

    async def update() -> CommentRecord | None:
        return await statements.update_comment(db, caller, task_id, comment_id, data.body, utcnow())

    return await retries.made_again_while_allowed(
        update, partial(_refusal, db, caller, task_id, Permission.COMMENT_UPDATE_OWN, comment_id)
    )


async def delete_comment(db: Db, caller: AccessClaims, task_id: int, comment_id: int) -> None:
    async def delete() -> bool | None:
        return await statements.delete_comment(db, caller, task_id, comment_id, utcnow()) or None

    await retries.made_again_while_allowed(
        delete, partial(_refusal, db, caller, task_id, Permission.COMMENT_DELETE_OWN, comment_id)
    )
