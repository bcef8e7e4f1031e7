"""The current project's members: who is in it at which role, inviting by email, changing a
role, removing a member, leaving, and the invitations still pending.

Only what the person's role allows is drawn (spec section 2): an admin changes and removes
members below them and grants roles below their own; an owner anyone and any role. The API
still decides, and a refusal it sends (a role lowered meanwhile) is shown as it comes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from task_fields import parse_timestamp, plain
from ui import (
    PROJECT,
    act,
    ask_first,
    confirmation,
    feedback,
    field_error,
    remember,
    show_feedback,
    show_read_error,
)
from workspace import Workspace, member_name

SCOPE = "members"


def _change_role(session: ApiSession, project_id: int, member: dict[str, Any]) -> None:
    user = member["user"]
    role = str(st.session_state.get(f"member_role_{user['id']}"))
    session.change_role(project_id, user["id"], role)
    remember(SCOPE, success=f"{member_name(user)} is now {role}.")


def _remove(session: ApiSession, project_id: int, member: dict[str, Any]) -> None:
    session.remove_member(project_id, member["user"]["id"])
    remember(SCOPE, success=f"Removed {member_name(member['user'])} from the project.")


def _leave(session: ApiSession, project: dict[str, Any], user_id: int) -> None:
    session.remove_member(project["id"], user_id)
    st.session_state.pop(PROJECT, None)  # back to the Inbox: the project is no longer seen
    remember(SCOPE, success=f"You left {project['name']}.")


def _invite(session: ApiSession, project_id: int) -> None:
    state = st.session_state
    email = str(state.get("invite_email", "")).strip()
    invitation = session.invite(project_id, email, str(state.get("invite_role")))
    state["invite_email"] = ""
    remember(
        "invite",
        success=f"Invited {invitation['email']} as {invitation['role']}. "
        "They will see the invitation when they sign in with that address.",
    )


def _revoke(session: ApiSession, project_id: int, invitation: dict[str, Any]) -> None:
    session.revoke_invitation(project_id, invitation["id"])
    remember("invite", success=f"Revoked the invitation of {invitation['email']}.")


def _in_scope(action: Callable[..., None], *args: Any) -> tuple[str, Callable[[], None]]:
    """A button's on_click args: `act` runs `action` and reports it on this screen."""
    return SCOPE, functools.partial(action, *args)


def render(workspace: Workspace) -> None:
    session, project = workspace.session, workspace.project
    st.caption(f"Members of **{plain(str(project['name']))}**, owners first.")
    try:
        members = session.all_members(workspace.project_id)
    except ApiError as exc:
        show_read_error(exc, retry_key="members_retry")
        return
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    owners = sum(member["role"] == workspace.roles.top for member in members)
    for member in members:
        _member_row(workspace, member, last_owner=owners == 1)
    if workspace.is_inbox:
        st.info(
            "Your Inbox is yours alone: it cannot be shared. Create a project on the Projects "
            "screen to work on tasks with other people.",
            icon=":material/lock:",
        )
        return
    if workspace.may("invitation.create"):
        _invite_form(workspace)
    if workspace.may("invitation.read"):
        _pending(workspace)


def _member_row(workspace: Workspace, member: dict[str, Any], *, last_owner: bool) -> None:
    session, project_id = workspace.session, workspace.project_id
    user = member["user"]
    user_id = int(user["id"])
    role = str(member["role"])
    is_me = user_id == workspace.me
    with st.container(border=True, key=f"member_{user_id}"):
        text_col, role_col, change_col, remove_col = st.columns(
            [5, 2, 1.5, 1.5], vertical_alignment="center"
        )
        you = " (you)" if is_me else ""
        text_col.markdown(f"**{plain(member_name(user))}**{you}  \n{plain(role)}")
        if is_me:
            if not workspace.is_inbox:
                # The last owner cannot leave (the API's rule): said here, before they try.
                stays = last_owner and workspace.is_owner()
                remove_col.button(
                    "Leave project",
                    key=f"leave_{user_id}",
                    disabled=stays,
                    help="You are its last owner: make someone else an owner first."
                    if stays
                    else None,
                    on_click=ask_first,
                    args=(f"leave_{user_id}",),
                    width="stretch",
                )
                scope, leave = _in_scope(_leave, session, workspace.project, user_id)
                confirmation(
                    f"leave_{user_id}",
                    f"Leave “{plain(str(workspace.project['name']))}”? You will no longer see "
                    "it; someone who manages its members can invite you again.",
                    confirm="Leave",
                    scope=scope,
                    action=leave,
                )
            return
        if not workspace.may_manage(role):
            return
        grantable = workspace.grantable()
        if workspace.may("member.update") and grantable:
            choices = grantable if role in grantable else [role, *grantable]
            role_col.selectbox(
                "Role",
                choices,
                index=choices.index(role),
                key=f"member_role_{user_id}",
                label_visibility="collapsed",
            )
            change_col.button(
                "Change role",
                key=f"change_role_{user_id}",
                on_click=act,
                args=_in_scope(_change_role, session, project_id, member),
                width="stretch",
            )
        if workspace.may("member.delete"):
            remove_col.button(
                "Remove",
                key=f"remove_{user_id}",
                on_click=ask_first,
                args=(f"remove_{user_id}",),
                width="stretch",
            )
            scope, remove = _in_scope(_remove, session, project_id, member)
            confirmation(
                f"remove_{user_id}",
                f"Remove {plain(member_name(user))} from the project? They will no longer see "
                "it, and their assignments in it go.",
                confirm="Remove",
                scope=scope,
                action=remove,
            )


def _invite_form(workspace: Workspace) -> None:
    error, success = feedback("invite")
    grantable = workspace.grantable()
    with st.form("invite_form"):
        st.subheader("Invite someone")
        email_col, role_col = st.columns([3, 1])
        with email_col:
            st.text_input("Email", key="invite_email", autocomplete="off")
            field_error(error, "email")
        with role_col:
            default = "editor" if "editor" in grantable else grantable[-1]
            st.selectbox("Role", grantable, index=grantable.index(default), key="invite_role")
            field_error(error, "role")
        st.form_submit_button(
            "Invite",
            type="primary",
            key="invite_submit",
            on_click=act,
            args=("invite", functools.partial(_invite, workspace.session, workspace.project_id)),
        )
        show_feedback(error, success, shown_fields=("email", "role"))


def _pending(workspace: Workspace) -> None:
    session, project_id = workspace.session, workspace.project_id
    try:
        invitations = session.project_invitations(project_id)
    except ApiError as exc:
        show_read_error(exc, retry_key="invitations_retry")
        return
    st.subheader("Pending invitations")
    if not invitations:
        st.caption("No invitation is waiting for an answer.")
    may_revoke = workspace.may("invitation.delete")
    for invitation in invitations:
        invitation_id = invitation["id"]
        with st.container(border=True, key=f"pending_{invitation_id}"):
            text_col, button_col = st.columns([8, 1.5], vertical_alignment="center")
            expires = parse_timestamp(invitation.get("expires_at"))
            until = f" · until {expires:%Y-%m-%d}" if expires else ""
            text_col.markdown(
                f"**{plain(str(invitation['email']))}** as {plain(str(invitation['role']))}"
                + plain(until)
            )
            if may_revoke:
                button_col.button(
                    "Revoke",
                    key=f"revoke_{invitation_id}",
                    on_click=act,
                    args=("invite", functools.partial(_revoke, session, project_id, invitation)),
                    width="stretch",
                )
