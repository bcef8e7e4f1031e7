"""Shared schema pieces: strict request bases, safe strings, timestamps, pages, problems."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
)
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# C0 controls but tab, line feed and carriage return; DEL and C1 controls; lone surrogates.
_FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_LONE_SURROGATE_OR_NUL = re.compile(r"[\x00\ud800-\udfff]")


def reject_unstorable(value: str) -> str:
    """NUL and lone surrogates cannot be stored by PostgreSQL or encoded as UTF-8."""
    if _LONE_SURROGATE_OR_NUL.search(value):
        raise ValueError("must not contain NUL characters or lone surrogates")
    return value


def _reject_controls_in_text(value: str) -> str:
    if _FORBIDDEN_IN_TEXT.search(value):
        raise ValueError("must not contain control characters, NUL or lone surrogates")
    return value


def _reject_controls_in_line(value: str) -> str:
    if _FORBIDDEN_IN_LINE.search(value):
        raise ValueError("must not contain control characters, NUL or lone surrogates")
    return value


class JsonSchemaHints:
    """Keywords added to a type's JSON Schema, so OpenAPI states a rule a validator enforces.

    The validator stays the authority; the hints tell clients (and contract fuzzers) what it
    accepts. Used where pydantic's own constraints would validate differently.
    """

    def __init__(self, **hints: Any) -> None:
        self.hints = hints

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        json_schema.update(self.hints)
        return json_schema


# What `str.strip()` removes (every character `str.isspace()` is true of), as a regex class.
PYTHON_WHITESPACE = (
    r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)

# The same rules as the validators below, as JSON Schema patterns. Lone surrogates cannot be
# written in a portable pattern; they cannot be sent as UTF-8 either, only as JSON escapes.
NO_NUL_PATTERN = r"^[^\x00]*$"
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"

# Any string a client sends that may reach the database.
SafeStr = Annotated[str, AfterValidator(reject_unstorable), JsonSchemaHints(pattern=NO_NUL_PATTERN)]
# Multi-line text (descriptions): tab and newlines allowed, other control characters not.
SafeText = Annotated[
    str, AfterValidator(_reject_controls_in_text), JsonSchemaHints(pattern=TEXT_PATTERN)
]
# Single-line text (titles, names): no control characters at all.
SafeLine = Annotated[
    str, AfterValidator(_reject_controls_in_line), JsonSchemaHints(pattern=LINE_PATTERN)
]


# RFC 3339 date-time (section 5.6); the space separator is allowed as its note permits.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _parse_rfc3339(value: Any) -> Any:
    """Timestamps are RFC 3339 strings with an offset; epoch numbers and naive times are not."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-11-24T09:30:00Z")
    return value


def _require_offset(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a time zone offset (e.g. 2026-11-24T09:30:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC equivalent
        raise ValueError("is outside the supported range of timestamps") from None


def _format_rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Request side: strict string parsing, offset required, normalised to UTC.
Timestamp = Annotated[datetime, BeforeValidator(_parse_rfc3339), AfterValidator(_require_offset)]
# Response side: always UTC with a `Z` and millisecond precision.
UTCTimestamp = Annotated[datetime, PlainSerializer(_format_rfc3339, return_type=str)]


class RequestModel(BaseModel):
    """Every request body: unknown fields are a 422 (no mass assignment)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _without_default(schema: JsonDict) -> None:
    schema.pop("default", None)


def optional_not_null() -> Any:
    """The `Field` of an optional field that must not be null: leaving it out changes nothing.

    Declare the field as `X | SkipJsonSchema[None]`, so OpenAPI shows no `null` (nor a `null`
    default); a validator still has to reject an explicit `null`.
    """
    return Field(default=None, json_schema_extra=_without_default)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a keyset walk; pass `next_cursor` back as `cursor` for the next one."""

    items: list[ItemT]
    next_cursor: str | None = Field(
        description="Opaque cursor of the next page; null on the last page."
    )


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every non-2xx response carries them."""

    type: str = Field(examples=["urn:tasks-api:problem:not-found"])
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    errors: list[ValidationErrorItem] | None = Field(
        default=None, description="Only on 422: one item per bad field."
    )
