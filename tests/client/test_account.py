"""The account screen: sign up, log in, log out, and the session renewing (or ending) itself."""

from __future__ import annotations

import jwt
from streamlit.testing.v1 import AppTest

from app.core.security import create_access_token
from tests.client.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    Api,
    assert_calm,
    element_after,
    logged_in_app,
    markdown_text,
    new_app,
    new_email,
    open_page,
    successes,
)

SESSION_ENDED = "Your session has ended. Please log in again."


def _sign_up(email: str, password: str = PASSWORD, full_name: str = "") -> AppTest:
    at = new_app().run()
    at.radio(key="auth_mode").set_value("Create account").run()
    at.text_input(key="signup_email").input(email)
    at.text_input(key="signup_password").input(password)
    at.text_input(key="signup_full_name").input(full_name)
    at.button(key="signup_submit").click().run()
    assert_calm(at)
    return at


def _log_in(at: AppTest, email: str, password: str) -> AppTest:
    at.text_input(key="login_email").input(email)
    at.text_input(key="login_password").input(password)
    at.button(key="login_submit").click().run()
    assert_calm(at)
    return at


def _on_login_form(at: AppTest) -> bool:
    return any(widget.key == "login_email" for widget in at.text_input)


def _user_id(api: Api, email: str) -> int:
    user_id: int = api.http.get("/users/me", headers=api.headers(email)).json()["id"]
    return user_id


def test_sign_up_then_login_form_prefilled(use_api: Api) -> None:
    email = new_email()
    at = _sign_up(email, full_name="Ada Lovelace")
    assert at.radio(key="auth_mode").value == "Log in"
    assert at.text_input(key="login_email").value == email
    assert successes(at) == [f"Account created for {email}. Log in to start."]
    me = use_api.http.get("/users/me", headers=use_api.headers(email)).json()
    assert me["full_name"] == "Ada Lovelace"

    _log_in(at, email, PASSWORD)
    assert f"Signed in as **{email}**" in markdown_text(at.sidebar)
    assert not _on_login_form(at)


def test_duplicate_email_shows_the_409_detail(use_api: Api) -> None:
    email = use_api.register()
    answer = use_api.http.post("/users", json={"email": email.upper(), "password": PASSWORD})
    assert answer.status_code == 409
    at = _sign_up(email.upper())
    assert [e.value for e in at.error] == [answer.json()["detail"]]
    assert at.radio(key="auth_mode").value == "Create account"


def test_weak_passwords_shown_under_password(use_api: Api) -> None:
    for weak in ("too short", "mailcreated5240"):  # under 15 characters; a common password
        email = new_email()
        answer = use_api.http.post("/users", json={"email": email, "password": weak})
        assert answer.status_code == 422, answer.text
        (problem,) = [e for e in answer.json()["errors"] if e["loc"][-1] == "password"]
        at = _sign_up(email, weak)
        under_password = element_after(at, "signup_password")
        assert under_password.type == "error"
        assert under_password.value.casefold() == problem["msg"].casefold()
        # Shown once: under its field, not repeated in the message under the button.
        message = problem["msg"].casefold()
        assert [message in e.value.casefold() for e in at.error] == [True, False]
        login = use_api.http.post("/auth/token", data={"username": email, "password": weak})
        assert login.status_code == 401  # no account was created


def test_wrong_password_shows_the_401_detail(use_api: Api) -> None:
    email = use_api.register()
    answer = use_api.http.post("/auth/token", data={"username": email, "password": "wrong" * 4})
    assert answer.status_code == 401
    at = _log_in(new_app().run(), email, "wrong" * 4)
    assert [e.value for e in at.error] == [answer.json()["detail"]]
    assert _on_login_form(at)
    assert "Signed in as" not in markdown_text(at.sidebar)


def test_empty_login_errors_under_their_fields(use_api: Api) -> None:
    at = new_app().run()
    at.button(key="login_submit").click().run()
    assert_calm(at)
    for key in ("login_email", "login_password"):
        under = element_after(at, key)
        assert under.type == "error", key
        assert under.value == "Is required"
    assert _on_login_form(at)


def test_a_screens_address_leads_there_after_signing_in(use_api: Api) -> None:
    """A link to /trash opened signed out (a new tab is a new session) shows the sign-in form
    at that address, then the Trash screen; signing out there and in again returns to it."""
    email = use_api.register()
    at = open_page(new_app().run(), "trash")
    assert_calm(at)
    assert _on_login_form(at)
    assert not at.header  # no screen drawn for a signed-out person
    _log_in(at, email, PASSWORD)
    assert not _on_login_form(at)
    assert at.header[0].value == "Trash"

    at.sidebar.button(key="logout").click().run()
    assert_calm(at)
    assert _on_login_form(at)
    assert [i.value for i in at.info] == ["You are logged out."]
    _log_in(at, email, PASSWORD)
    assert at.header[0].value == "Trash"


def test_log_out_spends_the_refresh_token(use_api: Api) -> None:
    email = use_api.register()
    at = logged_in_app(email)
    assert f"Signed in as **{email}**" in markdown_text(at.sidebar)
    refresh_token = at.session_state["api_session"].refresh_token

    at.sidebar.button(key="logout").click().run()
    assert_calm(at)
    assert _on_login_form(at)
    assert [i.value for i in at.info] == ["You are logged out."]
    assert "Signed in as" not in markdown_text(at.sidebar)
    spent = use_api.http.post("/auth/refresh", json={"refresh_token": refresh_token})
    assert spent.status_code == 401


def test_expired_access_token_is_renewed_unnoticed(use_api: Api) -> None:
    email = use_api.register()
    at = logged_in_app(email)
    session = at.session_state["api_session"]
    first_refresh = session.refresh_token
    claims = jwt.decode(session.access_token, options={"verify_signature": False})
    expired, _ = create_access_token(
        user_id=int(claims["sub"]),
        token_version=claims["tv"],
        key=use_api.env["SECRET_KEY"],
        expire_minutes=-1,  # expired a minute ago, beyond the API's leeway
    )
    refused = use_api.http.get("/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert refused.status_code == 401  # the token really is expired

    session.access_token = expired  # the API refuses it: renew and retry
    at.session_state["api_session"] = session
    at.run()
    assert_calm(at)
    assert not _on_login_form(at)
    assert at.header[0].value == "Tasks"
    assert session.refresh_token != first_refresh
    second_refresh = session.refresh_token

    session.expires_at = 0  # known to be expired: renewed before the call
    at.session_state["api_session"] = session
    at.run()
    assert_calm(at)
    assert not _on_login_form(at)
    assert session.refresh_token not in (first_refresh, second_refresh)
    assert f"Signed in as **{email}**" in markdown_text(at.sidebar)


def _spoil_tokens(at: AppTest) -> None:
    session = at.session_state["api_session"]
    session.access_token = session.access_token[:-4] + "AAAA"  # tampered signature
    session.refresh_token = "not-a-refresh-token"
    at.session_state["api_session"] = session


def test_refused_refresh_returns_to_login(use_api: Api) -> None:
    email = use_api.register()
    at = logged_in_app(email)
    _spoil_tokens(at)
    at.run()  # reading the task list
    assert_calm(at)
    assert _on_login_form(at)
    assert [i.value for i in at.info] == [SESSION_ENDED]
    assert "Signed in as" not in markdown_text(at.sidebar)


def test_refused_refresh_during_an_action_returns_to_login(use_api: Api) -> None:
    email = use_api.register()
    at = logged_in_app(email)
    _spoil_tokens(at)
    at.text_input(key="new_title").input("Never saved")
    at.button(key="add_task").click().run()
    assert_calm(at)
    assert _on_login_form(at)
    assert [i.value for i in at.info] == [SESSION_ENDED]
    assert use_api.tasks(use_api.headers(email)) == []


def test_deactivated_user_is_sent_to_login(use_api: Api) -> None:
    email = use_api.register()
    user_id = _user_id(use_api, email)
    at = logged_in_app(email)
    admin = use_api.headers(ADMIN_EMAIL, ADMIN_PASSWORD)
    changed = use_api.http.patch(f"/users/{user_id}", json={"is_active": False}, headers=admin)
    assert changed.status_code == 200, changed.text

    at.run()
    assert_calm(at)
    assert _on_login_form(at)
    assert [i.value for i in at.info] == [SESSION_ENDED]

    # Logging in again says why it is refused.
    answer = use_api.http.post("/auth/token", data={"username": email, "password": PASSWORD})
    assert answer.status_code == 403
    _log_in(at, email, PASSWORD)
    assert [e.value for e in at.error] == [answer.json()["detail"]]
    assert _on_login_form(at)


def test_log_out_forgets_the_screens(use_api: Api) -> None:
    """What the screens kept (the list's page, an open editor with its task and ETag, open
    comments, how much history was shown) does not outlive the sign-in: logging in again,
    as the same person or another, starts on fresh screens."""
    email = use_api.register()
    headers = use_api.headers(email)
    for number in range(21):  # two pages of 20
        use_api.create_task(headers, title=f"Task {number:02}")
    at = logged_in_app(email)
    at.button(key="tasks_next").click().run()
    assert "Page 2" in [c.value for c in at.caption]
    (first,) = [b.key for b in at.button if b.key.startswith("edit_")]
    task_id = int(first.removeprefix("edit_"))
    at.button(key=f"edit_{task_id}").click().run()
    at.button(key=f"comments_{task_id}").click().run()
    at.toggle(key=f"history_open_{task_id}").set_value(True).run()
    assert_calm(at)
    assert "_editing" in at.session_state
    assert "_comments_open" in at.session_state

    at.sidebar.button(key="logout").click().run()
    assert_calm(at)
    assert _on_login_form(at)
    assert [i.value for i in at.info] == ["You are logged out."]
    for kept in ("_editing", "_comments_open", "_pages_tasks", "_feedback"):
        assert kept not in at.session_state, kept

    _log_in(at, email, PASSWORD)
    assert "Page 1" in [c.value for c in at.caption]
    assert not any(form.key == f"edit_form_{task_id}" for form in at.get("form"))
    assert all(b.label == "Comments" for b in at.button if b.key.startswith("comments_"))
