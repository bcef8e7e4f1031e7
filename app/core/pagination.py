"""Opaque keyset cursors: signed, and bound to the user, the filters and the sort.

A cursor is `base64url(json payload) "." base64url(HMAC-SHA256 tag)`. The payload names the
position (the last row's sort key and id); the binding fields make a cursor useless for any
other user, filter set or sort. Clients must treat it as opaque; see
docs/decisions/0004-cursor-pagination.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from app.core.bounds import CURSOR_MAX_LENGTH
from app.core.errors import ValidationFailed, error_item

_CURSOR_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_TAG_BYTES = 16


class InvalidCursor(ValidationFailed):
    default_detail = "The cursor is not valid for this query."

    def __init__(self) -> None:
        super().__init__(
            errors=[
                error_item(
                    ["query", "cursor"],
                    "Cursor was not issued for this user, filters and sort",
                    "cursor_invalid",
                )
            ]
        )


@dataclass(frozen=True, slots=True)
class CursorPosition:
    key: Any  # the last row's sort value (already JSON-friendly)
    last_id: int


def binding_digest(**binding: Any) -> str:
    """A short digest of whatever the cursor must stay bound to (user, filters, sort)."""
    canonical = json.dumps(binding, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(position: CursorPosition, *, binding: str, key: bytes) -> str:
    payload = json.dumps(
        {"b": binding, "k": position.key, "i": position.last_id}, separators=(",", ":")
    ).encode("utf-8")
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
    return f"{_b64(payload)}.{_b64(tag)}"


def decode_cursor(cursor: str, *, binding: str, key: bytes) -> CursorPosition:
    if len(cursor) > CURSOR_MAX_LENGTH or not _CURSOR_SHAPE.fullmatch(cursor):
        raise InvalidCursor()
    payload_text, tag_text = cursor.split(".")
    try:
        payload = _unb64(payload_text)
        tag = _unb64(tag_text)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor() from exc
    # Only the exact spelling this server issued is accepted: base64 decoders ignore unused
    # trailing bits, so another spelling could decode to the same signed bytes.
    if _b64(payload) != payload_text or _b64(tag) != tag_text:
        raise InvalidCursor()
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
    if not hmac.compare_digest(tag, expected):
        raise InvalidCursor()
    try:
        data = json.loads(payload)
        position = CursorPosition(key=data["k"], last_id=data["i"])
        bound_to = data["b"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCursor() from exc
    if not hmac.compare_digest(str(bound_to), binding) or not isinstance(position.last_id, int):
        raise InvalidCursor()
    return position
