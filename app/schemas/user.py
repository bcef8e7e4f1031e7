"""User request and response bodies."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from app.core.bounds import (
    EMAIL_LOCAL_PART_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    FULL_NAME_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
)
from app.core.passwords import password_problem
from app.schemas.common import (
    DEFAULT_IGNORABLE,
    NO_NUL_PATTERN,
    VISIBLE_LINE_PATTERN,
    JsonSchemaHints,
    RequestModel,
    ResponseModel,
    UTCTimestamp,
    optional_not_null,
    reject_controls_in_line,
    reject_unstorable,
    require_visible,
)

_DEFAULT_IGNORABLE = re.compile(f"[{DEFAULT_IGNORABLE}]")


def normalize_email(value: str) -> str:
    """The one spelling of an address: addresses that are equal after NFKC and case folding
    (`Kim@Example.com`, `ｋim@example.com`, `KIM@ｅｘａｍｐｌｅ.com`) are one account.

    Trimmed, then folded as Unicode's NFKC_Casefold does: default-ignorable characters
    (zero-width spaces, variation selectors, Hangul fillers, ...) removed, NFKC, full case
    folding, NFKC again. Then validated by `email_validator`, whose normalised form has the
    domain in Unicode (IDNA, UTS 46) and the local part in NFC; then lower-cased, which
    leaves the few letters that case folding maps to capitals (Cherokee) lower-case, as the
    database's lower(email) compares them. The result is its own normal form:
    normalize_email(x) == x for every address it returns. Used at registration, at login
    and by the CLI.
    """
    value = reject_unstorable(value).strip()
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    visible = _DEFAULT_IGNORABLE.sub("", value)
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    try:
        validated = validate_email(folded, check_deliverability=False)
    except EmailNotValidError:
        # The library's message can quote parts of the input; ours never does.
        raise ValueError("must be a valid email address") from None
    return validated.normalized.lower()


def check_local_part_length(email: str) -> str:
    """A new address must be deliverable: at most 64 characters before the @ (counted in its
    normal form). Not part of `normalize_email`, so that an account registered before the
    rule can still log in."""
    if len(email.rpartition("@")[0]) > EMAIL_LOCAL_PART_MAX_LENGTH:
        raise ValueError(f"must have at most {EMAIL_LOCAL_PART_MAX_LENGTH} characters before the @")
    return email


def check_password_policy(value: str) -> str:
    """Section 2 rules (see app/core/passwords.py); the message never repeats the password."""
    reject_unstorable(value)
    problem = password_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Email = Annotated[
    str,
    Field(max_length=EMAIL_MAX_LENGTH),
    AfterValidator(normalize_email),
    AfterValidator(check_local_part_length),
    JsonSchemaHints(format="email"),
]
# The length bound here only stops absurd inputs early; the policy counts characters as typed
# and after NFKC, and OpenAPI documents its bounds. `password` is OpenAPI's format for secrets.
NewPassword = Annotated[
    str,
    Field(max_length=4 * PASSWORD_MAX_LENGTH),
    AfterValidator(check_password_policy),
    JsonSchemaHints(
        format="password",
        minLength=PASSWORD_MIN_LENGTH,
        maxLength=PASSWORD_MAX_LENGTH,
        pattern=NO_NUL_PATTERN,
    ),
]
# Single-line, as titles (app/schemas/common.py), with a visible character; kept as sent.
FullName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=FULL_NAME_MAX_LENGTH),
    AfterValidator(reject_controls_in_line),
    AfterValidator(require_visible),
    JsonSchemaHints(pattern=VISIBLE_LINE_PATTERN),
]


class UserCreate(RequestModel):
    email: Email
    password: NewPassword
    full_name: FullName | None = None


class UserUpdateMe(RequestModel):
    # OpenAPI states the rule of the validator below: a (non-null) password needs a
    # (non-null) current_password.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"password": {"type": "string"}}, "required": ["password"]},
            "then": {
                "properties": {"current_password": {"type": "string"}},
                "required": ["current_password"],
            },
        }
    )

    full_name: FullName | None = None
    password: NewPassword | None = None
    current_password: (
        Annotated[
            str,
            StringConstraints(max_length=4 * PASSWORD_MAX_LENGTH),
            AfterValidator(reject_unstorable),
            JsonSchemaHints(format="password", pattern=NO_NUL_PATTERN),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _current_password_with_new_one(self) -> UserUpdateMe:
        if self.password is not None and self.current_password is None:
            raise ValueError("current_password is required to change the password")
        return self


class UserAdminUpdate(RequestModel):
    """What an admin may change about another account."""

    role: Literal["user", "admin"] | SkipJsonSchema[None] = optional_not_null()
    is_active: StrictBool | SkipJsonSchema[None] = optional_not_null()

    @field_validator("role", "is_active", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


class UserRead(ResponseModel):
    id: int
    email: str
    full_name: str | None
    role: Literal["user", "admin"]
    is_active: bool
    created_at: UTCTimestamp
