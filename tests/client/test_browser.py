"""A person's whole path through the web client, and a new team's (two people sharing a
project, and a viewer), in real Chromium.

Both servers run on 127.0.0.1 with free ports: the API (uvicorn, fresh SQLite database) and
the client (`streamlit run client/app.py`). Playwright drives Debian's /usr/bin/chromium (never
a browser that `playwright install` downloads). A screenshot of each screen is saved under
test-artifacts/screenshots/ (git-ignored). Without Chromium the module is skipped, loudly; with
CI=true a missing Chromium is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.client.conftest import APP_PATH, PASSWORD, TEAM_SCREENS, Api, new_email
from tests.conftest import BROWSER_MISSING, PROJECT_ROOT, running_in_ci
from tests.e2e.test_server import BIN, free_port, stop

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 30_000
# Keep Chromium off the network entirely: only loopback resolves.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]

if not CHROMIUM.exists():
    reason = f"{BROWSER_MISSING} at {CHROMIUM}: the browser test of the client did not run."
    if running_in_ci():
        pytest.fail(f"CI=true but {reason} (.ci/run installs it with apt-get)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

# Assertions wait as long as actions (their own default is 5 s: on a loaded machine the
# overview's charts took longer to draw, and a page that was right came too late).
expect.set_options(timeout=TIMEOUT_MS)


@contextmanager
def streamlit_server(api_url: str, log_path: Path) -> Iterator[str]:
    """`streamlit run client/app.py` pointed at `api_url`; yields its URL once it answers.

    The toolbar, error details and usage statistics are left to client/.streamlit/config.toml,
    as for a bare `streamlit run client/app.py` from any directory (here the project root): the
    tests fail if it is not read (a Deploy button, a request to data.streamlit.io)."""
    port = free_port()
    command = [
        str(BIN / "streamlit"),
        "run",
        str(APP_PATH),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
    ]
    env = {**os.environ, "TASKS_API_URL": api_url}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def client_url(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    with streamlit_server(api.base_url, log_path) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page(browser: Browser, client_url: str) -> Iterator[Page]:
    """The client in a browser context of its own (one person), checked never to reach out."""
    # Tall, because Streamlit scrolls inside its own container (a full-page shot would not).
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:"))
            else outside.append(request.url)
        ),
    )
    page.goto(client_url)
    try:
        yield page
    finally:
        context.close()
    assert outside == [], f"the page tried to reach outside addresses: {outside[:5]}"


@pytest.fixture
def page(browser: Browser, client_url: str) -> Iterator[Page]:
    with browser_page(browser, client_url) as page:
        yield page


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # let the last rerun paint
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def form(page: Page, button: str) -> Locator:
    return page.get_by_test_id("stForm").filter(has=page.get_by_role("button", name=button))


def alert(page: Page, text: str) -> Locator:
    return page.get_by_test_id("stAlert").filter(has_text=text)


def task_card(page: Page, title: str) -> Locator:
    return page.locator("[class*='st-key-task_']").filter(has_text=title)


def fill_date(page: Page, scope: Locator, label: str, day: datetime) -> None:
    """Streamlit's date field is a segmented react-aria input, not an <input>."""
    scope.get_by_role("spinbutton", name=f"year, {label}").click()
    page.keyboard.type(day.strftime("%Y%m%d"))
    page.keyboard.press("Escape")


def add_task(page: Page, title: str, *, priority: str | None = None) -> None:
    add = form(page, "Add task")
    add.get_by_label("Title", exact=True).fill(title)
    if priority is not None:
        add.get_by_role("combobox", name="Priority").click()
        page.get_by_role("option", name=priority, exact=True).click()
    add.get_by_role("button", name="Add task").click()
    expect(alert(page, f"Added “{title}”.")).to_be_visible()


def menu_link(page: Page, screen: str) -> Locator:
    return page.get_by_test_id("stSidebarNav").get_by_role("link", name=screen, exact=True)


def expect_screen(page: Page, screen: str, path: str) -> None:
    """`screen` is shown, at its own address, and names the browser tab."""
    expect(page.get_by_role("heading", name=screen, exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(rf"^http://127\.0\.0\.1:\d+{re.escape(path)}$"))
    expect(page).to_have_title(screen)


def go_to(page: Page, screen: str, path: str) -> None:
    menu_link(page, screen).click()
    expect_screen(page, screen, path)


def log_in(page: Page, email: str) -> None:
    login = form(page, "Log in")
    login.get_by_label("Email", exact=True).fill(email)
    login.get_by_label("Password", exact=True).fill(PASSWORD)
    login.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()


def test_a_persons_whole_path(page: Page, api: Api) -> None:
    email = new_email()

    # Sign up.
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    shot(page, "01-login")
    page.get_by_text("Create account", exact=True).first.click()
    signup = form(page, "Create account")
    signup.get_by_label("Email", exact=True).fill(email)
    signup.get_by_label("Password", exact=True).fill(PASSWORD)
    signup.get_by_label("Full name", exact=True).fill("Browser Person")
    shot(page, "02-sign-up")
    signup.get_by_role("button", name="Create account").click()
    expect(alert(page, f"Account created for {email}")).to_be_visible()

    # Log in (the address is already filled in).
    login = form(page, "Log in")
    expect(login.get_by_label("Email", exact=True)).to_have_value(email)
    login.get_by_label("Password", exact=True).fill(PASSWORD)
    login.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()
    shot(page, "03-signed-in")

    # Add tasks; an empty title is refused with the API's message under Title.
    add = form(page, "Add task")
    add.get_by_label("Title", exact=True).fill("   ")
    add.get_by_role("button", name="Add task").click()
    expect(add.get_by_test_id("stAlert").filter(has_text="empty")).to_be_visible()
    # Under the button, words for people, not the API's field names (decision 0041).
    expect(
        add.get_by_test_id("stAlert").filter(has_text="see the message under each field")
    ).to_be_visible()
    shot(page, "04-empty-title")
    headers = api.headers(email)
    assert api.tasks(headers) == []

    add_task(page, "Write the quarterly report", priority="High")
    due = datetime.now(UTC) + timedelta(days=3)
    add = form(page, "Add task")
    add.get_by_label("Title", exact=True).fill("Book the team dinner")
    fill_date(page, add, "Due date", due)
    add.get_by_role("button", name="Add task").click()
    expect(alert(page, "Added “Book the team dinner”.")).to_be_visible()
    add_task(page, "Water the office plants", priority="Low")
    expect(task_card(page, "Water the office plants")).to_be_visible()
    shot(page, "05-tasks")
    assert {task["title"] for task in api.tasks(headers)} == {
        "Write the quarterly report",
        "Book the team dinner",
        "Water the office plants",
    }

    # Filter by priority, then by text.
    page.get_by_role("combobox", name="Filter by priority").click()
    page.get_by_role("option", name="High", exact=True).click()
    page.keyboard.press("Escape")
    expect(task_card(page, "Write the quarterly report")).to_be_visible()
    expect(task_card(page, "Water the office plants")).to_have_count(0)
    shot(page, "06-filtered-by-priority")
    page.get_by_role("combobox", name="Filter by priority").click()
    page.keyboard.press("Backspace")  # removes the last chosen value
    page.keyboard.press("Escape")
    search = page.get_by_label("Search", exact=True)
    search.fill("dinner")
    search.press("Enter")
    expect(task_card(page, "Book the team dinner")).to_be_visible()
    expect(task_card(page, "Write the quarterly report")).to_have_count(0)
    shot(page, "07-search")
    search.fill("")
    search.press("Enter")
    expect(task_card(page, "Write the quarterly report")).to_be_visible()

    # Edit: saved with If-Match.
    card = task_card(page, "Write the quarterly report")
    card.get_by_role("button", name="Edit").click()
    editor = form(page, "Save changes")
    editor.get_by_label("Title", exact=True).fill("Write the yearly report")
    editor.get_by_role("button", name="Save changes").click()
    expect(alert(page, "Saved “Write the yearly report”.")).to_be_visible()
    report = next(t for t in api.tasks(headers) if t["title"] == "Write the yearly report")
    assert report["version"] == 2

    # A conflict: the task changes elsewhere while the editor is open; nothing is overwritten.
    task_card(page, "Write the yearly report").get_by_role("button", name="Edit").click()
    editor = form(page, "Save changes")
    # The editor is open (the client has read the task and its ETag) before the other edit.
    expect(editor.get_by_label("Title", exact=True)).to_have_value("Write the yearly report")
    changed = api.http.patch(
        f"/tasks/{report['id']}", headers=headers, json={"title": "Changed on the phone"}
    )
    assert changed.status_code == 200
    editor.get_by_label("Title", exact=True).fill("Changed in the browser")
    editor.get_by_role("button", name="Save changes").click()
    expect(alert(page, "Conflict")).to_be_visible()
    shot(page, "08-conflict")
    kept = api.http.get(f"/tasks/{report['id']}", headers=headers).json()
    assert kept["title"] == "Changed on the phone"
    page.get_by_role("button", name="Load the latest version").click()
    expect(form(page, "Save changes").get_by_label("Title", exact=True)).to_have_value(
        "Changed on the phone"
    )
    form(page, "Save changes").get_by_role("button", name="Cancel").click()

    # Delete, find it in the trash, restore it.
    task_card(page, "Water the office plants").get_by_role("button", name="Delete").click()
    expect(alert(page, "Moved “Water the office plants” to the trash.")).to_be_visible()
    expect(task_card(page, "Water the office plants")).to_have_count(0)
    go_to(page, "Trash", "/trash")
    trashed = page.locator("[class*='st-key-trashed_']").filter(has_text="Water the office plants")
    expect(trashed).to_be_visible()
    shot(page, "09-trash")
    trashed.get_by_role("button", name="Restore").click()
    expect(alert(page, "Restored “Water the office plants”.")).to_be_visible()
    go_to(page, "Tasks", "/")
    expect(task_card(page, "Water the office plants")).to_be_visible()

    # Overview: counts and three bar charts, drawn in the page.
    go_to(page, "Overview", "/overview")
    metrics = page.get_by_test_id("stMetric")
    expect(metrics.filter(has_text="Tasks").get_by_test_id("stMetricValue")).to_have_text("3")
    expect(
        metrics.filter(has_text="Due in the next 7 days").get_by_test_id("stMetricValue")
    ).to_have_text("1")
    charts = page.get_by_test_id("stVegaLiteChart")
    expect(charts).to_have_count(3)
    expect(charts.first.locator("svg, canvas").first).to_be_visible()
    shot(page, "10-overview")

    # Log out: back at the login form, and the refresh token no longer works.
    page.get_by_role("button", name="Log out").click()
    expect(alert(page, "You are logged out.")).to_be_visible()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    shot(page, "11-logged-out")


def test_each_screen_has_its_own_url(page: Page, client_url: str, api: Api) -> None:
    """A screen's address opens that screen (through the sign-in form: a newly loaded page is a
    new, signed-out Streamlit session); the menu, Back and Forward move between addresses."""
    email = api.register()
    headers = api.headers(email)
    trashed = api.create_task(headers, title="Old newsletter draft")
    assert api.http.delete(f"/tasks/{trashed['id']}", headers=headers).status_code == 204

    page.goto(f"{client_url}/trash")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page).to_have_url(f"{client_url}/trash")  # kept while signing in
    # No developer toolbar (client/.streamlit/config.toml): a Deploy button is not for users.
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    expect(page.get_by_test_id("stAppDeployButton")).to_have_count(0)
    log_in(page, email)
    expect_screen(page, "Trash", "/trash")
    trashed_card = page.locator("[class*='st-key-trashed_']")
    expect(trashed_card.filter(has_text="Old newsletter draft")).to_be_visible()
    shot(page, "13-trash-by-its-url")

    # The menu links to each screen's address; Users is not there for a user.
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    expect(links).to_have_text([*TEAM_SCREENS, "Profile"])
    expect(menu_link(page, "Tasks")).to_have_attribute("href", f"{client_url}/")
    expect(menu_link(page, "Overview")).to_have_attribute("href", f"{client_url}/overview")

    go_to(page, "Overview", "/overview")
    go_to(page, "Profile", "/profile")
    page.go_back()
    expect_screen(page, "Overview", "/overview")
    page.go_back()
    expect_screen(page, "Trash", "/trash")
    page.go_forward()
    expect_screen(page, "Overview", "/overview")
    page.go_forward()
    expect_screen(page, "Profile", "/profile")
    expect(page.get_by_text(f"Signed in as {email}")).to_be_visible()  # the same session
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    shot(page, "14-profile-after-back-and-forward")


def test_unreachable_api_is_a_calm_message(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With the API down, the page says so plainly and offers a retry, with no traceback."""
    log_path = tmp_path_factory.mktemp("streamlit-down") / "streamlit.log"
    nobody = f"http://127.0.0.1:{free_port()}"
    with streamlit_server(nobody, log_path) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1400})
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            login = form(page, "Log in")
            login.get_by_label("Email", exact=True).fill("someone@example.com")
            login.get_by_label("Password", exact=True).fill(PASSWORD)
            login.get_by_role("button", name="Log in").click()
            expect(alert(page, "not available right now")).to_be_visible()
            expect(page.get_by_text("Traceback")).to_have_count(0)
            shot(page, "12-api-unreachable")
        finally:
            context.close()


def choose(page: Page, scope: Locator, label: str, option: str) -> None:
    """Pick `option` in the select box or multiselect `label` (its list opens over the page)."""
    scope.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def expect_project(page: Page, project: str) -> None:
    """The sidebar's switcher shows `project` as the one being worked in."""
    switcher = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Project")
    expect(switcher).to_have_value(project)


def invite(page: Page, email: str, role: str) -> None:
    invitation = form(page, "Invite")
    invitation.get_by_label("Email", exact=True).fill(email)
    choose(page, invitation, "Role", role)
    invitation.get_by_role("button", name="Invite").click()
    expect(alert(page, f"Invited {email} as {role}.")).to_be_visible()


def accept_invitation(page: Page, project: str, role: str, screenshot: str) -> None:
    go_to(page, "Invitations", "/invitations")
    card = page.locator("[class*='st-key-invitation_']").filter(has_text=project)
    expect(card).to_contain_text(f"as {role}")
    shot(page, screenshot)
    card.get_by_role("button", name="Accept").click()
    expect(alert(page, f"You joined {project} as {role}.")).to_be_visible()


def test_a_new_team(browser: Browser, client_url: str, api: Api) -> None:
    """A creates a project and invites B by email; B accepts; A assigns B a task; B finds it
    under "Assigned to me" and comments; a viewer sees the task and the comment, and no control
    to change either. Each person in a browser of their own."""
    ann, ben, vic = api.register(), api.register(), api.register()
    project = "Moon launch"
    title = "Book the launch venue"
    comment = "Booked the hangar for Friday."
    with (
        browser_page(browser, client_url) as a,
        browser_page(browser, client_url) as b,
        browser_page(browser, client_url) as v,
    ):
        # A creates the project (and works in it at once), then invites B and a viewer.
        log_in(a, ann)
        go_to(a, "Projects", "/projects")
        new = form(a, "Create project")
        new.get_by_label("Name", exact=True).fill(project)
        new.get_by_role("button", name="Create project").click()
        expect(alert(a, f"Created “{project}”. You are its owner.")).to_be_visible()
        expect_project(a, project)
        go_to(a, "Members", "/members")
        invite(a, ben, "editor")
        invite(a, vic, "viewer")
        expect(a.get_by_text("Pending invitations")).to_be_visible()
        shot(a, "20-team-invited")

        # B signs in, finds the invitation and accepts it: the project opens.
        log_in(b, ben)
        accept_invitation(b, project, "editor", "21-team-invitation")
        expect_project(b, project)
        shot(b, "22-team-accepted")

        # A assigns B a task.
        go_to(a, "Tasks", "/")
        expect(a.get_by_role("button", name="Add task")).to_be_visible()
        add = form(a, "Add task")
        add.get_by_label("Title", exact=True).fill(title)
        choose(a, add, "Assignees", ben)
        add.get_by_role("button", name="Add task").click()
        expect(alert(a, f"Added “{title}”.")).to_be_visible()
        expect(task_card(a, title)).to_contain_text(f"Assigned to {ben}")
        shot(a, "23-team-assigned")

        # B finds it under "Assigned to me", and comments.
        go_to(b, "Tasks", "/")
        choose(b, b.get_by_test_id("stExpander"), "Assignee", "Assigned to me")
        card = task_card(b, title)
        expect(card).to_be_visible()
        card.get_by_role("button", name="Comments").click()
        talk = form(b, "Add comment")
        talk.get_by_label("Your comment", exact=True).fill(comment)
        talk.get_by_role("button", name="Add comment").click()
        expect(alert(b, "Comment added.")).to_be_visible()
        expect(task_card(b, title).get_by_text(comment)).to_be_visible()
        shot(b, "24-team-assigned-to-me")
        (task,) = api.v2_tasks(api.headers(ben), assignee="me")
        assert task["title"] == title
        assert api.comments(api.headers(ann), task["id"]) == [comment]

        # The viewer reads everything and is offered no control to change it.
        log_in(v, vic)
        accept_invitation(v, project, "viewer", "25-team-viewer-invited")
        go_to(v, "Tasks", "/")
        expect(alert(v, f"Your role in {project} is viewer")).to_be_visible()
        card = task_card(v, title)
        expect(card).to_contain_text(f"Assigned to {ben}")
        expect(v.get_by_role("button", name="Add task")).to_have_count(0)
        expect(card.get_by_role("button", name="Edit")).to_have_count(0)
        expect(card.get_by_role("button", name="Delete")).to_have_count(0)
        card.get_by_role("button", name="Comments").click()
        expect(task_card(v, title).get_by_text(comment)).to_be_visible()
        expect(v.get_by_role("button", name="Add comment")).to_have_count(0)
        shot(v, "26-team-viewer-tasks")
        go_to(v, "Members", "/members")
        expect(v.get_by_text(ann)).to_be_visible()
        expect(v.get_by_role("button", name="Remove")).to_have_count(0)
        expect(v.get_by_role("button", name="Invite")).to_have_count(0)
        shot(v, "27-team-viewer-members")


def test_typed_text_reads_as_typed(page: Page, api: Api) -> None:
    """Addresses, emails and arrows typed into a title, a description or a comment, and a
    person's email, read (and copy) as typed: none is a link (GFM links a bare "www.",
    "https://" or email even when every punctuation mark is escaped), and no " -> ", " -- "
    or " <= " becomes Streamlit's arrow, dash or sign."""
    email = api.register()  # no full name: comments are headed by the email
    headers = api.headers(email)
    typed = "LINK www.evil.com https://evil.com/x mail@evil.com <https://evil.com> HTTP://x.y"
    symbols = "a -> b <- c <-> d -- e >= f <= g ~= h"
    task = api.create_task(headers, title=typed, description=f"Notes: {typed} {symbols}")
    for body in (typed, symbols):
        commented = api.v2.post(
            f"/tasks/{task['id']}/comments", headers=headers, json={"body": body}
        )
        assert commented.status_code == 201, commented.text

    log_in(page, email)
    card = task_card(page, "LINK www.evil.com")
    expect(card.get_by_text(typed, exact=True)).to_be_visible()  # the title, as typed
    expect(card.get_by_text(f"Notes: {typed} {symbols}", exact=True)).to_be_visible()
    card.get_by_role("button", name="Comments").click()
    expect(card.get_by_text(email, exact=True)).to_have_count(2)  # the comments' headings
    # A comment reads "email · when" and, on the next line, its body.
    expect(card.get_by_text(re.compile(rf"UTC\s*{re.escape(symbols)}$"))).to_be_visible()
    card.get_by_text("Show history").click()
    expect(card.get_by_text(f"created the task “{typed}”")).to_be_visible()
    expect(card.get_by_text(f"commented: “{typed}”")).to_be_visible()
    expect(card.get_by_text(f"commented: “{symbols}”")).to_be_visible()
    shot(page, "15-typed-addresses")
    expect(card.locator("a")).to_have_count(0)
    signed_in = page.get_by_test_id("stMarkdown").filter(has_text="Signed in as")
    expect(signed_in).to_have_text(f"Signed in as {email}")
    expect(signed_in.locator("a")).to_have_count(0)

    go_to(page, "Activity", "/activity")
    events = page.locator("[class*='st-key-project_activity_']")
    expect(events.get_by_text(f"created the task “{typed}”")).to_be_visible()
    expect(events.locator("a")).to_have_count(0)


def test_an_edit_of_a_task_deleted_meanwhile_is_said(page: Page, api: Api) -> None:
    """Save changes on a task someone else deleted: the row goes, and the page says what
    happened (a toast where the person is looking, and a message above the list)."""
    email = api.register()
    headers = api.headers(email)
    task = api.create_task(headers, title="Shared plan")
    log_in(page, email)
    task_card(page, "Shared plan").get_by_role("button", name="Edit").click()
    editor = form(page, "Save changes")
    expect(editor.get_by_label("Title", exact=True)).to_have_value("Shared plan")
    assert api.http.delete(f"/tasks/{task['id']}", headers=headers).status_code == 204
    editor.get_by_label("Title", exact=True).fill("My edit")
    editor.get_by_role("button", name="Save changes").click()
    expect(alert(page, "“Shared plan” was deleted meanwhile")).to_contain_text(
        "your changes were not saved"
    )
    expect(page.get_by_test_id("stToast")).to_contain_text("“Shared plan” is gone")
    expect(task_card(page, "Shared plan")).to_have_count(0)
    shot(page, "16-edit-of-a-deleted-task")


def test_unsent_text_and_an_open_editor_survive_other_actions(page: Page, api: Api) -> None:
    """Text typed in a form and not sent yet stays while the person does something else on
    the page (a search), and an editor left open comes back from another screen with the
    task's values, not blank (its Save erased the task's fields, decision 0041)."""
    email = api.register()
    headers = api.headers(email)
    api.create_task(headers, title="Keep me", description="The details", priority="urgent")
    log_in(page, email)
    add = form(page, "Add task")
    add.get_by_label("Title", exact=True).fill("Typed, not sent")
    search = page.get_by_label("Search", exact=True)
    search.fill("keep")
    search.press("Enter")
    expect(task_card(page, "Keep me")).to_be_visible()
    expect(form(page, "Add task").get_by_label("Title", exact=True)).to_have_value(
        "Typed, not sent"
    )

    task_card(page, "Keep me").get_by_role("button", name="Edit").click()
    expect(form(page, "Save changes").get_by_label("Title", exact=True)).to_have_value("Keep me")
    go_to(page, "Overview", "/overview")
    go_to(page, "Tasks", "/")
    editor = form(page, "Save changes")
    expect(editor.get_by_label("Title", exact=True)).to_have_value("Keep me")
    expect(editor.get_by_label("Description", exact=True)).to_have_value("The details")
    expect(page.get_by_label("Search", exact=True)).to_have_value("keep")
