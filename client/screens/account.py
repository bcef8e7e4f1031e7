"""Signing up and logging in: the only screen a signed-out person sees."""

from __future__ import annotations

import streamlit as st

from api_client import ApiSession, register
from ui import FLASH_LOGIN, SESSION, act, feedback, field_error, remember, show_feedback

MODES = ("Log in", "Create account")
MODE_KEY = "auth_mode"


def render() -> None:
    st.title("Tasks")
    message = st.session_state.pop(FLASH_LOGIN, None)
    if message:
        st.info(message, icon=":material/info:")
    mode = st.radio("Account", MODES, key=MODE_KEY, horizontal=True, label_visibility="collapsed")
    if mode == "Create account":
        _sign_up_form()
    else:
        _log_in_form()


def _log_in() -> None:
    state = st.session_state
    email = str(state.get("login_email", "")).strip()
    session = ApiSession.log_in(email, str(state.get("login_password", "")))
    state[SESSION] = session
    state["login_password"] = ""


def _log_in_form() -> None:
    error, success = feedback("login")
    with st.form("login_form"):
        st.subheader("Log in")
        st.text_input("Email", key="login_email", autocomplete="username")
        field_error(error, "username")
        st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        field_error(error, "password")
        st.form_submit_button(
            "Log in", type="primary", key="login_submit", on_click=act, args=("login", _log_in)
        )
        show_feedback(error, success, shown_fields=("username", "password"))


def _sign_up() -> None:
    state = st.session_state
    full_name = str(state.get("signup_full_name", "")).strip()
    user = register(
        str(state.get("signup_email", "")).strip(),
        str(state.get("signup_password", "")),
        full_name or None,
    )
    # Straight to the login form, the new address already filled in.
    state[MODE_KEY] = "Log in"
    state["login_email"] = user["email"]
    state["signup_password"] = ""
    remember("login", success=f"Account created for {user['email']}. Log in to start.")


def _sign_up_form() -> None:
    error, success = feedback("signup")
    with st.form("signup_form"):
        st.subheader("Create an account")
        st.text_input("Email", key="signup_email", autocomplete="email")
        field_error(error, "email")
        st.text_input(
            "Password",
            type="password",
            key="signup_password",
            autocomplete="new-password",
            help="15 to 128 characters. A passphrase of a few words works well.",
        )
        field_error(error, "password")
        st.text_input("Full name", key="signup_full_name", autocomplete="name")
        field_error(error, "full_name")
        st.form_submit_button(
            "Create account",
            type="primary",
            key="signup_submit",
            on_click=act,
            args=("signup", _sign_up),
        )
        show_feedback(
            error,
            success,
            shown_fields=("email", "password", "full_name"),
        )
