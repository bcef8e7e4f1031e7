"""`/api/v2/roles`: the table of roles and what each may do, so that clients can hide the
controls a person's role does not allow (spec api-v2 section 2).

The table is `app.core.roles.roles_table()`, the one the statements enforce; it cannot change
while the process runs, so its JSON is rendered once.
"""

from __future__ import annotations

from app.api.deps import CurrentUser
from app.api.openapi import documented
from app.api.responses import JsonResponse
from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX
from app.core.roles import roles_table
from app.schemas.role import RoleRead

router = api_router(f"{API_V2_PREFIX}/roles", "roles")

_ROLES = roles_table()


@router.get(
    "",
    response_model=list[RoleRead],
    responses=documented(401, 429, 503),
    summary="The project roles, from owner to viewer, with their permissions",
)
async def list_roles(_user: CurrentUser) -> JsonResponse:
    # Any signed-in user (the table is the same for everyone); the token is checked like
    # every other (a revoked one is a 401), since a client reads this beside its projects.
    return JsonResponse(_ROLES)
