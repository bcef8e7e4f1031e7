"""Invitation rules (spec api-v2 section 4).

- An admin invites an address at a role strictly below their own (an owner at any role);
  inviting an address with a pending invitation renews it (its role and expiry, same id).
  Renewing or revoking an invitation also needs a role strictly above the one it grants, as
  changing or removing a member does: an admin cannot undo an owner's invitation of an
  admin (a 403 naming the role needed);
  inviting a member's address, or to an Inbox, is a 409. The answer never depends on
  whether an account has the address.
- Only the addressee (the account with the address) sees, accepts or declines an invitation;
  anyone else gets a 404. Accepting one that has expired is a 410; an accepted, declined or
  revoked one is gone (404).
- The lists show pending invitations that have not expired (an expired one can still be
  renewed by inviting again, or revoked).

Each write records its events in its own transaction (app/db/statements/invitations.py); a
refused one writes and records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from app.core.errors import Conflict, Gone, NotFound
from app.core.pagination import (
    CursorPosition,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.roles import Permission, ProjectRole, least_role
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import invitations as statements
from app.db.statements import members as member_statements
from app.db.statements import tasks as task_statements
from app.db.statements.invitations import InvitationRecord
from app.db.statements.members import MemberRecord
from app.services.member import role_above
from app.services.project import ProjectNotFound, explain_miss
from app.services.task import token_revoked


class InvitationNotFound(NotFound):
    default_detail = "Invitation not found."


class InvitationExpired(Gone):
    default_detail = "The invitation has expired: ask for a new one."


class AlreadyMember(Conflict):
    default_detail = "Someone with this address is already a member of the project."


def required_to_invite(role: int) -> ProjectRole:
    """The least role that may invite at `role`: strictly above it (an owner's peers are
    owners), and at least the permission's."""
    return max(least_role(Permission.INVITATION_CREATE), role_above(role))


async def invite(
    db: Db,
    caller: AccessClaims,
    project_id: int,
    email: str,
    role: ProjectRole,
    *,
    expire_days: int,
) -> tuple[InvitationRecord, bool]:
    """Invite `email` (normalised) at `role`: (the invitation, whether it is new)."""
    required = required_to_invite(role)
    now = utcnow()
    invited = await statements.invite(
        db,
        caller,
        project_id,
        email,
        role,
        required=required,
        now=now,
        expires_at=now + timedelta(days=expire_days),
    )
    if invited is not None:
        return invited
    await explain_miss(db, caller, project_id, required, inbox_conflicts=True)
    pending = await statements.role_granted(db, project_id, now, email=email)
    if pending is not None:
        await explain_miss(db, caller, project_id, required_to_invite(pending))
    raise AlreadyMember()  # the one rule left


@dataclass(frozen=True, slots=True)
class InvitationPage:
    items: list[InvitationRecord]
    next_cursor: str | None


def _after(cursor: str | None, binding: str, key: bytes) -> int | None:
    return None if cursor is None else decode_cursor(cursor, binding=binding, key=key).last_id


def _page(items: list[InvitationRecord], limit: int, binding: str, key: bytes) -> InvitationPage:
    if len(items) <= limit:
        return InvitationPage(items, None)
    items = items[:limit]
    cursor = encode_cursor(CursorPosition(None, items[-1].id), binding=binding, key=key)
    return InvitationPage(items, cursor)


async def list_for_project(
    db: Db, caller: AccessClaims, project_id: int, *, limit: int, cursor: str | None, key: bytes
) -> InvitationPage:
    """A project's pending invitations, oldest first (admins)."""
    binding = binding_digest(user=caller.user_id, resource="invitations", project=project_id)
    items = await statements.list_for_project(
        db, caller, project_id, now=utcnow(), after=_after(cursor, binding, key), limit=limit + 1
    )
    if not items:
        await explain_miss(db, caller, project_id, least_role(Permission.INVITATION_READ))
    return _page(items, limit, binding, key)


async def revoke(db: Db, caller: AccessClaims, project_id: int, invitation_id: int) -> None:
    if await statements.revoke(db, caller, project_id, invitation_id, now=utcnow()):
        return
    await explain_miss(db, caller, project_id, least_role(Permission.INVITATION_DELETE))
    granted = await statements.role_granted(db, project_id, utcnow(), invitation_id=invitation_id)
    if granted is not None:
        await explain_miss(db, caller, project_id, required_to_invite(granted))
    raise InvitationNotFound()


async def list_for_caller(
    db: Db, caller: AccessClaims, *, limit: int, cursor: str | None, key: bytes
) -> InvitationPage:
    """The pending invitations to the caller's address, oldest first."""
    binding = binding_digest(user=caller.user_id, resource="my-invitations")
    items = await statements.list_for_caller(
        db, caller, now=utcnow(), after=_after(cursor, binding, key), limit=limit + 1
    )
    if not items and not await task_statements.caller_is_still_current(db, caller):
        raise token_revoked()
    return _page(items, limit, binding, key)


async def _explain_callers_miss(db: Db, caller: AccessClaims, invitation_id: int) -> None:
    current, expires_at = await statements.diagnose_for_caller(db, caller, invitation_id)
    if not current:
        raise token_revoked()
    if expires_at is None:
        raise InvitationNotFound()
    raise InvitationExpired()


async def accept(db: Db, caller: AccessClaims, invitation_id: int) -> MemberRecord:
    """Join the project at the invitation's role; the invitation is gone then."""
    project_id = await statements.accept(db, caller, invitation_id, now=utcnow())
    if project_id is None:
        await _explain_callers_miss(db, caller, invitation_id)
        raise InvitationNotFound()
    member = await member_statements.fetch(db, caller, project_id, caller.user_id)
    if member is None:  # not possible in the transaction that made it
        raise ProjectNotFound()
    return member


async def decline(db: Db, caller: AccessClaims, invitation_id: int) -> None:
    if not await statements.decline(db, caller, invitation_id, now=utcnow()):
        await _explain_callers_miss(db, caller, invitation_id)
