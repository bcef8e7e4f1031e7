"""The comments of one task, drawn inside its row on the task list: oldest first, a form to
add one (for commenters and above), and Delete on one's own (or on any, for an admin)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from task_fields import parse_timestamp, plain
from ui import act, feedback, field_error, remember, show_feedback, show_read_error
from workspace import Workspace

OPEN_COMMENTS = "_comments_open"  # the id of the task whose comments are shown (one at a time)


def toggle_comments(task_id: Any) -> None:
    state = st.session_state
    state[OPEN_COMMENTS] = None if state.get(OPEN_COMMENTS) == task_id else task_id


def _add(session: ApiSession, task_id: Any) -> None:
    key = f"comment_body_{task_id}"
    session.add_comment(task_id, str(st.session_state.get(key, "")))
    st.session_state[key] = ""
    remember(f"comments_{task_id}", success="Comment added.")


def _delete(session: ApiSession, task_id: Any, comment_id: Any) -> None:
    session.delete_comment(task_id, comment_id)
    remember(f"comments_{task_id}", success="Comment deleted.")


def _author(comment: dict[str, Any], person: Callable[[Any], str]) -> str:
    author = comment.get("author") or {}
    if author.get("id") is None:
        return "Someone"
    name = person(author["id"])
    # A former member is not in the project's list: the comment still names them.
    return str(author.get("full_name") or name) if name.startswith("User ") else name


def comments_panel(workspace: Workspace, person: Callable[[Any], str], task_id: Any) -> None:
    session = workspace.session
    scope = f"comments_{task_id}"
    try:
        comments = session.all_comments(task_id)
    except ApiError as exc:
        show_read_error(exc, retry_key=f"comments_retry_{task_id}")
        return
    error, success = feedback(scope)
    st.markdown("**Comments**")
    if not comments:
        st.caption("No comments yet.")
    may_delete_own = workspace.may("comment.delete_own")
    may_delete_any = workspace.may("comment.delete_any")
    for comment in comments:
        comment_id = comment["id"]
        with st.container(key=f"comment_{comment_id}"):
            text_col, button_col = st.columns([8, 1.5], vertical_alignment="center")
            moment = parse_timestamp(comment.get("created_at"))
            when = f" · {moment:%Y-%m-%d %H:%M} UTC" if moment else ""
            text_col.markdown(
                f"**{plain(_author(comment, person))}**{plain(when)}  \n{plain(comment['body'])}"
            )
            is_mine = (comment.get("author") or {}).get("id") == workspace.me
            if may_delete_any or (is_mine and may_delete_own):
                button_col.button(
                    "Delete",
                    key=f"comment_delete_{comment_id}",
                    on_click=act,
                    args=(scope, functools.partial(_delete, session, task_id, comment_id)),
                    width="stretch",
                )
    if workspace.may("comment.create"):
        with st.form(f"comment_form_{task_id}"):
            st.text_area("Your comment", key=f"comment_body_{task_id}", height=80)
            field_error(error, "body")
            st.form_submit_button(
                "Add comment",
                key=f"comment_add_{task_id}",
                on_click=act,
                args=(scope, functools.partial(_add, session, task_id)),
            )
            show_feedback(error, success, shown_fields=("body",))
    else:
        show_feedback(error, success)
