"""Registration and profile changes. No HTTP here; the caller's session commits."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.core.errors import (
    AdminRequired,
    Conflict,
    EmailTaken,
    NotFound,
    Unauthorized,
    WrongPassword,
)
from app.core.pagination import CursorPosition, binding_digest, decode_cursor, encode_cursor
from app.core.roles import ProjectRole
from app.core.security import hash_password_async, verify_password_async
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import events
from app.db.statements import users as user_statements
from app.models.project import INBOX_NAME, Project, ProjectMember
from app.models.user import Role, User
from app.schemas.user import UserAdminUpdate, UserCreate, UserUpdateMe
from app.services import auth as auth_service


async def email_taken(db: Db, email: str) -> bool:
    found = await db.session.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
    return found is not None


async def create_user(db: Db, data: UserCreate, *, rounds: int, role: Role = Role.USER) -> User:
    """A new account; EmailTaken (409) when the address exists in any letter case.

    The pre-check gives the common case a clean answer; the unique index on lower(email)
    settles races between two simultaneous registrations.
    """
    # Hash before touching the database, so no pooled connection waits on bcrypt.
    password_hash = await hash_password_async(data.password, rounds)
    if await email_taken(db, data.email):
        raise EmailTaken()
    now = utcnow()
    user = User(
        email=data.email,
        full_name=data.full_name,
        password_hash=password_hash,
        role=role.value,
        is_active=True,
        token_version=1,
        created_at=now,
        updated_at=now,
    )
    db.session.add(user)
    try:
        await db.session.flush()
    except IntegrityError as exc:
        raise EmailTaken() from exc
    # Every account has its Inbox, made with it (spec api-v2 section 1).
    inbox = Project(name=INBOX_NAME, inbox_user_id=user.id, created_at=now, updated_at=now)
    db.session.add(inbox)
    await db.session.flush()
    db.session.add(
        ProjectMember(
            project_id=inbox.id, user_id=user.id, role=ProjectRole.OWNER.value, added_at=now
        )
    )
    await db.session.flush()
    # The Inbox's history starts as a shared project's does (spec api-v2 section 7).
    event = {"at": now, "actor_id": user.id, "project_id": inbox.id}
    await events.append(
        db,
        **event,
        entity="project",
        entity_id=inbox.id,
        action="created",
        changes=events.column_changes("project", None, {"name": INBOX_NAME}),
    )
    await events.append(
        db,
        **event,
        entity="member",
        entity_id=user.id,
        action="joined",
        changes=events.column_changes("member", None, {"role": ProjectRole.OWNER.value}),
    )
    return user


def _token_revoked() -> Unauthorized:
    """What a request whose token died before its write committed gets: the usual 401."""
    return Unauthorized("The access token is invalid or expired.", invalid_token=True)


async def update_me(db: Db, user: User, data: UserUpdateMe, *, rounds: int) -> User:
    """Change the caller's name or password.

    `user` is the caller as `CurrentUser` read it at the start of the request, so its
    `token_version` is the token's. The change is applied only if that token is still current
    when it commits (docs/decisions/0023): the caller's row is locked and the token checked
    again right before the write, so a change that committed first (another password change,
    a deactivation, a role change) makes this one the invalid-token 401 and writes nothing.
    """
    token_version = user.token_version
    changes = data.model_dump(exclude_unset=True)
    password_hash = None
    if data.password is not None:
        assert data.current_password is not None  # the schema requires it
        # Two bcrypt runs follow: hold no connection (and no lock) while they do.
        await db.end_read_transaction()
        if not await verify_password_async(data.current_password, user.password_hash):
            raise WrongPassword()
        password_hash = await hash_password_async(data.password, rounds)
    if not changes:
        return user
    # The lock also waits for a refresh-token rotation in flight (it holds the row FOR
    # SHARE): it commits first, and its new token is revoked below with the others.
    locked = await user_statements.lock_for_write(db, user.id, token_version)
    if locked.caller is None:
        raise _token_revoked()
    user = locked.caller
    if password_hash is not None:
        user.password_hash = password_hash
        # Every earlier access token and every refresh token of the user stops working.
        user.token_version = User.token_version + 1
    if "full_name" in changes:
        user.full_name = data.full_name
    user.updated_at = utcnow()
    await db.session.flush()
    if password_hash is not None:
        await auth_service.revoke_all_refresh_tokens(db, user.id)
        await db.session.refresh(user, ["token_version"])
    return user


class UserNotFound(NotFound):
    default_detail = "User not found."


async def get_user(db: Db, user_id: int) -> User:
    user = await db.session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def list_users(
    db: Db, *, viewer_id: int, limit: int, cursor: str | None, cursor_key: bytes
) -> tuple[list[User], str | None]:
    """Every account, oldest first, as keyset pages (cursors bound to the viewer)."""
    binding = binding_digest(user=viewer_id, resource="users", sort="id")
    statement = select(User).order_by(User.id)
    if cursor is not None:
        position = decode_cursor(cursor, binding=binding, key=cursor_key)
        statement = statement.where(User.id > position.last_id)
    users = list((await db.session.scalars(statement.limit(limit + 1))).all())
    next_cursor = None
    if len(users) > limit:
        users = users[:limit]
        next_cursor = encode_cursor(
            CursorPosition(None, users[-1].id), binding=binding, key=cursor_key
        )
    return users, next_cursor


async def administer_user(db: Db, admin: User, user_id: int, data: UserAdminUpdate) -> User:
    """Change another account's role or active flag.

    `admin` is the caller as `AdminUser` read it at the start of the request (its
    `token_version` is the token's). The change is applied only if, when it commits, that
    token is still current and its user still an admin (docs/decisions/0023): both rows are
    locked first, in id order, so two admins acting on each other are serialized and the
    second finds its token killed by the first (401).

    Either change bumps the token version, so the account's access tokens stop working at
    once; deactivation also revokes every refresh token. An admin cannot demote or
    deactivate themselves (409). Together these keep an active admin, whatever the
    interleaving: a change is applied only by an active admin other than its target, who is
    locked (so cannot be removed meanwhile) and stays an active admin.
    """
    token_version = admin.token_version
    changes = data.model_dump(exclude_unset=True)
    locked = await user_statements.lock_for_write(db, admin.id, token_version, user_id)
    if locked.caller is None:
        raise _token_revoked()
    if locked.caller.role != Role.ADMIN:
        raise AdminRequired()
    user = locked.others.get(user_id)
    if user is None:
        raise UserNotFound()
    role_changes = "role" in changes and changes["role"] != user.role
    activity_changes = "is_active" in changes and changes["is_active"] != user.is_active
    if not (role_changes or activity_changes):
        return user
    if user.id == admin.id:
        raise Conflict("Administrators cannot change their own role or deactivate themselves.")
    if role_changes:
        user.role = changes["role"]
    if activity_changes:
        user.is_active = changes["is_active"]
    user.token_version = User.token_version + 1
    user.updated_at = utcnow()
    await db.session.flush()  # the row, then its tokens (the order every user write takes)
    if activity_changes and not user.is_active:
        await auth_service.revoke_all_refresh_tokens(db, user.id)
    await db.session.refresh(user, ["token_version"])
    return user
