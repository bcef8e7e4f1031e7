"""The notifications screen and the unread count in the sidebar; `remind_at` on the task form.

No job of the API makes notifications these tests can count on, so they are inserted in the
API's database as the jobs insert them (through the models), then read through the client.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from app.models.notification import Notification
from tests.client.conftest import (
    Api,
    assert_calm,
    element_after,
    logged_in_app,
    markdown_text,
    open_page,
    successes,
    unescaped,
)

PAGE_SIZE = 20  # client/screens/notifications.py
_keys = itertools.count(1)


@pytest.fixture
def database(use_api: Api) -> Iterator[Engine]:
    """The API's own database, to insert notifications as a job would."""
    engine = create_engine(use_api.env["DATABASE_URL"])
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def person(use_api: Api) -> tuple[str, dict[str, str]]:
    email = use_api.register()
    return email, use_api.headers(email)


def notify(engine: Engine, user_id: int, message: str, **columns: Any) -> int:
    with Session(engine) as session:
        notification = Notification(
            user_id=user_id,
            kind=columns.pop("kind", "assigned"),
            created_at=datetime.now(UTC),
            message=message,
            dedupe_key=f"client-test:{next(_keys)}",
            mail_attempts=0,
            **columns,
        )
        session.add(notification)
        session.commit()
        return notification.id


def unread_on_server(engine: Engine, user_id: int) -> list[int]:
    with Session(engine) as session:
        rows = session.scalars(
            select(Notification.id)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
            .order_by(Notification.id)
        )
        return list(rows)


def shown_messages(at: AppTest) -> list[str]:
    """The messages listed, top to bottom, unescaped and without the bold of the unread."""
    shown = []
    for block in at.main.children.values():
        for element in _walk(block):
            key = getattr(element, "key", None) or ""
            if key.startswith("notification_") and not key.startswith("notification_read_"):
                text = element.markdown[0].value.removeprefix("**").removesuffix("**")
                shown.append(unescaped(text))
    return shown


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def sidebar_count(at: AppTest) -> str:
    text = markdown_text(at.sidebar) + "\n".join(c.value for c in at.sidebar.caption)
    found = re.search(r"(\d+)\*\* unread|No unread", text)
    assert found is not None, text
    return found.group(1) or "0"


def test_unread_count_in_the_sidebar_and_the_list_newest_first(
    use_api: Api, person: tuple[str, dict[str, str]], database: Engine
) -> None:
    email, headers = person
    me = use_api.user_id(headers)
    project = use_api.create_project(headers, "Launch")
    task = use_api.create_v2_task(headers, project_id=project["id"], title="Ship *it*")
    notify(database, me, "Old news", read_at=datetime.now(UTC))
    notify(database, me, "You were invited", kind="invited", project_id=project["id"])
    notify(
        database,
        me,
        "Reminder: Ship *it*",
        kind="reminder",
        project_id=project["id"],
        task_id=task["id"],
    )

    at = logged_in_app(email)
    assert_calm(at)
    assert sidebar_count(at) == "2"
    at = open_page(at, "notifications")
    assert_calm(at)
    assert at.header[0].value == "Notifications"
    assert shown_messages(at) == ["Reminder: Ship *it*", "You were invited", "Old news"]
    captions = [unescaped(c.value) for c in at.main.caption]
    assert any("Reminder" in c and "task “Ship *it*”" in c and "Launch" in c for c in captions)
    assert any(c.startswith("Read ") for c in captions)  # the read one says when
    # Only the unread have a button; the read one is not bold.
    read_buttons = [b.key for b in at.button if b.key.startswith("notification_read_")]
    assert len(read_buttons) == 2


def test_load_more_shows_older_ones(
    use_api: Api, person: tuple[str, dict[str, str]], database: Engine
) -> None:
    email, headers = person
    me = use_api.user_id(headers)
    for n in range(PAGE_SIZE + 5):
        notify(database, me, f"Note {n}")
    at = open_page(logged_in_app(email), "notifications")
    assert shown_messages(at) == [f"Note {n}" for n in range(PAGE_SIZE + 4, 4, -1)]
    at.button(key="notifications_more").click().run()
    assert_calm(at)
    assert shown_messages(at) == [f"Note {n}" for n in range(PAGE_SIZE + 4, -1, -1)]
    assert not [b for b in at.button if b.key == "notifications_more"]


def test_mark_one_read(use_api: Api, person: tuple[str, dict[str, str]], database: Engine) -> None:
    email, headers = person
    me = use_api.user_id(headers)
    first = notify(database, me, "First")
    second = notify(database, me, "Second")
    at = open_page(logged_in_app(email), "notifications")
    assert sidebar_count(at) == "2"

    at.button(key=f"notification_read_{first}").click().run()
    assert_calm(at)
    assert unread_on_server(database, me) == [second]
    assert sidebar_count(at) == "1"
    assert not [b for b in at.button if b.key == f"notification_read_{first}"]
    assert shown_messages(at) == ["Second", "First"]  # still listed, as read

    at.toggle(key="flt_notifications_unread").set_value(True).run()
    assert_calm(at)
    assert shown_messages(at) == ["Second"]


def test_mark_all_read_marks_only_mine(
    use_api: Api, person: tuple[str, dict[str, str]], database: Engine
) -> None:
    email, headers = person
    me = use_api.user_id(headers)
    other_email = use_api.register()
    other = use_api.user_id(use_api.headers(other_email))
    for n in range(3):
        notify(database, me, f"Mine {n}")
    theirs = notify(database, other, "Theirs")

    at = open_page(logged_in_app(email), "notifications")
    at.button(key="notifications_read_all").click().run()
    assert_calm(at)
    assert successes(at) == ["All marked read."]
    assert unread_on_server(database, me) == []
    assert unread_on_server(database, other) == [theirs]
    assert sidebar_count(at) == "0"
    assert at.button(key="notifications_read_all").disabled
    assert shown_messages(at) == ["Mine 2", "Mine 1", "Mine 0"]

    at.toggle(key="flt_notifications_unread").set_value(True).run()
    assert [i.value for i in at.info] == ["No unread notifications."]


def test_a_notification_gone_meanwhile_is_a_calm_error(
    use_api: Api, person: tuple[str, dict[str, str]], database: Engine
) -> None:
    email, headers = person
    me = use_api.user_id(headers)
    gone = notify(database, me, "Soon gone")
    at = open_page(logged_in_app(email), "notifications")
    with Session(database) as session:
        session.execute(delete(Notification).where(Notification.id == gone))
        session.commit()
    at.button(key=f"notification_read_{gone}").click().run()
    assert_calm(at)
    assert [e.value for e in at.error] == ["Notification not found."]
    assert shown_messages(at) == []
    assert [i.value for i in at.info] == ["No notifications yet."]


def test_nothing_yet(use_api: Api, person: tuple[str, dict[str, str]]) -> None:
    email, _ = person
    at = open_page(logged_in_app(email), "notifications")
    assert_calm(at)
    assert sidebar_count(at) == "0"
    assert [i.value for i in at.info] == ["No notifications yet."]
    assert at.button(key="notifications_read_all").disabled


# --- remind_at on the task form -----------------------------------------------------------


def test_a_reminder_is_set_shown_changed_and_cleared(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    # Far ahead: no reminder comes due while the test runs.
    day = date.today() + timedelta(days=400)
    at = logged_in_app(email)
    at.text_input(key="new_title").input("Call the bank")
    at.date_input(key="new_remind_day").set_value(day)
    at.time_input(key="new_remind_time").set_value(time(14, 35))
    at.button(key="add_task").click().run()
    assert_calm(at)
    assert successes(at) == ["Added “Call the bank”."]
    (task,) = use_api.v2_tasks(headers)
    task_id = task["id"]
    assert task["remind_at"] == f"{day.isoformat()}T14:35:00.000Z"
    assert f"reminder {day.isoformat()} 14:35 UTC" in markdown_text(at.main)
    assert at.date_input(key="new_remind_day").value is None  # the form is ready again

    # Opened and saved untouched: the reminder is not sent again.
    at.button(key=f"edit_{task_id}").click().run()
    assert at.date_input(key=f"edit_remind_{task_id}_day").value == day
    assert at.time_input(key=f"edit_remind_{task_id}_time").value == time(14, 35)
    at.button(key=f"save_{task_id}").click().run()
    assert successes(at) == ["Nothing to change."]

    at.button(key=f"edit_{task_id}").click().run()
    at.time_input(key=f"edit_remind_{task_id}_time").set_value(time(8, 0))
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)
    assert use_api.v2_task(headers, task_id)["remind_at"] == f"{day.isoformat()}T08:00:00.000Z"

    at.button(key=f"edit_{task_id}").click().run()
    at.date_input(key=f"edit_remind_{task_id}_day").set_value(None)
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)
    assert use_api.v2_task(headers, task_id)["remind_at"] is None
    assert "reminder" not in markdown_text(at.main)


def test_a_reminder_day_without_a_time_is_at_nine(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    day = date.today() + timedelta(days=400)
    at = logged_in_app(email)
    at.text_input(key="new_title").input("Water the plants")
    at.date_input(key="new_remind_day").set_value(day)
    at.button(key="add_task").click().run()
    assert_calm(at)
    (task,) = use_api.v2_tasks(headers)
    assert task["remind_at"] == f"{day.isoformat()}T09:00:00.000Z"


def test_a_reminder_that_would_never_be_sent_is_said(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    """A day gone by, or a time with no day: the API takes the first (sent late if less
    than a day late, never otherwise) and the form dropped the second; both were silent."""
    email, headers = person
    at = logged_in_app(email)
    at.text_input(key="new_title").input("Too late")
    at.date_input(key="new_remind_day").set_value(date(2020, 1, 1))
    at.button(key="add_task").click().run()
    assert_calm(at)
    under = element_after(at, "new_remind_time")
    assert (under.type, "already passed" in under.value) == ("error", True)
    at.date_input(key="new_remind_day").set_value(None)
    at.time_input(key="new_remind_time").set_value(time(9, 30))
    at.button(key="add_task").click().run()
    assert_calm(at)
    assert "day too" in element_after(at, "new_remind_time").value
    assert use_api.v2_tasks(headers) == []

    # The editor too: a time with no day, on a task without a reminder.
    plain_task = use_api.create_v2_task(headers, title="No reminder")
    at = logged_in_app(email)
    at.button(key=f"edit_{plain_task['id']}").click().run()
    at.time_input(key=f"edit_remind_{plain_task['id']}_time").set_value(time(11, 0))
    at.button(key=f"save_{plain_task['id']}").click().run()
    assert_calm(at)
    assert "day too" in element_after(at, f"edit_remind_{plain_task['id']}_time").value
    assert use_api.v2_task(headers, plain_task["id"])["version"] == plain_task["version"]

    # A task whose reminder has passed is still saved when the reminder is left as it is.
    past = datetime.now(UTC) - timedelta(days=3)
    task = use_api.create_v2_task(headers, title="Old", remind_at=past.isoformat())
    at = logged_in_app(email)
    at.button(key=f"edit_{task['id']}").click().run()
    at.text_input(key=f"edit_title_{task['id']}").input("Old, renamed")
    at.button(key=f"save_{task['id']}").click().run()
    assert_calm(at)
    assert successes(at) == ["Saved “Old, renamed”."]
    at.button(key=f"edit_{task['id']}").click().run()
    at.date_input(key=f"edit_remind_{task['id']}_day").set_value(date(2021, 6, 1))
    at.button(key=f"save_{task['id']}").click().run()
    assert_calm(at)
    assert "already passed" in element_after(at, f"edit_remind_{task['id']}_time").value
    saved = use_api.v2_task(headers, task["id"])
    assert (saved["title"], saved["version"]) == ("Old, renamed", task["version"] + 1)
