"""Plain words for what is wrong with a field: the `msg` of each item of a 422's `errors`.

Pydantic words its errors for programmers ("Value should have at least 1 item after
validation, not 0"), and the web client shows a problem's messages to people, under the
field they are about. Each kind of error a client can cause gets a sentence here, saying
what the field must be; the bounds come from the error's context (never the value sent, which
a problem never repeats). Our own validators already speak plainly (their `ValueError`s), and
a kind not listed gets a neutral sentence rather than the library's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Context = Mapping[str, Any]


def _length(minimum: str, maximum: str) -> Callable[[Context], str]:
    def message(context: Context) -> str:
        if minimum in context:
            bound = int(context[minimum])
            if bound == 1:
                return "must not be empty"
            return f"must be at least {bound} characters"
        return f"must be at most {int(context[maximum])} characters"

    return message


def _items(context: Context) -> str:
    if "min_length" in context:
        bound = int(context["min_length"])
        return "must not be empty" if bound == 1 else f"must have at least {bound} items"
    return f"must have at most {int(context['max_length'])} items"


def _one_of(context: Context) -> str:
    expected = str(context.get("expected", ""))
    # Pydantic lists literals as "'a', 'b' or 'c'"; people read "a, b, c".
    choices = [part.strip(" '\"") for part in expected.replace(" or ", ", ").split(",")]
    return f"must be one of: {', '.join(choice for choice in choices if choice)}"


# A field the request does not have (pydantic's `extra_forbidden`, and a body sent to a
# route that takes none: app.api.routing).
NOT_A_FIELD = "is not a field of this request"

_FIXED = {
    "missing": "is required",
    "extra_forbidden": NOT_A_FIELD,
    "string_type": "must be a string",
    "string_unicode": "must be text",
    "string_pattern_mismatch": "is not in the expected form",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "none_required": "must be null",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "datetime_type": "must be a timestamp",
    "datetime_parsing": "must be an RFC 3339 timestamp with an offset",
    "datetime_from_date_parsing": "must be an RFC 3339 timestamp with an offset",
    "timezone_aware": "must include a time zone offset",
    "json_invalid": "Request body is not valid JSON",
    "json_type": "must be JSON",
}
_WITH_CONTEXT: dict[str, Callable[[Context], str]] = {
    "string_too_short": _length("min_length", "max_length"),
    "string_too_long": _length("min_length", "max_length"),
    "too_short": _items,
    "too_long": _items,
    "greater_than": lambda context: f"must be greater than {context['gt']}",
    "greater_than_equal": lambda context: f"must be at least {context['ge']}",
    "less_than": lambda context: f"must be less than {context['lt']}",
    "less_than_equal": lambda context: f"must be at most {context['le']}",
    "literal_error": _one_of,
    "enum": _one_of,
}
_UNKNOWN = "is not valid"
_MESSAGE_LIMIT = 300


def plain_message(error: Mapping[str, Any]) -> str:
    """The sentence for one of pydantic's (or our) error items."""
    kind = str(error.get("type", ""))
    context: Context = error.get("ctx") or {}
    if "input" not in error:
        # An item built by hand (app.core.errors.error_item): in plain words already.
        return str(error.get("msg", _UNKNOWN))[:_MESSAGE_LIMIT]
    if kind == "value_error":
        # Our validators' own words; pydantic prefixes them.
        return str(error.get("msg", _UNKNOWN)).removeprefix("Value error, ")[:_MESSAGE_LIMIT]
    if kind in _FIXED:
        return _FIXED[kind]
    if kind in _WITH_CONTEXT:
        try:
            return _WITH_CONTEXT[kind](context)
        except (KeyError, TypeError, ValueError):
            return _UNKNOWN
    return _UNKNOWN
