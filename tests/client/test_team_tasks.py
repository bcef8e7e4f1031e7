"""Tasks in a shared project: assignees and labels on the task form and as list filters
("Assigned to me"), comments on a task, and what each role sees (no Add, Edit or Delete for a
viewer or a commenter; no comment form for a viewer)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from streamlit.testing.v1 import AppTest

from tests.client.conftest import (
    Api,
    assert_calm,
    element_after,
    logged_in_app,
    markdown_text,
    open_page,
    successes,
    switch_project,
)
from tests.client.test_tasks import shown_titles


@dataclass
class Team:
    """A project "Launch" with an owner, an editor, a commenter and a viewer."""

    project_id: int
    emails: dict[str, str]
    headers: dict[str, dict[str, str]]
    ids: dict[str, int]


@pytest.fixture
def team(use_api: Api) -> Team:
    owner = use_api.register()
    owner_headers = use_api.headers(owner)
    project = use_api.create_project(owner_headers, "Launch")
    emails, headers = {"owner": owner}, {"owner": owner_headers}
    for role in ("editor", "commenter", "viewer"):
        emails[role] = use_api.register()
        headers[role] = use_api.add_member(owner_headers, project["id"], emails[role], role)
    ids = {who: use_api.user_id(h) for who, h in headers.items()}
    return Team(project["id"], emails, headers, ids)


def _in_project(team: Team, who: str) -> AppTest:
    at = logged_in_app(team.emails[who])
    switch_project(at, team.project_id)
    assert_calm(at)
    return at


def _keys(at: AppTest) -> set[str]:
    return {button.key for button in at.button if button.key}


def test_assignees_and_labels_on_the_new_task(use_api: Api, team: Team) -> None:
    owner = team.headers["owner"]
    urgent = use_api.create_label(owner, team.project_id, "urgent")
    docs = use_api.create_label(owner, team.project_id, "docs")
    at = _in_project(team, "owner")
    # Every member is offered (the API's order: owners first), each by name and email.
    assert sorted(at.multiselect(key="new_assignees").options) == sorted(team.emails.values())
    at.text_input(key="new_title").input("Write the launch post")
    at.multiselect(key="new_assignees").set_value([team.ids["editor"], team.ids["commenter"]])
    at.multiselect(key="new_labels").set_value([docs["id"], urgent["id"]])
    at.button(key="add_task").click().run()
    assert_calm(at)
    assert successes(at) == ["Added “Write the launch post”."]
    (task,) = use_api.v2_tasks(owner, project_id=team.project_id)
    assert task["assignee_ids"] == sorted([team.ids["editor"], team.ids["commenter"]])
    assert task["label_ids"] == sorted([urgent["id"], docs["id"]])
    assert at.multiselect(key="new_assignees").value == []  # ready for the next one
    shown = markdown_text(at)
    assert f"Assigned to {team.emails['editor']}" in shown
    assert "Labels: docs, urgent" in shown or "Labels: urgent, docs" in shown


def test_a_non_member_assignee_is_refused_under_its_field(use_api: Api, team: Team) -> None:
    """The person was a member when the form was drawn, and left before it was sent."""
    at = _in_project(team, "owner")
    at.text_input(key="new_title").input("For someone gone")
    at.multiselect(key="new_assignees").set_value([team.ids["viewer"]])
    left = use_api.v2.delete(
        f"/projects/{team.project_id}/members/{team.ids['viewer']}",
        headers=team.headers["viewer"],
    )
    assert left.status_code == 204, left.text
    at.button(key="add_task").click().run()
    assert_calm(at)
    assert at.error
    assert not at.success
    assert use_api.v2_tasks(team.headers["owner"], project_id=team.project_id) == []


def test_assigned_to_me_and_label_filters(use_api: Api, team: Team) -> None:
    owner = team.headers["owner"]
    label = use_api.create_label(owner, team.project_id, "backend")
    pid = team.project_id
    use_api.create_v2_task(owner, project_id=pid, title="Mine", assignee_ids=[team.ids["editor"]])
    use_api.create_v2_task(owner, project_id=pid, title="Labelled", label_ids=[label["id"]])
    use_api.create_v2_task(
        owner, project_id=pid, title="Someone else's", assignee_ids=[team.ids["commenter"]]
    )
    at = _in_project(team, "editor")
    assert sorted(shown_titles(at)) == ["Labelled", "Mine", "Someone else's"]

    at.selectbox(key="flt_assignee").set_value("me").run()
    assert_calm(at)
    assert shown_titles(at) == ["Mine"]
    at.selectbox(key="flt_assignee").set_value("none").run()
    assert shown_titles(at) == ["Labelled"]
    at.selectbox(key="flt_assignee").set_value(str(team.ids["commenter"])).run()
    assert shown_titles(at) == ["Someone else's"]
    at.selectbox(key="flt_assignee").set_value("").run()

    at.selectbox(key="flt_label").set_value(label["id"]).run()
    assert_calm(at)
    assert shown_titles(at) == ["Labelled"]

    # Another project's label is not offered there: the filter goes back to "Any label".
    switch_project(at, use_api.inbox_id(team.headers["editor"]))
    assert_calm(at)
    assert at.selectbox(key="flt_label").value is None


def test_edit_assignees_and_labels(use_api: Api, team: Team) -> None:
    owner = team.headers["owner"]
    label = use_api.create_label(owner, team.project_id, "design")
    task = use_api.create_v2_task(owner, project_id=team.project_id, title="Logo")
    at = _in_project(team, "editor")
    at.button(key=f"edit_{task['id']}").click().run()
    at.multiselect(key=f"edit_{task['id']}_assignees").set_value([team.ids["editor"]])
    at.multiselect(key=f"edit_{task['id']}_labels").set_value([label["id"]])
    at.button(key=f"save_{task['id']}").click().run()
    assert_calm(at)
    assert successes(at) == ["Saved “Logo”."]
    saved = use_api.v2_task(owner, task["id"])
    assert saved["assignee_ids"] == [team.ids["editor"]]
    assert saved["label_ids"] == [label["id"]]
    assert saved["version"] == task["version"] + 1  # one change, one version


def test_move_a_task_to_another_project(use_api: Api, team: Team) -> None:
    """Spec api-v2 section 5 (editor in both projects): the editor's Project field. The
    labels are this project's, so they go; the assignees who are members there stay."""
    owner = team.headers["owner"]
    label = use_api.create_label(owner, team.project_id, "design")
    task = use_api.create_v2_task(
        owner,
        project_id=team.project_id,
        title="Logo",
        assignee_ids=[team.ids["owner"], team.ids["editor"]],
        label_ids=[label["id"]],
    )
    other = use_api.create_project(owner, "Marketing")
    at = _in_project(team, "owner")
    at.button(key=f"edit_{task['id']}").click().run()
    project_field = at.selectbox(key=f"edit_project_{task['id']}")
    assert project_field.value == team.project_id
    assert set(project_field.options) >= {"Launch", "Marketing"}
    at.text_input(key=f"edit_title_{task['id']}").input("Logo, final")
    project_field.set_value(other["id"])
    at.button(key=f"save_{task['id']}").click().run()
    assert_calm(at)

    assert successes(at) == ["Moved “Logo, final” to Marketing."]
    assert "Logo, final" not in shown_titles(at)
    moved = use_api.v2_task(owner, task["id"])
    assert (moved["project_id"], moved["title"]) == (other["id"], "Logo, final")
    assert (moved["assignee_ids"], moved["label_ids"]) == ([team.ids["owner"]], [])
    assert moved["version"] == task["version"] + 1


def test_assignees_chosen_with_the_move_go_with_it(use_api: Api, team: Team) -> None:
    """They were dropped without a word: the move sent only the project."""
    owner = team.headers["owner"]
    task = use_api.create_v2_task(owner, project_id=team.project_id, title="Brief")
    other = use_api.create_project(owner, "Marketing")  # the owner alone is a member there
    at = _in_project(team, "owner")
    at.button(key=f"edit_{task['id']}").click().run()
    at.multiselect(key=f"edit_{task['id']}_assignees").set_value([team.ids["owner"]])
    at.selectbox(key=f"edit_project_{task['id']}").set_value(other["id"])
    at.button(key=f"save_{task['id']}").click().run()
    assert_calm(at)
    moved = use_api.v2_task(owner, task["id"])
    assert (moved["project_id"], moved["assignee_ids"]) == (other["id"], [team.ids["owner"]])

    # One who is not a member there: refused under the field, nothing moved.
    back = use_api.create_v2_task(owner, project_id=team.project_id, title="Stays")
    at.run()
    at.button(key=f"edit_{back['id']}").click().run()
    at.multiselect(key=f"edit_{back['id']}_assignees").set_value([team.ids["editor"]])
    at.selectbox(key=f"edit_project_{back['id']}").set_value(other["id"])
    at.button(key=f"save_{back['id']}").click().run()
    assert_calm(at)
    assert element_after(at, f"edit_{back['id']}_assignees").type == "error"
    assert use_api.v2_task(owner, back["id"])["project_id"] == team.project_id


def test_no_move_to_a_project_where_one_may_not_add_tasks(use_api: Api, team: Team) -> None:
    task = use_api.create_v2_task(team.headers["owner"], project_id=team.project_id, title="X")
    at = _in_project(team, "editor")  # an editor here, and the owner of their Inbox only
    at.button(key=f"edit_{task['id']}").click().run()
    names = at.selectbox(key=f"edit_project_{task['id']}").options
    assert sorted(names) == sorted(["Inbox", "Launch"])
    viewer_project = use_api.create_project(team.headers["owner"], "Board")
    use_api.add_member(team.headers["owner"], viewer_project["id"], team.emails["editor"], "viewer")
    at = _in_project(team, "editor")
    at.button(key=f"edit_{task['id']}").click().run()
    assert "Board" not in at.selectbox(key=f"edit_project_{task['id']}").options


def test_comments(use_api: Api, team: Team) -> None:
    task = use_api.create_v2_task(team.headers["owner"], project_id=team.project_id, title="Plan")
    task_id = task["id"]
    at = _in_project(team, "commenter")
    at.button(key=f"comments_{task_id}").click().run()
    assert_calm(at)
    assert "No comments yet." in [c.value for c in at.caption]
    at.text_area(key=f"comment_body_{task_id}").input("Looks *good* [to me](http://x)")
    at.button(key=f"comment_add_{task_id}").click().run()
    assert_calm(at)
    assert successes(at) == ["Comment added."]
    assert use_api.comments(team.headers["owner"], task_id) == ["Looks *good* [to me](http://x)"]
    # Shown literally: no emphasis, no link.
    assert "Looks *good* [to me](http://x)" in markdown_text(at)
    assert at.text_area(key=f"comment_body_{task_id}").value == ""

    # An empty comment: the API's message under the field.
    at.text_area(key=f"comment_body_{task_id}").input("")
    at.button(key=f"comment_add_{task_id}").click().run()
    assert_calm(at)
    assert element_after(at, f"comment_body_{task_id}").type == "error"

    (comment_id,) = [
        int(key.removeprefix("comment_delete_"))
        for key in _keys(at)
        if key.startswith("comment_delete_")
    ]
    at.button(key=f"comment_delete_{comment_id}").click().run()
    at.button(key=f"comment_delete_{comment_id}_confirm").click().run()
    assert_calm(at)
    assert use_api.comments(team.headers["owner"], task_id) == []

    assert at.button(key=f"comments_{task_id}").label == "Hide"
    at.button(key=f"comments_{task_id}").click().run()
    assert not any(w.key == f"comment_body_{task_id}" for w in at.text_area)


def _controls(at: AppTest, task_id: int) -> set[str]:
    keys = _keys(at)
    return {name for name in ("add_task", f"edit_{task_id}", f"delete_{task_id}") if name in keys}


def test_what_each_role_sees(use_api: Api, team: Team) -> None:
    owner = team.headers["owner"]
    task = use_api.create_v2_task(owner, project_id=team.project_id, title="Shared work")
    task_id = task["id"]
    added = use_api.v2.post(
        f"/tasks/{task_id}/comments", headers=owner, json={"body": "Owner's note"}
    )
    assert added.status_code == 201, added.text

    editor = _in_project(team, "editor")
    assert _controls(editor, task_id) == {"add_task", f"edit_{task_id}", f"delete_{task_id}"}

    for who in ("commenter", "viewer"):
        at = _in_project(team, who)
        assert "Shared work" in markdown_text(at)
        assert _controls(at, task_id) == set(), who
        assert any(f"is {who}" in i.value for i in at.info)
        at.button(key=f"comments_{task_id}").click().run()
        assert_calm(at)
        assert "Owner's note" in markdown_text(at)
        has_form = any(w.key == f"comment_body_{task_id}" for w in at.text_area)
        assert has_form == (who == "commenter")
        assert not any(k.startswith("comment_delete_") for k in _keys(at))  # not theirs

    # The trash: readable by a viewer, Restore for editors only.
    assert use_api.v2.delete(f"/tasks/{task_id}", headers=owner).status_code == 204
    viewer = _in_project(team, "viewer")
    open_page(viewer, "trash")
    assert_calm(viewer)
    assert "Shared work" in markdown_text(viewer)
    assert f"restore_{task_id}" not in _keys(viewer)
    assert any("it takes editor or above to restore" in c.value for c in viewer.caption)
    editor = _in_project(team, "editor")
    open_page(editor, "trash")
    assert f"restore_{task_id}" in _keys(editor)


def test_a_403_after_a_demotion_on_the_task_list(use_api: Api, team: Team) -> None:
    owner = team.headers["owner"]
    task = use_api.create_v2_task(owner, project_id=team.project_id, title="Keep me")
    at = _in_project(team, "editor")
    use_api.set_role(owner, team.project_id, team.ids["editor"], "viewer")
    at.button(key=f"delete_{task['id']}").click().run()
    assert_calm(at)
    (message,) = [e.value for e in at.error]
    assert "Your role in this project is viewer; this needs editor or above." in message
    assert use_api.v2_task(owner, task["id"])["deleted_at"] is None
    assert _controls(at, task["id"]) == set()


def test_choices_from_another_project_are_dropped(use_api: Api, team: Team) -> None:
    at = _in_project(team, "owner")
    editor = team.ids["editor"]
    at.multiselect(key="new_assignees").set_value([editor])
    at.selectbox(key="flt_assignee").set_value(str(editor)).run()
    assert_calm(at)
    switch_project(at, use_api.inbox_id(team.headers["owner"]))  # the editor is not in it
    assert_calm(at)
    assert at.multiselect(key="new_assignees").value == []
    assert at.selectbox(key="flt_assignee").value == ""
    at.text_input(key="new_title").input("Just mine")
    at.button(key="add_task").click().run()
    assert_calm(at)
    assert successes(at) == ["Added “Just mine”."]
