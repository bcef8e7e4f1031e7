"""Version 1 of the API: its routers, in the order requests are matched against them."""

from fastapi import APIRouter

from app.api.v1 import auth, tasks, users

# Tasks first: routes are matched in order, and task requests are most of the traffic.
ROUTERS: tuple[APIRouter, ...] = (tasks.router, users.router, auth.router)
