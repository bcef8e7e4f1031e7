"""The Users screen (/users): only for admins; list, deactivate, promote; never on oneself."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest

from tests.client.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    TEAM_SCREENS,
    Api,
    assert_calm,
    logged_in_app,
    markdown_text,
    menu,
    open_page,
    successes,
)


def _server_user(api: Api, admin: dict[str, str], user_id: int) -> dict[str, Any]:
    response = api.http.get("/users", params={"limit": 100}, headers=admin)
    assert response.status_code == 200, response.text
    (user,) = [u for u in response.json()["items"] if u["id"] == user_id]
    return user


def _users_screen() -> AppTest:
    at = logged_in_app(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert "Users" in menu(at)
    open_page(at, "users")
    assert_calm(at)
    assert at.header[0].value == "Users"
    return at


def test_users_screen_absent_for_a_user(use_api: Api) -> None:
    at = logged_in_app(use_api.register())
    assert menu(at) == [*TEAM_SCREENS, "Profile"]
    assert not any(b.key.startswith(("deactivate_", "promote_")) for b in at.button)

    # Not registered for a user: its address leads to the default screen, with no user listed.
    open_page(at, "users")
    assert_calm(at)
    assert at.header[0].value == "Tasks"
    assert ADMIN_EMAIL not in markdown_text(at)
    assert not any(b.key.startswith(("deactivate_", "promote_")) for b in at.button)


def test_admin_lists_deactivates_and_promotes(use_api: Api) -> None:
    admin = use_api.headers(ADMIN_EMAIL, ADMIN_PASSWORD)
    me = use_api.http.get("/users/me", headers=admin).json()
    leaving, rising = use_api.register(), use_api.register()
    ids = {}
    for email in (leaving, rising):
        ids[email] = use_api.http.get("/users/me", headers=use_api.headers(email)).json()["id"]

    at = _users_screen()
    listed = markdown_text(at)
    for email in (ADMIN_EMAIL, leaving, rising):
        assert email in listed

    # Never on oneself.
    assert at.button(key=f"deactivate_{me['id']}").disabled
    assert at.button(key=f"demote_{me['id']}").disabled

    at.button(key=f"deactivate_{ids[leaving]}").click().run()
    assert_calm(at)
    assert successes(at) == [f"{leaving}: deactivated."]
    assert _server_user(use_api, admin, ids[leaving])["is_active"] is False
    assert any(b.key == f"reactivate_{ids[leaving]}" for b in at.button)
    assert (
        use_api.http.post(
            "/auth/token", data={"username": leaving, "password": PASSWORD}
        ).status_code
        == 403
    )

    at.button(key=f"promote_{ids[rising]}").click().run()
    assert_calm(at)
    assert successes(at) == [f"{rising}: now an admin."]
    assert _server_user(use_api, admin, ids[rising])["role"] == "admin"
    assert any(b.key == f"demote_{ids[rising]}" for b in at.button)

    # The promoted person now sees the Users screen.
    promoted = logged_in_app(rising)
    assert "Users" in menu(promoted)
