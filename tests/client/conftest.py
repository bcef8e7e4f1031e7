"""Fixtures for the Streamlit client's tests: the real API served by uvicorn on a free port
(a fresh SQLite database per module), and the client run by streamlit's AppTest.

The client's modules are imported the way `streamlit run client/app.py` imports them (its
folder on sys.path), so a test and the app script share one `api_client` module.

The client's screens are st.navigation pages at their own URL paths; `open_page` follows a
link to one, as a click in the sidebar menu does, and `switch_project` picks a project in the
sidebar's switcher. `Api` also plays the other members of a team over v2.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_server import alembic_upgrade, create_admin, serve, service_env

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from streamlit.util import calc_hash  # noqa: E402

APP_PATH = CLIENT_DIR / "app.py"
PASSWORD = "a client test passphrase"
ADMIN_EMAIL = "client-admin@example.com"
ADMIN_PASSWORD = "the client admin passphrase"
# The signed-in screens every person has, in menu order (Profile follows, then Users for admins).
TEAM_SCREENS = (
    "Tasks",
    "Overview",
    "Trash",
    "Members",
    "Activity",
    "Projects",
    "Invitations",
    "Webhooks",
    "Notifications",
)
# The first run imports pandas and altair: seconds on a busy machine (AppTest's default is 3).
APP_TIMEOUT_SECONDS = 60


@dataclass
class Api:
    """A running API: its base URL (what TASKS_API_URL holds) and httpx clients on it: `http`
    on v1 (accounts, Inbox tasks) and `v2` (projects, members, invitations, team tasks)."""

    base_url: str
    env: dict[str, str]
    http: httpx.Client = field(init=False)
    v2: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url + "/api/v1", timeout=10)
        self.v2 = httpx.Client(base_url=self.base_url + "/api/v2", timeout=10)

    def register(self, email: str | None = None, password: str = PASSWORD) -> str:
        email = email or new_email()
        response = self.http.post("/users", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        return email

    def headers(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.http.post("/auth/token", data={"username": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def tasks(self, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
        response = self.http.get("/tasks", headers=headers, params={"limit": 100, **params})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def create_task(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        response = self.http.post("/tasks", headers=headers, json=body)
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    # v2: what another member does meanwhile, and what the tests check on the server.

    def user_id(self, headers: dict[str, str]) -> int:
        user_id: int = self.http.get("/users/me", headers=headers).json()["id"]
        return user_id

    def create_project(self, headers: dict[str, str], name: str) -> dict[str, Any]:
        return self._ok(self.v2.post("/projects", headers=headers, json={"name": name}), 201)

    def project(self, headers: dict[str, str], project_id: int) -> dict[str, Any]:
        return self._ok(self.v2.get(f"/projects/{project_id}", headers=headers))

    def inbox_id(self, headers: dict[str, str]) -> int:
        page = self._ok(self.v2.get("/projects", headers=headers, params={"limit": 100}))
        (inbox,) = [p for p in page["items"] if p["is_inbox"]]
        return int(inbox["id"])

    def members(self, headers: dict[str, str], project_id: int) -> dict[str, str]:
        """The project's members: {email: role}."""
        path = f"/projects/{project_id}/members"
        page = self._ok(self.v2.get(path, headers=headers, params={"limit": 100}))
        return {m["user"]["email"]: m["role"] for m in page["items"]}

    def invitations(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        page = self._ok(self.v2.get("/invitations", headers=headers, params={"limit": 100}))
        items: list[dict[str, Any]] = page["items"]
        return items

    def add_member(
        self, owner: dict[str, str], project_id: int, email: str, role: str
    ) -> dict[str, str]:
        """`email` invited to the project at `role` and accepting; their headers."""
        path = f"/projects/{project_id}/invitations"
        self._ok(self.v2.post(path, headers=owner, json={"email": email, "role": role}), 201)
        headers = self.headers(email)
        (invitation,) = [i for i in self.invitations(headers) if i["project"]["id"] == project_id]
        self._ok(self.v2.post(f"/invitations/{invitation['id']}/accept", headers=headers))
        return headers

    def set_role(self, owner: dict[str, str], project_id: int, user_id: int, role: str) -> None:
        path = f"/projects/{project_id}/members/{user_id}"
        self._ok(self.v2.patch(path, headers=owner, json={"role": role}))

    def create_label(self, headers: dict[str, str], project_id: int, name: str) -> dict[str, Any]:
        path = f"/projects/{project_id}/labels"
        return self._ok(self.v2.post(path, headers=headers, json={"name": name}), 201)

    def v2_task(self, headers: dict[str, str], task_id: int) -> dict[str, Any]:
        return self._ok(self.v2.get(f"/tasks/{task_id}", headers=headers))

    def v2_tasks(self, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
        page = self._ok(self.v2.get("/tasks", headers=headers, params={"limit": 100, **params}))
        items: list[dict[str, Any]] = page["items"]
        return items

    def create_v2_task(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        return self._ok(self.v2.post("/tasks", headers=headers, json=body), 201)

    def comments(self, headers: dict[str, str], task_id: int) -> list[str]:
        path = f"/tasks/{task_id}/comments"
        page = self._ok(self.v2.get(path, headers=headers, params={"limit": 100}))
        return [comment["body"] for comment in page["items"]]

    @staticmethod
    def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, (response.request.url, response.text)
        body: dict[str, Any] = response.json()
        return body


def new_email() -> str:
    return f"client-{uuid.uuid4().hex[:10]}@example.com"


def start_api(tmp: Path, **overrides: str | None) -> Iterator[Api]:
    env = service_env(f"sqlite:///{tmp / 'client.db'}", BCRYPT_ROUNDS="4", **overrides)
    migrated = alembic_upgrade(env)
    assert migrated.returncode == 0, migrated.stderr
    admin = create_admin(env, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert admin.returncode == 0, admin.stderr
    with serve(env, tmp / "api.log") as base_url:
        api = Api(base_url, env)
        try:
            yield api
        finally:
            api.http.close()
            api.v2.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The real API, production settings, rate limits off, on a fresh SQLite database."""
    yield from start_api(tmp_path_factory.mktemp("client-api"))


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches() -> None:
    # st.cache_* is global to the process; one test's cached reads must not leak into another.
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def use_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("TASKS_API_URL", api.base_url)
    return api


def new_app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT_SECONDS)


def logged_in_app(email: str, password: str = PASSWORD) -> AppTest:
    """The client with `email` signed in through its own login form."""
    at = new_app().run()
    at.text_input(key="login_email").input(email)
    at.text_input(key="login_password").input(password)
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    assert "Signed in as" in markdown_text(at.sidebar), markdown_text(at)
    return at


def open_page(at: AppTest, url_path: str) -> AppTest:
    """Go to the screen at /`url_path` (a click on its link in the sidebar menu), and run.

    AppTest.switch_page() only accepts a page *file*; the client's pages are callables (each
    is handed the signed-in session), so it refuses them. A page's identity in st.navigation is
    the hash of its url_path, which is what the browser sends to change page; AppTest keeps the
    page it asks for in `_page_hash` (switch_page sets nothing else). A private name, on the
    pinned streamlit==1.67.0: if it changed, the screen would not change and the tests' heading
    checks would fail, not pass by accident. A path the app did not register (Users for a
    non-admin) gets Streamlit's fallback, the default page, as in a browser.
    """
    at._page_hash = calc_hash(url_path)
    return at.run()


def switch_project(at: AppTest, project_id: int) -> AppTest:
    """Choose another project in the sidebar's switcher, and run."""
    return at.sidebar.selectbox(key="project_switch").set_value(project_id).run()


def switcher(at: AppTest) -> list[str]:
    """The projects the sidebar's switcher offers, as it names them, in order."""
    box = at.sidebar.selectbox(key="project_switch")
    return [str(option) for option in box.options]


def menu(at: AppTest) -> list[str]:
    """The titles in the sidebar's navigation menu, in order: the pages st.navigation
    registered in the last run (a signed-in person's pages are all in the menu)."""
    # AppTest draws no element for st.navigation; its registry is kept for switch_page().
    pages = at._registered_pages.values()
    assert all("url_pathname" in page for page in pages), "st.navigation was not called"
    return [page["page_name"] for page in pages]


def unescaped(markdown: str) -> str:
    """Text the client shows literally (task_fields.plain) as a person reads it: without the
    backslashes, and without the bare spans that keep an address or email from being a link."""
    return re.sub(r"\\(.)", r"\1", re.sub(r":color\[\\(.)\]", r"\1", markdown))


def markdown_text(node: Any) -> str:
    """All markdown shown under `node` (the app, its sidebar, a container), unescaped."""
    return "\n".join(unescaped(element.value) for element in node.markdown)


def successes(at: AppTest) -> list[str]:
    """The success messages on the page, unescaped (the client shows them literally)."""
    return [unescaped(element.value) for element in at.success]


def alerts(at: AppTest) -> list[str]:
    """Every error, warning, success and info message on the page, in order."""
    return [
        element.value for kind in (at.error, at.warning, at.success, at.info) for element in kind
    ]


def page_nodes(at: AppTest) -> list[Any]:
    """Every element and block of the page (main area, then sidebar), in the order drawn."""

    def walk(node: Any) -> list[Any]:
        nodes = [node]
        for child in getattr(node, "children", {}).values():
            nodes.extend(walk(child))
        return nodes

    return walk(at.main) + walk(at.sidebar)


def element_after(at: AppTest, key: str) -> Any:
    """The element drawn right after the widget `key`: where that field's error belongs."""
    nodes = page_nodes(at)
    index = next(i for i, node in enumerate(nodes) if getattr(node, "key", None) == key)
    return nodes[index + 1]


def assert_calm(at: AppTest) -> None:
    """No script exception and no Python traceback anywhere on the page."""
    assert not at.exception, [exc.value for exc in at.exception]
    for node in page_nodes(at):
        for attribute in ("value", "label", "body"):
            try:
                text = getattr(node, attribute, None)
            except Exception:  # some widgets compute .value and may refuse
                continue
            if isinstance(text, str):
                assert "Traceback" not in text, text
