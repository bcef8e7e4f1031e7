"""Label request and response bodies (spec api-v2 section 6), and a label's v2 document."""

from __future__ import annotations

import re
import zlib
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.core.bounds import LABEL_NAME_MAX_LENGTH
from app.db.statements.labels import LabelRecord
from app.schemas.common import (
    JsonSchemaHints,
    RequestModel,
    ResponseModel,
    optional_not_null,
    reject_controls_in_line,
    require_visible,
    visible_line_pattern,
)

# The colours the server picks from when a label is created without one: distinct at a
# glance on light and dark backgrounds.
PALETTE = (
    "#e11d48",
    "#ea580c",
    "#ca8a04",
    "#16a34a",
    "#0d9488",
    "#0284c7",
    "#4f46e5",
    "#9333ea",
    "#db2777",
    "#64748b",
)

_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"


def default_color(name: str) -> str:
    """The colour of a label created without one: chosen by its name (in any letter case),
    so that the same name gets the same colour in every project and on every server."""
    return PALETTE[zlib.crc32(name.casefold().encode("utf-8")) % len(PALETTE)]


def _color(value: str) -> str:
    if not _COLOR.fullmatch(value):
        raise ValueError("must be a color as #RRGGBB (six hexadecimal digits)")
    return value.lower()


def _trimmed_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or only spaces")
    if len(value) > LABEL_NAME_MAX_LENGTH:
        raise ValueError(f"must be at most {LABEL_NAME_MAX_LENGTH} characters after trimming")
    return value


# As a task's title (app/schemas/task.py): single-line, trimmed, then 1 to
# LABEL_NAME_MAX_LENGTH characters of which one at least is visible; the raw bound keeps
# absurd inputs cheap to refuse.
LabelName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4 * LABEL_NAME_MAX_LENGTH),
    AfterValidator(reject_controls_in_line),
    AfterValidator(_trimmed_name),
    AfterValidator(require_visible),
    JsonSchemaHints(pattern=visible_line_pattern(LABEL_NAME_MAX_LENGTH)),
]
# `#RRGGBB` in either case, stored and returned in lower case (one message for every way
# to get it wrong, rather than a length rule for some and a pattern for others).
Color = Annotated[
    str,
    AfterValidator(_color),
    JsonSchemaHints(pattern=COLOR_PATTERN, minLength=7, maxLength=7, examples=["#0284c7"]),
]


class LabelCreate(RequestModel):
    name: LabelName
    color: Color | SkipJsonSchema[None] = optional_not_null()

    @field_validator("color", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null (leave it out to let the server pick one)")
        return value


class LabelUpdate(RequestModel):
    """Partial update: only the fields sent change."""

    name: LabelName | SkipJsonSchema[None] = optional_not_null()
    color: Color | SkipJsonSchema[None] = optional_not_null()

    @field_validator("name", "color", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


class LabelRead(ResponseModel):
    id: int
    project_id: int
    name: str
    color: str = Field(pattern=r"^#[0-9a-f]{6}$", examples=["#0284c7"])


def label_json(label: LabelRecord) -> dict[str, Any]:
    """The `LabelRead` document of a label."""
    return {
        "id": label.id,
        "project_id": label.project_id,
        "name": label.name,
        "color": label.color,
    }
