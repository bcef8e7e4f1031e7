"""Password rules (contract section 2, NIST SP 800-63B-4): `app.core.passwords.password_problem`.

15 to 128 characters as typed and after NFKC, no composition rules, and no commonly used
password: the shipped list compared without regard to case, such a password padded with
digits or punctuation, one short unit repeated, or a run of consecutive characters.
"""

from __future__ import annotations

import unicodedata

import httpx
import pytest

from app.core.bounds import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from app.core.passwords import common_passwords, password_problem
from tests.support import assert_problem

TOO_COMMON = "too common"


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def assert_refused_as_common(password: str) -> None:
    problem = password_problem(password)
    assert problem is not None, f"{password!r} was accepted"
    assert TOO_COMMON in problem
    assert password not in problem


def assert_accepted(password: str) -> None:
    assert password_problem(password) is None, password_problem(password)


class TestShippedList:
    def test_list_is_loaded_and_normalised(self) -> None:
        listed = common_passwords()
        assert len(listed) > 10_000
        assert "password" in listed
        assert "qwertyuiop12345" in listed
        assert not any(line.startswith("#") for line in listed)
        assert all(entry == nfkc(entry).casefold() for entry in listed)

    @pytest.mark.parametrize(
        "password",
        [
            "qwertyuiop12345",
            "QWERTYUIOP12345",
            "QwertyUiop12345",
            "momsanaladventure",
            "MOMSANALADVENTURE",
            "MomsAnalAdventure",
            "1qaz2wsx3edc4rfv",
            "1QAZ2WSX3EDC4RFV",
            "PasswordStandard",
        ],
    )
    def test_entries_in_any_letter_case(self, password: str) -> None:
        assert_refused_as_common(password)

    @pytest.mark.parametrize(
        "password",
        [
            "ｐａｓｓｗｏｒｄｐａｓｓｗｏｒｄ",
            "ｑｗｅｒｔｙｕｉｏｐ１２３４５",
            "ＱＷＥＲＴＹＵＩＯＰ１２３４５",
            "qwertyuiop１２３４５",
        ],
        ids=["fullwidth-repeat", "fullwidth-entry", "fullwidth-upper", "fullwidth-digits"],
    )
    def test_nfkc_variants(self, password: str) -> None:
        assert nfkc(password) != password
        assert_refused_as_common(password)

    @pytest.mark.parametrize(
        "password",
        [
            "password1234567!",
            "PASSWORD1234567!",
            "!!!password12345",
            "password!!!!!!!!",
            "password        ",
            "  password 12345 ",
            "2026password2026",
            "letmein_________",
            "dragon#########1",
            "qwertyuiop12345!!",
        ],
    )
    def test_padded_with_digits_or_punctuation(self, password: str) -> None:
        assert_refused_as_common(password)


class TestGuessablePatterns:
    @pytest.mark.parametrize(
        "password",
        [
            "abcabcabcabcabc",
            "ababababababababab",
            "aaaaaaaaaaaaaaa",
            "AbcAbcAbcAbcAbc",
            "DRAGONDRAGONDRAGON",
            "ßßßßßßßßßßßßßßß",
            "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀",
            "x" * PASSWORD_MAX_LENGTH,
        ],
        ids=["abc", "ab", "a", "mixed-case", "word", "eszett", "emoji", "128-x"],
    )
    def test_repetition(self, password: str) -> None:
        assert_refused_as_common(password)

    @pytest.mark.parametrize(
        "password",
        [
            "abcdefghijklmnop",
            "ABCDEFGHIJKLMNOP",
            "123456789012345",
            "543210987654321",
            "zyxwvutsrqponml",
            "ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰ",
            "αβγδεζηθικλμνξο",
        ],
        ids=["abc", "ABC", "digits", "digits-down", "zyx", "fullwidth", "greek"],
    )
    def test_sequences(self, password: str) -> None:
        assert_refused_as_common(password)


class TestAcceptedPassphrases:
    @pytest.mark.parametrize(
        "password",
        [
            "correct horse battery staple",
            "Correct Horse Battery Staple",
            "fifteen-chars-x",
            "жёлтый шкаф стол",
            "黄色い戸棚と青い椅子と白い机です",
            "my cat likes 3 sardines at 7pm",
            "p4ssw0rd but much longer than that",
        ],
    )
    def test_ordinary_passphrases(self, password: str) -> None:
        assert_accepted(password)

    def test_128_character_unicode_passphrase(self) -> None:
        words = ["Größe", "façade", "жёлтый", "東京タワー", "naïve", "🦊🌲", "smørrebrød", "ÆØÅ"]
        passphrase = ""
        for n in range(100):
            passphrase += words[n % len(words)] + str(n) + " "
            if len(passphrase) >= PASSWORD_MAX_LENGTH:
                break
        passphrase = passphrase[:PASSWORD_MAX_LENGTH]
        assert passphrase == nfkc(passphrase)
        assert len(passphrase) == PASSWORD_MAX_LENGTH
        assert len(passphrase.encode("utf-8")) > 72
        assert_accepted(passphrase)


# "ﬁ" (one code point) becomes "fi" under NFKC; "e" + U+0301 becomes one "é".
LIGATURE = "\ufb01"
COMBINING_ACUTE = "e\u0301"
BASE = "my own passphrase is long enough to be used here and it keeps going, "


def of_length(count: int) -> str:
    """A varied, acceptable-looking passphrase of exactly `count` characters."""
    text = (BASE * 3)[:count]
    assert len(text) == count
    return text


class TestLength:
    @pytest.mark.parametrize(
        ("length", "accepted"),
        [
            (PASSWORD_MIN_LENGTH - 1, False),
            (PASSWORD_MIN_LENGTH, True),
            (PASSWORD_MAX_LENGTH, True),
            (PASSWORD_MAX_LENGTH + 1, False),
        ],
        ids=["14", "15", "128", "129"],
    )
    def test_boundaries(self, length: int, accepted: bool) -> None:
        password = of_length(length)
        problem = password_problem(password)
        if accepted:
            assert problem is None, problem
        else:
            assert problem is not None
            assert "characters" in problem
            assert password not in problem

    def test_counted_as_typed_and_after_nfkc_growing(self) -> None:
        # 14 code points typed, 15 after NFKC: refused (a person typed 14; the OpenAPI
        # document's minLength counts those). 128 typed, 129 after: refused.
        short = LIGATURE + of_length(13)
        assert len(short) == 14
        assert len(nfkc(short)) == 15
        assert password_problem(short) is not None
        assert_accepted(LIGATURE + of_length(14))  # 15 typed, 16 after
        long = LIGATURE + of_length(127)
        assert len(long) == 128
        assert len(nfkc(long)) == 129
        assert password_problem(long) is not None

    def test_counted_as_typed_and_after_nfkc_shrinking(self) -> None:
        # 15 typed, 14 after NFKC: refused. 129 typed, 128 after: refused (the OpenAPI
        # document's maxLength counts the 129).
        short = "caf" + COMBINING_ACUTE + of_length(10)
        assert len(short) == 15
        assert len(nfkc(short)) == 14
        assert password_problem(short) is not None
        long = "caf" + COMBINING_ACUTE + of_length(124)
        assert len(long) == 129
        assert len(nfkc(long)) == 128
        assert password_problem(long) is not None
        assert_accepted("caf" + COMBINING_ACUTE + of_length(123))  # 128 typed, 127 after

    def test_every_code_point_counts(self) -> None:
        assert password_problem("😀" * 14) is not None  # 56 bytes, 14 characters
        fifteen_emoji = "🦊🌲🐻🍄🌙🚲🎻🧀🌋🐙🪁🍋🦉🧭🎈"
        assert len(fifteen_emoji) == 15
        assert_accepted(fifteen_emoji)  # 60 bytes of UTF-8, 15 characters

    def test_messages_never_repeat_the_password(self) -> None:
        for password in ("short one", "x" * 200, "password1234567!", "abcdefghijklmnop"):
            problem = password_problem(password)
            assert problem is not None
            assert password not in problem


class TestRegistrationRefusesCommonPasswords:
    @pytest.mark.parametrize(
        "password",
        [
            "QWERTYUIOP12345",
            "password1234567!",
            "ｐａｓｓｗｏｒｄｐａｓｓｗｏｒｄ",
            "abcdefghijklmnop",
        ],
        ids=["list-upper", "padded", "fullwidth-repeat", "sequence"],
    )
    async def test_422_without_echo(self, client: httpx.AsyncClient, password: str) -> None:
        response = await client.post(
            "/api/v1/users", json={"email": "common@example.com", "password": password}
        )
        body = assert_problem(response, 422, loc=["body", "password"], absent=[password])
        assert [error["loc"] for error in body["errors"]] == [["body", "password"]]
        assert nfkc(password) not in response.text
        assert nfkc(password).casefold() not in response.text.casefold()
        login = await client.post(
            "/api/v1/auth/token", data={"username": "common@example.com", "password": password}
        )
        assert_problem(login, 401)
