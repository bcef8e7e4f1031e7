"""Is the caller's access token still current? The revocation rule, as SQL, in one place.

A password change, a role change or deactivation bumps `users.token_version` (or clears
`is_active`), and every access token issued before must stop working at its next use
(docs/decisions/0011). `app.services.auth.user_for_claims` reads the user with this rule; the
task statements fold it into their own `WHERE` as an `EXISTS` (docs/decisions/0017).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, bindparam, exists

from app.models.user import User


def token_is_current(user_id: Any, token_version: Any) -> list[ColumnElement[bool]]:
    """The conditions on `users` for a current token: its user exists, is active, and has not
    bumped `token_version` since the token was issued."""
    return [User.id == user_id, User.is_active, User.token_version == token_version]


def caller_is_current() -> ColumnElement[bool]:
    """`EXISTS` the caller's user with the token's version, on the bind parameters
    `user_id` and `token_version` (which every task statement takes)."""
    return exists().where(*token_is_current(bindparam("user_id"), bindparam("token_version")))
