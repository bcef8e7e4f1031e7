"""Version 2 of the API: its routers, in the order requests are matched against them."""

from fastapi import APIRouter

from app.api.v2 import comments, invitations, labels, members, projects, roles, tasks

# Tasks first: routes are matched in order, and task requests are most of the traffic. The
# routers under /projects/{id}/... come before /projects' own, whose paths they extend.
ROUTERS: tuple[APIRouter, ...] = (
    tasks.router,
    comments.router,
    members.router,
    labels.router,
    projects.router,
    invitations.router,
    roles.router,
)
