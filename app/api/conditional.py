"""Entity tags for versioned resources and the `If-Match` / `If-None-Match` rules (RFC 9110)."""

from __future__ import annotations

import re

from app.core.bounds import MAX_VERSION

_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


class AnyVersion:
    """`If-Match: *`: any current representation matches."""


ANY_VERSION = AnyVersion()


def etag_for(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[tuple[bool, str]] | None:
    """(weak, opaque-tag) pairs; None for a malformed header."""
    tags = []
    for part in header.split(","):
        if not part.strip():
            continue
        match = _ENTITY_TAG.fullmatch(part)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
    return tags


def _version(opaque: str) -> int | None:
    """The version an opaque tag names: only the exact spelling `etag_for` issues (the decimal
    digits, no sign, no leading zero). Entity tags compare character by character (RFC 9110
    8.8.3.2, strong and weak comparison alike), so `"04"` is not `"4"`."""
    if opaque.isascii() and opaque.isdigit() and len(opaque) <= 10:
        value = int(opaque)
        if 1 <= value <= MAX_VERSION and str(value) == opaque:
            return value
    return None


def if_match_versions(header: str | None) -> frozenset[int] | AnyVersion | None:
    """The versions an `If-Match` header accepts.

    None when there is no header; ANY_VERSION for `*`; otherwise the set of versions named
    by strong tags (strong comparison: weak or foreign tags match nothing, so they give 412).
    """
    if header is None:
        return None
    if header.strip() == "*":
        return ANY_VERSION
    tags = _tags(header) or []
    versions = {_version(opaque) for weak, opaque in tags if not weak}
    return frozenset(v for v in versions if v is not None)


def if_none_match_hits(header: str | None, version: int) -> bool:
    """Whether `If-None-Match` names the current version (weak comparison: `W/"4"` matches
    `"4"`, but the opaque tags must be equal), or is `*`."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    tags = _tags(header) or []
    return any(_version(opaque) == version for _weak, opaque in tags)


def expected_versions(header: str | None) -> frozenset[int] | None:
    """The versions an `If-Match` accepts, for a write: None when any version will do (no
    header, or `*`)."""
    versions = if_match_versions(header)
    return None if versions is None or versions is ANY_VERSION else versions  # type: ignore[return-value]
