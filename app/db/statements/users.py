"""The statements that authorize a user write when it is applied (docs/decisions/0023).

A profile or admin change is authorized by an access token that `CurrentUser` checked when
the request began; it must be applied only if that token is still current when it commits. So
every such write first locks the users rows it depends on, in one order everywhere (ascending
id), and evaluates the revocation rule (`callers.token_is_current`) on the locked row. On
PostgreSQL a row that a concurrent transaction is changing is waited for and then judged as
that transaction committed it, so a token killed by a change that committed first is seen
dead here. SQLite renders no lock clause: its transactions begin with `BEGIN IMMEDIATE`, which
serializes writers, and the same statement reads what the writers before it committed.

A login is the same problem the other way round: its password is verified outside any
transaction (bcrypt is slow), so before it issues tokens it locks the account's row
(`lock_account`) and checks that the row still holds the hash it verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select

from app.db.access import Db
from app.db.statements.callers import token_is_current
from app.models.user import User


@dataclass(frozen=True, slots=True)
class Locked:
    """The rows a write depends on, locked until the transaction ends."""

    caller: User | None  # None when the caller's token is no longer current
    others: dict[int, User]  # the other rows asked for that exist, by id


async def lock_for_write(db: Db, caller_id: int, token_version: int, *other_ids: int) -> Locked:
    """Lock the caller's row and `other_ids`' rows (ascending id, one statement) and say
    whether the caller's token (`token_version`) is still current.

    The ORM objects of these rows are refreshed with what was locked (populate_existing).
    """
    ids = sorted({caller_id, *other_ids})
    current = and_(*token_is_current(caller_id, token_version)).label("current")
    rows = await db.session.execute(
        select(User, current)
        .where(User.id.in_(ids))
        .order_by(User.id)
        # FOR NO KEY UPDATE: the lock the UPDATE itself would take (it waits for every other
        # writer and for a FOR SHARE reader), without blocking a refresh token's insert.
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    caller = None
    others: dict[int, User] = {}
    for user, is_current in rows:
        if user.id == caller_id and is_current:
            caller = user
        if user.id in other_ids:
            others[user.id] = user
    return Locked(caller, others)


async def lock_account(db: Db, user_id: int, *, for_write: bool) -> User | None:
    """The user's row as committed now, locked until the transaction ends: FOR SHARE when it
    is only read (a password change or deactivation waits for this transaction, then revokes
    what it issued), FOR NO KEY UPDATE when it is about to be written (two such transactions
    queue rather than deadlock on upgrading a shared lock)."""
    return await db.session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update(read=not for_write, key_share=for_write)
        .execution_options(populate_existing=True)
    )
