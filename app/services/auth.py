"""Login, token issuing and resolving an access token to its user. No HTTP here."""

from __future__ import annotations

import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import Engine, func, select, update

from app.core.bounds import PASSWORD_MAX_LENGTH
from app.core.config import Settings
from app.core.errors import (
    AccountDisabled,
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    RefreshTokenRevoked,
    Unauthorized,
)
from app.core.security import (
    MAX_ROUNDS,
    MIN_ROUNDS,
    STORED_COST_SPAN,
    STORED_HASH_PREFIX,
    AccessClaims,
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password_async,
    hash_refresh_token,
    hash_rounds,
    new_refresh_token,
    normalize_password,
    pad_verification,
    verify_against_dummy,
    verify_password_async,
)
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements.callers import token_is_current
from app.db.statements.turns import take_family_turn
from app.db.statements.users import lock_account
from app.models.refresh_token import RefreshToken
from app.models.user import User
from app.schemas.common import reject_unstorable
from app.schemas.user import normalize_email

log = structlog.get_logger("app.auth")


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str


def _login_email(raw: str) -> str | None:
    try:
        return normalize_email(raw)
    except ValueError:
        return None


def login_account(username: str) -> str:
    """The account a login attempt is counted against: the normalised email when it is one,
    so that respelling an address (case, full-width letters) does not open a new count."""
    return _login_email(username) or username.strip().casefold()[:320]


def _acceptable_login_password(password: str) -> bool:
    try:
        reject_unstorable(password)
    except ValueError:
        return False
    return len(normalize_password(password)) <= PASSWORD_MAX_LENGTH


async def authenticate(db: Db, email: str, password: str, *, rounds: int) -> User:
    """The user with these credentials, or InvalidCredentials.

    Every failed attempt costs the work of one bcrypt verification at the *failure cost*
    (`BCRYPT_ROUNDS`, or the highest cost a stored hash still has if that is higher) and
    raises the same error, whether the email is unknown, the password wrong, or the account's
    hash older and cheaper than the current cost (it is verified, then padded up: see
    `security.padding_rounds`); a deactivated account is reported only to someone who knows
    its password. See docs/decisions/0005-password-hashing.md.
    """
    normalized = _login_email(email)
    acceptable = _acceptable_login_password(password)
    user = None
    if normalized is not None and acceptable:
        user = await db.session.scalar(select(User).where(func.lower(User.email) == normalized))
    failure_rounds = max(rounds, await _highest_stored_rounds(db))
    await db.end_read_transaction()
    if user is None:
        # Unknown email, or a password that can match no account (over-long, unstorable):
        # the same work, the same answer.
        await verify_against_dummy(password if acceptable else "", failure_rounds)
        raise InvalidCredentials()
    verified_hash = user.password_hash
    if not await verify_password_async(password, verified_hash):
        await pad_verification(password, hash_rounds(verified_hash), failure_rounds)
        raise InvalidCredentials()
    if not user.is_active:
        raise AccountDisabled()
    # BCRYPT_ROUNDS changed: upgrade the stored hash while we hold the password.
    upgraded_hash = None
    if hash_rounds(verified_hash) != rounds:
        upgraded_hash = await hash_password_async(password, rounds)
    # The password was verified outside any transaction: a password change or a deactivation
    # may have committed since. Lock the row and judge the login on what it holds now, so
    # that no token is issued for a password that no longer opens the account.
    locked = await lock_account(db, user.id, for_write=upgraded_hash is not None)
    if locked is None:
        raise InvalidCredentials()
    if locked.password_hash != verified_hash and not await verify_password_async(
        password, locked.password_hash
    ):  # changed meanwhile (another login's upgrade keeps the password: that one passes)
        raise InvalidCredentials()
    if not locked.is_active:
        raise AccountDisabled()
    if upgraded_hash is not None and locked.password_hash == verified_hash:
        locked.password_hash = upgraded_hash
    return locked


# How long the highest cost among the stored hashes is believed before it is read again.
# Hashes are only ever written at the current cost, so between readings it can only fall
# (as logins upgrade old hashes): a stale value costs failed logins some extra work, never
# the parity. A process started with another BCRYPT_ROUNDS (a rolling change) is seen
# within this interval.
HIGHEST_STORED_ROUNDS_TTL_SECONDS = 600.0
# Per engine (one per app, so a restarted service reads afresh): (read at, highest cost).
_highest_stored: weakref.WeakKeyDictionary[Engine, tuple[float, int]] = weakref.WeakKeyDictionary()


async def _highest_stored_rounds(db: Db) -> int:
    """The highest bcrypt cost of any stored password hash (0 when none), read at most once
    per `HIGHEST_STORED_ROUNDS_TTL_SECONDS` per database engine: one scan of the hashes.

    With BCRYPT_ROUNDS lowered, accounts not logged in since still hold hashes at the old,
    higher cost, and verifying one takes that long; unknown emails and wrong passwords
    must then take that long too.
    """
    engine = db.session.get_bind().engine
    now = time.monotonic()
    known = _highest_stored.get(engine)
    if known is not None and now - known[0] < HIGHEST_STORED_ROUNDS_TTL_SECONDS:
        return known[1]
    cost = func.substr(User.password_hash, *STORED_COST_SPAN)
    highest = await db.session.scalar(
        select(func.max(cost)).where(
            User.password_hash.startswith(STORED_HASH_PREFIX, autoescape=True),
            cost.between(f"{MIN_ROUNDS:02d}", f"{MAX_ROUNDS:02d}"),  # two digits: as text
        )
    )
    try:
        rounds = int(highest) if highest is not None else 0
    except ValueError:  # not digits: no hash this service wrote
        rounds = 0
    _highest_stored[engine] = (now, rounds)
    return rounds


def forget_highest_stored_rounds() -> None:
    """Read the highest stored cost afresh at the next login (after writing hashes directly)."""
    _highest_stored.clear()


async def issue_tokens(
    db: Db,
    user: User,
    settings: Settings,
    *,
    rotated_from: RefreshToken | None = None,
) -> IssuedTokens:
    """An access token and a refresh token: a new login family, or the next in `rotated_from`'s."""
    access_token, expires_in = create_access_token(
        user_id=user.id,
        token_version=user.token_version,
        key=settings.signing_key,
        expire_minutes=settings.access_token_expire_minutes,
    )
    refresh_token, digest = new_refresh_token()
    now = utcnow()
    if rotated_from is None:
        family_id = uuid.uuid4().hex
        family_expires_at = now + timedelta(days=settings.refresh_token_expire_days)
    else:
        family_id = rotated_from.family_id
        family_expires_at = rotated_from.family_expires_at
    db.session.add(
        RefreshToken(
            user_id=user.id,
            token_hash=digest,
            family_id=family_id,
            parent_id=rotated_from.id if rotated_from is not None else None,
            created_at=now,
            expires_at=min(
                family_expires_at, now + timedelta(days=settings.refresh_token_idle_days)
            ),
            family_expires_at=family_expires_at,
        )
    )
    await db.session.flush()
    return IssuedTokens(access_token, expires_in, refresh_token)


async def _spend_refresh_token(db: Db, token: str) -> RefreshToken:
    """Mark a live refresh token used, atomically; anything else is a 401.

    The UPDATE matches only an unused, unrevoked, unexpired token, so of two simultaneous
    uses exactly one succeeds. A token that was already spent is a replay (RFC 9700
    4.14.2): the whole family is revoked, and that revocation is committed with the 401.
    """
    digest = hash_refresh_token(token)
    now = utcnow()
    spent = (
        await db.session.scalars(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == digest,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
                RefreshToken.family_expires_at > now,
            )
            .values(used_at=now)
            .returning(RefreshToken)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).one_or_none()
    if spent is not None:
        return spent
    known = await db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
    if known is not None and known.used_at is not None and known.family_expires_at > now:
        # A family past its lifetime has nothing live left to revoke; its rows are the
        # cleanup job's to delete (which takes no turn: it must not meet a revocation).
        await revoke_family(db, known.family_id)
        log.warning("refresh_token_reused", user_id=known.user_id, family_id=known.family_id)
        raise RefreshTokenReused()
    raise InvalidRefreshToken()


async def revoke_family(db: Db, family_id: str) -> None:
    await db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_all_refresh_tokens(db: Db, user_id: int) -> None:
    await db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def _hold_family(db: Db, token: str) -> User | None:
    """The locks every write of a refresh token's family takes first, in this order, and
    the token's owner as locked (None: gone); a 401 for a token never issued.

    - The family's turn (PostgreSQL; SQLite transactions are already serial): its
      rotations, replays and logouts one at a time, each seeing what the one before
      committed. Without it a replay that waited for a rotation revoked the family as it
      was before (the token the rotation issued stayed live), and two replays revoking the
      family together, each locking its rows in its own scan's order, could deadlock (a 409
      where the client is owed a 401). Taken before any row lock, so a password change
      (which takes no turn) never waits for a queue of the family's writers.
    - The owner's row FOR SHARE: a password change or deactivation updates that row before
      revoking tokens, so it either waits for this write to commit and then revokes what it
      issued too, or has committed and this write finds the token revoked. Never a token
      that outlives it.
    """
    found = (
        await db.session.execute(
            select(RefreshToken.user_id, RefreshToken.family_id).where(
                RefreshToken.token_hash == hash_refresh_token(token)
            )
        )
    ).one_or_none()
    if found is None:
        raise InvalidRefreshToken()
    await take_family_turn(db, found.family_id)
    return await lock_account(db, found.user_id, for_write=False)


async def refresh(db: Db, token: str, settings: Settings) -> IssuedTokens:
    """Spend a refresh token and issue the next pair of its family (`_hold_family` first)."""
    user = await _hold_family(db, token)
    spent = await _spend_refresh_token(db, token)
    if user is None or not user.is_active:
        await revoke_family(db, spent.family_id)
        raise RefreshTokenRevoked()
    return await issue_tokens(db, user, settings, rotated_from=spent)


async def logout(db: Db, token: str) -> None:
    """End the login the refresh token belongs to: spend it and revoke its family
    (`_hold_family` first)."""
    await _hold_family(db, token)
    spent = await _spend_refresh_token(db, token)
    await revoke_family(db, spent.family_id)


def access_claims(token: str, *, key: str) -> AccessClaims:
    """The claims of a valid access token of this service; 401 for anything else."""
    try:
        return decode_access_token(token, key=key)
    except InvalidToken:
        raise Unauthorized("The access token is invalid or expired.", invalid_token=True) from None


async def user_for_claims(db: Db, claims: AccessClaims) -> User:
    """The active user the claims speak for, if the token is still current; 401 otherwise
    (the rule: `app.db.statements.callers`)."""
    user = await db.session.scalar(
        select(User).where(*token_is_current(claims.user_id, claims.token_version))
    )
    if user is None:
        raise Unauthorized("The access token is invalid or expired.", invalid_token=True)
    return user
