"""Admins only: every account, with deactivate / reactivate and promote / demote."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from paging import pager, read_page
from task_fields import plain
from ui import act, feedback, remember, show_feedback, show_read_error

SCOPE = "users"


def _update(session: ApiSession, user: dict[str, Any], changes: dict[str, Any], done: str) -> None:
    session.update_user(user["id"], changes)
    remember(SCOPE, success=f"{user['email']}: {done}.")


def _change(
    session: ApiSession, user: dict[str, Any], changes: dict[str, Any], done: str
) -> tuple[str, Callable[[], None]]:
    """A button's on_click args: `act` makes the change and reports it on this screen."""
    return SCOPE, functools.partial(_update, session, user, changes, done)


def render(session: ApiSession) -> None:
    try:
        page = read_page(
            SCOPE,
            "users",
            lambda cursor: session.list_users(
                {"limit": 50, **({"cursor": cursor} if cursor else {})}
            ),
        )
    except ApiError as exc:
        show_read_error(exc, retry_key="users_retry")
        return
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    for user in page["items"]:
        user_id = user["id"]
        is_self = user_id == session.user.get("id")
        with st.container(border=True, key=f"user_{user_id}"):
            text_col, active_col, role_col = st.columns([6, 2, 2], vertical_alignment="center")
            name = f" ({plain(user['full_name'])})" if user.get("full_name") else ""
            state = "active" if user.get("is_active") else ":red[deactivated]"
            text_col.markdown(f"**{plain(user['email'])}**{name}  \n{user['role']} · {state}")
            if user.get("is_active"):
                active_col.button(
                    "Deactivate",
                    key=f"deactivate_{user_id}",
                    disabled=is_self,
                    on_click=act,
                    args=_change(session, user, {"is_active": False}, "deactivated"),
                    width="stretch",
                )
            else:
                active_col.button(
                    "Reactivate",
                    key=f"reactivate_{user_id}",
                    on_click=act,
                    args=_change(session, user, {"is_active": True}, "reactivated"),
                    width="stretch",
                )
            if user.get("role") == "admin":
                role_col.button(
                    "Make user",
                    key=f"demote_{user_id}",
                    disabled=is_self,
                    on_click=act,
                    args=_change(session, user, {"role": "user"}, "now a user"),
                    width="stretch",
                )
            else:
                role_col.button(
                    "Make admin",
                    key=f"promote_{user_id}",
                    on_click=act,
                    args=_change(session, user, {"role": "admin"}, "now an admin"),
                    width="stretch",
                )
    pager(SCOPE, page.get("next_cursor"))
