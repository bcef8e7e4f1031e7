"""Version 1 of the public API (the contract in ../shared/specs/api-v1.md)."""

API_V1_PREFIX = "/api/v1"
