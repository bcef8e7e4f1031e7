"""Shared schema pieces: strict request bases, safe strings, timestamps, pages, problems."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
)
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# Text a person will be shown: what each kind of field refuses, as regex classes (their
# contents) that Python's `re`, ECMA-262 (with the `u` flag) and the Rust engine schemathesis
# validates with all read the same way. Characters above U+FFFF are written as themselves: no
# escape for them is common to the three.
#
# - Controls: C0 but tab, line feed and carriage return (in multi-line text), DEL, C1.
# - Line breaks: every character `str.splitlines()` breaks at; single-line fields refuse them
#   all, multi-line ones only the vertical tab, form feed, separators \x1c-\x1e and NEL.
# - Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they make
#   text display in another order than it is stored ("Trojan Source"), and an unbalanced one
#   can reorder what a client shows after it. The marks (LRM, RLM, ALM), which mixed-direction
#   plain text needs, stay allowed.
# - Noncharacters (U+FDD0-U+FDEF and the last two code points of every plane): reserved for a
#   program's internal use, never for interchange.
_CONTROLS_IN_LINE = r"\x00-\x1f\x7f-\x9f"
_CONTROLS_IN_TEXT = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_LINE_SEPARATORS = r"\u2028\u2029"
_BIDI_CONTROLS = r"\u202a-\u202e\u2066-\u2069"
_NONCHARACTERS = r"\ufdd0-\ufdef\ufffe\uffff" + "".join(
    f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17)
)
_SURROGATES = r"\ud800-\udfff"  # validators only: no pattern can name them (see below)

FORBIDDEN_IN_LINE = _CONTROLS_IN_LINE + _LINE_SEPARATORS + _BIDI_CONTROLS + _NONCHARACTERS
FORBIDDEN_IN_TEXT = _CONTROLS_IN_TEXT + _BIDI_CONTROLS + _NONCHARACTERS

_UNSTORABLE = re.compile(r"[\x00" + _SURROGATES + "]")
_ANY_FORBIDDEN_IN_LINE = re.compile(f"[{FORBIDDEN_IN_LINE}{_SURROGATES}]")
_ANY_FORBIDDEN_IN_TEXT = re.compile(f"[{FORBIDDEN_IN_TEXT}{_SURROGATES}]")
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85" + _LINE_SEPARATORS + "]")
_CONTROL = re.compile(f"[{_CONTROLS_IN_LINE}]")
_BIDI_CONTROL = re.compile(f"[{_BIDI_CONTROLS}]")


def reject_unstorable(value: str) -> str:
    """NUL and lone surrogates cannot be stored by PostgreSQL or encoded as UTF-8."""
    if _UNSTORABLE.search(value):
        raise ValueError("must not contain NUL characters or lone surrogates")
    return value


# What multi-line text may hold of the controls.
_TAB_AND_NEWLINES = str.maketrans("", "", "\t\n\r")


def _refuse(value: str, *, single_line: bool) -> None:
    """Raise the first rule `value` breaks, in plain words (once a forbidden character was
    found: the common case pays for one search only)."""
    reject_unstorable(value)
    if single_line and _LINE_BREAK.search(value):
        raise ValueError("must be a single line")
    if _CONTROL.search(value if single_line else value.translate(_TAB_AND_NEWLINES)):
        raise ValueError("must not contain control characters")
    if _BIDI_CONTROL.search(value):
        raise ValueError("must not contain characters that change the direction of text")
    raise ValueError("must not contain Unicode noncharacters")


def reject_controls_in_text(value: str) -> str:
    """Multi-line text (descriptions): tab and line breaks allowed; see the classes above."""
    if _ANY_FORBIDDEN_IN_TEXT.search(value):
        _refuse(value, single_line=False)
    return value


def reject_controls_in_line(value: str) -> str:
    """Single-line text (titles, names): no line break of any kind; see the classes above."""
    if _ANY_FORBIDDEN_IN_LINE.search(value):
        _refuse(value, single_line=True)
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
# The whitespace a single-line field may hold (the rest is refused above), which trimming
# removes from its ends.
_SPACES_IN_LINE = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
# Unicode's Default_Ignorable_Code_Point, as DerivedCoreProperties.txt of Unicode 14 lists it
# (Python's tables lack the property): zero-width spaces and joiners, direction marks and
# controls, the byte order mark, soft hyphen, variation selectors, Hangul fillers, tags, ...
DEFAULT_IGNORABLE = (
    r"\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
# Characters that show nothing, besides whitespace: the default-ignorable ones, and the blank
# Braille pattern. Allowed inside text (a ZWJ joins an emoji sequence, a ZWNJ shapes
# Persian), but they do not make a title.
_INVISIBLE = DEFAULT_IGNORABLE + r"\u2800"
_VISIBLE_CLASS = f"[^{FORBIDDEN_IN_LINE}{_SPACES_IN_LINE}{_INVISIBLE}]"
_VISIBLE = re.compile(_VISIBLE_CLASS)
# In a pattern, at the start of what a field keeps: not only characters that show nothing up
# to the end, so (since the rest of the pattern refuses what is forbidden) a visible one comes.
# A negative lookahead rather than a positive one: generators (Hypothesis' `from_regex`, so
# Schemathesis) skip a negative lookahead and check the whole match, but spell a positive one's
# content out as characters of their own, so a value of a set length never matches (the
# contract fuzzer spent three minutes of `make test` looking for one).
_A_VISIBLE_ONE_AHEAD = f"(?![{_SPACES_IN_LINE}{_INVISIBLE}]*$)"


def require_visible(value: str) -> str:
    """Text a person reads as a name (a title, a full name) shows at least one character."""
    if not _VISIBLE.search(value):
        raise ValueError("must contain a visible character")
    return value


# The same rules as the validators above, as JSON Schema patterns. Lone surrogates cannot be
# written in a portable pattern; they cannot be sent as UTF-8 either, only as JSON escapes.
NO_NUL_PATTERN = r"^[^\x00]*$"
LINE_PATTERN = f"^[^{FORBIDDEN_IN_LINE}]*$"
TEXT_PATTERN = f"^[^{FORBIDDEN_IN_TEXT}]*$"


def visible_line_pattern(max_length: int) -> str:
    """The pattern of a single-line field that is trimmed, then must be 1 to `max_length`
    characters long and contain a visible character: between what trimming removes, a first
    and a last character that it keeps, and a lookahead for a visible one."""
    kept = f"[^{FORBIDDEN_IN_LINE}{_SPACES_IN_LINE}]"
    return (
        f"^[{_SPACES_IN_LINE}]*{_A_VISIBLE_ONE_AHEAD}"
        f"{kept}(?:[^{FORBIDDEN_IN_LINE}]{{0,{max_length - 2}}}{kept})?[{_SPACES_IN_LINE}]*$"
    )


# A single-line field that is not trimmed and must contain a visible character (its length
# bounds are the field's own minLength and maxLength).
VISIBLE_LINE_PATTERN = f"^{_A_VISIBLE_ONE_AHEAD}[^{FORBIDDEN_IN_LINE}]*$"
# Multi-line text kept as sent that must contain a visible character (a comment's body): not
# only what text may hold but shows nothing (line breaks, tabs, spaces, invisible characters).
VISIBLE_TEXT_PATTERN = (
    f"^(?![\t\n\r{_LINE_SEPARATORS}{_SPACES_IN_LINE}{_INVISIBLE}]*$)[^{FORBIDDEN_IN_TEXT}]*$"
)


# The text types below take their length bounds first (`Annotated[str, StringConstraints(...),
# *the type's rules*]`, as the schemas spell them out): a bound given after a validator is
# checked as a generic length, and worded in "items" instead of characters.


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


def _to_the_millisecond(value: datetime) -> datetime:
    """A timestamp as the server keeps and shows it: to the millisecond, so that a value sent
    back as a response showed it is the same value, not a change."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _format_rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Request side: strict string parsing, offset required, normalised to UTC, to the millisecond
# (the precision of responses: a value stored is the value shown, and a filter's bound is
# taken as it would be stored, so `due_after` a task's due date as sent finds it).
Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_rfc3339),
    AfterValidator(_require_offset),
    AfterValidator(_to_the_millisecond),
]
# Response side: always UTC with a `Z` and millisecond precision (a string to pydantic, a
# date-time to clients reading the schema).
UTCTimestamp = Annotated[
    datetime,
    PlainSerializer(_format_rfc3339, return_type=str),
    JsonSchemaHints(format="date-time"),
]


# The JSON Schema keyword that marks a comma-separated list; app/api/openapi.py turns it into
# the parameter's `style: form, explode: false`.
COMMA_SEPARATED = "x-comma-separated"


class CommaSeparated:
    """A query parameter naming one or several of `choices`, separated by commas
    (`status=todo,done`): each value once, in the order given, spaces around commas ignored.

    Validated as a whole, so an error names the parameter (not an item of it) and says what
    is allowed; OpenAPI shows an array of the choices, comma-separated.
    """

    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)
        self._message = f"must be one or more of: {', '.join(self.choices)}, separated by commas"

    def _split(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, str):
            raise ValueError(self._message)
        values = tuple(part.strip() for part in value.split(","))
        if not all(part in self.choices for part in values):
            raise ValueError(self._message)
        return tuple(dict.fromkeys(values))

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self._split)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "array",
            "items": {"type": "string", "enum": list(self.choices)},
            "minItems": 1,
            COMMA_SEPARATED: True,
        }


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
    """Every response body. Fields with a default are still always sent, so the schema that
    clients read says they are required."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_serialization_defaults_required=True
    )


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
        default=None,
        description="Only on 422: one item per bad field, the first 20 of them at most.",
    )
