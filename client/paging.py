"""Cursor paging for any list screen: a stack of cursors per list, reset when its filters
change, with Previous / Next buttons."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import streamlit as st

from api_client import ApiError

Page = TypeVar("Page")


def _stack(scope: str) -> list[str | None]:
    stack = st.session_state.setdefault(f"_pages_{scope}", [None])
    assert isinstance(stack, list)
    return stack


def _current_cursor(scope: str, filters: Hashable) -> str | None:
    """The cursor of the page to show; back to the first page when `filters` changed."""
    signature_key = f"_pages_filters_{scope}"
    if st.session_state.get(signature_key) != filters:
        st.session_state[signature_key] = filters
        st.session_state[f"_pages_{scope}"] = [None]
    return _stack(scope)[-1]


def read_page(scope: str, filters: Hashable, read: Callable[[str | None], Page]) -> Page:
    """`read(cursor)` of the page to show, back at the first page when `filters` changed.

    A cursor the API refuses (a 422 at `cursor`: issued before the API's key changed, say;
    or a 410) is dropped and the list starts again from its first page, which says so: left
    on the refusal, the person had no pager and no way back but changing a filter."""
    cursor = _current_cursor(scope, filters)
    try:
        return read(cursor)
    except ApiError as exc:
        if cursor is None or not (exc.status == 410 or "cursor" in exc.field_errors):
            raise
    restart(scope)
    st.info(
        "The list started again from its first page: the page you were on can no longer be read.",
        icon=":material/first_page:",
    )
    return read(None)


def _next(scope: str, cursor: str) -> None:
    _stack(scope).append(cursor)


def _previous(scope: str) -> None:
    stack = _stack(scope)
    if len(stack) > 1:
        stack.pop()


def restart(scope: str) -> None:
    st.session_state[f"_pages_{scope}"] = [None]


def pager(scope: str, next_cursor: str | None) -> None:
    stack = _stack(scope)
    previous_col, label_col, next_col = st.columns([1, 1, 1])
    previous_col.button(
        "Previous page",
        key=f"{scope}_previous",
        disabled=len(stack) <= 1,
        on_click=_previous,
        args=(scope,),
        width="stretch",
    )
    label_col.caption(f"Page {len(stack)}")
    next_col.button(
        "Next page",
        key=f"{scope}_next",
        disabled=next_cursor is None,
        on_click=_next,
        args=(scope, next_cursor),
        width="stretch",
    )
