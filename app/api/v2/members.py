"""v2 members routes (spec api-v2). Placeholder: filled in by its issue-13 work."""

from app.api.routing import api_router
from app.api.v2 import API_V2_PREFIX

router = api_router(f"{API_V2_PREFIX}/projects", "members")
