"""The Streamlit web client: `streamlit run client/app.py`, API base URL from TASKS_API_URL.

It talks to the API only over HTTP (api_client.py), as any third-party client would. This
file is the one place that reads the signed-in session: it registers the screens with
st.navigation (each at its own URL: / for Tasks, /overview, /trash, /profile, /users for
admins), hands the session to the screen being shown, and catches whatever escaped a screen,
so a person never sees a Python traceback. Settings for `streamlit run` (no developer toolbar,
no error details, no usage statistics) are in .streamlit/config.toml next to this file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from api_client import ApiError, ApiSession, api_base_url
from screens import account, admin, overview, profile, tasks, trash
from task_fields import plain
from ui import CLIENT_FAILURE_MESSAGE, current_session, end_session, show_read_error

logger = logging.getLogger("tasks_client")


@dataclass(frozen=True)
class Screen:
    """A signed-in screen: its menu title, its URL path, and what draws it."""

    title: str
    url_path: str
    render: Callable[[ApiSession], None]
    admin_only: bool = False


# In menu order. The first is the default page, which Streamlit serves at / (its url_path
# still names the page: a page's identity is the hash of its url_path).
# No page icons: a page's icon becomes the tab's favicon, which Streamlit fetches from
# fonts.gstatic.com for a Material icon.
SCREENS = (
    Screen("Tasks", "tasks", tasks.render),
    Screen("Overview", "overview", overview.render),
    Screen("Trash", "trash", trash.render),
    Screen("Profile", "profile", profile.render),
    Screen("Users", "users", admin.render, admin_only=True),
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
            functools.partial(screen.render, session),
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


def _sidebar(session: ApiSession) -> None:
    # Drawn below the navigation menu, which Streamlit puts at the top of the sidebar.
    with st.sidebar:
        st.markdown(f"Signed in as **{plain(session.email)}**")
        st.button(
            "Log out", key="logout", on_click=_log_out, args=(session,), icon=":material/logout:"
        )
        st.caption(f"API: {api_base_url()}")


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
            _sidebar(session)
        page.run()
    except ScriptControlException:
        raise  # st.rerun() and st.stop() work by raising
    except ApiError as exc:
        show_read_error(exc, retry_key="app_retry")
    except Exception:
        logger.exception("client screen failed")
        st.error(CLIENT_FAILURE_MESSAGE, icon=":material/error:")


main()
