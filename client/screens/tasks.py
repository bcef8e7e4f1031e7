"""The task list: filters, sort, cursor pages, adding, editing with If-Match, deleting.

An edit starts from the task as it was when the person pressed Edit (its ETag is kept), and
is sent with `If-Match`, so an edit made meanwhile elsewhere comes back as a conflict (412)
and nothing is overwritten. app.py hands `render` the signed-in session; the buttons' actions
get it from there.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from paging import current_cursor, pager
from task_fields import (
    PAGE_SIZES,
    PRIORITY_LABELS,
    SORT_LABELS,
    STATUS_LABELS,
    day_after,
    due_at_for,
    due_date,
    plain,
    start_of,
    summary_line,
)
from ui import (
    act,
    feedback,
    field_error,
    remember,
    show_feedback,
    show_read_error,
)

SCOPE = "tasks"
_EDITING = "_editing"  # {"id": task id, "etag": the tag the edit is based on}
_NEW_KEY = "_new_task_idempotency_key"
# The list's query parameters whose errors are drawn under their filter widget.
FILTER_FIELDS = ("status", "priority", "q", "due_after", "due_before")


def _filters() -> dict[str, Any]:
    """The list's query parameters, from the filter widgets' current values."""
    state = st.session_state
    params: dict[str, Any] = {
        "sort": state.get("flt_sort", "-created_at"),
        "limit": state.get("flt_limit", 20),
    }
    if state.get("flt_status"):
        params["status"] = ",".join(state["flt_status"])
    if state.get("flt_priority"):
        params["priority"] = ",".join(state["flt_priority"])
    due_from: date | None = state.get("flt_due_from")
    due_until: date | None = state.get("flt_due_until")
    if due_from is not None:
        params["due_after"] = start_of(due_from)
    if due_until is not None:
        params["due_before"] = start_of(day_after(due_until))
    query = str(state.get("flt_q", "")).strip()
    if query:
        params["q"] = query
    return params


def render(session: ApiSession) -> None:
    st.header("Tasks")
    _add_form(session)
    st.divider()
    params = _filters()
    filters_key = tuple(sorted((k, str(v)) for k, v in params.items()))
    cursor = current_cursor(SCOPE, filters_key)
    page: dict[str, Any] | None = None
    list_error: ApiError | None = None
    try:
        page = session.list_tasks({**params, **({"cursor": cursor} if cursor else {})})
    except ApiError as exc:
        list_error = exc
    _filter_widgets(list_error)
    if list_error is not None:
        show_read_error(list_error, retry_key="tasks_retry", shown_fields=FILTER_FIELDS)
        return
    assert page is not None
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    _task_rows(session, page["items"])
    pager(SCOPE, page.get("next_cursor"))


def _filter_widgets(error: ApiError | None) -> None:
    with st.expander("Filter and sort", expanded=True, icon=":material/filter_list:"):
        left, right = st.columns(2)
        with left:
            st.multiselect(
                "Filter by status",
                list(STATUS_LABELS),
                format_func=STATUS_LABELS.__getitem__,
                key="flt_status",
            )
            field_error(error, "status")
            st.multiselect(
                "Filter by priority",
                list(PRIORITY_LABELS),
                format_func=PRIORITY_LABELS.__getitem__,
                key="flt_priority",
            )
            field_error(error, "priority")
            st.text_input("Search", key="flt_q", placeholder="Words in the title or description")
            field_error(error, "q")
        with right:
            from_col, until_col = st.columns(2)
            from_col.date_input("Due from", value=None, key="flt_due_from", format="YYYY-MM-DD")
            until_col.date_input("Due until", value=None, key="flt_due_until", format="YYYY-MM-DD")
            field_error(error, "due_after", "due_before")
            st.selectbox(
                "Sort by", list(SORT_LABELS), format_func=SORT_LABELS.__getitem__, key="flt_sort"
            )
            st.selectbox("Tasks per page", PAGE_SIZES, index=1, key="flt_limit")


# Adding


def _new_task_key() -> str:
    key = st.session_state.get(_NEW_KEY)
    if not isinstance(key, str):
        key = st.session_state[_NEW_KEY] = uuid.uuid4().hex
    return key


def _add_task(session: ApiSession) -> None:
    state = st.session_state
    body: dict[str, Any] = {
        "title": state.get("new_title", ""),
        "priority": state.get("new_priority", "medium"),
    }
    description = str(state.get("new_description", ""))
    if description.strip():
        body["description"] = description
    due = due_at_for(state.get("new_due"))
    if due is not None:
        body["due_at"] = due
    try:
        # The key makes a double submit (or a retry after a lost answer) create one task.
        headers = {"Idempotency-Key": _new_task_key()}
        task = session.call("POST", "/tasks", json=body, headers=headers).json()
    except ApiError as exc:
        if not exc.unavailable:
            state.pop(_NEW_KEY, None)  # refused: the next attempt is a new request
        raise
    state.pop(_NEW_KEY, None)
    state["new_title"] = ""
    state["new_description"] = ""
    state["new_due"] = None
    state["new_priority"] = "medium"
    remember("add", success=f"Added “{task['title']}”.")


def _add_form(session: ApiSession) -> None:
    error, success = feedback("add")
    with st.form("add_task_form"):
        st.subheader("Add a task")
        st.text_input("Title", key="new_title", max_chars=200)
        field_error(error, "title")
        st.text_area("Description", key="new_description", height=80)
        field_error(error, "description")
        priority_col, due_col = st.columns(2)
        with priority_col:
            st.selectbox(
                "Priority",
                list(PRIORITY_LABELS),
                index=1,
                format_func=PRIORITY_LABELS.__getitem__,
                key="new_priority",
            )
            field_error(error, "priority")
        with due_col:
            st.date_input("Due date", value=None, key="new_due", format="YYYY-MM-DD")
            field_error(error, "due_at")
        st.form_submit_button(
            "Add task",
            type="primary",
            key="add_task",
            on_click=act,
            args=("add", functools.partial(_add_task, session)),
        )
        show_feedback(error, success, shown_fields=("title", "description", "priority", "due_at"))


# Listing, editing, deleting


def _task_rows(session: ApiSession, tasks: list[dict[str, Any]]) -> None:
    if not tasks:
        st.info("No tasks match. Add one above, or change the filters.", icon=":material/inbox:")
        return
    now = datetime.now(UTC)
    editing = st.session_state.get(_EDITING) or {}
    for task in tasks:
        task_id = task["id"]
        with st.container(border=True, key=f"task_{task_id}"):
            text_col, edit_col, delete_col = st.columns([8, 1.3, 1.3], vertical_alignment="center")
            with text_col:
                st.markdown(f"**{plain(task['title'])}**  \n{summary_line(task, now)}")
                if task.get("description"):
                    st.caption(plain(task["description"][:300]))
            edit_col.button(
                "Edit",
                key=f"edit_{task_id}",
                on_click=act,
                args=(f"edit_{task_id}", functools.partial(_open_editor, session, task_id)),
                width="stretch",
            )
            delete_col.button(
                "Delete",
                key=f"delete_{task_id}",
                on_click=act,
                args=(SCOPE, functools.partial(_delete, session, task)),
                width="stretch",
            )
            if editing.get("id") == task_id:
                _editor(session, task_id)
            else:
                error, _ = feedback(f"edit_{task_id}")
                if error is not None:
                    show_feedback(error, None)


def _open_editor(session: ApiSession, task_id: Any) -> None:
    """Load the task as it is now; the edit is based on this version."""
    task, etag = session.get_task(task_id)
    state = st.session_state
    state[_EDITING] = {"id": task_id, "etag": etag, "task": task}
    state[f"edit_title_{task_id}"] = task["title"]
    state[f"edit_description_{task_id}"] = task.get("description") or ""
    state[f"edit_status_{task_id}"] = task["status"]
    state[f"edit_priority_{task_id}"] = task["priority"]
    state[f"edit_due_{task_id}"] = due_date(task)


def _close_editor() -> None:
    st.session_state.pop(_EDITING, None)


def _changes(task_id: Any, original: dict[str, Any]) -> dict[str, Any]:
    state = st.session_state
    edited: dict[str, Any] = {
        "title": state.get(f"edit_title_{task_id}", ""),
        "description": state.get(f"edit_description_{task_id}") or None,
        "status": state.get(f"edit_status_{task_id}"),
        "priority": state.get(f"edit_priority_{task_id}"),
    }
    changes = {name: value for name, value in edited.items() if value != original.get(name)}
    new_due: date | None = state.get(f"edit_due_{task_id}")
    if new_due != due_date(original):
        changes["due_at"] = due_at_for(new_due)
    return changes


def _save(session: ApiSession, task_id: Any) -> None:
    editing = st.session_state.get(_EDITING) or {}
    changes = _changes(task_id, editing.get("task", {}))
    if not changes:
        _close_editor()
        remember(SCOPE, success="Nothing to change.")
        return
    task, _etag = session.update_task(task_id, changes, editing.get("etag", ""))
    _close_editor()
    remember(SCOPE, success=f"Saved “{task['title']}”.")


def _editor(session: ApiSession, task_id: Any) -> None:
    error, _ = feedback(f"edit_{task_id}")
    with st.form(f"edit_form_{task_id}"):
        st.text_input("Title", key=f"edit_title_{task_id}", max_chars=200)
        field_error(error, "title")
        st.text_area("Description", key=f"edit_description_{task_id}", height=80)
        field_error(error, "description")
        status_col, priority_col, due_col = st.columns(3)
        status_col.selectbox(
            "Status",
            list(STATUS_LABELS),
            format_func=STATUS_LABELS.__getitem__,
            key=f"edit_status_{task_id}",
        )
        priority_col.selectbox(
            "Priority",
            list(PRIORITY_LABELS),
            format_func=PRIORITY_LABELS.__getitem__,
            key=f"edit_priority_{task_id}",
        )
        due_col.date_input("Due date", value=None, key=f"edit_due_{task_id}", format="YYYY-MM-DD")
        field_error(error, "due_at")
        save_col, cancel_col = st.columns(2)
        save_col.form_submit_button(
            "Save changes",
            type="primary",
            key=f"save_{task_id}",
            on_click=act,
            args=(f"edit_{task_id}", functools.partial(_save, session, task_id)),
        )
        cancel_col.form_submit_button("Cancel", key=f"cancel_{task_id}", on_click=_close_editor)
    if error is not None and error.status == 412:
        st.error(
            "Conflict: this task was changed somewhere else after you opened it, so your "
            "edit was not saved and nothing was overwritten. Load the latest version, then "
            f"make your change again.\n\n{error.detail}",
            icon=":material/sync_problem:",
        )
        st.button(
            "Load the latest version",
            key=f"reload_{task_id}",
            on_click=act,
            args=(f"edit_{task_id}", functools.partial(_open_editor, session, task_id)),
        )
    elif error is not None:
        show_feedback(error, None, shown_fields=("title", "description", "due_at"))


def _delete(session: ApiSession, task: dict[str, Any]) -> None:
    session.delete_task(task["id"])
    if (st.session_state.get(_EDITING) or {}).get("id") == task["id"]:
        _close_editor()
    remember(SCOPE, success=f"Moved “{task['title']}” to the trash.")
