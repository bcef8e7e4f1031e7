"""What the cleanup jobs remove (inside a transaction): projects long in the trash, the rows
that have expired (idempotency keys, refresh tokens, invitations), and the webhook delivery
log's finished attempts older than the history kept.

Each is one conditional `DELETE ... RETURNING`, so running it twice, or on two workers at
once, removes each row once: the second finds nothing. A restore that commits first wins: the
purge's condition (`deleted_at` before the cutoff) is checked again on the row it locks.
Removals a member could have seen (a project, an invitation) leave a `purged` event by the
system, as a purged task does (`app.db.statements.tasks.purge_trashed`); a purged project's
members each a `removed` event too.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import bindparam, delete, select

from app.db.access import Db, Statement
from app.db.statements import events
from app.models.idempotency_key import IdempotencyKey
from app.models.project import Invitation, Project, ProjectMember
from app.models.refresh_token import RefreshToken
from app.models.webhook import WebhookDelivery


@cache
def _purge_projects_statement() -> Statement:
    # As for tasks: a project being restored at this moment is skipped (the restore wins).
    expired = (
        select(Project.id)
        .where(
            Project.inbox_user_id.is_(None),
            Project.deleted_at.is_not(None),
            Project.deleted_at < bindparam("cutoff", type_=Project.deleted_at.type),
        )
        .with_for_update(skip_locked=True)
    )
    return Statement(
        delete(Project)
        .where(Project.id.in_(expired.scalar_subquery()))
        .returning(Project.id, Project.name)
    )


@cache
def _members_of_expired_statement() -> Statement:
    """The members of the projects trashed before `cutoff` (read before the purge deletes
    them with their projects; a trashed project's members do not change)."""
    return Statement(
        select(ProjectMember.project_id, ProjectMember.user_id, ProjectMember.role)
        .join(Project, Project.id == ProjectMember.project_id)
        .where(
            Project.inbox_user_id.is_(None),
            Project.deleted_at.is_not(None),
            Project.deleted_at < bindparam("cutoff", type_=Project.deleted_at.type),
        )
        .order_by(ProjectMember.project_id, ProjectMember.user_id)
    )


async def purge_trashed_projects(db: Db, cutoff: datetime, now: datetime) -> int:
    """Delete for good the projects trashed before `cutoff` (their tasks, members, labels
    and comments with them), each leaving a `removed` event for each member and a `purged`
    event; how many.

    The members' events are how they learn they lost the project (spec api-v2 section 7):
    the feed shows a project's events to its members now, and a person's own membership
    events always, so the project's `purged` event, with no member left, reaches no one."""
    members = await db.rows(_members_of_expired_statement(), {"cutoff": cutoff})
    purged = await db.rows(_purge_projects_statement(), {"cutoff": cutoff})
    purged_ids = {project_id for project_id, _ in purged}
    for project_id, user_id, role in members:
        if project_id in purged_ids:  # not one restored meanwhile
            await events.append(
                db,
                at=now,
                actor_id=None,
                project_id=project_id,
                entity="member",
                entity_id=user_id,
                task_id=None,
                action="removed",
                changes=events.column_changes("member", {"role": role}, {"role": None}),
            )
    for project_id, name in purged:
        await events.append(
            db,
            at=now,
            actor_id=None,
            project_id=project_id,
            entity="project",
            entity_id=project_id,
            task_id=None,
            action="purged",
            changes={"name": (name, None)},
        )
    return len(purged)


@cache
def _expired_keys_statement() -> Statement:
    return Statement(
        delete(IdempotencyKey)
        .where(IdempotencyKey.expires_at < bindparam("now", type_=IdempotencyKey.expires_at.type))
        .returning(IdempotencyKey.id)
    )


async def remove_expired_idempotency_keys(db: Db, now: datetime) -> int:
    return len(await db.rows(_expired_keys_statement(), {"now": now}))


@cache
def _expired_refresh_tokens_statement() -> Statement:
    # A whole family at once, once its absolute lifetime is over: until then its used tokens
    # are what reveals a stolen one being replayed (the family is then revoked).
    return Statement(
        delete(RefreshToken)
        .where(
            RefreshToken.family_expires_at
            < bindparam("now", type_=RefreshToken.family_expires_at.type)
        )
        .returning(RefreshToken.id)
    )


async def remove_expired_refresh_tokens(db: Db, now: datetime) -> int:
    return len(await db.rows(_expired_refresh_tokens_statement(), {"now": now}))


@cache
def _expired_invitations_statement() -> Statement:
    return Statement(
        delete(Invitation)
        .where(Invitation.expires_at < bindparam("now", type_=Invitation.expires_at.type))
        .returning(Invitation.id, Invitation.project_id, Invitation.email, Invitation.role)
    )


async def remove_expired_invitations(db: Db, now: datetime) -> int:
    """Remove the invitations that can no longer be accepted, each leaving a `purged` event
    (the project's admins saw it pending)."""
    removed = await db.rows(_expired_invitations_statement(), {"now": now})
    for invitation_id, project_id, email, role in removed:
        await events.append(
            db,
            at=now,
            actor_id=None,
            project_id=project_id,
            entity="invitation",
            entity_id=invitation_id,
            task_id=None,
            action="purged",
            changes={"email": (email, None), "role": (role, None)},
        )
    return len(removed)


@cache
def _old_finished_attempts_statement() -> Statement:
    # Oldest first along ix_webhook_deliveries_created, a bounded batch: a first run on a log
    # that grew for years removes it a batch per transaction instead of in one.
    old = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.created_at < bindparam("cutoff", type_=WebhookDelivery.created_at.type),
            WebhookDelivery.status != "pending",
        )
        .order_by(WebhookDelivery.created_at)
        .limit(bindparam("batch"))
    )
    return Statement(
        delete(WebhookDelivery)
        .where(WebhookDelivery.id.in_(old.scalar_subquery()))
        .returning(WebhookDelivery.id)
    )


async def remove_old_finished_attempts(db: Db, cutoff: datetime, batch: int) -> int:
    """Remove up to `batch` attempts of the webhook delivery log made before `cutoff` and
    finished (an attempt still pending stays, and with it its message's payload); how many."""
    return len(
        await db.rows(_old_finished_attempts_statement(), {"cutoff": cutoff, "batch": batch})
    )
