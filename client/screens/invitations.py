"""Invitations addressed to the signed-in person's email, to accept (the project then appears in
the switcher, and is opened) or decline."""

from __future__ import annotations

import functools
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from task_fields import parse_timestamp, plain
from ui import PROJECT, act, feedback, remember, show_feedback, show_read_error
from workspace import Workspace

SCOPE = "my_invitations"


def _accept(session: ApiSession, invitation: dict[str, Any]) -> None:
    member = session.accept_invitation(invitation["id"])
    project = invitation["project"]
    st.session_state[PROJECT] = project["id"]  # open the project just joined
    remember(SCOPE, success=f"You joined {project['name']} as {member['role']}.")


def _decline(session: ApiSession, invitation: dict[str, Any]) -> None:
    session.decline_invitation(invitation["id"])
    remember(SCOPE, success=f"Declined the invitation to {invitation['project']['name']}.")


def _inviter(invitation: dict[str, Any]) -> str:
    inviter = invitation.get("invited_by") or {}
    return str(inviter.get("full_name") or "a member")


def render(workspace: Workspace) -> None:
    session = workspace.session
    try:
        invitations = session.my_invitations()
    except ApiError as exc:
        show_read_error(exc, retry_key="my_invitations_retry")
        return
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    if not invitations:
        st.info(f"No invitation is waiting for {plain(session.email)}.", icon=":material/mail:")
        return
    for invitation in invitations:
        invitation_id = invitation["id"]
        expires = parse_timestamp(invitation.get("expires_at"))
        until = f" Open until {expires:%Y-%m-%d}." if expires else ""
        with st.container(border=True, key=f"invitation_{invitation_id}"):
            text_col, accept_col, decline_col = st.columns(
                [7, 1.5, 1.5], vertical_alignment="center"
            )
            text_col.markdown(
                f"**{plain(str(invitation['project']['name']))}**  \n"
                + plain(f"Invited by {_inviter(invitation)} as {invitation['role']}.{until}")
            )
            accept_col.button(
                "Accept",
                key=f"accept_{invitation_id}",
                type="primary",
                on_click=act,
                args=(SCOPE, functools.partial(_accept, session, invitation)),
                width="stretch",
            )
            decline_col.button(
                "Decline",
                key=f"decline_{invitation_id}",
                on_click=act,
                args=(SCOPE, functools.partial(_decline, session, invitation)),
                width="stretch",
            )
