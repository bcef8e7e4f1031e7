"""Errors as a person should see them: the API unreachable or answering 503 (a calm notice
with a retry), 429 (with the wait), a 403 with the roles it names, and never a Python
traceback on the page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from streamlit.testing.v1 import AppTest

import api_client  # the client's own module (see conftest)
import ui
from tests.client.conftest import (
    PASSWORD,
    Api,
    assert_calm,
    logged_in_app,
    new_app,
    start_api,
)
from tests.e2e.test_server import free_port, serve, service_env

NOT_AVAILABLE = "The task service is not available right now."


@pytest.fixture(scope="module")
def limited_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An API that refuses a third failed login for an account within a minute."""
    yield from start_api(
        tmp_path_factory.mktemp("client-limited"),
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_LOGIN_ACCOUNT="2/minute",
    )


@pytest.fixture(scope="module")
def database_down_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API whose PostgreSQL never answers (a closed port): /healthz is 200, the rest 503.
    It shares the test APIs' SECRET_KEY, so their access tokens decode here too."""
    tmp = tmp_path_factory.mktemp("client-db-down")
    env = service_env(
        "postgresql://postgres@127.0.0.1:1/tasks",
        DB_CONNECT_TIMEOUT_SECONDS="1",
        DB_POOL_TIMEOUT_SECONDS="1",
    )
    with serve(env, tmp / "api.log") as base_url:
        yield base_url


def _log_in(at: AppTest, email: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login_email").input(email)
    at.text_input(key="login_password").input(password)
    at.button(key="login_submit").click().run()
    assert_calm(at)
    return at


def _calm_notice(at: AppTest) -> str:
    (notice,) = [w.value for w in at.warning]
    assert notice.startswith(NOT_AVAILABLE), notice
    assert not at.error
    return notice


def _retry_outage_on_tasks_page(
    at: AppTest, down_url: str, up_url: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Signed in, the API goes away: a calm notice with Retry; back again, Retry shows the list."""
    at.multiselect(key="flt_status").set_value(["todo", "in_progress"]).run()
    monkeypatch.setenv("TASKS_API_URL", down_url)
    at.run()
    assert_calm(at)
    notice = _calm_notice(at)
    assert at.button(key="tasks_retry").label == "Retry"
    assert at.header[0].value == "Tasks"  # still signed in: not sent to the login form

    at.button(key="tasks_retry").click().run()  # still down
    assert_calm(at)
    _calm_notice(at)

    monkeypatch.setenv("TASKS_API_URL", up_url)
    at.button(key="tasks_retry").click().run()
    assert_calm(at)
    assert not at.warning
    assert not any(b.key == "tasks_retry" for b in at.button)
    assert any(b.key == "tasks_next" for b in at.button)  # the list is back
    assert at.multiselect(key="flt_status").value == ["todo", "in_progress"]  # nothing lost
    return notice


def test_api_unreachable(use_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    email = use_api.register()

    monkeypatch.setenv("TASKS_API_URL", closed)
    at = _log_in(new_app().run(), email)
    notice = _calm_notice(at)
    assert f"Cannot reach the API at {closed}/api/v2." in notice
    assert any(w.key == "login_email" for w in at.text_input)  # the form, to try again

    monkeypatch.setenv("TASKS_API_URL", use_api.base_url)
    at = logged_in_app(email)
    notice = _retry_outage_on_tasks_page(at, closed, use_api.base_url, monkeypatch)
    assert "Cannot reach the API" in notice


def test_a_new_task_typed_during_an_outage_is_kept(
    use_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notice says nothing was lost: the form still holds what was typed after Retry (it
    came back empty, the screen in between having drawn no form)."""
    closed = f"http://127.0.0.1:{free_port()}"
    email = use_api.register()
    at = logged_in_app(email)
    at.text_input(key="new_title").input("Typed while the API was down")
    at.text_area(key="new_description").input("Every word of it")
    monkeypatch.setenv("TASKS_API_URL", closed)
    at.button(key="add_task").click().run()
    assert_calm(at)
    _calm_notice(at)

    monkeypatch.setenv("TASKS_API_URL", use_api.base_url)
    at.button(key="tasks_retry").click().run()
    assert_calm(at)
    assert at.text_input(key="new_title").value == "Typed while the API was down"
    assert at.text_area(key="new_description").value == "Every word of it"
    at.button(key="add_task").click().run()
    assert_calm(at)
    (created,) = use_api.tasks(use_api.headers(email))
    assert (created["title"], created["description"]) == (
        "Typed while the API was down",
        "Every word of it",
    )


def test_api_answers_503(
    use_api: Api, database_down_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = use_api.register()

    monkeypatch.setenv("TASKS_API_URL", database_down_url)
    at = _log_in(new_app().run(), email)
    notice = _calm_notice(at)
    assert re.search(r"try again in \d+ s", notice), notice

    monkeypatch.setenv("TASKS_API_URL", use_api.base_url)
    at = logged_in_app(email)
    _retry_outage_on_tasks_page(at, database_down_url, use_api.base_url, monkeypatch)


def test_429_shows_the_wait(limited_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKS_API_URL", limited_api.base_url)
    email = limited_api.register()
    at = new_app().run()
    for _attempt in range(5):
        _log_in(at, email, "not the right passphrase")
        if at.warning:
            break
        assert at.error  # the plain 401 before the limit
    (message,) = [w.value for w in at.warning]
    match = re.match(r"Too many requests\. Please wait (\d+) seconds and try again\.", message)
    assert match, message
    assert 1 <= int(match.group(1)) <= 60
    assert not at.error
    assert any(w.key == "login_email" for w in at.text_input)


@pytest.mark.parametrize(
    "configured",
    [
        "http://api.test:8000",
        "http://api.test:8000/",
        "http://api.test:8000/api/v1",
        "http://api.test:8000/api/v2/",
    ],
)
def test_the_client_speaks_v2_whatever_the_configured_url(
    configured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKS_API_URL", configured)
    assert api_client.api_base_url() == "http://api.test:8000/api/v2"


def test_a_403_says_which_role_it_needs() -> None:
    problem = {
        "type": "urn:tasks-api:problem:forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "Your role in this project does not allow this.",
        "role": "viewer",
        "required_role": "editor",
    }
    error = api_client.error_from_response(httpx.Response(403, json=problem))
    assert (error.status, error.role, error.required_role) == (403, "viewer", "editor")
    assert ui.describe(error) == (
        "Your role in this project does not allow this.\n\n"
        "Your role in this project is viewer; this needs editor or above."
    )
    # Any other problem says nothing about roles, even with odd members.
    other = api_client.error_from_response(
        httpx.Response(404, json={"detail": "Not found.", "role": 3, "required_role": None})
    )
    assert (other.role, other.required_role) == (None, None)
    assert ui.describe(other) == "Not found."
