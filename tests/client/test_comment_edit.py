"""Editing one's own comment under a task (the task list's Comments panel), against the real
API: Edit only on one's own comments (for commenters and above), the new text shown and marked
"edited", the API's 422 under the text area with the text kept, and a 403 after a demotion
shown plainly."""

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
    successes,
    switch_project,
)


@dataclass
class Talk:
    """A project with an owner and a commenter, a task, and a comment by each."""

    project_id: int
    task_id: int
    emails: dict[str, str]
    headers: dict[str, dict[str, str]]
    comment_ids: dict[str, int]


@pytest.fixture
def talk(use_api: Api) -> Talk:
    owner_email = use_api.register()
    owner = use_api.headers(owner_email)
    project = use_api.create_project(owner, "Launch")
    commenter_email = use_api.register()
    commenter = use_api.add_member(owner, project["id"], commenter_email, "commenter")
    task = use_api.create_v2_task(owner, project_id=project["id"], title="Plan")
    emails = {"owner": owner_email, "commenter": commenter_email}
    headers = {"owner": owner, "commenter": commenter}
    comment_ids = {}
    for who, body in (("owner", "Owner's note"), ("commenter", "Lokos good")):
        response = use_api.v2.post(
            f"/tasks/{task['id']}/comments", headers=headers[who], json={"body": body}
        )
        assert response.status_code == 201, response.text
        comment_ids[who] = int(response.json()["id"])
    return Talk(project["id"], task["id"], emails, headers, comment_ids)


def _comments_open(talk: Talk, who: str) -> AppTest:
    at = logged_in_app(talk.emails[who])
    switch_project(at, talk.project_id)
    at.button(key=f"comments_{talk.task_id}").click().run()
    assert_calm(at)
    return at


def _keys(at: AppTest) -> set[str]:
    return {button.key for button in at.button if button.key}


def test_edit_own_comment(use_api: Api, talk: Talk) -> None:
    mine = talk.comment_ids["commenter"]
    at = _comments_open(talk, "commenter")
    assert "edited" not in markdown_text(at)
    at.button(key=f"comment_edit_{mine}").click().run()
    assert_calm(at)
    assert at.text_area(key=f"comment_edit_body_{mine}").value == "Lokos good"

    at.text_area(key=f"comment_edit_body_{mine}").input("Looks *good*")
    at.button(key=f"comment_save_{mine}").click().run()
    assert_calm(at)
    assert successes(at) == ["Comment saved."]
    assert use_api.comments(talk.headers["owner"], talk.task_id) == ["Owner's note", "Looks *good*"]
    assert not any(w.key == f"comment_edit_body_{mine}" for w in at.text_area)  # closed
    shown = markdown_text(at)
    assert "Looks *good*" in shown  # literally, no emphasis
    assert "Lokos good" not in shown
    # The edited one says so; the other does not.
    (edited,) = [line for line in shown.splitlines() if "edited" in line]
    assert "UTC · edited" in edited
    assert shown.count("edited") == 1

    # Cancel changes nothing.
    at.button(key=f"comment_edit_{mine}").click().run()
    at.text_area(key=f"comment_edit_body_{mine}").input("Never mind")
    at.button(key=f"comment_cancel_{mine}").click().run()
    assert_calm(at)
    assert not any(w.key == f"comment_edit_body_{mine}" for w in at.text_area)
    assert use_api.comments(talk.headers["owner"], talk.task_id)[1] == "Looks *good*"


def test_no_edit_control_on_someone_elses_comment(talk: Talk) -> None:
    owner_note, commenter_note = talk.comment_ids["owner"], talk.comment_ids["commenter"]
    commenter = _comments_open(talk, "commenter")
    assert f"comment_edit_{commenter_note}" in _keys(commenter)
    assert f"comment_edit_{owner_note}" not in _keys(commenter)

    # The owner may delete anyone's comment, but edit only their own.
    owner = _comments_open(talk, "owner")
    assert {f"comment_delete_{owner_note}", f"comment_delete_{commenter_note}"} <= _keys(owner)
    assert f"comment_edit_{owner_note}" in _keys(owner)
    assert f"comment_edit_{commenter_note}" not in _keys(owner)


def test_an_empty_comment_is_refused_under_its_field(use_api: Api, talk: Talk) -> None:
    mine = talk.comment_ids["commenter"]
    at = _comments_open(talk, "commenter")
    at.button(key=f"comment_edit_{mine}").click().run()
    at.text_area(key=f"comment_edit_body_{mine}").input("   ")
    at.button(key=f"comment_save_{mine}").click().run()
    assert_calm(at)
    assert element_after(at, f"comment_edit_body_{mine}").type == "error"
    assert not at.success
    # Still open with the text as typed; nothing changed on the server.
    assert at.text_area(key=f"comment_edit_body_{mine}").value == "   "
    assert use_api.comments(talk.headers["owner"], talk.task_id)[1] == "Lokos good"


def test_a_403_after_a_demotion_is_shown_plainly(use_api: Api, talk: Talk) -> None:
    mine = talk.comment_ids["commenter"]
    at = _comments_open(talk, "commenter")
    at.button(key=f"comment_edit_{mine}").click().run()
    at.text_area(key=f"comment_edit_body_{mine}").input("Looks good")
    commenter_id = use_api.user_id(talk.headers["commenter"])
    use_api.set_role(talk.headers["owner"], talk.project_id, commenter_id, "viewer")
    at.button(key=f"comment_save_{mine}").click().run()
    assert_calm(at)
    (message,) = [e.value for e in at.error]
    assert "Your role in this project is viewer; this needs commenter or above." in message
    assert not at.success
    assert use_api.comments(talk.headers["owner"], talk.task_id)[1] == "Lokos good"
    assert f"comment_edit_{mine}" not in _keys(at)  # the page now follows the new role


def test_an_edit_of_a_comment_deleted_meanwhile_gives_the_text_back(
    use_api: Api, talk: Talk
) -> None:
    """The comment's form is not drawn again once it is gone: the person was told only
    "Comment not found." and the text typed was lost."""
    mine = talk.comment_ids["commenter"]
    at = _comments_open(talk, "commenter")
    at.button(key=f"comment_edit_{mine}").click().run()
    at.text_area(key=f"comment_edit_body_{mine}").input("A long *careful* answer")
    deleted = use_api.v2.delete(
        f"/tasks/{talk.task_id}/comments/{mine}", headers=talk.headers["owner"]
    )
    assert deleted.status_code == 204, deleted.text

    at.button(key=f"comment_save_{mine}").click().run()
    assert_calm(at)
    (said,) = [e.value for e in at.error]
    assert "deleted meanwhile" in said
    assert "A long \\*careful\\* answer" in said  # as typed, no emphasis
    assert not any(w.key == f"comment_edit_body_{mine}" for w in at.text_area)
    assert use_api.comments(talk.headers["owner"], talk.task_id) == ["Owner's note"]
