"""The project switcher (Inbox first) and the Projects screen (/projects): creating a project,
renaming it with If-Match, and its labels; controls hidden below the role they need."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.client.conftest import (
    Api,
    assert_calm,
    element_after,
    logged_in_app,
    markdown_text,
    new_email,
    open_page,
    successes,
    switch_project,
    switcher,
)


def _projects_screen(email: str) -> AppTest:
    at = logged_in_app(email)
    open_page(at, "projects")
    assert_calm(at)
    assert at.header[0].value == "Projects"
    return at


def test_switcher_lists_the_inbox_first(use_api: Api) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    # Named to sort before "Inbox": the Inbox still comes first, the rest by name.
    use_api.create_project(headers, "Zebra launch")
    use_api.create_project(headers, "Apollo")
    at = logged_in_app(email)
    assert_calm(at)
    assert switcher(at) == ["Inbox", "Apollo", "Zebra launch"]
    assert at.sidebar.selectbox(key="project_switch").value == use_api.inbox_id(headers)
    assert "Your role here: **owner**" in [c.value for c in at.sidebar.caption]


def test_switching_shows_that_projects_tasks(use_api: Api) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    use_api.create_task(headers, title="Private errand")  # v1: the Inbox
    launch = use_api.create_project(headers, "Launch")
    use_api.create_v2_task(headers, project_id=launch["id"], title="Print the flyers")
    at = logged_in_app(email)
    assert "Private errand" in markdown_text(at)
    assert "Print the flyers" not in markdown_text(at)

    switch_project(at, launch["id"])
    assert_calm(at)
    assert "Print the flyers" in markdown_text(at)
    assert "Private errand" not in markdown_text(at)
    # The choice holds on the other screens.
    open_page(at, "overview")
    assert {m.label: m.value for m in at.metric}["Tasks"] == "1"
    open_page(at, "tasks")
    assert "Print the flyers" in markdown_text(at)


def test_create_a_project_and_work_in_it(use_api: Api) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    at = _projects_screen(email)
    at.text_input(key="new_project_name").input("Garden *party*")
    at.text_area(key="new_project_description").input("Saturday")
    at.button(key="create_project").click().run()
    assert_calm(at)
    assert successes(at) == ["Created “Garden *party*”. You are its owner."]
    (created,) = [
        p for p in use_api.v2.get("/projects", headers=headers).json()["items"] if not p["is_inbox"]
    ]
    assert (created["name"], created["description"], created["my_role"]) == (
        "Garden *party*",
        "Saturday",
        "owner",
    )
    assert switcher(at) == ["Inbox", "Garden *party*"]
    assert at.sidebar.selectbox(key="project_switch").value == created["id"]  # working in it

    open_page(at, "tasks")
    at.text_input(key="new_title").input("Buy lanterns")
    at.button(key="add_task").click().run()
    assert_calm(at)
    (task,) = use_api.v2_tasks(headers, project_id=created["id"])
    assert task["title"] == "Buy lanterns"


def test_invalid_project_name_under_its_field(use_api: Api) -> None:
    email = use_api.register()
    at = _projects_screen(email)
    at.text_input(key="new_project_name").input("   ")
    at.button(key="create_project").click().run()
    assert_calm(at)
    assert element_after(at, "new_project_name").type == "error"
    assert not at.success
    assert switcher(at) == ["Inbox"]


def test_rename_with_if_match(use_api: Api) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    project = use_api.create_project(headers, "Draft name")
    at = _projects_screen(email)
    switch_project(at, project["id"])
    at.button(key="rename_start").click().run()
    assert at.text_input(key="rename_name").value == "Draft name"
    at.text_input(key="rename_name").input("Final name")
    at.button(key="rename_save").click().run()
    assert_calm(at)
    assert successes(at) == ["Saved."]
    assert use_api.project(headers, project["id"])["name"] == "Final name"
    assert "Final name" in switcher(at)

    # A rename made elsewhere after the form was opened: a conflict, nothing overwritten.
    at.button(key="rename_start").click().run()
    elsewhere = use_api.v2.patch(
        f"/projects/{project['id']}", headers=headers, json={"name": "Renamed on the phone"}
    )
    assert elsewhere.status_code == 200, elsewhere.text
    at.text_input(key="rename_name").input("Mine")
    at.button(key="rename_save").click().run()
    assert_calm(at)
    assert any(e.value.startswith("Conflict:") for e in at.error)
    assert use_api.project(headers, project["id"])["name"] == "Renamed on the phone"
    at.button(key="rename_reload").click().run()
    assert at.text_input(key="rename_name").value == "Renamed on the phone"


def test_a_rename_left_open_on_another_screen_keeps_the_description(use_api: Api) -> None:
    """The form came back blank from another screen, and renaming cleared the description."""
    email = use_api.register()
    headers = use_api.headers(email)
    project = use_api.create_project(headers, "Launch")
    described = use_api.v2.patch(
        f"/projects/{project['id']}", headers=headers, json={"description": "Ship it in May"}
    )
    assert described.status_code == 200, described.text
    at = _projects_screen(email)
    switch_project(at, project["id"])
    at.button(key="rename_start").click().run()
    open_page(at, "tasks")
    open_page(at, "projects")
    assert_calm(at)
    assert at.text_area(key="rename_description").value == "Ship it in May"
    at.text_input(key="rename_name").input("Launch 2")
    at.button(key="rename_save").click().run()
    assert_calm(at)
    saved = use_api.project(headers, project["id"])
    assert (saved["name"], saved["description"]) == ("Launch 2", "Ship it in May")


def test_the_inbox_can_be_renamed(use_api: Api) -> None:
    email = use_api.register()
    headers = use_api.headers(email)
    at = _projects_screen(email)
    at.button(key="rename_start").click().run()
    at.text_input(key="rename_name").input("My own things")
    at.button(key="rename_save").click().run()
    assert_calm(at)
    assert use_api.project(headers, use_api.inbox_id(headers))["name"] == "My own things"
    assert switcher(at)[0] == "My own things"


def test_labels_for_editors_only(use_api: Api) -> None:
    owner_email = use_api.register()
    owner = use_api.headers(owner_email)
    project = use_api.create_project(owner, "Labelled")
    at = _projects_screen(owner_email)
    switch_project(at, project["id"])
    at.text_input(key="label_name").input("Urgent")
    at.text_input(key="label_color").input("#FF0000")
    at.button(key="add_label").click().run()
    assert_calm(at)
    assert successes(at) == ["Added the label “Urgent”."]
    labels = use_api.v2.get(f"/projects/{project['id']}/labels", headers=owner).json()["items"]
    assert [(label["name"], label["color"]) for label in labels] == [("Urgent", "#ff0000")]

    # The same name again, in any case: the API's 409, shown plainly.
    at.text_input(key="label_name").input("URGENT")
    at.button(key="add_label").click().run()
    assert_calm(at)
    assert at.error
    assert not at.success

    viewer_email = new_email()
    use_api.register(viewer_email)
    use_api.add_member(owner, project["id"], viewer_email, "viewer")
    viewer = _projects_screen(viewer_email)
    switch_project(viewer, project["id"])
    assert_calm(viewer)
    assert "Urgent" in markdown_text(viewer)
    for key in ("add_label", f"label_delete_{labels[0]['id']}", "rename_start"):
        assert not any(b.key == key for b in viewer.button), key
    assert any("it takes admin or above to rename" in c.value for c in viewer.caption)

    at.button(key=f"label_delete_{labels[0]['id']}").click().run()
    at.button(key=f"label_delete_{labels[0]['id']}_confirm").click().run()
    assert_calm(at)
    assert at.success
    assert use_api.v2.get(f"/projects/{project['id']}/labels", headers=owner).json()["items"] == []
