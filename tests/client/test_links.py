"""Links from a notification's mail (`PUBLIC_URL/?task=N`, `?project=N`): followed after
signing in, to the task (first on its project's list, its comments open) or the project; a
link to something the person may not see says so."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from links import PROJECT_NOT_OPEN, TASK_NOT_OPEN
from tests.client.conftest import (
    PASSWORD,
    Api,
    assert_calm,
    new_app,
    switch_project,
)
from tests.client.test_tasks import shown_ids


def _signed_in_through(link: dict[str, str], email: str) -> AppTest:
    """The client opened at a link while signed out, then the person signing in."""
    at = new_app()
    at.query_params.update(link)
    at.run()
    at.text_input(key="login_email").input(email)
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    assert_calm(at)
    return at


def _current_project(at: AppTest) -> int:
    return int(at.sidebar.selectbox(key="project_switch").value)


def test_a_task_link_opens_the_task_first_with_its_comments(use_api: Api) -> None:
    owner_email, member_email = use_api.register(), use_api.register()
    owner = use_api.headers(owner_email)
    project = use_api.create_project(owner, "Launch")
    use_api.add_member(owner, project["id"], member_email, "editor")
    linked = use_api.create_v2_task(owner, title="Buried deep", project_id=project["id"])
    for number in range(25):  # newer: the linked task is not on the list's first page
        use_api.create_v2_task(owner, title=f"Newer {number}", project_id=project["id"])

    at = _signed_in_through({"task": str(linked["id"])}, member_email)

    assert _current_project(at) == project["id"]
    assert shown_ids(at)[0] == linked["id"]
    assert any(area.key == f"comment_body_{linked['id']}" for area in at.text_area)
    assert at.toggle(key=f"history_open_{linked['id']}").value  # its history shown too
    assert not [info for info in at.info if info.value in (TASK_NOT_OPEN, PROJECT_NOT_OPEN)]
    at.run()  # followed once: the address no longer holds it
    assert dict(at.query_params) == {}
    at.button(key="linked_task_close").click().run()
    assert_calm(at)
    assert linked["id"] not in shown_ids(at)


def test_a_link_to_what_the_person_may_not_see_says_so(use_api: Api) -> None:
    owner_email, outsider_email = use_api.register(), use_api.register()
    owner = use_api.headers(owner_email)
    project = use_api.create_project(owner, "Private")
    task = use_api.create_v2_task(owner, title="Not yours", project_id=project["id"])
    outsider_inbox = use_api.inbox_id(use_api.headers(outsider_email))

    for link, message in (
        ({"task": str(task["id"])}, TASK_NOT_OPEN),
        ({"task": "not-a-number"}, TASK_NOT_OPEN),
        ({"project": str(project["id"])}, PROJECT_NOT_OPEN),
    ):
        at = _signed_in_through(link, outsider_email)
        assert [info.value for info in at.info][:1] == [message]
        assert _current_project(at) == outsider_inbox
        assert task["id"] not in shown_ids(at)


def test_a_project_link_opens_the_project(use_api: Api) -> None:
    owner_email = use_api.register()
    owner = use_api.headers(owner_email)
    first = use_api.create_project(owner, "First")
    use_api.create_project(owner, "Second")

    at = _signed_in_through({"project": str(first["id"])}, owner_email)
    assert _current_project(at) == first["id"]
    assert not [info for info in at.info if info.value in (TASK_NOT_OPEN, PROJECT_NOT_OPEN)]
    switch_project(at, use_api.inbox_id(owner))  # the link does not hold the person there
    assert_calm(at)
    assert _current_project(at) == use_api.inbox_id(owner)
