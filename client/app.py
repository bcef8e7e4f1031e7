"""The Streamlit web client: `streamlit run client/app.py`, API base URL from TASKS_API_URL.

It talks to the API (v2) only over HTTP (api_client.py), as any third-party client would. This
file is the one place that reads the signed-in session: it registers the screens with
st.navigation (each at its own URL: / for Tasks, /overview, /trash, /members, /activity,
/projects, /invitations, /notifications, /profile, /users for admins), reads the person's
projects, draws the project switcher (Inbox first) and the unread notifications' count, hands
the screen being shown its workspace (session, projects, the current project and the roles
table), follows a mail's link to a task or project (links.py), and catches whatever escaped
a screen, so a person never sees a Python traceback.
Settings for `streamlit run` (no developer toolbar, no error details, no usage statistics) are
in .streamlit/config.toml next to this file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

import links
from api_client import ApiError, ApiSession, api_base_url
from screens import (
    account,
    activity,
    admin,
    invitations,
    members,
    notifications,
    overview,
    profile,
    projects,
    tasks,
    trash,
    webhooks,
)
from task_fields import plain
from ui import (
    CLIENT_FAILURE_MESSAGE,
    PROJECT,
    current_session,
    end_session,
    forget_question,
    show_read_error,
)
from workspace import Workspace, load

logger = logging.getLogger("tasks_client")


@dataclass(frozen=True)
class Screen:
    """A signed-in screen: its menu title (also its heading), its URL path, and what draws it."""

    title: str
    url_path: str
    render: Callable[[Workspace], None]
    admin_only: bool = False


def _session_only(render: Callable[[ApiSession], None]) -> Callable[[Workspace], None]:
    """A screen about the account, not a project: it is handed the session alone."""
    return lambda workspace: render(workspace.session)


# In menu order. The first is the default page, which Streamlit serves at / (its url_path
# still names the page: a page's identity is the hash of its url_path).
# No page icons: a page's icon becomes the tab's favicon, which Streamlit fetches from
# fonts.gstatic.com for a Material icon.
SCREENS = (
    Screen("Tasks", "tasks", tasks.render),
    Screen("Overview", "overview", overview.render),
    Screen("Trash", "trash", trash.render),
    Screen("Members", "members", members.render),
    Screen("Activity", "activity", activity.render),
    Screen("Projects", "projects", projects.render),
    Screen("Invitations", "invitations", invitations.render),
    Screen("Webhooks", "webhooks", webhooks.render),
    Screen("Notifications", "notifications", _session_only(notifications.render)),
    Screen("Profile", "profile", _session_only(profile.render)),
    Screen("Users", "users", _session_only(admin.render), admin_only=True),
)


def _signed_out_pages() -> list[st.Page]:
    """The sign-in form at every screen's URL.

    A URL opened in a new tab or typed in starts a new Streamlit session, which is signed out.
    Registering each path here keeps that URL while the person signs in, and the page drawn
    after signing in is the screen the URL names (same path, same page identity) instead of
    Streamlit's "page not found" notice.
    """
    return [
        st.Page(
            account.render,
            title="Sign in",
            url_path=screen.url_path,
            default=index == 0,
            visibility="visible" if index == 0 else "hidden",
        )
        for index, screen in enumerate(SCREENS)
    ]


def _signed_in_pages(session: ApiSession) -> list[st.Page]:
    """The screens this person may see, each drawn with `session` handed to it. Admin-only
    screens are not registered for others, so their URL leads to the default screen."""
    is_admin = session.user.get("role") == "admin"
    return [
        st.Page(
            # A partial has no __name__: title and url_path are given, not inferred.
            functools.partial(_open, screen, session),
            title=screen.title,
            url_path=screen.url_path,
            default=index == 0,
        )
        for index, screen in enumerate(SCREENS)
        if is_admin or not screen.admin_only
    ]


def _log_out(session: ApiSession) -> None:
    session.log_out()
    end_session("You are logged out.")


def _switch_project() -> None:
    st.session_state[PROJECT] = st.session_state.get("project_switch")
    forget_question()  # asked about the project left


def _project_switcher(workspace: Workspace) -> None:
    names = {project["id"]: str(project["name"]) for project in workspace.projects}
    # The widget's own state is dropped on a run that does not draw it (a failed read), so the
    # choice is kept under PROJECT too, and the widget is set from it before it is drawn.
    st.session_state["project_switch"] = workspace.project_id
    st.selectbox(
        "Project",
        list(names),
        format_func=names.__getitem__,
        key="project_switch",
        on_change=_switch_project,
    )
    st.caption(f"Your role here: **{plain(workspace.my_role)}**")
    st.divider()


def _unread_badge(session: ApiSession) -> None:
    """How many notifications are unread, read on every run (so marking one read shows at
    once). A failed read shows nothing: the screen's own reads say what went wrong."""
    try:
        unread = session.unread_notifications()
    except ApiError:
        return
    with st.container(key="unread_notifications"):
        if unread:
            noun = "notification" if unread == 1 else "notifications"
            st.markdown(f":material/notifications_active: **{unread}** unread {noun}")
        else:
            st.caption(":material/notifications: No unread notifications")


def _sidebar(session: ApiSession) -> None:
    # Drawn below the navigation menu, which Streamlit puts at the top of the sidebar.
    with st.sidebar:
        st.markdown(f"Signed in as **{plain(session.email)}**")
        _unread_badge(session)
        st.button(
            "Log out", key="logout", on_click=_log_out, args=(session,), icon=":material/logout:"
        )
        st.caption(f"API: {api_base_url()}")


def _open(screen: Screen, session: ApiSession) -> None:
    """Draw `screen`: its heading, then the person's projects (the sidebar's switcher), then
    the screen itself, handed the workspace. A failed read of the projects is shown under the
    heading with a Retry button; the person stays on the screen, signed in."""
    st.header(screen.title)
    # The switcher goes above the rest of the sidebar, which is drawn first: Log out is there
    # whatever happens next.
    switcher_slot = st.sidebar.container()
    _sidebar(session)
    try:
        link_message = links.follow(session)
        workspace = load(session, st.session_state.get(PROJECT))
    except ApiError as exc:
        show_read_error(exc, retry_key=f"{screen.url_path}_retry")
        return
    if link_message is not None:
        st.info(link_message, icon=":material/link_off:")
    st.session_state[PROJECT] = workspace.project_id
    with switcher_slot:
        _project_switcher(workspace)
    if workspace.lost_project:
        st.info(
            "The project you were working in is no longer open to you (you were removed "
            "from it, or it was deleted). Here is your Inbox.",
            icon=":material/info:",
        )
    screen.render(workspace)


def main() -> None:
    # No page_title: the tab shows the current page's title (also in the history menu of
    # back/forward). No page_icon: a Material icon favicon is fetched from fonts.gstatic.com.
    st.set_page_config(layout="wide")
    try:
        session = current_session()
        if session is None:
            page = st.navigation(_signed_out_pages(), position="hidden")
        else:
            page = st.navigation(_signed_in_pages(session))
        page.run()
    except ScriptControlException:
        raise  # st.rerun() and st.stop() work by raising
    except ApiError as exc:
        show_read_error(exc, retry_key="app_retry")
    except Exception:
        logger.exception("client screen failed")
        st.error(CLIENT_FAILURE_MESSAGE, icon=":material/error:")


main()
