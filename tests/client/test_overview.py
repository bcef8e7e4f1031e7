"""The overview screen: counts by status and priority, overdue, due this week, bar charts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

from tests.client.conftest import Api, assert_calm, logged_in_app


def _bar_chart_data(chart: Any, x: str) -> pd.DataFrame:
    """The data a bar chart of `x` draws (internal protobuf fields: keep such asserts few)."""
    spec = json.loads(chart.proto.spec)
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["x"]["field"] == x
    assert spec["encoding"]["y"]["field"] == "Tasks"
    return convert_arrow_bytes_to_pandas_df(chart.proto.datasets[0].data.data)


def test_counts_and_charts(use_api: Api) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    now = datetime.now(UTC)

    def due(delta: timedelta) -> str:
        return (now + delta).isoformat().replace("+00:00", "Z")

    for title, status, priority, due_at in [
        ("late", "todo", "high", due(-timedelta(days=2))),  # overdue
        ("late but done", "done", "low", due(-timedelta(days=2))),  # done: not overdue
        ("soon", "in_progress", "urgent", due(timedelta(days=3))),  # due this week
        ("soon and done", "done", "medium", due(timedelta(days=2))),  # done: not counted
        ("later", "todo", "low", due(timedelta(days=20))),
        ("someday", "todo", "medium", None),
    ]:
        use_api.create_task(headers, title=title, status=status, priority=priority, due_at=due_at)
    deleted = use_api.create_task(headers, title="in the trash", status="todo", priority="high")
    assert use_api.http.delete(f"/tasks/{deleted['id']}", headers=headers).status_code == 204

    at = logged_in_app(email)
    at.sidebar.radio(key="screen").set_value("Overview").run()
    assert_calm(at)

    assert {m.label: m.value for m in at.metric} == {
        "Tasks": "6",
        "Overdue": "1",
        "Due in the next 7 days": "1",
        "Done": "2",
    }

    by_status, by_priority, by_due = at.get("vega_lite_chart")
    status_data = _bar_chart_data(by_status, "Status")
    assert list(status_data["Status"]) == ["To do", "In progress", "Done"]
    assert list(status_data["Tasks"]) == [3, 1, 2]
    priority_data = _bar_chart_data(by_priority, "Priority")
    assert list(priority_data["Priority"]) == ["Low", "Medium", "High", "Urgent"]
    assert list(priority_data["Tasks"]) == [2, 2, 1, 1]
    due_data = _bar_chart_data(by_due, "Due")
    assert list(due_data["Due"]) == ["Overdue", "Next 7 days", "Later", "No due date"]
    assert list(due_data["Tasks"]) == [1, 1, 1, 1]  # open tasks only: the done ones are left out
