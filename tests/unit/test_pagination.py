"""`app.core.pagination`: signed, bound, opaque keyset cursors, without HTTP or a database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from app.core.bounds import CURSOR_MAX_LENGTH
from app.core.errors import ValidationFailed
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)

KEY = hashlib.sha256(b"unit-test cursor key").digest()
OTHER_KEY = hashlib.sha256(b"another cursor key").digest()
BINDING = binding_digest(user=1, filters={"status": ["todo"]}, sort="-created_at")
OTHER_BINDING = binding_digest(user=2, filters={"status": ["todo"]}, sort="-created_at")
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
POSITION = CursorPosition("2030-06-01T12:00:00.123456+00:00", 42)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make(position: CursorPosition = POSITION, *, binding: str = BINDING) -> str:
    return encode_cursor(position, binding=binding, key=KEY)


def decode(cursor: str, *, binding: str = BINDING, key: bytes = KEY) -> CursorPosition:
    return decode_cursor(cursor, binding=binding, key=key)


TAG_BYTES = len(unb64(make().split(".")[1]))


def signed(payload: bytes, key: bytes = KEY) -> str:
    """`payload` signed the way the module signs, to reach the checks behind the signature."""
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]
    return f"{b64(payload)}.{b64(tag)}"


def signed_json(data: Any) -> str:
    return signed(json.dumps(data, separators=(",", ":")).encode("utf-8"))


def replace_char(text: str, index: int, new: str) -> str:
    assert text[index] != new
    return text[:index] + new + text[index + 1 :]


class TestRoundTrip:
    @pytest.mark.parametrize(
        "position",
        [
            POSITION,
            CursorPosition("2030-06-01T12:00:00+00:00", 1),
            CursorPosition(None, 7),  # the NULL tail of a due_at walk
            CursorPosition(4, 2**63 - 1),  # a priority and the largest id
            CursorPosition(1, 1),
        ],
    )
    def test_decodes_to_the_encoded_position(self, position: CursorPosition) -> None:
        assert decode(make(position)) == position

    def test_is_url_safe_text_without_padding(self) -> None:
        cursor = make()
        assert all(char in B64URL + "." for char in cursor)
        assert cursor.count(".") == 1
        assert len(cursor) <= CURSOR_MAX_LENGTH

    def test_deterministic_for_the_same_position_binding_and_key(self) -> None:
        assert make() == make()
        assert make() != make(binding=OTHER_BINDING)
        assert make() != encode_cursor(POSITION, binding=BINDING, key=OTHER_KEY)

    def test_binding_is_not_readable_as_the_user_or_filters(self) -> None:
        payload = unb64(make().split(".")[0]).decode("utf-8")
        assert "todo" not in payload
        assert "created_at" not in payload


class TestBindingDigest:
    def test_same_inputs_same_digest_in_any_keyword_order(self) -> None:
        first = binding_digest(user=1, filters={"a": 1, "b": [2]}, sort="due_at")
        second = binding_digest(sort="due_at", filters={"b": [2], "a": 1}, user=1)
        assert first == second

    @pytest.mark.parametrize(
        "changes",
        [{"user": 2}, {"sort": "-due_at"}, {"filters": {"a": 1, "b": [3]}}, {"filters": {}}],
    )
    def test_any_difference_changes_the_digest(self, changes: dict[str, Any]) -> None:
        base: dict[str, Any] = {"user": 1, "filters": {"a": 1, "b": [2]}, "sort": "due_at"}
        assert binding_digest(**base) != binding_digest(**{**base, **changes})


class TestRejected:
    def test_invalid_cursor_is_a_422_on_the_cursor_parameter(self) -> None:
        with pytest.raises(InvalidCursor) as caught:
            decode("nonsense")
        error = caught.value
        assert isinstance(error, ValidationFailed)
        assert error.status == 422
        assert error.errors == [
            {"loc": ["query", "cursor"], "msg": error.errors[0]["msg"], "type": "cursor_invalid"}
        ]
        assert "nonsense" not in str(error.errors) + error.detail

    def test_wrong_binding(self) -> None:
        with pytest.raises(InvalidCursor):
            decode(make(), binding=OTHER_BINDING)

    def test_wrong_key(self) -> None:
        with pytest.raises(InvalidCursor):
            decode(make(), key=OTHER_KEY)

    def test_every_changed_payload_character(self) -> None:
        cursor = make()
        payload_length = cursor.index(".")
        # The payload's last character may carry unused bits; see TestCanonicalSpelling.
        for index in range(payload_length - 1):
            new = "A" if cursor[index] != "A" else "B"
            with pytest.raises(InvalidCursor):
                decode(replace_char(cursor, index, new))

    def test_every_changed_tag_character_but_the_last(self) -> None:
        cursor = make()
        for index in range(cursor.index(".") + 1, len(cursor) - 1):
            new = "A" if cursor[index] != "A" else "B"
            with pytest.raises(InvalidCursor):
                decode(replace_char(cursor, index, new))

    def test_tag_last_character_changed_in_its_significant_bits(self) -> None:
        cursor = make()
        last = B64URL.index(cursor[-1])
        # 16 bytes in 22 characters: the last one holds 2 data bits (its top bits).
        new = B64URL[last ^ 0b100000]
        with pytest.raises(InvalidCursor):
            decode(cursor[:-1] + new)

    def test_other_position_with_this_tag(self) -> None:
        payload, tag = make().split(".")
        forged = json.dumps({"b": BINDING, "k": POSITION.key, "i": 1}, separators=(",", ":"))
        with pytest.raises(InvalidCursor):
            decode(f"{b64(forged.encode())}.{tag}")
        other_payload = make(CursorPosition(POSITION.key, 43)).split(".")[0]
        with pytest.raises(InvalidCursor):
            decode(f"{other_payload}.{tag}")
        assert payload != other_payload

    @pytest.mark.parametrize(
        "how", ["drop_last", "half", "payload_only", "tag_dropped", "payload_dropped"]
    )
    def test_truncated(self, how: str) -> None:
        cursor = make()
        payload, _tag = cursor.split(".")
        bad = {
            "drop_last": cursor[:-1],
            "half": cursor[: len(cursor) // 2],
            "payload_only": payload,
            "tag_dropped": payload + ".",
            "payload_dropped": cursor[len(payload) :],
        }[how]
        with pytest.raises(InvalidCursor):
            decode(bad)

    @pytest.mark.parametrize(
        "garbage",
        [
            "",
            ".",
            "..",
            "a.b.c",
            "abc",
            "a.",
            ".a",
            " ",
            "\x00",
            "é.é",
            "\U0001f600.\U0001f600",
            "%.%",
            "=.=",
            "!!!!.!!!!",
            "null",
            '{"b":"x","k":1,"i":1}',
            "eyJhIjoxfQ.",
            b64(json.dumps({"b": BINDING, "k": None, "i": 1}).encode()) + "." + b64(bytes(16)),
        ],
    )
    def test_garbage_strings(self, garbage: str) -> None:
        with pytest.raises(InvalidCursor):
            decode(garbage)

    @pytest.mark.parametrize(
        "payload",
        [
            b"",
            b"not json",
            b"\xff\xfe\xfd",
            b"null",
            b"42",
            b'"a string"',
            b"[1, 2, 3]",
            b"{}",
            b'{"b":"%(b)s","k":1}',
            b'{"b":"%(b)s","i":1}',
            b'{"k":1,"i":1}',
            b'{"b":"%(b)s","k":1,"i":"1"}',
            b'{"b":"%(b)s","k":1,"i":1.5}',
            b'{"b":"%(b)s","k":1,"i":null}',
            b'{"b":"%(b)s","k":1,"i":[1]}',
            b'{"b":"%(o)s","k":1,"i":1}',
            b'{"b":null,"k":1,"i":1}',
            b'{"b":["%(b)s"],"k":1,"i":1}',
        ],
    )
    def test_signed_but_malformed_payload(self, payload: bytes) -> None:
        text = payload % {b"b": BINDING.encode(), b"o": OTHER_BINDING.encode()}
        cursor = signed(text)
        with pytest.raises(InvalidCursor):
            decode(cursor)

    def test_signed_well_formed_payload_is_accepted(self) -> None:
        # The control for the test above: the helper signs as the module does.
        assert decode(signed_json({"b": BINDING, "k": 3, "i": 9})) == CursorPosition(3, 9)

    def test_overlong_junk(self) -> None:
        for cursor in ("A" * (CURSOR_MAX_LENGTH + 1), "A" * 100_000, "." * 5000):
            with pytest.raises(InvalidCursor):
                decode(cursor)

    def test_overlong_even_when_validly_signed(self) -> None:
        cursor = make(CursorPosition("x" * CURSOR_MAX_LENGTH, 1))
        assert len(cursor) > CURSOR_MAX_LENGTH
        with pytest.raises(InvalidCursor):
            decode(cursor)

    def test_longest_accepted_length(self) -> None:
        # Find a key long enough to make a cursor of exactly CURSOR_MAX_LENGTH characters.
        for size in range(CURSOR_MAX_LENGTH, 0, -1):
            cursor = make(CursorPosition("x" * size, 1))
            if len(cursor) <= CURSOR_MAX_LENGTH:
                break
        assert len(cursor) > CURSOR_MAX_LENGTH - 4
        assert decode(cursor) == CursorPosition("x" * size, 1)


class TestCanonicalSpelling:
    """Only the exact string the server issued is a cursor (decision 0004, contract 3).

    Lenient base64 decoding would accept other strings for the same bytes: padding, characters
    outside the alphabet (which the decoder skips), and a different value in the unused low
    bits of the last character. None of these was made by the server.
    """

    def test_tag_last_character_changed_in_its_unused_bits(self) -> None:
        cursor = make()
        last = B64URL.index(cursor[-1])
        with pytest.raises(InvalidCursor):
            decode(cursor[:-1] + B64URL[last ^ 1])

    @pytest.mark.parametrize("padding", ["=", "==", "==="])
    def test_padding_added(self, padding: str) -> None:
        cursor = make()
        payload, tag = cursor.split(".")
        for bad in (cursor + padding, f"{payload}{padding}.{tag}"):
            with pytest.raises(InvalidCursor):
                decode(bad)

    @pytest.mark.parametrize("junk", ["!", " ", "\n", "*", "~", "$"])
    def test_characters_outside_the_alphabet_inserted(self, junk: str) -> None:
        # Four of them, so that the length modulo 4 (and so the padding) stays the same.
        cursor = make()
        payload, tag = cursor.split(".")
        for bad in (
            junk * 4 + cursor,
            cursor[:4] + junk * 4 + cursor[4:],
            f"{payload}.{tag}{junk * 4}",
        ):
            with pytest.raises(InvalidCursor):
                decode(bad)
