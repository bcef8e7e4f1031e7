"""The current project's trash: deleted tasks, newest deletion first, each with Restore (for
editors and above; others may look but not restore)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from paging import pager, read_page
from task_fields import plain, summary_line
from ui import act, feedback, remember, show_feedback, show_read_error
from workspace import Workspace

SCOPE = "trash"


def _restore(session: ApiSession, task: dict[str, Any]) -> None:
    session.restore_task(task["id"])
    remember(SCOPE, success=f"Restored “{task['title']}”.")


def render(workspace: Workspace) -> None:
    session = workspace.session
    may_restore = workspace.may("task.restore")
    st.caption(
        "Deleted tasks stay here for a while"
        + (
            " and can be restored."
            if may_restore
            else f"; it takes {workspace.roles.least('task.restore')} or above to restore them."
        )
    )
    params: dict[str, Any] = {
        "project_id": workspace.project_id,
        "deleted": "true",
        "sort": "-updated_at",
        "limit": 20,
    }
    try:
        page = read_page(
            SCOPE,
            ("trash", workspace.project_id),
            lambda cursor: session.list_tasks({**params, **({"cursor": cursor} if cursor else {})}),
        )
    except ApiError as exc:
        show_read_error(exc, retry_key="trash_retry")
        return
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    if not page["items"]:
        st.info("The trash is empty.", icon=":material/delete:")
    now = datetime.now(UTC)
    for task in page["items"]:
        with st.container(border=True, key=f"trashed_{task['id']}"):
            text_col, button_col = st.columns([8, 1.5], vertical_alignment="center")
            text_col.markdown(f"**{plain(task['title'])}**  \n{summary_line(task, now)}")
            if not may_restore:
                continue
            button_col.button(
                "Restore",
                key=f"restore_{task['id']}",
                on_click=act,
                args=(SCOPE, functools.partial(_restore, session, task)),
                width="stretch",
            )
    pager(SCOPE, page.get("next_cursor"))
