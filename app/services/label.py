"""Label rules: who may read and change a project's labels, what a miss answers.

The statements (`app.db.statements.labels`) carry the authorization; when one matches nothing,
`_refusal` reads why and answers in the contract's order (spec api-v2 section 2): a token no
longer current is a 401; a project the caller may not see (not a member, in the trash, or no
such project) a 404, as is a label that is not under the project of the path; a role below
the action's least role a 403 naming both; and only then a name already taken a 409.
Each write appends its event in the same transaction as the write (the statements do).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy.exc import IntegrityError

from app.core.errors import AppError, ConcurrentUpdate, Conflict, NotFound
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
from app.db.statements import labels as statements
from app.db.statements.labels import LabelRecord
from app.schemas.label import LabelCreate, LabelUpdate, default_color
from app.services import retries
from app.services.project import ProjectNotFound
from app.services.task import token_revoked

__all__ = [
    "LabelNameTaken",
    "LabelNotFound",
    "LabelPage",
    "LabelRecord",
    "create_label",
    "delete_label",
    "get_label",
    "list_labels",
    "update_label",
]


class LabelNotFound(NotFound):
    default_detail = "Label not found."


class LabelNameTaken(Conflict):
    slug = "label-name-taken"
    title = "Label name taken"
    default_detail = "This project already has a label of that name (in any letter case)."


@dataclass(frozen=True, slots=True)
class LabelPage:
    items: list[LabelRecord]
    next_cursor: str | None


async def _refusal(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    permission: Permission,
    label_id: int | None = None,
) -> AppError | None:
    """Why a statement on the project's labels matched nothing, as the error to answer;
    None when nothing refuses it now (`retries`: the project was restored, or the caller's
    membership or role came back, between the statement and this read)."""
    current, role, found = await statements.diagnose(db, caller, project_id, label_id)
    if not current:
        return token_revoked()
    if role is None:
        return ProjectNotFound()
    if not found:
        return LabelNotFound()
    least = least_role(permission)
    if role < least:
        return role_required(role, least)
    # Allowed now, though the statement found it not: a membership changed in between the
    # two statements (a black-box run toggling a member's role saw 404s for a label that
    # was there all along). The statement is made again.
    return None


def _binding(caller: AccessClaims, project_id: int) -> str:
    return binding_digest(user=caller.user_id, project=project_id, sort="name")


async def list_labels(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    *,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> LabelPage:
    """A page of the project's labels by name without regard to case, then id."""
    binding = _binding(caller, project_id)
    after = None
    if cursor is not None:
        position = decode_cursor(cursor, binding=binding, key=cursor_key)
        if not isinstance(position.key, str):
            raise InvalidCursor()
        after = (position.key, position.last_id)
    rows = await statements.list_rows(db, caller, project_id, after, limit + 1)
    if not rows:
        # An empty page, or a caller who may not see the project (or is no longer current).
        current, role, _ = await statements.diagnose(db, caller, project_id)
        if not current:
            raise token_revoked()
        if role is None:
            raise ProjectNotFound()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last, sort_name = rows[-1]
        next_cursor = encode_cursor(
            CursorPosition(sort_name, last.id), binding=binding, key=cursor_key
        )
    return LabelPage([label for label, _ in rows], next_cursor)


async def get_label(db: Db, caller: AccessClaims, project_id: int, label_id: int) -> LabelRecord:
    async def read() -> LabelRecord | None:
        return await statements.fetch(db, caller, project_id, label_id)

    return await retries.made_again_while_allowed(
        read, partial(_refusal, db, caller, project_id, Permission.LABEL_READ, label_id)
    )


async def create_label(
    db: Db, caller: AccessClaims, project_id: int, data: LabelCreate
) -> LabelRecord:
    color = data.color if data.color is not None else default_color(data.name)

    async def insert() -> LabelRecord | None:
        try:
            return await statements.insert_label(db, caller, project_id, data.name, color, utcnow())
        except IntegrityError as exc:
            # Once the caller is allowed (the statement's WHERE), the one constraint the row
            # can break is the name's unique index: the project exists, and its label names
            # are unique without regard to case.
            raise LabelNameTaken() from exc

    return await retries.made_again_while_allowed(
        insert, partial(_refusal, db, caller, project_id, Permission.LABEL_CREATE)
    )


async def update_label(
    db: Db, caller: AccessClaims, project_id: int, label_id: int, data: LabelUpdate
) -> LabelRecord:
    """Rename or recolour a label; a body with no field still needs the role, and changes
    nothing."""
    changes = data.model_dump(exclude_unset=True)

    async def update() -> LabelRecord | None:
        try:
            return await statements.update_label(
                db, caller, project_id, label_id, changes, utcnow()
            )
        except IntegrityError as exc:  # another label of the project has the new name
            raise LabelNameTaken() from exc

    return await retries.made_again_while_allowed(
        update, partial(_refusal, db, caller, project_id, Permission.LABEL_UPDATE, label_id)
    )


async def delete_label(db: Db, caller: AccessClaims, project_id: int, label_id: int) -> list[int]:
    """Delete a label and take it off its tasks, each getting a new version (in `db`'s one
    transaction); the ids of those tasks. Not made again when a change that refused it is
    gone by the read that tells why: the transaction holds the turns it took, and taking
    tasks' turns again after the project's would break the order every writer takes them in
    (`app.db.statements.labels.delete_label`); the answer is the 409 to send again."""
    bumped = await statements.delete_label(db, caller, project_id, label_id, utcnow())
    if bumped is not None:
        return bumped
    raise (
        await _refusal(db, caller, project_id, Permission.LABEL_DELETE, label_id)
        or ConcurrentUpdate()
    )
