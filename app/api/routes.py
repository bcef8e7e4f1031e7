"""Route templates (`/api/v1/tasks/{task_id}`) by request path, from the OpenAPI paths.

Included routers keep their own relative paths in this FastAPI version, so the full template
of a request is looked up here: for the `Allow` header of a 405, and as the metrics and log
label (a template, never a raw path, so labels stay few).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.routing import compile_path


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]


def route_templates(app: FastAPI) -> list[RouteTemplate]:
    """Every path of the app's OpenAPI document; built once per app."""
    table: list[RouteTemplate] | None = getattr(app.state, "route_templates", None)
    if table is None:
        table = [
            RouteTemplate(path, compile_path(path)[0], frozenset(m.upper() for m in operations))
            for path, operations in app.openapi()["paths"].items()
        ]
        app.state.route_templates = table
    return table


def template_for(app: FastAPI, path: str) -> RouteTemplate | None:
    for route in route_templates(app):
        if route.pattern.match(path):
            return route
    return None
