"""Projects: the person's projects and their role in each, a new project, renaming the current
one (admins, with If-Match: a rename made meanwhile elsewhere is a conflict, nothing is
overwritten), moving it to the trash (owners, after a confirmation; never the Inbox), the
current project's labels (editors manage them), and the person's deleted projects, each with
Restore (owners)."""

from __future__ import annotations

import functools
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from task_fields import parse_timestamp, plain
from ui import (
    KEPT,
    PROJECT,
    act,
    ask_first,
    confirmation,
    feedback,
    field_error,
    remember,
    show_feedback,
    show_read_error,
)
from workspace import Workspace

_RENAMING = "_renaming"  # {"id": project id, "etag": the tag the rename is based on}
DELETE_SCOPE = "project_delete"
RESTORE_SCOPE = "project_restore"


def _create(session: ApiSession) -> None:
    state = st.session_state
    body: dict[str, Any] = {"name": state.get("new_project_name", "")}
    description = str(state.get("new_project_description", ""))
    if description.strip():
        body["description"] = description
    project = session.create_project(body)
    state["new_project_name"] = ""
    state["new_project_description"] = ""
    state[PROJECT] = project["id"]  # work in it at once
    remember("new_project", success=f"Created “{project['name']}”. You are its owner.")


def _start_rename(session: ApiSession, project_id: int) -> None:
    """Read the project as it is now: the rename is based on this version."""
    project, etag = session.get_project(project_id)
    state = st.session_state
    state[_RENAMING] = {"id": project_id, "etag": etag, "project": project}
    state["rename_name"] = project["name"]
    state["rename_description"] = project.get("description") or ""


def _rename(session: ApiSession, project_id: int) -> None:
    state = st.session_state
    renaming = state.get(_RENAMING) or {}
    original = renaming.get("project") or {}
    edited = {
        "name": state.get("rename_name", ""),
        "description": state.get("rename_description") or None,
    }
    changes = {name: value for name, value in edited.items() if value != original.get(name)}
    if changes:
        session.update_project(project_id, changes, str(renaming.get("etag", "")))
    state.pop(_RENAMING, None)
    remember("rename", success="Saved." if changes else "Nothing to change.")


def _cancel_rename() -> None:
    st.session_state.pop(_RENAMING, None)


def _delete(session: ApiSession, project: dict[str, Any]) -> None:
    session.delete_project(project["id"])
    # The project is gone for every member: work in the Inbox (not the "no longer open to
    # you" notice, which is for a project taken away by someone else).
    st.session_state[PROJECT] = None
    remember(
        DELETE_SCOPE,
        success=f"Moved “{project['name']}” and its tasks to the trash. "
        "You can restore it under Deleted projects.",
    )


def _restore(session: ApiSession, project: dict[str, Any]) -> None:
    restored = session.restore_project(project["id"])
    remember(
        RESTORE_SCOPE,
        success=f"Restored “{restored.get('name', project['name'])}” with its members and tasks.",
    )


def _create_label(session: ApiSession, project_id: int) -> None:
    state = st.session_state
    body: dict[str, Any] = {"name": state.get("label_name", "")}
    color = str(state.get("label_color") or "")
    if color:
        body["color"] = color
    label = session.create_label(project_id, body)
    state["label_name"] = ""
    remember("labels", success=f"Added the label “{label['name']}”.")


def _delete_label(session: ApiSession, project_id: int, label: dict[str, Any]) -> None:
    session.delete_label(project_id, label["id"])
    remember("labels", success=f"Deleted the label “{label['name']}”; it is off its tasks.")


def render(workspace: Workspace) -> None:
    _project_list(workspace)
    _new_project_form(workspace.session)
    st.divider()
    _this_project(workspace)
    _delete_this_project(workspace)
    st.divider()
    _labels(workspace)
    st.divider()
    _deleted_projects(workspace)


def _project_list(workspace: Workspace) -> None:
    lines = []
    for project in workspace.projects:
        inbox = " (your Inbox)" if project.get("is_inbox") else ""
        current = " ← working here" if project["id"] == workspace.project_id else ""
        lines.append(
            f"- **{plain(str(project['name']))}**{inbox}: {plain(str(project['my_role']))}"
            + current
        )
    st.markdown("\n".join(lines))


def _new_project_form(session: ApiSession) -> None:
    error, success = feedback("new_project")
    with st.form("new_project_form"):
        st.subheader("New project")
        st.text_input("Name", key="new_project_name", persist_state=KEPT, max_chars=100)
        field_error(error, "name")
        st.text_area("Description", key="new_project_description", persist_state=KEPT, height=68)
        field_error(error, "description")
        st.form_submit_button(
            "Create project",
            type="primary",
            key="create_project",
            on_click=act,
            args=("new_project", functools.partial(_create, session)),
        )
        show_feedback(error, success, shown_fields=("name", "description"))


def _this_project(workspace: Workspace) -> None:
    session, project = workspace.session, workspace.project
    project_id = workspace.project_id
    st.subheader(plain(str(project["name"])))
    if project.get("description"):
        st.caption(plain(str(project["description"])))
    error, success = feedback("rename")
    if not workspace.may("project.update"):
        least = workspace.roles.least("project.update")
        st.caption(
            f"Your role here is {workspace.my_role}; it takes {least} or above to rename it."
        )
        show_feedback(error, success)
        return
    renaming = st.session_state.get(_RENAMING) or {}
    if renaming.get("id") != project_id:
        st.button(
            "Rename",
            key="rename_start",
            on_click=act,
            args=("rename", functools.partial(_start_rename, session, project_id)),
        )
        show_feedback(error, success)
        return
    with st.form("rename_form"):
        st.text_input("Name", key="rename_name", persist_state=KEPT, max_chars=100)
        field_error(error, "name")
        st.text_area("Description", key="rename_description", persist_state=KEPT, height=68)
        field_error(error, "description")
        save_col, cancel_col = st.columns(2)
        save_col.form_submit_button(
            "Save",
            type="primary",
            key="rename_save",
            on_click=act,
            args=("rename", functools.partial(_rename, session, project_id)),
        )
        cancel_col.form_submit_button("Cancel", key="rename_cancel", on_click=_cancel_rename)
    if error is not None and error.status == 412:
        st.error(
            "Conflict: this project was changed somewhere else after you started, so your "
            "change was not saved and nothing was overwritten. Load the latest version, then "
            "make your change again.",
            icon=":material/sync_problem:",
        )
        st.button(
            "Load the latest version",
            key="rename_reload",
            on_click=act,
            args=("rename", functools.partial(_start_rename, session, project_id)),
        )
    else:
        show_feedback(error, success, shown_fields=("name", "description"))


def _labels(workspace: Workspace) -> None:
    session, project_id = workspace.session, workspace.project_id
    st.subheader("Labels")
    try:
        labels = session.all_labels(project_id)
    except ApiError as exc:
        show_read_error(exc, retry_key="labels_retry")
        return
    error, success = feedback("labels")
    may_delete = workspace.may("label.delete")
    if not labels:
        st.caption("No labels yet.")
    for label in labels:
        with st.container(key=f"label_{label['id']}"):
            text_col, button_col = st.columns([8, 1.5], vertical_alignment="center")
            text_col.markdown(f"**{plain(str(label['name']))}** · {plain(str(label['color']))}")
            if may_delete:
                key = f"label_delete_{label['id']}"
                button_col.button(
                    "Delete", key=key, on_click=ask_first, args=(key,), width="stretch"
                )
                confirmation(
                    key,
                    f"Delete the label “{plain(str(label['name']))}”? It is taken off every "
                    "task that carries it.",
                    confirm="Delete",
                    scope="labels",
                    action=functools.partial(_delete_label, session, project_id, label),
                )
    if not workspace.may("label.create"):
        show_feedback(error, success)
        return
    with st.form("label_form"):
        name_col, color_col = st.columns([3, 1])
        with name_col:
            st.text_input("Label name", key="label_name", max_chars=50)
            field_error(error, "name")
        with color_col:
            st.text_input("Colour", key="label_color", placeholder="#RRGGBB (optional)")
            field_error(error, "color")
        st.form_submit_button(
            "Add label",
            key="add_label",
            on_click=act,
            args=("labels", functools.partial(_create_label, session, project_id)),
        )
        show_feedback(error, success, shown_fields=("name", "color"))


def _delete_this_project(workspace: Workspace) -> None:
    """Delete for owners (never on the Inbox), after a confirmation. Its outcome is shown here
    whatever project is current now: after a deletion that is the Inbox, and after a refusal
    (a role lowered meanwhile) the button may be gone."""
    session, project = workspace.session, workspace.project
    error, success = feedback(DELETE_SCOPE)
    if workspace.is_inbox:
        st.caption("This is your Inbox: it cannot be deleted.")
    elif not workspace.may("project.delete"):
        least = workspace.roles.least("project.delete")
        st.caption(
            f"Your role here is {workspace.my_role}; it takes {least} or above to delete it."
        )
    else:
        st.button(
            "Delete project…",
            key="project_delete_start",
            on_click=ask_first,
            args=("project_delete_start",),
            icon=":material/delete:",
        )
        confirmation(
            "project_delete_start",
            f"Move “{plain(str(project['name']))}” and all its tasks to the trash? No member "
            "will see it any more until an owner restores it under Deleted projects.",
            confirm="Move to trash",
            scope=DELETE_SCOPE,
            action=functools.partial(_delete, session, project),
        )
    show_feedback(error, success)


def _deleted_projects(workspace: Workspace) -> None:
    """The trashed projects the person owns (the API lists no others), each with Restore."""
    session = workspace.session
    st.subheader("Deleted projects")
    try:
        deleted = session.deleted_projects()
    except ApiError as exc:
        show_read_error(exc, retry_key="deleted_projects_retry")
        return
    error, success = feedback(RESTORE_SCOPE)
    if not deleted:
        st.caption("No deleted projects.")
    for project in deleted:
        with st.container(key=f"deleted_project_{project['id']}"):
            text_col, button_col = st.columns([8, 1.5], vertical_alignment="center")
            moment = parse_timestamp(project.get("deleted_at"))
            when = f" · deleted {moment:%Y-%m-%d %H:%M} UTC" if moment else ""
            text_col.markdown(f"**{plain(str(project['name']))}**{plain(when)}")
            if workspace.roles.allows(str(project.get("my_role") or ""), "project.restore"):
                button_col.button(
                    "Restore",
                    key=f"project_restore_{project['id']}",
                    on_click=act,
                    args=(RESTORE_SCOPE, functools.partial(_restore, session, project)),
                    width="stretch",
                )
    show_feedback(error, success)
