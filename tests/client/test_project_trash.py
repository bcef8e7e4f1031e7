"""Deleting a project and restoring it on the Projects screen (/projects), against the real API:
Delete for owners only and never on the Inbox, a confirmation first, the project gone from the
switcher and listed under Deleted projects, Restore bringing it back with its tasks; a refusal
that happens anyway (403, 409) shown plainly, nothing deleted."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import api_client  # the client's own module (see conftest)
from tests.client.conftest import (
    Api,
    assert_calm,
    logged_in_app,
    markdown_text,
    new_email,
    open_page,
    successes,
    switch_project,
    switcher,
)


def _projects_screen(email: str, project_id: int | None = None) -> AppTest:
    at = logged_in_app(email)
    open_page(at, "projects")
    if project_id is not None:
        switch_project(at, project_id)
    assert_calm(at)
    assert at.header[0].value == "Projects"
    return at


def _keys(at: AppTest) -> set[str]:
    return {button.key for button in at.button if button.key}


def _deleted_names(at: AppTest) -> str:
    """What the Deleted projects list shows: the text of its rows (containers keyed
    deleted_project_<id>, wherever the layout puts them)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        key = getattr(node, "key", None) or ""
        if isinstance(key, str) and key.startswith("deleted_project_"):
            found.append(markdown_text(node))
            return
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    return "\n".join(found)


def _live_names(api: Api, headers: dict[str, str]) -> list[str]:
    page = api.v2.get("/projects", headers=headers, params={"limit": 100}).json()
    return [str(p["name"]) for p in page["items"]]


def test_owner_deletes_a_project_and_restores_it(use_api: Api) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    project = use_api.create_project(headers, "Launch")
    task = use_api.create_v2_task(headers, project_id=project["id"], title="Print the flyers")
    at = _projects_screen(email, project["id"])
    assert "No deleted projects." in [c.value for c in at.caption]

    # A confirmation first; Cancel deletes nothing.
    at.button(key="project_delete_start").click().run()
    assert_calm(at)
    (question,) = [w.value for w in at.warning]
    assert "Move “Launch” and all its tasks to the trash?" in question
    at.button(key="project_delete_start_cancel").click().run()
    assert_calm(at)
    assert "project_delete_start_confirm" not in _keys(at)
    assert use_api.project(headers, project["id"])["deleted_at"] is None

    at.button(key="project_delete_start").click().run()
    at.button(key="project_delete_start_confirm").click().run()
    assert_calm(at)
    assert successes(at) == [
        "Moved “Launch” and its tasks to the trash. You can restore it under Deleted projects."
    ]
    assert not at.info  # not the "no longer open to you" notice: the person did this
    assert switcher(at) == ["Inbox"]
    assert at.sidebar.selectbox(key="project_switch").value == use_api.inbox_id(headers)
    assert use_api.v2.get(f"/projects/{project['id']}", headers=headers).status_code == 404
    assert _live_names(use_api, headers) == ["Inbox"]
    assert "Launch" in _deleted_names(at)
    assert f"project_restore_{project['id']}" in _keys(at)

    at.button(key=f"project_restore_{project['id']}").click().run()
    assert_calm(at)
    assert successes(at) == ["Restored “Launch” with its members and tasks."]
    assert switcher(at) == ["Inbox", "Launch"]
    assert "No deleted projects." in [c.value for c in at.caption]
    assert use_api.project(headers, project["id"])["deleted_at"] is None
    assert [t["id"] for t in use_api.v2_tasks(headers, project_id=project["id"])] == [task["id"]]

    # Back in it: its tasks are listed again.
    switch_project(at, project["id"])
    open_page(at, "tasks")
    assert_calm(at)
    assert "Print the flyers" in markdown_text(at)


def test_an_admin_has_no_delete_control(use_api: Api) -> None:
    owner_email = use_api.register()
    owner = use_api.headers(owner_email)
    project = use_api.create_project(owner, "Shared")
    admin_email = new_email()
    use_api.register(admin_email)
    use_api.add_member(owner, project["id"], admin_email, "admin")

    at = _projects_screen(admin_email, project["id"])
    assert "rename_start" in _keys(at)  # an admin may rename it...
    assert "project_delete_start" not in _keys(at)  # ...but not delete it
    assert any("it takes owner or above to delete it" in c.value for c in at.caption)

    # Trashed by its owner: gone for the admin, and not theirs to restore (not listed).
    assert use_api.v2.delete(f"/projects/{project['id']}", headers=owner).status_code == 204
    at.run()
    assert_calm(at)
    assert switcher(at) == ["Inbox"]
    assert "No deleted projects." in [c.value for c in at.caption]
    assert not any(key.startswith("project_restore_") for key in _keys(at))


def test_the_inbox_has_no_delete_control(use_api: Api) -> None:
    email = use_api.register()
    at = _projects_screen(email)
    assert at.sidebar.selectbox(key="project_switch").value == use_api.inbox_id(
        use_api.headers(email)
    )
    assert "project_delete_start" not in _keys(at)
    assert "This is your Inbox: it cannot be deleted." in [c.value for c in at.caption]


def test_a_403_after_a_demotion_is_shown_plainly(use_api: Api) -> None:
    owner_email = use_api.register()
    owner = use_api.headers(owner_email)
    project = use_api.create_project(owner, "Co-owned")
    other_email = new_email()
    use_api.register(other_email)
    other = use_api.add_member(owner, project["id"], other_email, "owner")

    at = _projects_screen(owner_email, project["id"])
    at.button(key="project_delete_start").click().run()
    # Meanwhile the other owner makes this one an admin.
    use_api.set_role(other, project["id"], use_api.user_id(owner), "admin")
    at.button(key="project_delete_start_confirm").click().run()
    assert_calm(at)
    (message,) = [e.value for e in at.error]
    assert "Your role in this project is admin; this needs owner or above." in message
    assert not at.success
    assert use_api.project(owner, project["id"])["deleted_at"] is None
    assert "project_delete_start" not in _keys(at)  # the page now follows the new role
    assert "Co-owned" in switcher(at)


def test_a_409_is_shown_plainly(use_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client never offers to delete the Inbox; should the API still answer 409 (here the
    request is sent for the Inbox, to get the API's real answer), the person reads it."""
    email = use_api.register()
    headers = use_api.headers(email)
    project = use_api.create_project(headers, "Kept")
    inbox_id = use_api.inbox_id(headers)
    delete_project = api_client.ApiSession.delete_project

    def delete_the_inbox(self: api_client.ApiSession, project_id: Any) -> None:
        delete_project(self, inbox_id)

    monkeypatch.setattr(api_client.ApiSession, "delete_project", delete_the_inbox)
    at = _projects_screen(email, project["id"])
    at.button(key="project_delete_start").click().run()
    at.button(key="project_delete_start_confirm").click().run()
    assert_calm(at)
    (message,) = [e.value for e in at.error]
    assert message == "The Inbox cannot be shared, left or deleted."
    assert not at.success
    assert _live_names(use_api, headers) == ["Inbox", "Kept"]
    assert at.sidebar.selectbox(key="project_switch").value == project["id"]  # still here
