"""Fold stored emails: addresses equal after NFKC and case folding are one account.

Revision ID: 0004_fold_emails
Revises: 0003_listing_indexes
Create Date: 2026-12-05 23:00:00

Registration and login now spell every address in one normal form (`normalize_email` in
app/schemas/user.py: NFKC_Casefold, email_validator's normalisation, lower case), where they
used to lower-case it only. An account registered before, under another spelling
(`ｋim@example.com`), is rewritten to that form here, or no login could find it again.

The fold is written out below, as the code did it when this revision was made: a migration
must do tomorrow what it does today. Every row is read, in batches of 1,000 in id order; the
fold changes nothing for an ASCII address stored lower-cased, so only the others are folded,
and each one that changes is updated on its own.

Two accounts whose addresses fold to the same one (registered as `kim@example.com` and
`ｋim@example.com`) cannot both have it: the one already spelled in normal form keeps it, or
else the oldest. The others keep their address, and with it no way to log in (a login finds
the account of the normal form); they are listed by id in the migration's warning for an
operator to settle (deactivate, or change the address). An address that no longer validates
after folding is left as it is and listed too.

The downgrade leaves the addresses folded: each is a valid address that the previous revision
would store as it is, and the spelling first typed is not kept anywhere.
"""

import logging
import re
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email

revision: str = "0004_fold_emails"
down_revision: str | None = "0003_listing_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

_BATCH = 1000
_users = sa.table("users", sa.column("id", sa.BigInteger), sa.column("email", sa.String))


# Unicode 14's Default_Ignorable_Code_Point, which NFKC_Casefold removes.
_DEFAULT_IGNORABLE = re.compile(
    r"[\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def fold_email(email: str) -> str | None:
    """The normal form of a stored address (None if it does not validate once folded)."""
    visible = _DEFAULT_IGNORABLE.sub("", email)
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    try:
        validated = validate_email(folded, check_deliverability=False)
    except EmailNotValidError:
        return None
    return validated.normalized.lower()


def _needs_folding(email: str) -> bool:
    # ASCII addresses were stored lower-cased, which is their normal form already.
    return not email.isascii() or email != email.lower()


def upgrade() -> None:
    connection = op.get_bind()
    unchanged: list[int] = []
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(_users.c.id, _users.c.email)
            .where(_users.c.id > last_id)
            .order_by(_users.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        for user_id, email in rows:
            if not _needs_folding(email):
                continue
            folded = fold_email(email)
            if folded is None:
                unchanged.append(user_id)
                continue
            if folded == email:
                continue
            # The unique index is on lower(email): the same comparison finds the owner.
            owner = connection.scalar(
                sa.select(_users.c.id).where(
                    sa.func.lower(_users.c.email) == folded, _users.c.id != user_id
                )
            )
            if owner is not None:
                unchanged.append(user_id)
                continue
            connection.execute(sa.update(_users).where(_users.c.id == user_id).values(email=folded))
    if unchanged:
        log.warning(
            "%d account(s) keep an address that another account has in normal form, or that "
            "does not validate once folded; they cannot log in until it is changed. Ids: %s",
            len(unchanged),
            ", ".join(str(user_id) for user_id in unchanged),
        )


def downgrade() -> None:
    # Nothing to undo: see the module's docstring.
    pass
