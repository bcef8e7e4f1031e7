"""The comments of one task, drawn inside its row on the task list: oldest first (an edited
one says so), a form to add one (for commenters and above), Edit on one's own (its author,
while still a commenter or above), and Delete on one's own (or on any, for an admin)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from task_fields import parse_timestamp, plain
from ui import (
    GONE,
    KEPT,
    act,
    ask_first,
    confirmation,
    feedback,
    field_error,
    remember,
    show_feedback,
    show_read_error,
    task_gone,
)
from workspace import Workspace

OPEN_COMMENTS = "_comments_open"  # the id of the task whose comments are shown (one at a time)
EDITING = "_comment_editing"  # the id of the comment being edited (one at a time)
Gone = Callable[[str], None]  # says above the list that the task went, and what was lost


def toggle_comments(task_id: Any) -> None:
    state = st.session_state
    state[OPEN_COMMENTS] = None if state.get(OPEN_COMMENTS) == task_id else task_id


def _add(session: ApiSession, task_id: Any, gone: Gone) -> None:
    key = f"comment_body_{task_id}"
    body = str(st.session_state.get(key, ""))
    try:
        session.add_comment(task_id, body)
    except ApiError as exc:
        if not task_gone(session, task_id, exc):
            raise
        # The form goes with the task's row: the text is given back, not lost.
        gone(f"your comment was not added. It read: “{body}”.")
        return
    st.session_state[key] = ""
    remember(f"comments_{task_id}", success="Comment added.")


def _delete(session: ApiSession, task_id: Any, comment_id: Any, gone: Gone) -> None:
    try:
        session.delete_comment(task_id, comment_id)
    except ApiError as exc:
        if not task_gone(session, task_id, exc):
            raise
        gone("the comment was not deleted.")
        return
    remember(f"comments_{task_id}", success="Comment deleted.")


def _start_edit(comment: dict[str, Any]) -> None:
    state = st.session_state
    state[EDITING] = comment["id"]
    state[f"comment_edit_body_{comment['id']}"] = comment["body"]


def _cancel_edit() -> None:
    st.session_state.pop(EDITING, None)


def _save_edit(session: ApiSession, task_id: Any, comment_id: Any, gone: Gone) -> None:
    state = st.session_state
    key = f"comment_edit_body_{comment_id}"
    body = str(state.get(key, ""))
    # On a refusal the form stays open with the text as typed, the problem under it.
    try:
        session.update_comment(task_id, comment_id, body)
    except ApiError as exc:
        if task_gone(session, task_id, exc):
            state.pop(EDITING, None)
            gone(f"your edit of a comment was not saved. It read: “{body}”.")
            return
        if exc.status not in GONE:
            raise
        # The comment went (its task is still there): its form is not drawn again, so the
        # text is given back under the comments, not lost with a bare "not found".
        state.pop(EDITING, None)
        message = (
            f"This comment was deleted meanwhile, so your edit was not saved. It read: “{body}”."
        )
        # Shown as markdown, as every problem's detail is: the text is typed.
        remember(f"comment_edit_{task_id}", error=ApiError(exc.status, plain(message)))
        return
    state.pop(EDITING, None)
    state.pop(key, None)
    remember(f"comment_edit_{task_id}", success="Comment saved.")


def _edited(comment: dict[str, Any]) -> str:
    """A mark for a comment whose body changed after it was written (only a change of the
    body moves `updated_at`)."""
    created = parse_timestamp(comment.get("created_at"))
    updated = parse_timestamp(comment.get("updated_at"))
    return " · edited" if created and updated and updated > created else ""


def _author(comment: dict[str, Any], person: Callable[[Any], str]) -> str:
    author = comment.get("author") or {}
    if author.get("id") is None:
        return "Someone"
    name = person(author["id"])
    # A former member is not in the project's list: the comment still names them.
    return str(author.get("full_name") or name) if name.startswith("User ") else name


def comments_panel(
    workspace: Workspace, person: Callable[[Any], str], task_id: Any, gone: Gone
) -> None:
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
    edit_error, edit_success = feedback(f"comment_edit_{task_id}")
    edit_shown = False  # whether the edit form drew its outcome (else it goes under the list)
    may_edit_own = workspace.may("comment.update_own")
    may_delete_own = workspace.may("comment.delete_own")
    may_delete_any = workspace.may("comment.delete_any")
    editing = st.session_state.get(EDITING)
    for comment in comments:
        comment_id = comment["id"]
        is_mine = (comment.get("author") or {}).get("id") == workspace.me
        moment = parse_timestamp(comment.get("created_at"))
        when = f" · {moment:%Y-%m-%d %H:%M} UTC" if moment else ""
        heading = f"**{plain(_author(comment, person))}**{plain(when + _edited(comment))}"
        with st.container(key=f"comment_{comment_id}"):
            if is_mine and may_edit_own and editing == comment_id:
                st.markdown(heading)
                _edit_form(session, task_id, comment_id, edit_error, gone)
                edit_shown = True
                continue
            text_col, edit_col, delete_col = st.columns([7, 1.5, 1.5], vertical_alignment="center")
            text_col.markdown(f"{heading}  \n{plain(comment['body'])}")
            if is_mine and may_edit_own:
                edit_col.button(
                    "Edit",
                    key=f"comment_edit_{comment_id}",
                    on_click=_start_edit,
                    args=(comment,),
                    width="stretch",
                )
            if may_delete_any or (is_mine and may_delete_own):
                key = f"comment_delete_{comment_id}"
                delete_col.button(
                    "Delete", key=key, on_click=ask_first, args=(key,), width="stretch"
                )
                confirmation(
                    key,
                    "Delete this comment? It cannot be restored.",
                    confirm="Delete",
                    scope=scope,
                    action=functools.partial(_delete, session, task_id, comment_id, gone),
                )
    if not edit_shown:
        # Saved (the form is closed), or refused after the form went away (the comment was
        # deleted meanwhile, or the person's role was lowered).
        show_feedback(edit_error, edit_success)
    if workspace.may("comment.create"):
        with st.form(f"comment_form_{task_id}"):
            st.text_area(
                "Your comment", key=f"comment_body_{task_id}", persist_state=KEPT, height=80
            )
            field_error(error, "body")
            st.form_submit_button(
                "Add comment",
                key=f"comment_add_{task_id}",
                on_click=act,
                args=(scope, functools.partial(_add, session, task_id, gone)),
            )
            show_feedback(error, success, shown_fields=("body",))
    else:
        show_feedback(error, success)


def _edit_form(
    session: ApiSession, task_id: Any, comment_id: Any, error: ApiError | None, gone: Gone
) -> None:
    """One's own comment as a text area, with Save and Cancel; the API's problem with the
    text right under it, any other under the buttons."""
    with st.form(f"comment_edit_form_{comment_id}"):
        st.text_area(
            "Edit your comment",
            key=f"comment_edit_body_{comment_id}",
            persist_state=KEPT,
            height=80,
        )
        field_error(error, "body")
        save_col, cancel_col = st.columns(2)
        save_col.form_submit_button(
            "Save",
            type="primary",
            key=f"comment_save_{comment_id}",
            on_click=act,
            args=(
                f"comment_edit_{task_id}",
                functools.partial(_save_edit, session, task_id, comment_id, gone),
            ),
        )
        cancel_col.form_submit_button(
            "Cancel", key=f"comment_cancel_{comment_id}", on_click=_cancel_edit
        )
    show_feedback(error, None, shown_fields=("body",))
