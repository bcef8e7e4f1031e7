"""The profile screen: change the name, change the password."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.client.conftest import (
    PASSWORD,
    Api,
    assert_calm,
    element_after,
    logged_in_app,
    markdown_text,
    open_page,
    successes,
)

NEW_PASSWORD = "a brand new client passphrase"


def _profile(email: str) -> AppTest:
    at = logged_in_app(email)
    open_page(at, "profile")
    assert_calm(at)
    assert at.header[0].value == "Profile"
    return at


def _change_password(at: AppTest, current: str, new: str) -> None:
    at.text_input(key="profile_current_password").input(current)
    at.text_input(key="profile_new_password").input(new)
    at.button(key="profile_change_password").click().run()
    assert_calm(at)


def _login_status(api: Api, email: str, password: str) -> int:
    return api.http.post("/auth/token", data={"username": email, "password": password}).status_code


def test_change_name(use_api: Api) -> None:
    email = use_api.register()
    at = _profile(email)
    assert f"**Email:** {email}" in markdown_text(at)
    assert at.text_input(key="profile_full_name").value == ""
    at.text_input(key="profile_full_name").input("Grace Hopper")
    at.button(key="profile_save_name").click().run()
    assert_calm(at)
    assert successes(at) == ["Name saved."]
    me = use_api.http.get("/users/me", headers=use_api.headers(email)).json()
    assert me["full_name"] == "Grace Hopper"


def test_wrong_current_password_shows_the_403_detail(use_api: Api) -> None:
    email = use_api.register()
    answer = use_api.http.patch(
        "/users/me",
        json={"password": NEW_PASSWORD, "current_password": "not the password at all"},
        headers=use_api.headers(email),
    )
    assert answer.status_code == 403
    at = _profile(email)
    _change_password(at, "not the password at all", NEW_PASSWORD)
    assert answer.json()["detail"] in [e.value for e in at.error]
    assert not at.success
    assert _login_status(use_api, email, PASSWORD) == 200  # unchanged
    assert _login_status(use_api, email, NEW_PASSWORD) == 401


def test_weak_new_password_shown_under_it(use_api: Api) -> None:
    email = use_api.register()
    at = _profile(email)
    _change_password(at, PASSWORD, "short")
    under_new = element_after(at, "profile_new_password")
    assert under_new.type == "error"
    assert "15" in under_new.value
    assert not at.success
    assert _login_status(use_api, email, PASSWORD) == 200


def test_password_change_keeps_the_person_signed_in(use_api: Api) -> None:
    email = use_api.register()
    at = _profile(email)
    _change_password(at, PASSWORD, NEW_PASSWORD)
    assert successes(at) == ["Password changed. Other sessions were signed out."]
    assert f"Signed in as **{email}**" in markdown_text(at.sidebar)
    assert _login_status(use_api, email, PASSWORD) == 401
    assert _login_status(use_api, email, NEW_PASSWORD) == 200

    # Still signed in on the next screens, with working tokens.
    open_page(at, "tasks")
    assert_calm(at)
    assert at.header[0].value == "Tasks"
    assert not any(widget.key == "login_email" for widget in at.text_input)
