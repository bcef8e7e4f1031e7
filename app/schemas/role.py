"""The roles table as `GET /api/v2/roles` serves it, and the problem of a role too low (spec
api-v2 section 2)."""

from __future__ import annotations

from pydantic import Field

from app.core.roles import Permission
from app.schemas.common import Problem, ResponseModel
from app.schemas.project import RoleName


class RoleRead(ResponseModel):
    role: RoleName
    rank: int = Field(
        ge=1, description="A higher rank holds every permission of a lower one (owner highest)."
    )
    permissions: list[Permission] = Field(
        description="Every permission of the role, lower ranks' included (`thing.verb`)."
    )


class RoleRequiredProblem(Problem):
    """A 403 of a project route: the caller may see the resource, but their role is below
    the least role of the action (`app.core.errors.RoleRequired`)."""

    role: RoleName = Field(description="The caller's role in the project.")
    required_role: RoleName = Field(description="The least role the action needs.")
