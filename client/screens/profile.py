"""The signed-in person's profile: change the name, change the password.

A password change ends every earlier token of the account (the API's rule), so right after it
the client logs in again with the new password, into the same session object that app.py
handed to every screen; the person stays signed in.
"""

from __future__ import annotations

import functools

import streamlit as st

from api_client import ApiSession
from task_fields import plain
from ui import act, feedback, field_error, remember, show_feedback


def _save_name(session: ApiSession) -> None:
    session.update_me({"full_name": str(st.session_state.get("profile_full_name", ""))})
    remember("profile_name", success="Name saved.")


def _change_password(session: ApiSession) -> None:
    state = st.session_state
    new_password = str(state.get("profile_new_password", ""))
    session.update_me(
        {
            "password": new_password,
            "current_password": str(state.get("profile_current_password", "")),
        }
    )
    state["profile_new_password"] = ""
    state["profile_current_password"] = ""
    session.log_in_again(new_password)
    remember("profile_password", success="Password changed. Other sessions were signed out.")


def render(session: ApiSession) -> None:
    user = session.user
    email = plain(str(user.get("email", session.email)))
    st.markdown(f"**Email:** {email}  \n**Role:** {user.get('role')}")
    if "profile_full_name" not in st.session_state:
        st.session_state["profile_full_name"] = user.get("full_name") or ""

    error, success = feedback("profile_name")
    with st.form("profile_name_form"):
        st.subheader("Name")
        st.text_input("Full name", key="profile_full_name")
        field_error(error, "full_name")
        st.form_submit_button(
            "Save name",
            key="profile_save_name",
            on_click=act,
            args=("profile_name", functools.partial(_save_name, session)),
        )
        show_feedback(error, success, shown_fields=("full_name",))

    error, success = feedback("profile_password")
    with st.form("profile_password_form"):
        st.subheader("Password")
        st.text_input(
            "Current password",
            type="password",
            key="profile_current_password",
            autocomplete="current-password",
        )
        field_error(error, "current_password")
        st.text_input(
            "New password",
            type="password",
            key="profile_new_password",
            autocomplete="new-password",
            help="15 to 128 characters. A passphrase of a few words works well.",
        )
        field_error(error, "password")
        st.form_submit_button(
            "Change password",
            key="profile_change_password",
            on_click=act,
            args=("profile_password", functools.partial(_change_password, session)),
        )
        show_feedback(error, success, shown_fields=("current_password", "password"))
