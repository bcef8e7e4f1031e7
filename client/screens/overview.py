"""Counts of the current project's live tasks by status, priority and due date (overdue, due
this week), with bar charts drawn in the page (Vega-Lite ships with Streamlit: nothing is
fetched elsewhere).

The API has no counting endpoint, so the client walks the task pages (100 at a time) up to
MAX_TASKS and says so when it stopped early. That walk can take 50 requests, so what it read is
kept on the person's session and reused for MAX_AGE_SECONDS, unless the person changed
something through this client since (the session counts its writes); the Refresh button walks
again at once. Only status, priority and due date are kept (per project), and the counts that
depend on the clock (overdue, due in the next 7 days) are worked out again on every visit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from task_fields import PRIORITY_LABELS, STATUS_LABELS, is_overdue, parse_timestamp
from ui import show_read_error
from workspace import Workspace

MAX_TASKS = 5000
PAGE_SIZE = 100
# Long enough that moving between screens does not walk the pages again, short enough that a
# change made elsewhere (another tab, the phone) shows without the person thinking of Refresh.
MAX_AGE_SECONDS = 300
_KEPT = "overview"  # its key in ApiSession.kept (then the project's id)
_COUNTED_FIELDS = ("status", "priority", "due_at")


@dataclass(frozen=True)
class _Counted:
    """One walk of the task pages: the fields the counts need, and when it was made."""

    tasks: list[dict[str, Any]]
    truncated: bool
    read_at: datetime
    writes: int  # ApiSession.writes when read: a later change of the person's makes it stale


def _all_tasks(session: ApiSession, project_id: int) -> tuple[list[dict[str, Any]], bool]:
    """Every live task of the project up to MAX_TASKS, and whether there were more."""
    tasks: list[dict[str, Any]] = []
    params: dict[str, Any] = {"project_id": project_id, "limit": PAGE_SIZE}
    while len(tasks) < MAX_TASKS:
        page = session.list_tasks(params)
        tasks.extend(page["items"])
        if not page.get("next_cursor"):
            return tasks, False
        params = {"project_id": project_id, "limit": PAGE_SIZE, "cursor": page["next_cursor"]}
    return tasks, True


def _kept(session: ApiSession) -> dict[int, Any]:
    kept = session.kept.setdefault(_KEPT, {})
    assert isinstance(kept, dict)
    return kept


def _counted(session: ApiSession, project_id: int, now: datetime) -> _Counted:
    """The kept walk if it is recent and nothing changed since; otherwise a new walk."""
    kept = _kept(session).get(project_id)
    if (
        isinstance(kept, _Counted)
        and kept.writes == session.writes
        and now - kept.read_at < timedelta(seconds=MAX_AGE_SECONDS)
    ):
        return kept
    tasks, truncated = _all_tasks(session, project_id)
    counted = _Counted(
        tasks=[{name: task.get(name) for name in _COUNTED_FIELDS} for task in tasks],
        truncated=truncated,
        read_at=now,
        writes=session.writes,
    )
    _kept(session)[project_id] = counted
    return counted


def _forget(session: ApiSession, project_id: int) -> None:
    _kept(session).pop(project_id, None)


def _due_this_week(task: dict[str, Any], now: datetime) -> bool:
    moment = parse_timestamp(task.get("due_at"))
    return (
        moment is not None
        and now <= moment < now + timedelta(days=7)
        and task.get("status") != "done"
    )


DUE_BUCKETS = ("Overdue", "Next 7 days", "Later", "No due date")


def _due_bucket(task: dict[str, Any], now: datetime) -> str:
    """Where an open task stands against its due date (one of DUE_BUCKETS)."""
    moment = parse_timestamp(task.get("due_at"))
    if moment is None:
        return "No due date"
    if moment < now:
        return "Overdue"
    return "Next 7 days" if moment < now + timedelta(days=7) else "Later"


def _bar_chart(title: str, axis: str, counts: dict[str, int]) -> None:
    st.subheader(title)
    st.bar_chart(
        {axis: list(counts), "Tasks": list(counts.values())},
        x=axis,
        y="Tasks",
        sort=False,
    )


def render(workspace: Workspace) -> None:
    session, project_id = workspace.session, workspace.project_id
    now = datetime.now(UTC)
    try:
        counted = _counted(session, project_id, now)
    except ApiError as exc:
        show_read_error(exc, retry_key="overview_retry")
        return
    note_col, refresh_col = st.columns([8, 1.5], vertical_alignment="center")
    note_col.caption(
        f"Counted at {counted.read_at:%H:%M} UTC. Changes made elsewhere show within "
        f"{MAX_AGE_SECONDS // 60} minutes, or at once with Refresh."
    )
    refresh_col.button(
        "Refresh",
        key="overview_refresh",
        icon=":material/refresh:",
        on_click=_forget,
        args=(session, project_id),
        width="stretch",
    )
    tasks = counted.tasks
    if counted.truncated:
        st.caption(f"Counting your first {MAX_TASKS:,} tasks.")
    by_status = Counter(str(task.get("status")) for task in tasks)
    by_priority = Counter(str(task.get("priority")) for task in tasks)
    total, overdue, this_week, done = st.columns(4)
    total.metric("Tasks", len(tasks))
    overdue.metric("Overdue", sum(is_overdue(task, now) for task in tasks))
    this_week.metric("Due in the next 7 days", sum(_due_this_week(task, now) for task in tasks))
    done.metric("Done", by_status.get("done", 0))

    open_tasks = [task for task in tasks if task.get("status") != "done"]
    by_due = Counter(_due_bucket(task, now) for task in open_tasks)
    status_col, priority_col, due_col = st.columns(3)
    with status_col:
        _bar_chart(
            "By status",
            "Status",
            {label: by_status.get(key, 0) for key, label in STATUS_LABELS.items()},
        )
    with priority_col:
        _bar_chart(
            "By priority",
            "Priority",
            {label: by_priority.get(key, 0) for key, label in PRIORITY_LABELS.items()},
        )
    with due_col:
        _bar_chart("Open tasks by due date", "Due", {b: by_due.get(b, 0) for b in DUE_BUCKETS})
