"""The current project's task list: filters (assignee, "Assigned to me", label), sort, cursor
pages, adding and editing with assignees, labels and a reminder (If-Match), deleting, and a
task's comments and history (under its Comments button).

An edit starts from the task as it was when the person pressed Edit (its ETag is kept), and
is sent with `If-Match`, so an edit made meanwhile elsewhere comes back as a conflict (412)
and nothing is overwritten. An edit or a comment that reaches a task deleted meanwhile (or no
longer visible) is said above the list, with what was not saved. Controls the person's role
in the project does not allow are not drawn (a viewer sees no Add, Edit or Delete); a 403
that happens anyway is shown plainly.
app.py hands `render` the workspace; the buttons' actions get the session from there.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from history import Names, person_name, quoted
from links import LINKED_TASK
from paging import pager, read_page
from screens.activity import task_history
from screens.task_comments import OPEN_COMMENTS, comments_panel, toggle_comments
from task_fields import (
    PAGE_SIZES,
    PRIORITY_LABELS,
    REMIND_DEFAULT_TIME,
    REMINDER_NEEDS_A_DAY,
    SORT_LABELS,
    STATUS_LABELS,
    day_after,
    due_at_for,
    due_date,
    plain,
    remind_at_for,
    remind_at_minute,
    remind_parts,
    reminder_refusal,
    start_of,
    summary_line,
)
from ui import (
    ALL_SHOWN_UNDER_FIELDS,
    GONE,
    KEPT,
    act,
    feedback,
    field_error,
    remember,
    show_feedback,
    show_read_error,
    task_gone,
)
from workspace import Workspace, member_name

SCOPE = "tasks"
_EDITING = "_editing"  # {"id": task id, "etag": the tag the edit is based on}
_NEW_KEY = "_new_task_idempotency_key"  # (project id, key)
# The list's query parameters whose errors are drawn under their filter widget.
FILTER_FIELDS = ("status", "priority", "q", "due_after", "due_before", "assignee", "label_id")
ANYONE, ME, NOBODY = "", "me", "none"  # the assignee filter's fixed choices


class Directory:
    """The current project's members and labels, to name them and to offer them."""

    def __init__(self, members: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
        self.people = {int(m["user"]["id"]): member_name(m["user"]) for m in members}
        self.labels = {int(label["id"]): str(label["name"]) for label in labels}
        # In the history's sentences a person is named shortly (full name, else email).
        self.short_people = {int(m["user"]["id"]): person_name(m["user"]) for m in members}

    def person(self, user_id: Any) -> str:
        return self.people.get(int(user_id), f"User {user_id}")

    def label(self, label_id: Any) -> str:
        return self.labels.get(int(label_id), f"Label {label_id}")


def _filters(workspace: Workspace) -> dict[str, Any]:
    """The list's query parameters, from the filter widgets' current values."""
    state = st.session_state
    params: dict[str, Any] = {
        "project_id": workspace.project_id,
        "sort": state.get("flt_sort", "-created_at"),
        "limit": state.get("flt_limit", 20),
    }
    assignee = state.get("flt_assignee", ANYONE)
    if assignee:
        params["assignee"] = assignee
    label_id = state.get("flt_label")
    if label_id is not None:
        params["label_id"] = label_id
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


def _keep_valid_choices(directory: Directory) -> None:
    """Another project's member or label chosen (as a filter, or on the new task) is not one
    of this project's: dropped, before the widgets are drawn with this project's choices."""
    state = st.session_state
    if state.get("flt_assignee", ANYONE) not in _assignee_choices(directory):
        state["flt_assignee"] = ANYONE
    if state.get("flt_label") not in [None, *directory.labels]:
        state["flt_label"] = None
    for key, offered in (("new_assignees", directory.people), ("new_labels", directory.labels)):
        chosen = state.get(key) or []
        if any(item not in offered for item in chosen):
            state[key] = [item for item in chosen if item in offered]


def render(workspace: Workspace) -> None:
    session = workspace.session
    try:
        directory = Directory(
            session.all_members(workspace.project_id), session.all_labels(workspace.project_id)
        )
    except ApiError as exc:
        show_read_error(exc, retry_key="tasks_retry")
        return
    _keep_valid_choices(directory)
    if workspace.may("task.create"):
        _add_form(workspace, directory)
    else:
        can_comment = workspace.may("comment.create")
        st.info(
            f"Your role in {plain(str(workspace.project['name']))} is {workspace.my_role}: you "
            f"can read its tasks{' and comment on them' if can_comment else ''}, "
            "but not add or change them.",
            icon=":material/visibility:",
        )
    st.divider()
    params = _filters(workspace)
    filters_key = tuple(sorted((k, str(v)) for k, v in params.items()))
    page: dict[str, Any] | None = None
    list_error: ApiError | None = None
    try:
        page = read_page(
            SCOPE,
            filters_key,
            lambda cursor: session.list_tasks({**params, **({"cursor": cursor} if cursor else {})}),
        )
    except ApiError as exc:
        list_error = exc
    _filter_widgets(list_error, directory)
    if list_error is not None:
        show_read_error(list_error, retry_key="tasks_retry", shown_fields=FILTER_FIELDS)
        return
    assert page is not None
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    _task_rows(workspace, directory, _linked_first(workspace, page["items"]))
    pager(SCOPE, page.get("next_cursor"))


def _forget_linked_task() -> None:
    st.session_state.pop(LINKED_TASK, None)


def _linked_first(workspace: Workspace, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list with the task a link opened (`links.py`) first, wherever the list's filters
    and page would put it, until the person puts it back or works in another project."""
    linked = st.session_state.get(LINKED_TASK)
    if linked is None:
        return tasks
    task = next((task for task in tasks if task["id"] == linked), None)
    if task is None:
        try:
            task, _etag = workspace.session.get_task(linked)
        except ApiError as exc:
            if exc.status not in GONE:
                raise
            task = None
    if task is None or task["project_id"] != workspace.project_id or task.get("deleted_at"):
        _forget_linked_task()
        return tasks
    note_col, button_col = st.columns([7, 2], vertical_alignment="center")
    note_col.caption(f"{quoted(str(task['title']))} is first: you opened it from a link.")
    button_col.button("Back to the list", key="linked_task_close", on_click=_forget_linked_task)
    return [task, *(other for other in tasks if other["id"] != linked)]


def _assignee_choices(directory: Directory) -> list[str]:
    return [ANYONE, ME, NOBODY, *(str(user_id) for user_id in directory.people)]


def _filter_widgets(error: ApiError | None, directory: Directory) -> None:
    with st.expander("Filter and sort", expanded=True, icon=":material/filter_list:"):
        left, right = st.columns(2)
        with left:
            st.multiselect(
                "Filter by status",
                list(STATUS_LABELS),
                format_func=STATUS_LABELS.__getitem__,
                key="flt_status",
                persist_state=KEPT,
            )
            field_error(error, "status")
            st.multiselect(
                "Filter by priority",
                list(PRIORITY_LABELS),
                format_func=PRIORITY_LABELS.__getitem__,
                key="flt_priority",
                persist_state=KEPT,
            )
            field_error(error, "priority")
            st.text_input(
                "Search",
                key="flt_q",
                persist_state=KEPT,
                placeholder="Words in the title or description",
            )
            field_error(error, "q")
            fixed = {ANYONE: "Anyone", ME: "Assigned to me", NOBODY: "Not assigned"}
            st.selectbox(
                "Assignee",
                _assignee_choices(directory),
                format_func=lambda choice: fixed.get(choice) or directory.person(choice),
                key="flt_assignee",
                persist_state=KEPT,
            )
            field_error(error, "assignee")
        with right:
            from_col, until_col = st.columns(2)
            from_col.date_input(
                "Due from", value=None, key="flt_due_from", persist_state=KEPT, format="YYYY-MM-DD"
            )
            until_col.date_input(
                "Due until",
                value=None,
                key="flt_due_until",
                persist_state=KEPT,
                format="YYYY-MM-DD",
            )
            field_error(error, "due_after", "due_before")
            st.selectbox(
                "Sort by",
                list(SORT_LABELS),
                format_func=SORT_LABELS.__getitem__,
                key="flt_sort",
                persist_state=KEPT,
            )
            st.selectbox("Tasks per page", PAGE_SIZES, index=1, key="flt_limit", persist_state=KEPT)
            st.selectbox(
                "Label",
                [None, *directory.labels],
                format_func=lambda label_id: (
                    "Any label" if label_id is None else directory.label(label_id)
                ),
                key="flt_label",
                persist_state=KEPT,
            )
            field_error(error, "label_id")


# Adding


def _new_task_key(project_id: int) -> str:
    """The Idempotency-Key of the task being added; a new one in another project (the same
    key with another body would be refused)."""
    kept = st.session_state.get(_NEW_KEY)
    if not (isinstance(kept, tuple) and kept[0] == project_id):
        kept = st.session_state[_NEW_KEY] = (project_id, uuid.uuid4().hex)
    return str(kept[1])


def _add_task(session: ApiSession, project_id: int) -> None:
    state = st.session_state
    body: dict[str, Any] = {
        "project_id": project_id,
        "title": state.get("new_title", ""),
        "priority": state.get("new_priority", "medium"),
    }
    for name, key in (("assignee_ids", "new_assignees"), ("label_ids", "new_labels")):
        chosen = sorted(state.get(key) or [])
        if chosen:
            body[name] = chosen
    description = str(state.get("new_description", ""))
    if description.strip():
        body["description"] = description
    due = due_at_for(state.get("new_due"))
    if due is not None:
        body["due_at"] = due
    remind = remind_at_for(state.get("new_remind_day"), state.get("new_remind_time"))
    if remind is None and state.get("new_remind_time") is not None:
        _refuse_reminder(REMINDER_NEEDS_A_DAY)
    _refuse_reminder(reminder_refusal(remind, datetime.now(UTC)))
    if remind is not None:
        body["remind_at"] = remind
    try:
        # The key makes a double submit (or a retry after a lost answer) create one task.
        task = session.create_task(body, _new_task_key(project_id))
    except ApiError as exc:
        if not exc.unavailable:
            state.pop(_NEW_KEY, None)  # refused: the next attempt is a new request
        raise
    state.pop(_NEW_KEY, None)
    state["new_title"] = ""
    state["new_description"] = ""
    state["new_due"] = None
    state["new_remind_day"] = None
    state["new_remind_time"] = None
    state["new_priority"] = "medium"
    state["new_assignees"] = []
    state["new_labels"] = []
    remember("add", success=f"Added “{task['title']}”.")


def _people_and_labels(
    workspace: Workspace, directory: Directory, key_prefix: str, error: ApiError | None
) -> tuple[str, ...]:
    """The assignees and labels fields of a task form (assigning needs its permission); the
    API's names of those drawn, whose problems are drawn under them."""
    may_assign = workspace.may("task.assign")
    people_col, labels_col = st.columns(2)
    with people_col:
        if may_assign:
            st.multiselect(
                "Assignees",
                list(directory.people),
                format_func=directory.person,
                key=f"{key_prefix}_assignees",
                persist_state=KEPT,
                placeholder="Nobody",
            )
            field_error(error, "assignee_ids")
    with labels_col:
        st.multiselect(
            "Labels",
            list(directory.labels),
            format_func=directory.label,
            key=f"{key_prefix}_labels",
            persist_state=KEPT,
            placeholder="No label" if directory.labels else "This project has no labels yet",
        )
        field_error(error, "label_ids")
    return ("assignee_ids", "label_ids") if may_assign else ("label_ids",)


def _add_form(workspace: Workspace, directory: Directory) -> None:
    session = workspace.session
    error, success = feedback("add")
    with st.form("add_task_form"):
        st.subheader(f"Add a task to {plain(str(workspace.project['name']))}")
        st.text_input("Title", key="new_title", persist_state=KEPT, max_chars=200)
        field_error(error, "title")
        st.text_area("Description", key="new_description", persist_state=KEPT, height=80)
        field_error(error, "description")
        priority_col, due_col = st.columns(2)
        with priority_col:
            st.selectbox(
                "Priority",
                list(PRIORITY_LABELS),
                index=1,
                format_func=PRIORITY_LABELS.__getitem__,
                key="new_priority",
                persist_state=KEPT,
            )
            field_error(error, "priority")
        with due_col:
            st.date_input(
                "Due date", value=None, key="new_due", persist_state=KEPT, format="YYYY-MM-DD"
            )
            field_error(error, "due_at")
        _reminder_fields("new_remind", error)
        links_drawn = _people_and_labels(workspace, directory, "new", error)
        st.form_submit_button(
            "Add task",
            type="primary",
            key="add_task",
            on_click=act,
            args=("add", functools.partial(_add_task, session, workspace.project_id)),
        )
        show_feedback(
            error,
            success,
            shown_fields=("title", "description", "priority", "due_at", "remind_at", *links_drawn),
        )


def _reminder_fields(key_prefix: str, error: ApiError | None) -> None:
    """A reminder's day and time of day (UTC); clearing the day removes the reminder."""
    day_col, time_col = st.columns(2)
    day_col.date_input(
        "Reminder day (UTC)",
        value=None,
        key=f"{key_prefix}_day",
        persist_state=KEPT,
        format="YYYY-MM-DD",
        help="Clear it for no reminder. Each assignee (the creator when there is none) "
        "is notified at that time.",
    )
    time_col.time_input(
        "Reminder time (UTC)",
        value=None,
        key=f"{key_prefix}_time",
        persist_state=KEPT,
        step=300,
        help=f"{REMIND_DEFAULT_TIME:%H:%M} when left empty.",
    )
    field_error(error, "remind_at")


# Listing, editing, deleting


def people_line(task: dict[str, Any], directory: Directory) -> str:
    """Who the task is assigned to and its labels, as one markdown line ("" for neither)."""
    parts = []
    if task.get("assignee_ids"):
        names = ", ".join(directory.person(user_id) for user_id in task["assignee_ids"])
        parts.append(f"Assigned to {names}")
    if task.get("label_ids"):
        parts.append("Labels: " + ", ".join(directory.label(i) for i in task["label_ids"]))
    return " · ".join(plain(part) for part in parts)


def _task_rows(workspace: Workspace, directory: Directory, tasks: list[dict[str, Any]]) -> None:
    if not tasks:
        hint = "Add one above, or" if workspace.may("task.create") else "Try"
        st.info(f"No tasks match. {hint} change the filters.", icon=":material/inbox:")
        return
    session = workspace.session
    now = datetime.now(UTC)
    editing = st.session_state.get(_EDITING) or {}
    comments_open = st.session_state.get(OPEN_COMMENTS)
    may_edit, may_delete = workspace.may("task.update"), workspace.may("task.delete")
    history_names = Names(
        people=directory.short_people,
        projects={int(p["id"]): str(p["name"]) for p in workspace.projects},
        labels=directory.labels,
    )
    for task in tasks:
        task_id = task["id"]
        with st.container(border=True, key=f"task_{task_id}"):
            text_col, edit_col, delete_col, talk_col = st.columns(
                [7, 1.3, 1.3, 1.6], vertical_alignment="center"
            )
            with text_col:
                lines = [f"**{plain(task['title'])}**", summary_line(task, now)]
                lines += [line for line in [people_line(task, directory)] if line]
                st.markdown("  \n".join(lines))
                if task.get("description"):
                    st.caption(plain(task["description"][:300]))
            gone = functools.partial(_gone, task_id, str(task["title"]))
            if may_edit:
                edit_col.button(
                    "Edit",
                    key=f"edit_{task_id}",
                    on_click=act,
                    args=(
                        f"edit_{task_id}",
                        functools.partial(_open_editor, session, task_id, gone),
                    ),
                    width="stretch",
                )
            if may_delete:
                delete_col.button(
                    "Delete",
                    key=f"delete_{task_id}",
                    on_click=act,
                    args=(SCOPE, functools.partial(_delete, session, task)),
                    width="stretch",
                )
            is_open = comments_open == task_id
            talk_col.button(
                "Hide" if is_open else "Comments",
                key=f"comments_{task_id}",
                on_click=toggle_comments,
                args=(task_id,),
                width="stretch",
            )
            if may_edit and editing.get("id") == task_id:
                _editor(workspace, directory, task_id, gone)
            else:
                error, _ = feedback(f"edit_{task_id}")
                if error is not None:
                    show_feedback(error, None)
            if is_open:
                comments_panel(workspace, directory.person, task_id, gone)
                task_history(workspace, history_names, task_id)


def _gone(task_id: Any, title: str, outcome: str) -> None:
    """The task went (deleted elsewhere, or out of the person's sight) before an action on it
    arrived. Its row is not drawn again, and neither is anything kept under it, so what was
    lost is said above the list, where "Saved" is said, and the row's editor and comments are
    closed (they would reopen, stale, if it were restored)."""
    state = st.session_state
    if (state.get(_EDITING) or {}).get("id") == task_id:
        _close_editor()
    if state.get(OPEN_COMMENTS) == task_id:
        state[OPEN_COMMENTS] = None
    message = (
        f"The task {quoted(title)} was deleted meanwhile, or is no longer visible to you: "
        f"{outcome} If it is in the Trash, it can be restored from there."
    )
    # Shown as markdown, as every problem's detail is: the title and the text are typed.
    remember(SCOPE, error=ApiError(404, plain(message)))
    # The person was looking at the row, perhaps far below the top of the list.
    st.toast(f"{plain(quoted(title))} is gone: see above the list.", icon=":material/error:")


def _open_editor(session: ApiSession, task_id: Any, gone: Callable[[str], None]) -> None:
    """Load the task as it is now; the edit is based on this version."""
    try:
        task, etag = session.get_task(task_id)
    except ApiError as exc:
        if exc.status not in GONE:
            raise
        gone("it can no longer be edited.")
        return
    state = st.session_state
    state[_EDITING] = {"id": task_id, "etag": etag, "task": task}
    state[f"edit_title_{task_id}"] = task["title"]
    state[f"edit_description_{task_id}"] = task.get("description") or ""
    state[f"edit_status_{task_id}"] = task["status"]
    state[f"edit_priority_{task_id}"] = task["priority"]
    state[f"edit_due_{task_id}"] = due_date(task)
    state[f"edit_remind_{task_id}_day"], state[f"edit_remind_{task_id}_time"] = remind_parts(task)
    state[f"edit_{task_id}_assignees"] = list(task.get("assignee_ids") or [])
    state[f"edit_{task_id}_labels"] = list(task.get("label_ids") or [])
    state[f"edit_project_{task_id}"] = task["project_id"]


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
    # To the minute, as the form shows it: a reminder left as it was is not sent again.
    new_remind = remind_at_for(
        state.get(f"edit_remind_{task_id}_day"), state.get(f"edit_remind_{task_id}_time")
    )
    if new_remind != remind_at_minute(original):
        changes["remind_at"] = new_remind
    for name, key in (("assignee_ids", "assignees"), ("label_ids", "labels")):
        chosen = state.get(f"edit_{task_id}_{key}")
        if chosen is not None and sorted(chosen) != sorted(original.get(name) or []):
            changes[name] = sorted(chosen)
    target = state.get(f"edit_project_{task_id}", original.get("project_id"))
    if target != original.get("project_id"):
        # A move (spec api-v2 section 5). The labels offered are this project's: none is
        # sent, and the API drops them. Assignees chosen here go with it (they must be
        # members there, else a 422 under the field); left as they were, the API drops those
        # who are not members there.
        changes["project_id"] = target
        changes.pop("label_ids", None)
    return changes


def _refuse_reminder(refusal: str | None) -> None:
    """A reminder that would never be sent is refused here, under the reminder's fields,
    as the API's problems with a field are."""
    if refusal is not None:
        raise ApiError(422, ALL_SHOWN_UNDER_FIELDS, field_errors={"remind_at": refusal})


def _save(
    session: ApiSession,
    task_id: Any,
    project_names: dict[Any, str],
    gone: Callable[[str], None],
) -> None:
    """Send the editor's changes with its If-Match; `project_names` name where a move went."""
    editing = st.session_state.get(_EDITING) or {}
    original = editing.get("task", {})
    state = st.session_state
    if (
        state.get(f"edit_remind_{task_id}_day") is None
        and state.get(f"edit_remind_{task_id}_time") is not None
        and original.get("remind_at") is None
    ):
        # A time chosen with no day (with a day cleared, the reminder goes: the time left
        # in its field is the old reminder's).
        _refuse_reminder(REMINDER_NEEDS_A_DAY)
    changes = _changes(task_id, original)
    # Only a reminder changed here: one already past is the task's as it is, not a slip.
    _refuse_reminder(reminder_refusal(changes.get("remind_at"), datetime.now(UTC)))
    if not changes:
        _close_editor()
        remember(SCOPE, success="Nothing to change.")
        return
    try:
        task, _etag = session.update_task(task_id, changes, editing.get("etag", ""))
    except ApiError as exc:
        if not task_gone(session, task_id, exc):
            raise
        # Its editor goes with its row: what was typed is given back, not lost.
        typed = [
            f"its {name} read: “{changes[name]}”"
            for name in ("title", "description")
            if changes.get(name)
        ]
        gone("your changes were not saved" + (f"; {', and '.join(typed)}." if typed else "."))
        return
    _close_editor()
    if task["project_id"] != editing.get("task", {}).get("project_id"):
        moved_to = project_names.get(task["project_id"], f"project #{task['project_id']}")
        remember(SCOPE, success=f"Moved “{task['title']}” to {moved_to}.")
        return
    remember(SCOPE, success=f"Saved “{task['title']}”.")


def _editor(
    workspace: Workspace, directory: Directory, task_id: Any, gone: Callable[[str], None]
) -> None:
    session = workspace.session
    names = {project["id"]: str(project["name"]) for project in workspace.projects}
    error, _ = feedback(f"edit_{task_id}")
    with st.form(f"edit_form_{task_id}"):
        st.text_input("Title", key=f"edit_title_{task_id}", persist_state=KEPT, max_chars=200)
        field_error(error, "title")
        st.text_area(
            "Description", key=f"edit_description_{task_id}", persist_state=KEPT, height=80
        )
        field_error(error, "description")
        status_col, priority_col, due_col = st.columns(3)
        status_col.selectbox(
            "Status",
            list(STATUS_LABELS),
            format_func=STATUS_LABELS.__getitem__,
            key=f"edit_status_{task_id}",
            persist_state=KEPT,
        )
        priority_col.selectbox(
            "Priority",
            list(PRIORITY_LABELS),
            format_func=PRIORITY_LABELS.__getitem__,
            key=f"edit_priority_{task_id}",
            persist_state=KEPT,
        )
        due_col.date_input(
            "Due date",
            value=None,
            key=f"edit_due_{task_id}",
            persist_state=KEPT,
            format="YYYY-MM-DD",
        )
        field_error(error, "due_at")
        _reminder_fields(f"edit_remind_{task_id}", error)
        drawn = _people_and_labels(workspace, directory, f"edit_{task_id}", error)
        if _project_field(workspace, task_id, error):
            drawn += ("project_id",)
        save_col, cancel_col = st.columns(2)
        save_col.form_submit_button(
            "Save changes",
            type="primary",
            key=f"save_{task_id}",
            on_click=act,
            args=(f"edit_{task_id}", functools.partial(_save, session, task_id, names, gone)),
        )
        cancel_col.form_submit_button("Cancel", key=f"cancel_{task_id}", on_click=_close_editor)
    if error is not None and error.status == 412:
        st.error(
            "Conflict: this task was changed somewhere else after you opened it, so your "
            "edit was not saved and nothing was overwritten. Load the latest version, then "
            "make your change again.",
            icon=":material/sync_problem:",
        )
        st.button(
            "Load the latest version",
            key=f"reload_{task_id}",
            on_click=act,
            args=(f"edit_{task_id}", functools.partial(_open_editor, session, task_id, gone)),
        )
    elif error is not None:
        show_feedback(
            error,
            None,
            shown_fields=("title", "description", "due_at", "remind_at", *drawn),
        )


def _project_field(workspace: Workspace, task_id: Any, error: ApiError | None) -> bool:
    """Where the task is: another of the person's projects where they may add tasks moves it
    there (editor in both, spec api-v2 section 5); whether it is drawn."""
    targets = workspace.projects_allowing("task.create")
    names = {project["id"]: str(project["name"]) for project in targets}
    # Never the first project offered by default: unset, or no longer offered (the person's
    # role there changed; also when the field is not drawn), the task stays where it is.
    if st.session_state.get(f"edit_project_{task_id}") not in names:
        st.session_state[f"edit_project_{task_id}"] = workspace.project_id
    if workspace.project_id not in names or len(names) < 2:
        return False
    st.selectbox(
        "Project",
        list(names),
        format_func=names.__getitem__,
        key=f"edit_project_{task_id}",
        persist_state=KEPT,
        help="Moving it to another project drops its labels, and its assignees who are not "
        "members there (the assignees chosen here must be members there); the other changes "
        "made here are saved with the move.",
    )
    field_error(error, "project_id")
    return True


def _delete(session: ApiSession, task: dict[str, Any]) -> None:
    session.delete_task(task["id"])
    if (st.session_state.get(_EDITING) or {}).get("id") == task["id"]:
        _close_editor()
    remember(SCOPE, success=f"Moved “{task['title']}” to the trash.")
