"""The signed-in person's notifications (/notifications): newest first, "Load more" for older
ones, each marked read on its own or all at once, and "Unread only" to see what is left.

Notifications are made by the service (someone assigned you, invited you, commented, a
reminder came due, ...); this screen only reads and marks them. What was shown is read again
from the newest on every run, so one that arrived meanwhile appears at the top. The unread
count in the sidebar (app.py) is read on every run, so it follows what is marked here.
"""

from __future__ import annotations

import functools
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from history import moment
from task_fields import plain
from ui import act, feedback, show_feedback, show_read_error

SCOPE = "notifications"
PAGE_SIZE = 20  # notifications per page, and how many more "Load more" shows
_SHOWN = "_notifications_shown"
UNREAD_ONLY = "flt_notifications_unread"  # `flt_`: kept through a run that fails (ui.py)

KIND_LABELS = {
    "assigned": "Assigned to you",
    "invited": "Invitation",
    "commented": "New comment",
    "reminder": "Reminder",
    "role_changed": "Your role changed",
    "removed": "Removed from a project",
    "webhook_disabled": "Webhook disabled",
}


def _load_more() -> None:
    st.session_state[_SHOWN] = int(st.session_state.get(_SHOWN, PAGE_SIZE)) + PAGE_SIZE


def _mark_read(session: ApiSession, notification_id: Any) -> None:
    session.mark_notification_read(notification_id)


def _mark_all_read(session: ApiSession) -> None:
    session.mark_all_notifications_read()


def about_line(notification: dict[str, Any]) -> str:
    """Its kind, when, and the project, task and person it is about (as they are now)."""
    kind = str(notification.get("kind"))
    parts = [KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())]
    parts.append(moment(notification.get("created_at")))
    project = notification.get("project")
    if isinstance(project, dict):
        parts.append(f"project {project.get('name')}")
    task = notification.get("task")
    if isinstance(task, dict):
        parts.append(f"task “{task.get('title')}”")
    actor = notification.get("actor")
    if isinstance(actor, dict):
        parts.append(f"by {actor.get('full_name') or 'User ' + str(actor.get('id'))}")
    return " · ".join(parts)


def render(session: ApiSession) -> None:
    unread_only = st.toggle("Unread only", key=UNREAD_ONLY)
    shown = int(st.session_state.get(_SHOWN, PAGE_SIZE))
    try:
        items, more, unread = session.notifications(shown, unread_only=unread_only)
    except ApiError as exc:
        show_read_error(exc, retry_key="notifications_retry")
        return
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    summary_col, all_col = st.columns([7, 3], vertical_alignment="center")
    summary_col.caption(
        f"{unread} unread." if unread else "You have read them all.",
    )
    all_col.button(
        "Mark all read",
        key="notifications_read_all",
        disabled=unread == 0,
        on_click=act,
        args=(SCOPE, functools.partial(_mark_all_read, session), "All marked read."),
        width="stretch",
        icon=":material/done_all:",
    )
    if not items:
        empty = "No unread notifications." if unread_only else "No notifications yet."
        st.info(empty, icon=":material/notifications_none:")
        return
    for notification in items:
        notification_id = notification["id"]
        is_unread = notification.get("read_at") is None
        with st.container(border=True, key=f"notification_{notification_id}"):
            text_col, read_col = st.columns([8, 2], vertical_alignment="center")
            # Messages name tasks and projects that people named: shown literally.
            message = plain(str(notification.get("message") or ""))
            text_col.markdown(f"**{message}**" if is_unread else message)
            text_col.caption(plain(about_line(notification)))
            if is_unread:
                read_col.button(
                    "Mark read",
                    key=f"notification_read_{notification_id}",
                    on_click=act,
                    args=(SCOPE, functools.partial(_mark_read, session, notification_id)),
                    width="stretch",
                )
            else:
                read_col.caption(f"Read {moment(notification.get('read_at'))}")
    if more:
        st.button("Load more", key="notifications_more", on_click=_load_more)
