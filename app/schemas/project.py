"""Project, member and invitation request and response bodies (spec api-v2 sections 3 and 4)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.core.bounds import PROJECT_DESCRIPTION_MAX_LENGTH, PROJECT_NAME_MAX_LENGTH
from app.core.roles import ProjectRole
from app.schemas.common import (
    TEXT_PATTERN,
    JsonSchemaHints,
    RequestModel,
    ResponseModel,
    UTCTimestamp,
    optional_not_null,
    reject_controls_in_line,
    reject_controls_in_text,
    require_visible,
    visible_line_pattern,
)
from app.schemas.user import Email

RoleName = Literal["owner", "admin", "editor", "commenter", "viewer"]
if set(get_args(RoleName)) != {role.label for role in ProjectRole}:
    raise RuntimeError("RoleName and ProjectRole name different roles")


def _trimmed_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or only spaces")
    if len(value) > PROJECT_NAME_MAX_LENGTH:
        raise ValueError(f"must be at most {PROJECT_NAME_MAX_LENGTH} characters after trimming")
    return value


# The rules of a task's title (app/schemas/task.py), with the project's bound: single-line,
# trimmed, then 1 to PROJECT_NAME_MAX_LENGTH characters, one at least visible.
ProjectName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4 * PROJECT_NAME_MAX_LENGTH),
    AfterValidator(reject_controls_in_line),
    AfterValidator(_trimmed_name),
    AfterValidator(require_visible),
    JsonSchemaHints(pattern=visible_line_pattern(PROJECT_NAME_MAX_LENGTH)),
]
# Multi-line, as a task's description.
ProjectDescription = Annotated[
    str,
    StringConstraints(max_length=PROJECT_DESCRIPTION_MAX_LENGTH),
    AfterValidator(reject_controls_in_text),
    JsonSchemaHints(pattern=TEXT_PATTERN),
]


class ProjectCreate(RequestModel):
    name: ProjectName
    description: ProjectDescription | None = None


class ProjectUpdate(RequestModel):
    """Partial update: only the fields sent change; `null` clears the description."""

    name: ProjectName | SkipJsonSchema[None] = optional_not_null()
    description: ProjectDescription | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


class ProjectRead(ResponseModel):
    id: int
    name: str
    description: str | None
    is_inbox: bool
    my_role: RoleName
    created_at: UTCTimestamp
    updated_at: UTCTimestamp
    deleted_at: UTCTimestamp | None
    version: int


class MemberRoleUpdate(RequestModel):
    role: RoleName


class MemberUser(BaseModel):
    id: int
    email: str
    full_name: str | None


class MemberRead(ResponseModel):
    user: MemberUser
    role: RoleName
    added_at: UTCTimestamp


class InvitationCreate(RequestModel):
    # Validated and normalised as a registration's address, so that it compares equal to the
    # address of the account that will accept it.
    email: Email
    role: RoleName


class ProjectRef(BaseModel):
    id: int
    name: str


class Inviter(BaseModel):
    id: int
    full_name: str | None


class InvitationRead(ResponseModel):
    id: int
    project: ProjectRef
    email: str
    role: RoleName
    invited_by: Inviter
    created_at: UTCTimestamp
    expires_at: UTCTimestamp
