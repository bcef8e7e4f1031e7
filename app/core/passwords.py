"""Password rules of the contract (NIST SP 800-63B-4): 15 to 128 characters as typed and after
NFKC, no common passwords.

No composition rules. A password is refused when, compared without regard to case, it is
on the shipped list of commonly used passwords, is such a password padded with digits or
punctuation ("password1234567"), repeats one short unit ("abcabcabcabcabc"), or runs
through consecutive characters ("123456789012345" is caught by the list and the run rule).
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from pathlib import Path

from app.core.bounds import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from app.core.security import normalize_password

_LIST_PATH = Path(__file__).with_name("data") / "common_passwords.txt"
# ASCII digits, punctuation and spaces around a word: "password1234567!" is "password".
_PAD = r"[0-9!-/:-@\[-`{-~\s]*"
_PADDING = re.compile(rf"^{_PAD}(.*?){_PAD}$", re.DOTALL)
_LONGEST_RUN = 6  # a run this long of consecutive characters makes up the whole password


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = _LIST_PATH.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _repeats_a_unit(text: str) -> bool:
    # "abcabc..." is "abc" repeated: the string occurs in itself doubled, off its own start.
    return len(text) > 1 and (text + text).find(text, 1) < len(text)


_DIGIT_CYCLES = ("1234567890" * 14, "0987654321" * 14)


def _is_sequence(text: str) -> bool:
    """Consecutive characters all along: abcdef..., 98765..., 123456789012345..."""
    if any(text in cycle for cycle in _DIGIT_CYCLES):
        return True
    steps = {ord(b) - ord(a) for a, b in zip(text, text[1:], strict=False)}
    return len(text) >= _LONGEST_RUN and len(steps) == 1 and steps <= {1, -1}


def password_problem(password: str) -> str | None:
    """Why the password is refused, or None when it is acceptable."""
    normalized = normalize_password(password)
    # Within the bounds both as typed (what a person counts, and what the OpenAPI document's
    # minLength and maxLength check) and as hashed: NFKC makes some text longer ("½" is
    # "1⁄2") and some shorter ("e" and a combining accent are one "é").
    shortest, longest = sorted((len(password), len(normalized)))
    if shortest < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if longest > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    folded = normalized.casefold()
    listed = common_passwords()
    core_match = _PADDING.match(folded)
    core = core_match.group(1) if core_match else folded
    # Also without surrounding punctuation alone: "1234567890123456!" is still a run of digits.
    unpunctuated = folded.strip(string.punctuation + string.whitespace)
    for candidate in {folded, core, unpunctuated} - {""}:
        if candidate in listed or _repeats_a_unit(candidate) or _is_sequence(candidate):
            return "is too common or too easy to guess; choose a longer or less predictable one"
    return None
