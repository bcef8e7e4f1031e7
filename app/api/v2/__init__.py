"""Version 2 of the API: projects shared with people at roles (../shared/specs/api-v2.md)."""

API_V2_PREFIX = "/api/v2"
