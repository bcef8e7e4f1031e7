"""The Streamlit web client: `streamlit run client/app.py`, API base URL from TASKS_API_URL.

It talks to the API only over HTTP (api_client.py), as any third-party client would. This
file picks the screen and catches whatever escaped a screen, so a person never sees a
Python traceback.
"""

from __future__ import annotations

import logging

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from api_client import ApiError, api_base_url
from screens import account, admin, overview, profile, tasks, trash
from task_fields import plain
from ui import CLIENT_FAILURE_MESSAGE, current_session, end_session, show_read_error

logger = logging.getLogger("tasks_client")

SCREENS = {
    "Tasks": tasks.render,
    "Overview": overview.render,
    "Trash": trash.render,
    "Profile": profile.render,
}
ADMIN_SCREENS = {"Users": admin.render}


def _log_out() -> None:
    session = current_session()
    if session is not None:
        session.log_out()
    end_session("You are logged out.")


def _signed_in() -> None:
    session = current_session()
    assert session is not None
    screens = dict(SCREENS)
    if session.user.get("role") == "admin":
        screens.update(ADMIN_SCREENS)
    with st.sidebar:
        st.markdown(f"Signed in as **{plain(session.email)}**")
        choice = st.radio("Go to", list(screens), key="screen")
        st.button("Log out", key="logout", on_click=_log_out, icon=":material/logout:")
        st.caption(f"API: {api_base_url()}")
    screens.get(choice or "Tasks", tasks.render)()


def main() -> None:
    # No page_icon: a Material icon favicon is fetched from fonts.gstatic.com.
    st.set_page_config(page_title="Tasks", layout="wide")
    try:
        if current_session() is None:
            account.render()
        else:
            _signed_in()
    except ScriptControlException:
        raise  # st.rerun() and st.stop() work by raising
    except ApiError as exc:
        show_read_error(exc, retry_key="app_retry")
    except Exception:
        logger.exception("client screen failed")
        st.error(CLIENT_FAILURE_MESSAGE, icon=":material/error:")


main()
