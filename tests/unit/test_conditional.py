"""`app.api.conditional`: the entity tags we issue and how `If-Match` / `If-None-Match` compare
them (RFC 9110 8.8.3.2 and 13.1). No database.

Strong comparison (`If-Match`): both tags strong and their opaque parts equal character by
character. Weak comparison (`If-None-Match`): the `W/` prefixes are ignored, the opaque parts
are still compared exactly. So `"04"`, `"+4"` or `"4.0"` never name version 4.
"""

from __future__ import annotations

import pytest

from app.api.conditional import ANY_VERSION, etag_for, if_match_versions, if_none_match_hits
from app.core.bounds import MAX_VERSION


class TestEtagFor:
    @pytest.mark.parametrize("version", [1, 4, 10, 1234, MAX_VERSION])
    def test_the_decimal_version_quoted(self, version: int) -> None:
        assert etag_for(version) == f'"{version}"'

    @pytest.mark.parametrize("version", [1, 4, 10, 1234, MAX_VERSION])
    def test_what_we_issue_matches_itself(self, version: int) -> None:
        assert if_match_versions(etag_for(version)) == frozenset({version})
        assert if_none_match_hits(etag_for(version), version)


# Spellings of 4 that are not the tag we issue for version 4.
NOT_FOUR = ['"04"', '"004"', '"0004"', '"+4"', '"4.0"', '"4 "', '" 4"', '"４"', '"٤"', '"0x4"']


class TestIfMatch:
    def test_no_header(self) -> None:
        assert if_match_versions(None) is None

    @pytest.mark.parametrize("header", ["*", " * "])
    def test_any(self, header: str) -> None:
        assert if_match_versions(header) is ANY_VERSION

    @pytest.mark.parametrize(
        ("header", "versions"),
        [
            ('"4"', {4}),
            (' "4" ', {4}),
            ('"4", "7"', {4, 7}),
            ('"7","4"', {4, 7}),
            ('"4", W/"7"', {4}),  # a weak tag never matches strongly
            (f'"{MAX_VERSION}"', {MAX_VERSION}),
        ],
    )
    def test_strong_tags_name_versions(self, header: str, versions: set[int]) -> None:
        assert if_match_versions(header) == frozenset(versions)

    @pytest.mark.parametrize("header", NOT_FOUR)
    def test_other_spellings_of_a_version_name_nothing(self, header: str) -> None:
        assert if_match_versions(header) == frozenset()

    @pytest.mark.parametrize("header", ['"04", "7"', '"7", "04"'])
    def test_only_the_exact_tag_in_a_list_counts(self, header: str) -> None:
        assert if_match_versions(header) == frozenset({7})

    @pytest.mark.parametrize(
        "header",
        [
            'W/"4"',  # weak: strong comparison fails
            '"0"',
            '"-1"',
            f'"{MAX_VERSION + 1}"',
            '"99999999999"',
            '"abc"',
            '""',
            "4",  # not quoted: malformed
            '"4',
            '"4" junk',
        ],
    )
    def test_what_names_no_version(self, header: str) -> None:
        assert if_match_versions(header) == frozenset()


class TestIfNoneMatch:
    def test_no_header(self) -> None:
        assert not if_none_match_hits(None, 4)

    def test_any(self) -> None:
        assert if_none_match_hits("*", 4)

    @pytest.mark.parametrize("header", ['"4"', 'W/"4"', '"3", "4"', 'W/"3", W/"4"', ' W/"4" '])
    def test_the_current_tag_weak_or_strong(self, header: str) -> None:
        assert if_none_match_hits(header, 4)

    @pytest.mark.parametrize("header", [*NOT_FOUR, 'W/"04"', '"3"', 'W/"5"', "4", '"4" junk'])
    def test_anything_else_is_not_a_hit(self, header: str) -> None:
        assert not if_none_match_hits(header, 4)
