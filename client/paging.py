"""Cursor paging for any list screen: a stack of cursors per list, reset when its filters
change, with Previous / Next buttons."""

from __future__ import annotations

from collections.abc import Hashable

import streamlit as st


def _stack(scope: str) -> list[str | None]:
    stack = st.session_state.setdefault(f"_pages_{scope}", [None])
    assert isinstance(stack, list)
    return stack


def current_cursor(scope: str, filters: Hashable) -> str | None:
    """The cursor of the page to show; back to the first page when `filters` changed."""
    signature_key = f"_pages_filters_{scope}"
    if st.session_state.get(signature_key) != filters:
        st.session_state[signature_key] = filters
        st.session_state[f"_pages_{scope}"] = [None]
    return _stack(scope)[-1]


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
