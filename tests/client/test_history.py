"""History in the client, against the real API: under a task (its Comments button, then
"Show history") who changed what, in words, newest first; the project's Activity screen
(/activity); "Load more" for older events; names of people, projects and labels, not ids."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.client.conftest import (
    PASSWORD,
    Api,
    assert_calm,
    logged_in_app,
    new_email,
    open_page,
    switch_project,
    unescaped,
)


@dataclass
class Team:
    """A project "Launch" owned by Ada Lovelace, with Bob Babbage as an editor."""

    project_id: int
    emails: dict[str, str]
    headers: dict[str, dict[str, str]]
    ids: dict[str, int]


def _register(api: Api, full_name: str) -> str:
    email = new_email()
    body = {"email": email, "password": PASSWORD, "full_name": full_name}
    response = api.http.post("/users", json=body)
    assert response.status_code == 201, response.text
    return email


@pytest.fixture
def team(use_api: Api) -> Team:
    ada = _register(use_api, "Ada Lovelace")
    bob = _register(use_api, "Bob Babbage")
    ada_headers = use_api.headers(ada)
    project = use_api.create_project(ada_headers, "Launch")
    bob_headers = use_api.add_member(ada_headers, project["id"], bob, "editor")
    headers = {"ada": ada_headers, "bob": bob_headers}
    ids = {who: use_api.user_id(h) for who, h in headers.items()}
    return Team(project["id"], {"ada": ada, "bob": bob}, headers, ids)


def _patch(api: Api, headers: dict[str, str], task_id: int, **changes: Any) -> None:
    response = api.v2.patch(f"/tasks/{task_id}", headers=headers, json=changes)
    assert response.status_code == 200, response.text


def _sentences(at: AppTest, scope: str) -> list[str]:
    """The events shown under `scope`, in order: each one's sentence, unescaped."""
    shown = []
    for container in at.main.get("flex_container"):
        key = getattr(container, "key", None) or ""
        if key.startswith(f"{scope}_event_"):
            (markdown,) = container.markdown
            shown.append(unescaped(markdown.value))
    return shown


def _times(at: AppTest, scope: str) -> list[str]:
    return [
        caption.value
        for container in at.main.get("flex_container")
        if (getattr(container, "key", None) or "").startswith(f"{scope}_event_")
        for caption in container.caption
    ]


def _in_launch(team: Team, who: str) -> AppTest:
    at = logged_in_app(team.emails[who])
    switch_project(at, team.project_id)
    assert_calm(at)
    return at


def test_a_tasks_history_in_words_under_the_task(use_api: Api, team: Team) -> None:
    ada, bob = team.headers["ada"], team.headers["bob"]
    bug = use_api.create_label(ada, team.project_id, "Bug")
    task = use_api.create_v2_task(bob, project_id=team.project_id, title="Draft", priority="low")
    task_id = task["id"]
    _patch(use_api, ada, task_id, title="Final", priority="urgent")
    _patch(use_api, ada, task_id, assignee_ids=[team.ids["bob"]], label_ids=[bug["id"]])
    _patch(use_api, bob, task_id, due_at="2026-12-24T23:59:59Z", status="done")
    commented = use_api.v2.post(
        f"/tasks/{task_id}/comments", headers=bob, json={"body": "Shipped *today* " + "x" * 200}
    )
    assert commented.status_code == 201, commented.text
    assert use_api.v2.delete(f"/tasks/{task_id}", headers=ada).status_code == 204
    assert use_api.v2.post(f"/tasks/{task_id}/restore", headers=ada).status_code == 200

    at = _in_launch(team, "ada")
    scope = f"task_history_{task_id}"
    assert _sentences(at, scope) == []  # closed until its Comments button is pressed
    at.button(key=f"comments_{task_id}").click().run()
    assert_calm(at)
    assert _sentences(at, scope) == []  # the comments first; the history when asked for
    at.toggle(key=f"history_open_{task_id}").set_value(True).run()
    assert_calm(at)
    shown = _sentences(at, scope)
    assert shown[:-1] == [
        "Ada Lovelace restored the task",
        "Ada Lovelace deleted the task",
        # Long comments are cut, and shown literally (no emphasis).
        "Bob Babbage commented: “Shipped *today* " + "x" * 63 + "…”",
        "Bob Babbage set the status from To do to Done and set the due date to 24 Dec 2026",
        "Ada Lovelace assigned Bob Babbage and added the label Bug",
        "Ada Lovelace changed the title from “Draft” to “Final” and set the priority from low "
        "to urgent",
    ]
    assert shown[-1] == "Bob Babbage created the task “Draft”"
    # Each with its time, readable: "6 Dec 2026, 05:18 UTC".
    times = _times(at, scope)
    assert len(times) == len(shown)
    assert all(re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} UTC", t) for t in times)
    assert not any(button.key == f"{scope}_more" for button in at.button)

    # A change made meanwhile shows at the top on the next run.
    _patch(use_api, bob, task_id, assignee_ids=[])
    at.run()
    assert _sentences(at, scope)[0] == "Bob Babbage unassigned Bob Babbage"


def test_load_more_under_a_task(use_api: Api, team: Team) -> None:
    ada = team.headers["ada"]
    task = use_api.create_v2_task(ada, project_id=team.project_id, title="Title 0")
    task_id = task["id"]
    for n in range(1, 25):  # 25 events: a page of 20, then 5 more
        _patch(use_api, ada, task_id, title=f"Title {n}")
    at = _in_launch(team, "bob")
    at.button(key=f"comments_{task_id}").click().run()
    at.toggle(key=f"history_open_{task_id}").set_value(True).run()
    scope = f"task_history_{task_id}"
    shown = _sentences(at, scope)
    assert len(shown) == 20
    assert shown[0] == "Ada Lovelace changed the title from “Title 23” to “Title 24”"
    at.button(key=f"{scope}_more").click().run()
    assert_calm(at)
    shown = _sentences(at, scope)
    assert len(shown) == 25
    assert shown[-1] == "Ada Lovelace created the task “Title 0”"
    assert len(set(shown)) == 25  # none twice
    assert not any(button.key == f"{scope}_more" for button in at.button)


def test_the_projects_activity_screen(use_api: Api, team: Team) -> None:
    ada, bob = team.headers["ada"], team.headers["bob"]
    other = use_api.create_project(ada, "Other")
    use_api.create_label(bob, team.project_id, "Docs")
    task = use_api.create_v2_task(bob, project_id=team.project_id, title="Write the post")
    _patch(use_api, bob, task["id"], priority="high")
    _patch(use_api, ada, task["id"], title="Write the launch post")
    _patch(use_api, ada, task["id"], project_id=other["id"])
    use_api.set_role(ada, team.project_id, team.ids["bob"], "viewer")
    kim = new_email()
    invited = use_api.v2.post(
        f"/projects/{team.project_id}/invitations",
        headers=ada,
        json={"email": kim, "role": "viewer"},
    )
    assert invited.status_code == 201, invited.text
    revoked = use_api.v2.delete(
        f"/projects/{team.project_id}/invitations/{invited.json()['id']}", headers=ada
    )
    assert revoked.status_code == 204, revoked.text
    described = use_api.v2.patch(
        f"/projects/{team.project_id}",
        headers={**ada, "If-Match": '"1"'},
        json={"description": "The launch"},
    )
    assert described.status_code == 200, described.text

    at = _in_launch(team, "ada")
    open_page(at, "activity")
    assert_calm(at)
    assert at.header[0].value == "Activity"
    scope = f"project_activity_{team.project_id}"
    # A task is named by its title now; people, projects and labels by their names.
    assert _sentences(at, scope) == [
        "Ada Lovelace added the description “The launch”",
        f"Ada Lovelace revoked the invitation of {kim}",
        f"Ada Lovelace invited {kim} as viewer",
        "Ada Lovelace changed the role of Bob Babbage from editor to viewer",
        "Ada Lovelace moved the task “Write the launch post” from Launch to Other",
        "Ada Lovelace changed the task “Write the launch post”: changed the title from "
        "“Write the post” to “Write the launch post”",
        "Bob Babbage changed the task “Write the launch post”: set the priority from medium "
        "to high",
        "Bob Babbage created the task “Write the post”",
        "Bob Babbage created the label Docs",
        "Bob Babbage joined the project as editor",
        "Bob Babbage answered their invitation",
        f"Ada Lovelace invited {team.emails['bob']} as editor",
        "Ada Lovelace joined the project as owner",
        "Ada Lovelace created the project “Launch”",
    ]
    assert len(_times(at, scope)) == 14
    assert not any(button.key == f"{scope}_more" for button in at.button)

    # Bob, a viewer now, reads the same page; the project the task went to is not his.
    viewer = _in_launch(team, "bob")
    open_page(viewer, "activity")
    assert_calm(viewer)
    assert (
        "Ada Lovelace moved the task “Write the launch post” from Launch to project "
        f"#{other['id']}" in _sentences(viewer, scope)
    )


def test_load_more_on_the_activity_screen(use_api: Api, team: Team) -> None:
    ada = team.headers["ada"]
    for n in range(22):
        use_api.create_v2_task(ada, project_id=team.project_id, title=f"Task {n}")
    at = _in_launch(team, "bob")
    open_page(at, "activity")
    scope = f"project_activity_{team.project_id}"
    shown = _sentences(at, scope)
    assert len(shown) == 20
    assert shown[0] == "Ada Lovelace created the task “Task 21”"
    at.button(key=f"{scope}_more").click().run()
    assert_calm(at)
    shown = _sentences(at, scope)
    assert shown[-1] == "Ada Lovelace created the project “Launch”"
    assert len(shown) == 27  # 22 tasks, and the five events of making the team
    assert len(set(shown)) == 27
    assert not any(button.key == f"{scope}_more" for button in at.button)


def test_what_was_deleted_is_named_not_numbered(use_api: Api, team: Team) -> None:
    """A label deleted since is named by its own event in the sentences about the tasks it
    was taken off; a task in the trash by its title (the Trash shows it), even when the events
    shown hold no title of it."""
    ada = team.headers["ada"]
    hot = use_api.create_label(ada, team.project_id, "Hot")
    old = use_api.create_v2_task(ada, project_id=team.project_id, title="Old plan")
    _patch(use_api, ada, old["id"], label_ids=[hot["id"]])
    for n in range(20):  # the old task's own events drop out of the first page of 20
        use_api.create_v2_task(ada, project_id=team.project_id, title=f"Task {n}")
    deleted = use_api.v2.delete(f"/projects/{team.project_id}/labels/{hot['id']}", headers=ada)
    assert deleted.status_code == 204, deleted.text
    assert use_api.v2.delete(f"/tasks/{old['id']}", headers=ada).status_code == 204

    at = _in_launch(team, "bob")
    open_page(at, "activity")
    assert_calm(at)
    shown = _sentences(at, f"project_activity_{team.project_id}")
    assert shown[0] == "Ada Lovelace deleted the task “Old plan”"
    # One request made both (in either order).
    assert sorted(shown[1:3]) == [
        "Ada Lovelace changed the task “Old plan”: removed the label Hot",
        "Ada Lovelace deleted the label Hot",
    ]

    # Under the restored task, where the label's own events are not read: by its id.
    assert use_api.v2.post(f"/tasks/{old['id']}/restore", headers=ada).status_code == 200
    open_page(at, "tasks")
    at.text_input(key="flt_q").input("Old plan").run()
    at.button(key=f"comments_{old['id']}").click().run()
    at.toggle(key=f"history_open_{old['id']}").set_value(True).run()
    assert_calm(at)
    shown = _sentences(at, f"task_history_{old['id']}")
    assert f"Ada Lovelace removed label #{hot['id']}" in shown, shown
