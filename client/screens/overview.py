"""Counts of the person's live tasks by status, priority and due date (overdue, due this week), with
bar charts drawn in the page (Vega-Lite ships with Streamlit: nothing is fetched elsewhere).

The API has no counting endpoint, so the client walks the task pages (100 at a time) up to
MAX_TASKS and says so when it stopped early.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from api_client import ApiError, ApiSession
from task_fields import PRIORITY_LABELS, STATUS_LABELS, is_overdue, parse_timestamp
from ui import current_session, show_read_error

MAX_TASKS = 5000
PAGE_SIZE = 100


def _all_tasks(session: ApiSession) -> tuple[list[dict[str, Any]], bool]:
    """Every live task up to MAX_TASKS, and whether there were more."""
    tasks: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    while len(tasks) < MAX_TASKS:
        page = session.list_tasks(params)
        tasks.extend(page["items"])
        if not page.get("next_cursor"):
            return tasks, False
        params = {"limit": PAGE_SIZE, "cursor": page["next_cursor"]}
    return tasks, True


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
        pd.DataFrame({axis: list(counts), "Tasks": list(counts.values())}),
        x=axis,
        y="Tasks",
        sort=False,
    )


def render() -> None:
    st.header("Overview")
    session = current_session()
    if session is None:
        return
    try:
        tasks, truncated = _all_tasks(session)
    except ApiError as exc:
        show_read_error(exc, retry_key="overview_retry")
        return
    if truncated:
        st.caption(f"Counting your first {MAX_TASKS:,} tasks.")
    now = datetime.now(UTC)
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
