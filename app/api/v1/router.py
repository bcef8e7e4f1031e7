"""Assembles the version 1 routers under `/api/v1`."""

from fastapi import APIRouter

from app.api.v1 import API_V1_PREFIX, auth, tasks, users

api_router = APIRouter(prefix=API_V1_PREFIX)
# Tasks first: routes are matched in order, and task requests are most of the traffic.
api_router.include_router(tasks.router)
api_router.include_router(users.router)
api_router.include_router(auth.router)
