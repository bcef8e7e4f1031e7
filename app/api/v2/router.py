"""Version 2 of the API: its routers, in the order requests are matched against them."""

from fastapi import APIRouter

from app.api.v1.auth import auth_router
from app.api.v1.users import users_router
from app.api.v2 import (
    API_V2_PREFIX,
    comments,
    history,
    invitations,
    labels,
    members,
    notifications,
    projects,
    roles,
    task_listing,
    tasks,
    webhooks,
)

# Tasks first: routes are matched in order, and task requests are most of the traffic. The
# routers under /projects/{id}/... come before /projects' own, whose paths they extend. The
# account routes are v1's own declarations, served under /api/v2 as well (spec api-v2).
ROUTERS: tuple[APIRouter, ...] = (
    task_listing.router,
    tasks.router,
    comments.router,
    history.router,
    webhooks.router,
    members.router,
    labels.router,
    projects.router,
    invitations.router,
    roles.router,
    notifications.router,
    users_router(API_V2_PREFIX, operation_prefix="v2"),
    auth_router(API_V2_PREFIX, operation_prefix="v2"),
)
