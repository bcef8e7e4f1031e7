"""The task screens: add, filter, sort, page, edit with If-Match, delete, trash, restore."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.client.conftest import (
    Api,
    assert_calm,
    element_after,
    logged_in_app,
    open_page,
    successes,
    unescaped,
)
from tests.support import forged


@pytest.fixture
def person(use_api: Api) -> tuple[str, dict[str, str]]:
    """A new account with no tasks: its email and API headers."""
    email = use_api.register()
    return email, use_api.headers(email)


def shown_ids(at: AppTest) -> list[int]:
    """The ids of the tasks listed on the page, top to bottom (each row has its Edit button)."""
    return [int(b.key.removeprefix("edit_")) for b in at.button if b.key.startswith("edit_")]


def shown_titles(at: AppTest) -> list[str]:
    """The titles of the tasks listed, unescaped (each row starts with its title in bold)."""
    heads = [md.value.split("  \n")[0] for md in at.main.markdown if md.value.startswith("**")]
    return [unescaped(head[2:-2]) for head in heads]


def server_task(api: Api, headers: dict[str, str], task_id: int) -> dict[str, Any]:
    response = api.http.get(f"/tasks/{task_id}", headers=headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def test_add_task(use_api: Api, person: tuple[str, dict[str, str]]) -> None:
    email, headers = person
    at = logged_in_app(email)
    due = date.today() + timedelta(days=3)
    at.text_input(key="new_title").input("Write the *report*")
    at.text_area(key="new_description").input("Numbers for Q3")
    at.selectbox(key="new_priority").set_value("high")
    at.date_input(key="new_due").set_value(due)
    at.button(key="add_task").click().run()
    assert_calm(at)

    assert successes(at) == ["Added “Write the *report*”."]
    assert shown_titles(at) == ["Write the *report*"]
    assert at.text_input(key="new_title").value == ""  # the form is ready for the next one
    (task,) = use_api.tasks(headers)
    assert shown_ids(at) == [task["id"]]
    assert task["title"] == "Write the *report*"
    assert task["description"] == "Numbers for Q3"
    assert task["priority"] == "high"
    assert task["due_at"] == f"{due.isoformat()}T23:59:59.000Z"


def test_invalid_new_task_errors_under_their_fields(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    at = logged_in_app(email)
    for title in ("", "   "):
        at.text_input(key="new_title").input(title)
        at.button(key="add_task").click().run()
        assert_calm(at)
        under_title = element_after(at, "new_title")
        assert under_title.type == "error", title
        assert "empty" in under_title.value or "at least 1" in under_title.value
        assert not at.success

    at.text_input(key="new_title").input("A fine title")
    at.text_area(key="new_description").input("x" * 10_001)
    at.button(key="add_task").click().run()
    assert_calm(at)
    under_description = element_after(at, "new_description")
    assert under_description.type == "error"
    assert "10000" in under_description.value.replace(",", "")
    assert element_after(at, "new_title").type != "error"
    # What the person typed is kept, to be corrected.
    assert at.text_input(key="new_title").value == "A fine title"

    assert use_api.tasks(headers) == []  # nothing was created
    assert shown_ids(at) == []


def test_filters_and_sort_narrow_as_the_api(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    today = datetime.now(UTC).date()

    def due(days: int) -> str:
        return f"{(today + timedelta(days=days)).isoformat()}T12:00:00Z"

    alpha = use_api.create_task(
        headers, title="Alpha report", status="todo", priority="high", due_at=due(1)
    )
    beta = use_api.create_task(
        headers, title="Beta groceries", status="in_progress", priority="low", due_at=due(10)
    )
    gamma = use_api.create_task(
        headers,
        title="Gamma taxes",
        description="Pay the INVOICE",
        status="done",
        priority="urgent",
        due_at=due(20),
    )
    delta = use_api.create_task(headers, title="Delta idea", priority="medium")
    a, b, g, d = (task["id"] for task in (alpha, beta, gamma, delta))

    at = logged_in_app(email)
    assert shown_ids(at) == [d, g, b, a]  # newest first

    def check(expected: list[int], **api_params: str) -> None:
        assert_calm(at)
        assert shown_ids(at) == expected
        assert [task["id"] for task in use_api.tasks(headers, **api_params)] == expected

    at.multiselect(key="flt_status").set_value(["todo"]).run()
    check([d, a], status="todo")
    at.multiselect(key="flt_status").set_value(["todo", "done"]).run()
    check([d, g, a], status="todo,done")
    at.multiselect(key="flt_status").set_value([]).run()

    at.multiselect(key="flt_priority").set_value(["high", "urgent"]).run()
    check([g, a], priority="high,urgent")
    at.multiselect(key="flt_priority").set_value([]).run()

    # "Due until" includes its day.
    at.date_input(key="flt_due_from").set_value(today + timedelta(days=5))
    at.date_input(key="flt_due_until").set_value(today + timedelta(days=20)).run()
    check(
        [g, b],
        due_after=f"{today + timedelta(days=5)}T00:00:00Z",
        due_before=f"{today + timedelta(days=21)}T00:00:00Z",
    )
    at.date_input(key="flt_due_from").set_value(None)
    at.date_input(key="flt_due_until").set_value(today + timedelta(days=1)).run()
    check([a], due_before=f"{today + timedelta(days=2)}T00:00:00Z")
    at.date_input(key="flt_due_until").set_value(None).run()

    at.text_input(key="flt_q").input("invoice").run()  # in the description, any case
    check([g], q="invoice")
    at.text_input(key="flt_q").input("ALPHA").run()
    check([a], q="ALPHA")
    at.text_input(key="flt_q").input("").run()
    check([d, g, b, a])

    at.selectbox(key="flt_sort").set_value("due_at").run()
    check([a, b, g, d], sort="due_at")  # no due date comes last
    at.selectbox(key="flt_sort").set_value("-priority").run()
    check([g, a, d, b], sort="-priority")
    at.selectbox(key="flt_sort").set_value("created_at").run()
    check([a, b, g, d], sort="created_at")


def test_cursor_paging(use_api: Api, person: tuple[str, dict[str, str]]) -> None:
    email, headers = person
    for number in range(1, 26):
        use_api.create_task(headers, title=f"Paged task {number:02}")
    at = logged_in_app(email)
    at.selectbox(key="flt_limit").set_value(10).run()

    def page(first: int, last: int) -> list[str]:
        step = -1 if first > last else 1
        return [f"Paged task {n:02}" for n in range(first, last + step, step)]

    def buttons() -> tuple[bool, bool]:
        return at.button(key="tasks_previous").disabled, at.button(key="tasks_next").disabled

    assert shown_titles(at) == page(25, 16)
    assert buttons() == (True, False)
    assert "Page 1" in [c.value for c in at.caption]

    at.button(key="tasks_next").click().run()
    assert shown_titles(at) == page(15, 6)
    assert buttons() == (False, False)
    assert "Page 2" in [c.value for c in at.caption]

    at.button(key="tasks_next").click().run()
    assert shown_titles(at) == page(5, 1)
    assert buttons() == (False, True)

    at.button(key="tasks_previous").click().run()
    assert shown_titles(at) == page(15, 6)
    assert buttons() == (False, False)

    at.button(key="tasks_previous").click().run()
    assert shown_titles(at) == page(25, 16)
    assert buttons() == (True, False)

    # Changing a filter starts again at the first page.
    at.button(key="tasks_next").click().run()
    at.selectbox(key="flt_sort").set_value("created_at").run()
    assert shown_titles(at) == page(1, 10)
    assert buttons() == (True, False)
    assert_calm(at)


def test_a_page_whose_cursor_is_refused_starts_the_list_again(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    """On page 2 when the API stops taking the page's cursor (its SECRET_KEY changed: the
    cursor's signature no longer holds), the list starts again from its first page and says
    so. Before, the refusal stood in place of the list, with no pager and no Retry: only a
    change of filter got the person out."""
    email, headers = person
    for number in range(1, 16):
        use_api.create_task(headers, title=f"Paged task {number:02}")
    at = logged_in_app(email)
    at.selectbox(key="flt_limit").set_value(10).run()
    at.button(key="tasks_next").click().run()
    assert "Page 2" in [c.value for c in at.caption]
    page_cursor = at.session_state["_pages_tasks"][-1]
    at.session_state["_pages_tasks"] = [None, forged(page_cursor)]

    at.run()
    assert_calm(at)
    assert not at.error
    assert [unescaped(i.value) for i in at.info][-1] == (
        "The list started again from its first page: the page you were on can no longer be read."
    )
    assert len(shown_ids(at)) == 10
    assert "Page 1" in [c.value for c in at.caption]
    at.button(key="tasks_next").click().run()
    assert "Page 2" in [c.value for c in at.caption]
    assert len(shown_ids(at)) == 5


def test_edit_saves_with_if_match(use_api: Api, person: tuple[str, dict[str, str]]) -> None:
    email, headers = person
    task = use_api.create_task(headers, title="Draft", priority="low")
    task_id = task["id"]
    at = logged_in_app(email)
    at.button(key=f"edit_{task_id}").click().run()
    assert at.text_input(key=f"edit_title_{task_id}").value == "Draft"
    at.text_input(key=f"edit_title_{task_id}").input("Final")
    at.selectbox(key=f"edit_status_{task_id}").set_value("in_progress")
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)

    assert successes(at) == ["Saved “Final”."]
    assert shown_titles(at) == ["Final"]
    saved = server_task(use_api, headers, task_id)
    assert (saved["title"], saved["status"], saved["priority"]) == ("Final", "in_progress", "low")
    assert saved["version"] == task["version"] + 1


def test_invalid_edit_error_under_its_field(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    task_id = use_api.create_task(headers, title="Untouched")["id"]
    at = logged_in_app(email)
    at.button(key=f"edit_{task_id}").click().run()
    at.text_input(key=f"edit_title_{task_id}").input("   ")
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)
    under_title = element_after(at, f"edit_title_{task_id}")
    assert under_title.type == "error"
    assert under_title.value.casefold() == "must not be empty or only spaces"
    assert not at.success
    assert at.text_input(key=f"edit_title_{task_id}").value == "   "  # still open, as typed
    kept = server_task(use_api, headers, task_id)
    assert (kept["title"], kept["version"]) == ("Untouched", 1)


def test_invalid_filter_error_under_it(use_api: Api, person: tuple[str, dict[str, str]]) -> None:
    email, _headers = person
    at = logged_in_app(email)
    at.text_input(key="flt_q").input("x" * 201).run()
    assert_calm(at)
    under_search = element_after(at, "flt_q")
    assert under_search.type == "error"
    assert "200" in under_search.value
    # The message is not repeated elsewhere on the page.
    message = under_search.value.casefold()
    assert sum(message in e.value.casefold() for e in at.error) == 1
    at.text_input(key="flt_q").input("x").run()
    assert_calm(at)
    assert not at.error


def test_conflicting_edit_overwrites_nothing(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    task_id = use_api.create_task(headers, title="Shared plan")["id"]
    at = logged_in_app(email)
    at.button(key=f"edit_{task_id}").click().run()

    # Meanwhile, somewhere else:
    other = use_api.http.patch(
        f"/tasks/{task_id}", json={"title": "Edited elsewhere"}, headers=headers
    )
    assert other.status_code == 200, other.text

    at.text_input(key=f"edit_title_{task_id}").input("My edit")
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)
    assert any(e.value.startswith("Conflict:") for e in at.error), [e.value for e in at.error]
    assert not at.success
    kept = server_task(use_api, headers, task_id)
    assert (kept["title"], kept["version"]) == ("Edited elsewhere", 2)

    at.button(key=f"reload_{task_id}").click().run()
    assert_calm(at)
    assert at.text_input(key=f"edit_title_{task_id}").value == "Edited elsewhere"
    assert not any(e.value.startswith("Conflict:") for e in at.error)
    at.text_input(key=f"edit_title_{task_id}").input("My edit, again")
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)
    assert successes(at) == ["Saved “My edit, again”."]
    saved = server_task(use_api, headers, task_id)
    assert (saved["title"], saved["version"]) == ("My edit, again", 3)


def test_an_edit_left_open_on_another_screen_keeps_the_tasks_values(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    """Streamlit forgets a widget's value on a run that does not draw it. The editor came
    back from another screen with every field at its default, and a Save that changed only
    the title erased the priority, the due date and the description, saying "Saved"."""
    email, headers = person
    due = datetime(2031, 3, 14, 12, tzinfo=UTC)
    task = use_api.create_task(
        headers,
        title="Keep my fields",
        description="The details",
        priority="urgent",
        due_at=due.isoformat(),
    )
    task_id = task["id"]
    at = logged_in_app(email)
    at.button(key=f"edit_{task_id}").click().run()
    open_page(at, "overview")
    assert_calm(at)
    open_page(at, "tasks")
    assert_calm(at)

    assert at.text_input(key=f"edit_title_{task_id}").value == "Keep my fields"
    assert at.text_area(key=f"edit_description_{task_id}").value == "The details"
    assert at.selectbox(key=f"edit_priority_{task_id}").value == "urgent"
    assert at.date_input(key=f"edit_due_{task_id}").value == due.date()
    at.text_input(key=f"edit_title_{task_id}").input("Kept my fields")
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)
    assert successes(at) == ["Saved “Kept my fields”."]
    saved = server_task(use_api, headers, task_id)
    assert (saved["title"], saved["description"], saved["priority"]) == (
        "Kept my fields",
        "The details",
        "urgent",
    )
    assert saved["due_at"] == task["due_at"]


def test_filters_stay_through_another_screen(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    use_api.create_task(headers, title="Alpha report")
    use_api.create_task(headers, title="Beta notes")
    at = logged_in_app(email)
    at.text_input(key="flt_q").input("alpha").run()
    assert shown_titles(at) == ["Alpha report"]
    open_page(at, "trash")
    open_page(at, "tasks")
    assert_calm(at)
    assert at.text_input(key="flt_q").value == "alpha"
    assert shown_titles(at) == ["Alpha report"]


def test_delete_trash_restore(use_api: Api, person: tuple[str, dict[str, str]]) -> None:
    email, headers = person
    keep = use_api.create_task(headers, title="Keep me")["id"]
    doomed = use_api.create_task(headers, title="Throw away")["id"]
    at = logged_in_app(email)
    assert shown_ids(at) == [doomed, keep]

    at.button(key=f"delete_{doomed}").click().run()
    assert_calm(at)
    assert successes(at) == ["Moved “Throw away” to the trash."]
    assert shown_ids(at) == [keep]
    assert [t["id"] for t in use_api.tasks(headers)] == [keep]
    assert [t["id"] for t in use_api.tasks(headers, deleted="true")] == [doomed]

    open_page(at, "trash")
    assert_calm(at)
    assert [b.key for b in at.button if b.key.startswith("restore_")] == [f"restore_{doomed}"]
    at.button(key=f"restore_{doomed}").click().run()
    assert_calm(at)
    assert successes(at) == ["Restored “Throw away”."]
    assert [i.value for i in at.info] == ["The trash is empty."]
    assert server_task(use_api, headers, doomed)["deleted_at"] is None

    open_page(at, "tasks")
    assert_calm(at)
    assert sorted(shown_ids(at)) == sorted([doomed, keep])


def _errors(at: AppTest) -> list[str]:
    return [unescaped(e.value) for e in at.error]


def test_an_edit_of_a_task_deleted_meanwhile_says_so(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    keep = use_api.create_task(headers, title="Keep me")["id"]
    task_id = use_api.create_task(headers, title="Plan www.example.com")["id"]
    at = logged_in_app(email)
    at.button(key=f"edit_{task_id}").click().run()
    # Meanwhile, somewhere else:
    assert use_api.http.delete(f"/tasks/{task_id}", headers=headers).status_code == 204

    at.text_input(key=f"edit_title_{task_id}").input("My edit")
    at.button(key=f"save_{task_id}").click().run()
    assert_calm(at)
    assert shown_ids(at) == [keep]
    assert _errors(at) == [
        "The task “Plan www.example.com” was deleted meanwhile, or is no longer visible to "
        "you: your changes were not saved; its title read: “My edit”. If it is in the Trash, "
        "it can be restored from there."
    ]
    assert [unescaped(t.value) for t in at.toast] == [
        "“Plan www.example.com” is gone: see above the list."
    ]
    assert not at.success
    at.run()
    assert not at.error  # said once

    # Restored: its row is back, with no editor and no old message under it.
    assert use_api.http.post(f"/tasks/{task_id}/restore", headers=headers).status_code == 200
    at.run()
    assert_calm(at)
    assert sorted(shown_ids(at)) == sorted([keep, task_id])
    assert not at.error
    assert not any(form.key == f"edit_form_{task_id}" for form in at.get("form"))

    # Edit pressed on a row whose task went meanwhile: said the same way.
    assert use_api.http.delete(f"/tasks/{task_id}", headers=headers).status_code == 204
    at.button(key=f"edit_{task_id}").click().run()
    assert_calm(at)
    assert _errors(at) == [
        "The task “Plan www.example.com” was deleted meanwhile, or is no longer visible to "
        "you: it can no longer be edited. If it is in the Trash, it can be restored from there."
    ]
    assert use_api.http.post(f"/tasks/{task_id}/restore", headers=headers).status_code == 200
    at.run()
    assert not at.error


def test_a_comment_on_a_task_deleted_meanwhile_is_given_back(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    email, headers = person
    task_id = use_api.create_task(headers, title="Talk about it")["id"]
    at = logged_in_app(email)
    at.button(key=f"comments_{task_id}").click().run()
    at.text_area(key=f"comment_body_{task_id}").input("A long thought, *typed* with care.")
    assert use_api.http.delete(f"/tasks/{task_id}", headers=headers).status_code == 204
    at.button(key=f"comment_add_{task_id}").click().run()
    assert_calm(at)
    assert shown_ids(at) == []
    assert _errors(at) == [
        "The task “Talk about it” was deleted meanwhile, or is no longer visible to you: your "
        "comment was not added. It read: “A long thought, *typed* with care.”. If it is in the "
        "Trash, it can be restored from there."
    ]
    at.run()
    assert not at.error
    assert use_api.http.post(f"/tasks/{task_id}/restore", headers=headers).status_code == 200
    at.run()
    assert_calm(at)
    assert shown_ids(at) == [task_id]
    assert not at.error
    assert not at.success
    assert at.button(key=f"comments_{task_id}").label == "Comments"  # closed, not stale


def test_a_description_of_several_lines_is_shown_on_several_lines(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    """Markdown joins the lines of a paragraph: a list typed line by line read as one run
    of text. Each line break is a hard break (two spaces, then the break), CRLF included."""
    email, headers = person
    use_api.create_task(headers, title="Steps", description="1. Open\r\n2. Check\n# Not a heading")
    at = logged_in_app(email)
    (caption,) = [c.value for c in at.caption if "Open" in c.value]
    assert caption == "1\\. Open  \n2\\. Check  \n\\# Not a heading"


def test_a_refused_filter_names_no_api_field(
    use_api: Api, person: tuple[str, dict[str, str]]
) -> None:
    """The API's detail names the search box "q": its message is under the box, and the
    rest says so in words."""
    email, _headers = person
    at = logged_in_app(email)
    at.text_input(key="flt_q").input("x" * 201).run()
    assert_calm(at)
    assert not any(": q" in e.value or "`" in e.value for e in at.error), [
        e.value for e in at.error
    ]
