"""The invitation statements: invite (or invite again), list, revoke, accept and decline.

A project's invitations are an admin's business: those statements carry the caller's
membership at the least role (`caller_may`) and the caller's token check in their `WHERE`;
renewing or revoking one also needs a role strictly above the one it grants (an owner may
touch any), as changing or removing a member does (section 2). An
invitation's addressee is whoever signed in with its address: accepting and declining carry
`Invitation.email` = the caller's own address instead, so anyone else's invitation is not
there for them. An invitation of a project in the trash is not there for anyone.

Every write appends its event in its own transaction (spec api-v2 section 7): an invitation's
`created`, `updated` (invited again: the old role and expiry read from the row locked before
the write) and `deleted` (revoked, declined or accepted), and an accepted one's member
`joined`. Nothing secret is in an invitation: `changes` holds its address, role and expiry.

The parameters are not named after the columns of `invitations` (`project_id`, `email`,
`role`): through SQLAlchemy, such a parameter would be taken for a new value of that column
in an UPDATE.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    case,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from app.core.roles import Permission, ProjectRole, least_role
from app.core.security import AccessClaims
from app.db.access import Db, Row, Statement
from app.db.statements import events
from app.db.statements.callers import caller_is_current
from app.db.statements.memberships import caller_may
from app.db.statements.tasks import caller_params
from app.db.statements.turns import project_turn, take_project_turn
from app.models.project import Invitation, Project, ProjectMember
from app.models.user import User


class InvitationRecord(NamedTuple):
    id: int
    project_id: int
    project_name: str
    email: str
    role: int
    invited_by_id: int
    invited_by_full_name: str | None
    created_at: datetime
    expires_at: datetime


# What an invitation's writes return: its id, project and audited columns (in the order of
# `_audited`'s names).
_AUDITED = (
    Invitation.id,
    Invitation.project_id,
    Invitation.email,
    Invitation.role,
    Invitation.expires_at,
)


def _audited(row: Row) -> dict[str, Any]:
    return {"email": row[2], "role": row[3], "expires_at": row[4]}


def invitations_with_project() -> Any:
    """SELECT of `InvitationRecord`s: invitations with their project and inviter (reads
    here, and the change feed's objects)."""
    return (
        select(
            Invitation.id,
            Project.id,
            Project.name,
            Invitation.email,
            Invitation.role,
            User.id,
            User.full_name,
            Invitation.created_at,
            Invitation.expires_at,
        )
        .join(Project, Project.id == Invitation.project_id)
        .join(User, User.id == Invitation.invited_by_id)
    )


def _project() -> Any:
    return bindparam("project", type_=Invitation.project_id.type)


def _now() -> Any:
    return bindparam("now", type_=Invitation.expires_at.type)


def _callers_email() -> Any:
    return select(User.email).where(User.id == bindparam("user_id")).scalar_subquery()


def _to_the_caller() -> list[ColumnElement[bool]]:
    """The invitation (`:invitation`) is addressed to the caller, for a live project."""
    live = exists().where(Project.id == Invitation.project_id, Project.deleted_at.is_(None))
    return [
        Invitation.id == bindparam("invitation", type_=Invitation.id.type),
        Invitation.email == _callers_email(),
        live,
    ]


def _may_invite() -> list[ColumnElement[bool]]:
    """The caller may invite at `:required` to the project, which is no Inbox, where nobody
    has the address `:address` yet."""
    address = bindparam("address", type_=Invitation.email.type)
    already_member = (
        exists()
        .where(
            ProjectMember.project_id == _project(),
            User.id == ProjectMember.user_id,
            User.email == address,
        )
        .correlate(None)
    )
    not_inbox = ~exists().where(Project.id == _project(), Project.inbox_user_id.is_not(None))
    return [
        caller_may(_project(), bindparam("required", type_=Integer)).correlate(None),
        caller_is_current(),
        not_inbox,
        ~already_member,
    ]


def _renewable_by_the_caller() -> ColumnElement[bool]:
    """The caller's role is strictly above the role the invitation grants (an owner's peers
    are owners: who may grant it may change or take it back), or it has expired: it grants
    nothing any more, and anyone who may invite renews or revokes it."""
    above = case(
        (Invitation.role >= int(ProjectRole.OWNER), int(ProjectRole.OWNER)),
        else_=Invitation.role + 1,
    )
    return or_(Invitation.expires_at <= _now(), caller_may(_project(), above))


# --- a project's invitations ------------------------------------------------------------------


@cache
def _pending_statement() -> Statement:
    """The pending invitation of the address, locked until the transaction ends, if the
    caller may invite it (PostgreSQL: FOR NO KEY UPDATE, the lock the renewing UPDATE takes;
    SQLite's transaction is exclusive already): the values a renewal replaces."""
    return Statement(
        select(*_AUDITED)
        .where(
            Invitation.project_id == _project(),
            Invitation.email == bindparam("address", type_=Invitation.email.type),
            *_may_invite(),
            _renewable_by_the_caller(),
        )
        .with_for_update(key_share=True, of=Invitation)
    )


@cache
def _invite_again_statement() -> Statement:
    """A pending invitation of the address gets the new role and expiry (same id)."""
    return Statement(
        update(Invitation)
        .where(
            Invitation.project_id == _project(),
            Invitation.email == bindparam("address", type_=Invitation.email.type),
            *_may_invite(),
            _renewable_by_the_caller(),
        )
        .values(
            role=bindparam("new_role", type_=Invitation.role.type),
            expires_at=bindparam("expires", type_=Invitation.expires_at.type),
        )
        .returning(*_AUDITED)
    )


@cache
def _invite_statement() -> Statement:
    row = select(
        _project(),
        bindparam("address", type_=Invitation.email.type),
        bindparam("new_role", type_=Invitation.role.type),
        bindparam("user_id", type_=Invitation.invited_by_id.type),
        _now(),
        bindparam("expires", type_=Invitation.expires_at.type),
    ).where(*_may_invite())
    columns = ["project_id", "email", "role", "invited_by_id", "created_at", "expires_at"]
    # A concurrent request may insert the same address first (after this one's UPDATE found
    # nothing): no row then, rather than a unique violation, and `invite` renews that one.
    # SQLite compiles this ON CONFLICT clause alike (the SELECT has its WHERE, which SQLite
    # needs to tell the clause from a join's ON).
    return Statement(
        postgresql.insert(Invitation)
        .from_select(columns, row)
        .on_conflict_do_nothing(index_elements=["project_id", "email"])
        .returning(*_AUDITED)
    )


@cache
def _select_statement() -> Statement:
    return Statement(invitations_with_project().where(Invitation.id == bindparam("invitation")))


@cache
def _project_list_statement(after: bool) -> Statement:
    conditions = [
        Invitation.project_id == _project(),
        Invitation.expires_at > _now(),
        caller_may(_project(), least_role(Permission.INVITATION_READ)),
        caller_is_current(),
    ]
    if after:
        conditions.append(Invitation.id > bindparam("after_id", type_=Invitation.id.type))
    return Statement(
        invitations_with_project()
        .where(*conditions)
        .order_by(Invitation.id)
        .limit(bindparam("limit", type_=Integer))
    )


@cache
def _revoke_statement() -> Statement:
    return Statement(
        delete(Invitation)
        .where(
            Invitation.id == bindparam("invitation", type_=Invitation.id.type),
            Invitation.project_id == _project(),
            caller_may(_project(), least_role(Permission.INVITATION_DELETE)),
            _renewable_by_the_caller(),
            caller_is_current(),
        )
        .returning(*_AUDITED)
    )


async def _append(
    db: Db,
    claims: AccessClaims,
    row: Row,
    action: str,
    changes: dict[str, tuple[Any, Any]],
    now: datetime,
) -> None:
    """The event of a write of the invitation `row` (one of `_AUDITED`'s rows)."""
    await events.append(
        db,
        at=now,
        actor_id=claims.user_id,
        project_id=row[1],
        entity="invitation",
        entity_id=row[0],
        action=action,
        changes=changes,
    )


async def _deleted(db: Db, claims: AccessClaims, row: Row, now: datetime) -> None:
    """The event of the invitation `row` taken away: what it was, so that its history
    still says whom it invited after it is gone."""
    before = _audited(row)
    gone = dict.fromkeys(before)
    await _append(
        db, claims, row, "deleted", events.column_changes("invitation", before, gone), now
    )


async def _invite_again(db: Db, claims: AccessClaims, params: dict[str, Any]) -> Row | None:
    """Renew the pending invitation of the address, if the caller may invite it, and record
    the change; its row, or None when there is none to renew (nothing written then)."""
    before = await db.first(_pending_statement(), params)
    if before is None:
        return None
    renewed = await db.first(_invite_again_statement(), params)
    if renewed is not None:
        changes = events.column_changes("invitation", _audited(before), _audited(renewed))
        await _append(db, claims, renewed, "updated", changes, params["now"])
    return renewed


async def invite(
    db: Db,
    claims: AccessClaims,
    project_id: int,
    email: str,
    role: int,
    *,
    required: int,
    now: datetime,
    expires_at: datetime,
) -> tuple[InvitationRecord, bool] | None:
    """Invite `email` at `role` (a pending invitation of it is renewed instead), if the
    caller has `required` and the rules allow it, and record it; (the invitation, whether
    it is new), or None when nothing was written. Up to six statements, in one transaction."""
    params = caller_params(
        claims,
        project=project_id,
        address=email,
        new_role=role,
        required=required,
        now=now,
        expires=expires_at,
    )
    created = False
    async with db.transaction():
        await take_project_turn(db, project_id)
        found = await _invite_again(db, claims, params)
        if found is None:
            found = await db.first(_invite_statement(), params)
            if found is not None:
                created = True
                changes = events.column_changes("invitation", None, _audited(found))
                await _append(db, claims, found, "created", changes, now)
        if found is None:
            # Refused, or a concurrent request invited the address since the first look
            # (committed now: the INSERT waited for it): then this is inviting it again.
            found = await _invite_again(db, claims, params)
        if found is None:
            return None
        invitation = await db.first(_select_statement(), {"invitation": found[0]})
    assert invitation is not None
    return InvitationRecord._make(invitation), created


async def list_for_project(
    db: Db, claims: AccessClaims, project_id: int, *, now: datetime, after: int | None, limit: int
) -> list[InvitationRecord]:
    params = caller_params(claims, project=project_id, now=now, limit=limit)
    if after is not None:
        params["after_id"] = after
    rows = await db.rows(_project_list_statement(after is not None), params)
    return [InvitationRecord._make(row) for row in rows]


async def revoke(
    db: Db, claims: AccessClaims, project_id: int, invitation_id: int, *, now: datetime
) -> bool:
    """Delete the project's invitation (an admin) and record it, in one transaction."""
    params = caller_params(claims, project=project_id, invitation=invitation_id, now=now)
    async with db.transaction():
        await take_project_turn(db, project_id)
        revoked = await db.first(_revoke_statement(), params)
        if revoked is None:
            return False
        await _deleted(db, claims, revoked, now)
    return True


@cache
def _role_statement(by_address: bool) -> Statement:
    """The role an invitation of the project grants (by its address or its id), whatever the
    caller: the diagnosis of a renewal or revocation that matched nothing."""
    chosen = (
        Invitation.email == bindparam("address", type_=Invitation.email.type)
        if by_address
        else Invitation.id == bindparam("invitation", type_=Invitation.id.type)
    )
    return Statement(
        select(Invitation.role).where(
            Invitation.project_id == _project(), chosen, Invitation.expires_at > _now()
        )
    )


async def role_granted(
    db: Db,
    project_id: int,
    now: datetime,
    *,
    email: str | None = None,
    invitation_id: int | None = None,
) -> int | None:
    """The role the project's invitation of `email` (or of id `invitation_id`) grants while
    pending at `now`; None when there is none."""
    params: dict[str, Any] = {"project": project_id, "now": now}
    if email is not None:
        params["address"] = email
    else:
        params["invitation"] = invitation_id
    row = await db.first(_role_statement(email is not None), params)
    return None if row is None else int(row[0])


# --- the caller's invitations -----------------------------------------------------------------


@cache
def _callers_list_statement(after: bool) -> Statement:
    conditions = [
        Invitation.email == _callers_email(),
        Invitation.expires_at > _now(),
        Project.deleted_at.is_(None),
        caller_is_current(),
    ]
    if after:
        conditions.append(Invitation.id > bindparam("after_id", type_=Invitation.id.type))
    return Statement(
        invitations_with_project()
        .where(*conditions)
        .order_by(Invitation.id)
        .limit(bindparam("limit", type_=Integer))
    )


@cache
def _project_turn_statement() -> Statement:
    """The turn of the project of an invitation to the caller (`take_project_turn`), before
    they take it: nobody else can make a project's writes wait by naming its invitations."""
    return Statement(
        select(project_turn(Invitation.project_id.expression)).where(*_to_the_caller())
    )


async def _take_projects_turn(db: Db, params: dict[str, Any]) -> None:
    if db.dialect.name == "postgresql":
        await db.rows(_project_turn_statement(), params)


@cache
def _take_statement(unexpired: bool) -> Statement:
    """Delete an invitation to the caller (accepting: only while it has not expired)."""
    conditions = [*_to_the_caller(), caller_is_current()]
    if unexpired:
        conditions.append(Invitation.expires_at > _now())
    return Statement(delete(Invitation).where(*conditions).returning(*_AUDITED))


@cache
def _join_statement() -> Statement:
    return Statement(
        insert(ProjectMember)
        .values(
            project_id=_project(),
            user_id=bindparam("user_id"),
            role=bindparam("new_role", type_=ProjectMember.role.type),
            added_at=_now(),
        )
        .returning(ProjectMember.user_id)
    )


@cache
def _callers_diagnosis_statement() -> Statement:
    """Why taking an invitation missed: (the caller is current, the invitation to the caller
    is there, its expiry)."""
    expiry = select(Invitation.expires_at).where(*_to_the_caller()).scalar_subquery()
    return Statement(select(caller_is_current(), expiry))


async def list_for_caller(
    db: Db, claims: AccessClaims, *, now: datetime, after: int | None, limit: int
) -> list[InvitationRecord]:
    params = caller_params(claims, now=now, limit=limit)
    if after is not None:
        params["after_id"] = after
    rows = await db.rows(_callers_list_statement(after is not None), params)
    return [InvitationRecord._make(row) for row in rows]


async def accept(db: Db, claims: AccessClaims, invitation_id: int, *, now: datetime) -> int | None:
    """Take the unexpired invitation and make the caller a member at its role, and record
    both (call in a transaction); the project's id, or None when nothing was taken."""
    params = caller_params(claims, invitation=invitation_id, now=now)
    await _take_projects_turn(db, params)
    taken = await db.first(_take_statement(True), params)
    if taken is None:
        return None
    project_id, role = taken[1], taken[3]
    await db.rows(
        _join_statement(), caller_params(claims, project=project_id, new_role=role, now=now)
    )
    # The invitation's `deleted` too, not only the member's `joined`: the project's admins
    # keep a copy of its pending invitations from the feed, and this is how they learn that
    # one is gone (as when it is revoked or declined).
    await _deleted(db, claims, taken, now)
    await events.append(
        db,
        at=now,
        actor_id=claims.user_id,
        project_id=project_id,
        entity="member",
        entity_id=claims.user_id,
        action="joined",
        changes=events.column_changes("member", None, {"role": role}),
    )
    return int(project_id)


async def decline(db: Db, claims: AccessClaims, invitation_id: int, *, now: datetime) -> bool:
    """Delete the invitation to the caller and record it, in one transaction."""
    params = caller_params(claims, invitation=invitation_id)
    async with db.transaction():
        await _take_projects_turn(db, params)
        declined = await db.first(_take_statement(False), params)
        if declined is None:
            return False
        await _deleted(db, claims, declined, now)
    return True


async def diagnose_for_caller(
    db: Db, claims: AccessClaims, invitation_id: int
) -> tuple[bool, datetime | None]:
    params = caller_params(claims, invitation=invitation_id)
    found = await db.first(_callers_diagnosis_statement(), params)
    assert found is not None
    return bool(found[0]), found[1]
