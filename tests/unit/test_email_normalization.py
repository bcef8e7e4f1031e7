"""`normalize_email`: the one spelling of an address, used at registration, login and by the
CLI. Addresses equal after NFKC and case folding get the same spelling; that spelling is its
own normal form, and lower case as the database's lower(email) sees it."""

from __future__ import annotations

import unicodedata

import pytest
from pydantic import TypeAdapter, ValidationError

from app.schemas.user import Email, normalize_email
from app.services.auth import login_account

EMAIL = TypeAdapter(Email)


@pytest.mark.parametrize(
    ("sent", "normal"),
    [
        ("Kim@Example.com", "kim@example.com"),
        ("ｋim@example.com", "kim@example.com"),
        ("ＫＩＭ@ＥＸＡＭＰＬＥ.ＣＯＭ", "kim@example.com"),
        ("kim＠example.com", "kim@example.com"),
        ("  kim@example.com\u3000", "kim@example.com"),
        ("Straße@Example.com", "strasse@example.com"),
        ("ﬁona@example.com", "fiona@example.com"),
        ("ZOE\u0308@example.com", "zoë@example.com"),
        ("kim@BÜCHER.de", "kim@bücher.de"),
        ("kim@xn--bcher-kva.de", "kim@bücher.de"),
        ("\u13a0@example.com", "\uab70@example.com"),  # Cherokee folds to capitals
        # Default-ignorable characters are dropped, as NFKC_Casefold drops them.
        ("ki\u3164m@example.com", "kim@example.com"),  # Hangul filler
        ("kim\u200b@example.com", "kim@example.com"),  # zero width space
        ("\u2764\ufe0f@example.com", "\u2764@example.com"),  # variation selector
    ],
)
def test_spellings_of_one_address(sent: str, normal: str) -> None:
    assert normalize_email(sent) == normal
    assert normalize_email(normal) == normal


def test_login_counts_attempts_against_the_normal_form() -> None:
    assert login_account("ｋim@Example.com") == login_account("kim@example.com")


@pytest.mark.parametrize(
    "email", ["kim", "kim@", "@example.com", "k m@example.com", "\u200b@example.com"]
)
def test_not_an_address(email: str) -> None:
    with pytest.raises(ValueError, match="^must be a valid email address$"):
        normalize_email(email)


def test_the_normal_form_is_stable_for_every_character() -> None:
    """For each character of the first plane in a local part: normalising the normal form
    changes nothing (a stored address finds itself at login), and it is lower case."""
    unstable = []
    for code in range(0x80, 0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        try:
            normal = normalize_email(f"a{chr(code)}b@example.com")
        except ValueError:
            continue
        if normalize_email(normal) != normal or normal.lower() != normal:
            unstable.append(f"U+{code:04X}")
        assert unicodedata.is_normalized("NFC", normal)
    assert unstable == []


class TestLocalPartLength:
    def test_64_is_the_most(self) -> None:
        assert EMAIL.validate_python("a" * 64 + "@example.com") == "a" * 64 + "@example.com"
        with pytest.raises(ValidationError, match="at most 64 characters before the @"):
            EMAIL.validate_python("a" * 65 + "@example.com")

    def test_counted_once_folded(self) -> None:
        # 32 sharp s are 64 characters once folded (ss), 33 are 66.
        assert EMAIL.validate_python("ß" * 32 + "@example.com") == "ss" * 32 + "@example.com"
        with pytest.raises(ValidationError, match="at most 64 characters before the @"):
            EMAIL.validate_python("ß" * 33 + "@example.com")

    def test_login_still_finds_a_longer_address(self) -> None:
        # Accounts registered before the rule keep logging in: normalising does not refuse.
        assert normalize_email("A" * 65 + "@example.com") == "a" * 65 + "@example.com"
