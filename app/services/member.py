"""Member rules (spec api-v2 section 2): who may change whose role, who may remove whom, and
the last owner and the Inbox, which nobody leaves.

- A member may grant only roles strictly below their own, and change or remove only members
  strictly below their own, with at least the action's least role; an owner may do anything.
- Anyone may lower their own role, or leave.
- The last owner cannot be demoted, removed or leave; nobody leaves an Inbox (409).

A change runs in the request's transaction: the project's row is locked first, so the
changes of one project's members are serialized, whatever the interleaving of requests; the
state is then read, the rules decide the least role the change needs, and the write carries
that role (and the state it relied on) in its `WHERE` (app/db/statements/members.py), and
appends its events in the same transaction (spec api-v2 section 7). A change to the role the
member has already writes nothing and records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import Conflict, NotFound
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.roles import Permission, ProjectRole, least_role, role_required
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import members as statements
from app.db.statements import projects as project_statements
from app.db.statements import tasks as task_statements
from app.db.statements.members import MemberRecord, MemberState
from app.services.project import InboxConflict, ProjectNotFound, explain_miss
from app.services.task import token_revoked


class MemberNotFound(NotFound):
    default_detail = "Member not found."


class LastOwner(Conflict):
    default_detail = "A project keeps at least one owner: make another member an owner first."


def role_above(role: int) -> ProjectRole:
    """The least role strictly above `role` (an owner's peers are owners)."""
    return ProjectRole(min(role + 1, ProjectRole.OWNER))


def required_to_change(is_self: bool, role: int, new_role: int) -> ProjectRole:
    """The least role that may change a member at `role` to `new_role`."""
    if is_self and new_role <= role:
        return ProjectRole.VIEWER  # anyone may lower their own role
    return max(least_role(Permission.MEMBER_UPDATE), role_above(role), role_above(new_role))


def required_to_remove(is_self: bool, role: int) -> ProjectRole:
    """The least role that may remove a member at `role`."""
    if is_self:
        return ProjectRole.VIEWER  # anyone may leave
    return max(least_role(Permission.MEMBER_DELETE), role_above(role))


async def _locked_state(
    db: Db, caller: AccessClaims, project_id: int, user_id: int
) -> tuple[MemberState, int]:
    """Lock the project for a membership change and read its state; 401 or 404 when the
    caller may not see it, 404 when `user_id` is not a member. Returns the state and the
    target's role."""
    if not await project_statements.lock(db, caller, project_id):
        await explain_miss(db, caller, project_id, ProjectRole.VIEWER)
        raise ProjectNotFound()
    found = await statements.state(db, caller, project_id, user_id)
    if found.caller_role is None:  # not possible under the lock, but said plainly
        raise ProjectNotFound()
    if found.target_role is None:
        raise MemberNotFound()
    return found, found.target_role


async def _after_a_miss(db: Db, caller: AccessClaims) -> None:
    """A guarded write matched nothing under the lock: only the caller's token can have
    changed meanwhile."""
    if not await task_statements.caller_is_still_current(db, caller):
        raise token_revoked()
    raise ProjectNotFound()


async def get_member(db: Db, caller: AccessClaims, project_id: int, user_id: int) -> MemberRecord:
    found = await statements.fetch(db, caller, project_id, user_id)
    if found is not None:
        return found
    await explain_miss(db, caller, project_id, least_role(Permission.MEMBER_READ))
    raise MemberNotFound()


async def change_role(
    db: Db, caller: AccessClaims, project_id: int, user_id: int, new_role: ProjectRole
) -> MemberRecord:
    found, role = await _locked_state(db, caller, project_id, user_id)
    required = required_to_change(user_id == caller.user_id, role, new_role)
    assert found.caller_role is not None
    if found.caller_role < required:
        raise role_required(found.caller_role, required)
    if role == ProjectRole.OWNER and new_role < role and found.owners <= 1:
        raise LastOwner()
    if new_role != role and not await statements.change_role(
        db,
        caller,
        project_id,
        user_id,
        seen_role=role,
        required=required,
        new_role=new_role,
        now=utcnow(),
    ):
        await _after_a_miss(db, caller)
    return await get_member(db, caller, project_id, user_id)


async def remove_member(db: Db, caller: AccessClaims, project_id: int, user_id: int) -> None:
    """Remove a member, or leave (`user_id` the caller's own); they leave the assignees of
    the project's tasks too."""
    # Before anything is locked or written (see `take_assigned_tasks_turns`).
    await statements.take_assigned_tasks_turns(db, caller, project_id, user_id)
    found, role = await _locked_state(db, caller, project_id, user_id)
    required = required_to_remove(user_id == caller.user_id, role)
    assert found.caller_role is not None
    if found.caller_role < required:
        raise role_required(found.caller_role, required)
    if found.is_inbox:
        raise InboxConflict()
    if role == ProjectRole.OWNER and found.owners <= 1:
        raise LastOwner()
    if not await statements.remove(
        db, caller, project_id, user_id, seen_role=role, required=required, now=utcnow()
    ):
        await _after_a_miss(db, caller)


@dataclass(frozen=True, slots=True)
class MemberPage:
    items: list[MemberRecord]
    next_cursor: str | None


async def list_members(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    *,
    limit: int,
    cursor: str | None,
    cursor_key: bytes,
) -> MemberPage:
    """The project's members, owners first (role descending, then user id), keyset pages."""
    binding = binding_digest(user=caller.user_id, resource="members", project=project_id)
    after = None
    if cursor is not None:
        position = decode_cursor(cursor, binding=binding, key=cursor_key)
        if not isinstance(position.key, int):
            raise InvalidCursor()
        after = (position.key, position.last_id)
    members = await statements.list_members(db, caller, project_id, after=after, limit=limit + 1)
    if not members:
        await explain_miss(db, caller, project_id, least_role(Permission.MEMBER_READ))
    next_cursor = None
    if len(members) > limit:
        members = members[:limit]
        last = members[-1]
        next_cursor = encode_cursor(
            CursorPosition(last.role, last.user_id), binding=binding, key=cursor_key
        )
    return MemberPage(members, next_cursor)
