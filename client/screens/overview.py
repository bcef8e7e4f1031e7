"""Counts of the person's live tasks by status and priority, overdue and due this week, with
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

    status_col, priority_col = st.columns(2)
    with status_col:
        st.subheader("By status")
        st.bar_chart(
            pd.DataFrame(
                {
                    "Status": list(STATUS_LABELS.values()),
                    "Tasks": [by_status.get(key, 0) for key in STATUS_LABELS],
                }
            ),
            x="Status",
            y="Tasks",
            sort=False,
        )
    with priority_col:
        st.subheader("By priority")
        st.bar_chart(
            pd.DataFrame(
                {
                    "Priority": list(PRIORITY_LABELS.values()),
                    "Tasks": [by_priority.get(key, 0) for key in PRIORITY_LABELS],
                }
            ),
            x="Priority",
            y="Tasks",
            sort=False,
        )
