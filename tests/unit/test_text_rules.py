"""The rules for text a person will be shown (app/schemas/common.py): what single-line and
multi-line fields refuse, the visible-character rule, and that the JSON Schema patterns
OpenAPI publishes accept exactly what the validators accept."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator

import pytest
from pydantic import TypeAdapter, ValidationError

from app.core.bounds import TITLE_MAX_LENGTH
from app.schemas.common import (
    LINE_PATTERN,
    TEXT_PATTERN,
    VISIBLE_LINE_PATTERN,
    VISIBLE_TEXT_PATTERN,
    reject_controls_in_line,
    reject_controls_in_text,
    require_visible,
    visible_line_pattern,
)
from app.schemas.task import Description, Title
from app.schemas.user import FullName

TITLE = TypeAdapter(Title)
DESCRIPTION = TypeAdapter(Description)
FULL_NAME = TypeAdapter(FullName)

BIDI_CONTROLS = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
NONCHARACTERS = [
    *(chr(c) for c in range(0xFDD0, 0xFDF0)),
    *(chr(plane << 16 | low) for plane in range(17) for low in (0xFFFE, 0xFFFF)),
]
INVISIBLE_TITLES = [
    "\u200b",  # zero width space
    "\ufeff",  # byte order mark
    "\u200d",  # zero width joiner
    "\u200b\u200c\u200d\u2060",
    " \u200b ",  # trimmed, then nothing visible
    "\u3164",  # Hangul filler
    "\u115f\u1160",
    "\u2800",  # blank Braille pattern
    "\u00ad",  # soft hyphen
    "\ufe0f",  # a variation selector alone
    "\U000e0041\U000e007f",  # tags alone
]
VISIBLE_TITLES = [
    "\U0001f469\u200d\U0001f4bb",  # woman technologist: a ZWJ sequence
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # family
    "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    "\u2764\ufe0f",
    "\u200bx\u200b",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a ZWNJ
    "\u05e9\u05dc\u05d5\u05dd 2026 \u200f",  # Hebrew, a number, a right-to-left mark
    ".",
]


def accepts(adapter: TypeAdapter[str], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def message(adapter: TypeAdapter[str], value: str) -> str:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    [error] = info.value.errors()
    return str(error["msg"]).removeprefix("Value error, ")


class TestTitles:
    @pytest.mark.parametrize("title", INVISIBLE_TITLES)
    def test_a_title_of_invisible_characters_is_refused(self, title: str) -> None:
        assert message(TITLE, title) == "must contain a visible character"

    @pytest.mark.parametrize("title", VISIBLE_TITLES)
    def test_emoji_sequences_and_joiners_in_words_are_a_title(self, title: str) -> None:
        assert TITLE.validate_python(title) == title

    @pytest.mark.parametrize("char", BIDI_CONTROLS)
    def test_direction_overrides_and_isolates_are_refused(self, char: str) -> None:
        assert message(TITLE, f"{char}evil.exe") == (
            "must not contain characters that change the direction of text"
        )

    @pytest.mark.parametrize("char", ["\u2028", "\u2029", "\n", "\r", "\x0b", "\x0c", "\x85"])
    def test_every_line_break_is_refused(self, char: str) -> None:
        assert message(TITLE, f"one{char}two") == "must be a single line"

    @pytest.mark.parametrize("char", ["\uffff", "\ufffe", "\ufdd0", "\U0010ffff", "\U0001fffe"])
    def test_noncharacters_are_refused(self, char: str) -> None:
        assert message(TITLE, f"a{char}") == "must not contain Unicode noncharacters"

    def test_a_tab_is_a_control_character(self) -> None:
        assert message(TITLE, "a\tb") == "must not contain control characters"

    def test_spaces_only_keep_their_message(self) -> None:
        assert message(TITLE, "\u00a0 \u3000") == "must not be empty or only spaces"

    def test_direction_marks_are_not_overrides(self) -> None:
        for mark in ("\u200e", "\u200f", "\u061c"):
            assert accepts(TITLE, f"abc{mark}")


class TestFullNames:
    @pytest.mark.parametrize("name", [*INVISIBLE_TITLES, "   "])
    def test_a_name_needs_a_visible_character(self, name: str) -> None:
        assert message(FULL_NAME, name) == "must contain a visible character"

    @pytest.mark.parametrize("char", [*BIDI_CONTROLS, "\u2028", "\u2029", "\uffff"])
    def test_single_line_rules(self, char: str) -> None:
        assert not accepts(FULL_NAME, f"Ada{char}Lovelace")

    @pytest.mark.parametrize("name", VISIBLE_TITLES)
    def test_names_in_any_script(self, name: str) -> None:
        assert FULL_NAME.validate_python(name) == name


class TestDescriptions:
    def test_lines_and_paragraphs_are_allowed(self) -> None:
        text = "one\ntwo\r\n\tthree\u2028four\u2029five"
        assert DESCRIPTION.validate_python(text) == text

    def test_invisible_characters_alone_are_allowed(self) -> None:
        # Descriptions are optional and may be blank: the visible-character rule is for what
        # names a thing (titles, full names).
        assert DESCRIPTION.validate_python("\u200b") == "\u200b"

    @pytest.mark.parametrize("char", BIDI_CONTROLS)
    def test_direction_overrides_and_isolates_are_refused(self, char: str) -> None:
        assert message(DESCRIPTION, f"see {char}attached") == (
            "must not contain characters that change the direction of text"
        )

    @pytest.mark.parametrize("char", ["\uffff", "\ufdef", "\U0001ffff"])
    def test_noncharacters_are_refused(self, char: str) -> None:
        assert message(DESCRIPTION, f"a{char}") == "must not contain Unicode noncharacters"

    @pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x85", "\x1c", "\x00"])
    def test_other_controls_are_refused(self, char: str) -> None:
        assert not accepts(DESCRIPTION, f"a{char}b")


class TestMessagesNeverEchoTheInput:
    @pytest.mark.parametrize(
        ("adapter", "value"),
        [
            (TITLE, "secret\u202e"),
            (TITLE, "secret\u2028"),
            (TITLE, "secret\uffff"),
            (DESCRIPTION, "secret\u2066"),
            (FULL_NAME, "secret\x07"),
        ],
    )
    def test_message(self, adapter: TypeAdapter[str], value: str) -> None:
        assert "secret" not in message(adapter, value)


def _code_points() -> Iterator[str]:
    """Every code point of the first plane but the surrogates, and what the rules name above
    it (the noncharacters and default-ignorables of the other planes, around their bounds)."""
    for code in range(0x10000):
        if not 0xD800 <= code <= 0xDFFF:
            yield chr(code)
    for low, high in ((0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF)):
        yield from (chr(low - 1), chr(low), chr(high), chr(high + 1))
    for plane in range(1, 17):
        yield from (chr(plane << 16 | 0xFFFD), chr(plane << 16 | 0xFFFE), chr(plane << 16 | 0xFFFF))
    yield from ("\U0001f600", "\U0001f3f4", "\U00020000", "\U000f0000")


def _valid(rule: Callable[[str], object], value: str) -> bool:
    try:
        rule(value)
    except ValueError:
        return False
    return True


def _title_rule(value: str) -> None:
    TITLE.validate_python(value)


def _visible_line_rule(value: str) -> str:
    return require_visible(reject_controls_in_line(value))


def _visible_text_rule(value: str) -> str:
    return require_visible(reject_controls_in_text(value))


class TestPatternsAgreeWithValidators:
    """OpenAPI documents what the validators enforce (schemathesis fuzzes against it): each
    pattern matches a value exactly when the validator accepts it, for every character."""

    @pytest.mark.parametrize(
        ("pattern", "rule", "template"),
        [
            (LINE_PATTERN, reject_controls_in_line, "a{}b"),
            (TEXT_PATTERN, reject_controls_in_text, "a{}b"),
            (VISIBLE_LINE_PATTERN, _visible_line_rule, "{}"),
            (VISIBLE_LINE_PATTERN, _visible_line_rule, " {}\u200b"),
            (VISIBLE_TEXT_PATTERN, _visible_text_rule, "{}"),
            (VISIBLE_TEXT_PATTERN, _visible_text_rule, "\n {}\u200b\t"),
        ],
        ids=[
            "line",
            "text",
            "visible-line",
            "visible-line-among-invisible",
            "visible-text",
            "visible-text-among-invisible",
        ],
    )
    def test_every_character(
        self, pattern: str, rule: Callable[[str], object], template: str
    ) -> None:
        compiled = re.compile(pattern)
        disagree = [
            f"U+{ord(char):04X}"
            for char in _code_points()
            if (compiled.fullmatch(template.format(char)) is not None)
            != _valid(rule, template.format(char))
        ]
        assert disagree == []

    @pytest.mark.parametrize("template", ["{}", " {} ", "{}x"])
    def test_title_pattern_for_every_character(self, template: str) -> None:
        compiled = re.compile(visible_line_pattern(TITLE_MAX_LENGTH))
        disagree = [
            f"U+{ord(char):04X}"
            for char in _code_points()
            if (compiled.fullmatch(template.format(char)) is not None)
            != _valid(_title_rule, template.format(char))
        ]
        assert disagree == []

    @pytest.mark.parametrize(
        "title",
        [
            "x" * TITLE_MAX_LENGTH,
            "x" * (TITLE_MAX_LENGTH + 1),
            " " * 300 + "x" * TITLE_MAX_LENGTH + "\u3000" * 100,
            "\u200b" * (TITLE_MAX_LENGTH - 1) + "x",
            "\u200b" * TITLE_MAX_LENGTH + "x",
            "\U0001f600" * TITLE_MAX_LENGTH,
            "x" + " " * (TITLE_MAX_LENGTH - 2) + "y",
            "",
        ],
    )
    def test_title_lengths(self, title: str) -> None:
        matches = re.fullmatch(visible_line_pattern(TITLE_MAX_LENGTH), title) is not None
        assert matches == accepts(TITLE, title)

    def test_the_spaces_trimming_removes_are_pythons(self) -> None:
        # The title pattern names the whitespace `str.strip()` removes; a new Python (new
        # Unicode) that changed it would make the pattern lie.
        allowed_spaces = "".join(
            chr(c)
            for c in range(sys.maxunicode + 1)
            if chr(c).isspace() and _valid(reject_controls_in_line, chr(c))
        )
        assert allowed_spaces == " \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
            "\u202f\u205f\u3000"
        )
        for space in allowed_spaces:
            assert not accepts(TITLE, space * 3)
