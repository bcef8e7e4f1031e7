"""The Members screen (/members) and the Invitations screen (/invitations): inviting by email,
accepting and declining, changing a role, removing, leaving; the controls a role does not
allow are not drawn, and a 403 that happens anyway is shown with both roles."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest

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
    unescaped,
)


def _team(api: Api, name: str = "Launch") -> tuple[str, dict[str, str], dict[str, Any]]:
    """A new owner (email, headers) and their new project."""
    email = api.register()
    headers = api.headers(email)
    return email, headers, api.create_project(headers, name)


def _members_screen(email: str, project_id: int | None = None) -> AppTest:
    at = logged_in_app(email)
    if project_id is not None:
        switch_project(at, project_id)
    open_page(at, "members")
    assert_calm(at)
    assert at.header[0].value == "Members"
    return at


def _keys(at: AppTest) -> set[str]:
    return {widget.key for widget in at.button if widget.key}


def test_invite_accept_and_the_project_appears(use_api: Api) -> None:
    owner_email, owner, project = _team(use_api)
    invitee = new_email()  # no account yet: invitations go to an address
    at = _members_screen(owner_email, project["id"])
    at.text_input(key="invite_email").input(invitee)
    at.selectbox(key="invite_role").set_value("commenter")
    at.button(key="invite_submit").click().run()
    assert_calm(at)
    assert successes(at)[0].startswith(f"Invited {invitee} as commenter.")
    assert invitee in markdown_text(at)  # under Pending invitations
    assert at.text_input(key="invite_email").value == ""

    use_api.register(invitee)
    guest = logged_in_app(invitee)
    assert switcher(guest) == ["Inbox"]
    open_page(guest, "invitations")
    assert_calm(guest)
    (invitation,) = use_api.invitations(use_api.headers(invitee))
    assert "Launch" in markdown_text(guest)
    assert "as commenter" in markdown_text(guest)
    guest.button(key=f"accept_{invitation['id']}").click().run()
    assert_calm(guest)
    assert successes(guest) == ["You joined Launch as commenter."]
    assert switcher(guest) == ["Inbox", "Launch"]
    assert guest.sidebar.selectbox(key="project_switch").value == project["id"]
    assert use_api.members(owner, project["id"])[invitee] == "commenter"
    infos = [unescaped(i.value) for i in guest.info]  # the address is escaped
    assert infos == [f"No invitation is waiting for {invitee}."]

    at.run()  # the owner's page: a member now, no longer pending
    assert invitee in markdown_text(at)
    assert f"revoke_{invitation['id']}" not in _keys(at)


def test_decline_and_revoke(use_api: Api) -> None:
    owner_email, owner, project = _team(use_api)
    declining, revoked = use_api.register(), use_api.register()
    for email in (declining, revoked):
        answer = use_api.v2.post(
            f"/projects/{project['id']}/invitations",
            headers=owner,
            json={"email": email, "role": "editor"},
        )
        assert answer.status_code == 201, answer.text

    guest = logged_in_app(declining)
    open_page(guest, "invitations")
    (invitation,) = use_api.invitations(use_api.headers(declining))
    guest.button(key=f"decline_{invitation['id']}").click().run()
    assert_calm(guest)
    assert successes(guest) == ["Declined the invitation to Launch."]
    assert switcher(guest) == ["Inbox"]
    assert use_api.invitations(use_api.headers(declining)) == []

    at = _members_screen(owner_email, project["id"])
    (pending,) = use_api.invitations(use_api.headers(revoked))
    at.button(key=f"revoke_{pending['id']}").click().run()
    assert_calm(at)
    assert successes(at) == [f"Revoked the invitation of {revoked}."]
    assert use_api.invitations(use_api.headers(revoked)) == []


def test_inviting_a_member_again_shows_the_409(use_api: Api) -> None:
    owner_email, owner, project = _team(use_api)
    member = use_api.register()
    use_api.add_member(owner, project["id"], member, "editor")
    answer = use_api.v2.post(
        f"/projects/{project['id']}/invitations",
        headers=owner,
        json={"email": member, "role": "viewer"},
    )
    assert answer.status_code == 409
    at = _members_screen(owner_email, project["id"])
    at.text_input(key="invite_email").input(member)
    at.button(key="invite_submit").click().run()
    assert_calm(at)
    assert answer.json()["detail"] in [e.value for e in at.error]
    assert not at.success


def test_the_inbox_cannot_be_shared(use_api: Api) -> None:
    email = use_api.register()
    at = _members_screen(email)
    assert email in markdown_text(at)
    assert any("cannot be shared" in i.value for i in at.info)
    assert not any(w.key == "invite_email" for w in at.text_input)
    assert not any(key.startswith("leave_") for key in _keys(at))


def test_change_a_role_remove_and_leave(use_api: Api) -> None:
    owner_email, owner, project = _team(use_api)
    pid = project["id"]
    promoted, removed, leaving = (use_api.register() for _ in range(3))
    ids = {}
    for email in (promoted, removed, leaving):
        ids[email] = use_api.user_id(use_api.add_member(owner, pid, email, "viewer"))

    at = _members_screen(owner_email, pid)
    at.selectbox(key=f"member_role_{ids[promoted]}").set_value("editor")
    at.button(key=f"change_role_{ids[promoted]}").click().run()
    assert_calm(at)
    assert successes(at)[0].endswith("is now editor.")
    assert use_api.members(owner, pid)[promoted] == "editor"

    at.button(key=f"remove_{ids[removed]}").click().run()
    assert use_api.members(owner, pid)[removed]  # asked first, nothing done yet
    at.button(key=f"remove_{ids[removed]}_confirm").click().run()
    assert_calm(at)
    assert successes(at)[0].startswith("Removed ")
    assert removed not in use_api.members(owner, pid)
    assert removed not in markdown_text(at)

    # The last owner may not leave (the API's 409): the button says so instead of failing.
    owner_id = use_api.user_id(owner)
    assert at.button(key=f"leave_{owner_id}").disabled
    assert (
        use_api.v2.delete(f"/projects/{pid}/members/{owner_id}", headers=owner).status_code == 409
    )

    mine = _members_screen(leaving, pid)
    assert not any(k.startswith(("remove_", "change_role_")) for k in _keys(mine))
    mine.button(key=f"leave_{ids[leaving]}").click().run()
    mine.button(key=f"leave_{ids[leaving]}_confirm").click().run()
    assert_calm(mine)
    assert successes(mine) == ["You left Launch."]
    assert switcher(mine) == ["Inbox"]
    assert leaving not in use_api.members(owner, pid)


def test_an_admin_manages_only_those_below(use_api: Api) -> None:
    owner_email, owner, project = _team(use_api)
    pid = project["id"]
    admin, other_admin, editor = (use_api.register() for _ in range(3))
    ids = {owner_email: use_api.user_id(owner)}
    for email, role in ((admin, "admin"), (other_admin, "admin"), (editor, "editor")):
        ids[email] = use_api.user_id(use_api.add_member(owner, pid, email, role))

    at = _members_screen(admin, pid)
    keys = _keys(at)
    for untouchable in (owner_email, other_admin):
        assert f"remove_{ids[untouchable]}" not in keys
        assert f"change_role_{ids[untouchable]}" not in keys
    assert f"remove_{ids[editor]}" in keys
    # Roles strictly below their own only.
    assert at.selectbox(key=f"member_role_{ids[editor]}").options == [
        "editor",
        "commenter",
        "viewer",
    ]
    assert at.selectbox(key="invite_role").options == ["editor", "commenter", "viewer"]


def test_viewer_sees_members_but_no_controls(use_api: Api) -> None:
    owner_email, owner, project = _team(use_api)
    viewer = use_api.register()
    use_api.add_member(owner, project["id"], viewer, "viewer")
    at = _members_screen(viewer, project["id"])
    assert owner_email in markdown_text(at)
    assert not any(k.startswith(("remove_", "change_role_", "revoke_")) for k in _keys(at))
    assert not any(w.key == "invite_email" for w in at.text_input)
    assert "Pending invitations" not in [s.value for s in at.subheader]


def test_a_403_after_a_demotion_is_shown_plainly(use_api: Api) -> None:
    """The page was drawn for an admin; meanwhile they became a viewer. The control is still on
    their page: the API's 403 is shown, with their role and the role it needs."""
    owner_email, owner, project = _team(use_api)
    pid = project["id"]
    admin, editor = use_api.register(), use_api.register()
    admin_id = use_api.user_id(use_api.add_member(owner, pid, admin, "admin"))
    editor_id = use_api.user_id(use_api.add_member(owner, pid, editor, "editor"))
    at = _members_screen(admin, pid)

    at.button(key=f"remove_{editor_id}").click().run()  # asked; demoted before answering
    use_api.set_role(owner, pid, admin_id, "viewer")
    at.button(key=f"remove_{editor_id}_confirm").click().run()
    assert_calm(at)
    (message,) = [e.value for e in at.error]
    assert "Your role in this project is viewer; this needs admin or above." in message
    assert use_api.members(owner, pid)[editor] == "editor"  # nothing changed
    # The page drawn next follows the new role.
    assert f"remove_{editor_id}" not in _keys(at)


def test_a_hostile_project_name_is_shown_literally(use_api: Api) -> None:
    """Someone else names the project: in the invitation, the switcher and the messages it is
    text, never a link or an image fetched from elsewhere."""
    hostile = "**Free** ![x](http://127.0.0.9/x.png) [win](http://127.0.0.9/)"
    _email, owner, project = _team(use_api, hostile)
    invitee = use_api.register()
    answer = use_api.v2.post(
        f"/projects/{project['id']}/invitations",
        headers=owner,
        json={"email": invitee, "role": "viewer"},
    )
    assert answer.status_code == 201, answer.text
    at = logged_in_app(invitee)
    open_page(at, "invitations")
    assert hostile in markdown_text(at)  # all of it, as typed

    def raw_markdown() -> list[str]:
        shown = [*at.markdown, *at.success, *at.info, *at.caption]
        return [element.value for element in shown if "](" in element.value]

    assert raw_markdown() == []
    at.button(key=f"accept_{answer.json()['id']}").click().run()
    assert_calm(at)
    assert successes(at) == [f"You joined {hostile} as viewer."]
    assert raw_markdown() == []
    assert switcher(at) == ["Inbox", hostile]  # a select box shows its options as text
    open_page(at, "members")
    assert_calm(at)
    assert raw_markdown() == []


def test_a_removed_member_is_taken_back_to_the_inbox(use_api: Api) -> None:
    _owner_email, owner, project = _team(use_api)
    member = use_api.register()
    member_id = use_api.user_id(use_api.add_member(owner, project["id"], member, "editor"))
    use_api.create_v2_task(owner, project_id=project["id"], title="Team secret")
    at = logged_in_app(member)
    switch_project(at, project["id"])
    assert "Team secret" in markdown_text(at)

    removed = use_api.v2.delete(f"/projects/{project['id']}/members/{member_id}", headers=owner)
    assert removed.status_code == 204, removed.text
    at.run()  # the very next request
    assert_calm(at)
    assert any("no longer open to you" in i.value for i in at.info)
    assert switcher(at) == ["Inbox"]
    assert "Team secret" not in markdown_text(at)
    at.run()  # said once
    assert not any("no longer open to you" in i.value for i in at.info)


def test_a_question_asked_in_one_project_is_not_asked_in_another(use_api: Api) -> None:
    """ "Remove Kim?" asked in Launch, then the person switches to Ops, where Kim is a member
    too: Ops shows no question, and nothing can confirm the removal there by accident."""
    owner_email = use_api.register()
    owner = use_api.headers(owner_email)
    kim = use_api.register()
    launch = use_api.create_project(owner, "Launch")
    ops = use_api.create_project(owner, "Ops")
    kim_id = use_api.user_id(use_api.add_member(owner, launch["id"], kim, "editor"))
    use_api.add_member(owner, ops["id"], kim, "editor")
    at = _members_screen(owner_email, launch["id"])
    at.button(key=f"remove_{kim_id}").click().run()
    assert f"remove_{kim_id}_confirm" in _keys(at)

    switch_project(at, ops["id"])
    assert_calm(at)
    assert f"remove_{kim_id}_confirm" not in _keys(at)
    assert not at.warning
    switch_project(at, launch["id"])  # back: the question was dropped with the switch
    assert f"remove_{kim_id}_confirm" not in _keys(at)
    assert kim in use_api.members(owner, launch["id"])
    assert kim in use_api.members(owner, ops["id"])
