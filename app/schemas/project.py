"""Project, member and invitation request and response bodies (spec api-v2 sections 3 and 4),
and their v2 documents (`project_json`, `member_json`, `invitation_json`): what a GET, the
change feed's `object` and a webhook's payload show."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.core.bounds import PROJECT_DESCRIPTION_MAX_LENGTH, PROJECT_NAME_MAX_LENGTH
from app.core.roles import ProjectRole
from app.db.statements.invitations import InvitationRecord
from app.db.statements.members import MemberRecord
from app.db.statements.projects import ProjectRecord
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


def project_json(project: ProjectRecord) -> dict[str, Any]:
    """The `ProjectRead` document of a project (`my_role`: the role of the record's reader)."""
    return ProjectRead(
        id=project.id,
        name=project.name,
        description=project.description,
        is_inbox=project.inbox_user_id is not None,
        my_role=ProjectRole(project.role).label,
        created_at=project.created_at,
        updated_at=project.updated_at,
        deleted_at=project.deleted_at,
        version=project.version,
    ).model_dump(mode="json")


def member_json(member: MemberRecord) -> dict[str, Any]:
    """The `MemberRead` document of a membership."""
    return MemberRead(
        user=MemberUser(id=member.user_id, email=member.email, full_name=member.full_name),
        role=ProjectRole(member.role).label,
        added_at=member.added_at,
    ).model_dump(mode="json")


def invitation_json(invitation: InvitationRecord) -> dict[str, Any]:
    """The `InvitationRead` document of an invitation."""
    return InvitationRead(
        id=invitation.id,
        project=ProjectRef(id=invitation.project_id, name=invitation.project_name),
        email=invitation.email,
        role=ProjectRole(invitation.role).label,
        invited_by=Inviter(id=invitation.invited_by_id, full_name=invitation.invited_by_full_name),
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
    ).model_dump(mode="json")
