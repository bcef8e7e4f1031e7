"""The overview screen (/overview): counts by status and priority, overdue, due this week, bar
charts; counted once and kept until the person changes something, asks for Refresh, or the
counts are MAX_AGE_SECONDS old."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

import api_client  # the client's own module: the one its screens call (see conftest)
from screens import overview
from tests.client.conftest import Api, assert_calm, logged_in_app, open_page, successes


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
    open_page(at, "overview")
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


@pytest.fixture
def task_reads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The query parameters of every GET /tasks the client sends (still to the real API)."""
    reads: list[dict[str, Any]] = []
    send = api_client.request

    def counted(method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET" and path == "/tasks":
            reads.append(dict(kwargs.get("params") or {}))
        return send(method, path, **kwargs)

    monkeypatch.setattr(api_client, "request", counted)
    return reads


def _total(at: AppTest) -> str:
    total: str = {m.label: m.value for m in at.metric}["Tasks"]
    return total


def test_counted_once_until_refresh(
    use_api: Api, task_reads: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    for number in range(overview.PAGE_SIZE + 1):  # two pages to walk
        use_api.create_task(headers, title=f"Counted task {number}")
    at = logged_in_app(email)

    task_reads.clear()
    open_page(at, "overview")
    assert_calm(at)
    assert _total(at) == "101"
    assert len(task_reads) == 2  # every page, once
    assert any(c.value.startswith("Counted at ") for c in at.caption)
    assert at.button(key="overview_refresh").label == "Refresh"

    # Elsewhere (another device) a task is added; here the person goes to Tasks and back.
    use_api.create_task(headers, title="Added on the phone")
    open_page(at, "tasks")
    task_reads.clear()
    open_page(at, "overview")
    assert_calm(at)
    assert task_reads == []  # the second visit walks nothing
    assert _total(at) == "101"  # so the change made elsewhere is not counted yet
    at.run()  # nor does any other rerun of the page
    assert task_reads == []

    at.button(key="overview_refresh").click().run()
    assert_calm(at)
    assert len(task_reads) == 2
    assert _total(at) == "102"

    # A change made in this client is counted on the next visit, without Refresh.
    open_page(at, "tasks")
    at.text_input(key="new_title").input("Added here")
    at.button(key="add_task").click().run()
    assert successes(at) == ["Added “Added here”."]
    task_reads.clear()
    open_page(at, "overview")
    assert _total(at) == "103"
    assert len(task_reads) == 2

    # Counts older than MAX_AGE_SECONDS are counted again.
    use_api.create_task(headers, title="Added on the phone, later")
    monkeypatch.setattr(overview, "MAX_AGE_SECONDS", 0)
    task_reads.clear()
    at.run()
    assert _total(at) == "104"
    assert len(task_reads) == 2
