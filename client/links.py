"""Links into the client, as a notification's mail gives them (`PUBLIC_URL/?task=N` or
`PUBLIC_URL/?project=N`, `app/jobs/mail.py`): the task's project is opened, and the task is
shown first on the list with its comments and history open; or the project is opened.

A link followed while signed out stays in the address until the person has signed in. Once
followed it is taken out of the address, so that a reload or another screen does not follow
it again. A task or project the person may not see (deleted, never theirs, an invitation not
accepted yet) is said, not guessed at: the API answers 404 for all of them.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from screens.activity import history_toggle
from screens.task_comments import OPEN_COMMENTS
from ui import GONE, PROJECT

LINKED_TASK = "_linked_task"  # the id of the task a link opened, shown first on the list

TASK_NOT_OPEN = (
    "The task this link leads to was deleted, or is not open to you (you may have been "
    "removed from its project)."
)
PROJECT_NOT_OPEN = (
    "The project this link leads to was deleted, or is not open to you. If you were invited "
    "to it, accept the invitation under Invitations."
)


def _link_id(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def _readable(read: Any, wanted: int | None) -> dict[str, Any] | None:
    """What `read(wanted)` returns, or None when the API says it is not there for this
    person (or the link's id is not one)."""
    if wanted is None or wanted < 1:
        return None
    try:
        found, _etag = read(wanted)
    except ApiError as exc:
        if exc.status in (*GONE, 422):
            return None
        raise
    return dict(found)


def follow(session: ApiSession) -> str | None:
    """Follow the link in the address, if any: choose its project (and its task); what to
    tell the person when it leads nowhere they may go."""
    params = st.query_params
    task_value, project_value = params.get("task"), params.get("project")
    if task_value is None and project_value is None:
        return None
    if task_value is not None:
        task = _readable(session.get_task, _link_id(task_value))
        message = TASK_NOT_OPEN if task is None else None
        if task is not None:
            st.session_state[PROJECT] = task["project_id"]
            st.session_state[LINKED_TASK] = task["id"]
            st.session_state[OPEN_COMMENTS] = task["id"]
            st.session_state[history_toggle(task["id"])] = True
    else:
        project = _readable(session.get_project, _link_id(project_value))
        message = PROJECT_NOT_OPEN if project is None else None
        if project is not None:
            st.session_state[PROJECT] = project["id"]
    # Followed (or refused) once: not again on the next run. Cleared only now, so that a
    # read that failed (the API away) leaves the link in the address for Retry.
    params.clear()
    return message
