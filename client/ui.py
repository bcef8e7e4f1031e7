"""How the client shows what the API said: problems next to their cause, calm outages.

An action (a button's on_click callback) runs through `act`: how it went is kept under a scope
name, and the page drawn next shows each field's error right under that field and the rest of
the problem under its button. Reads that fail while a page is drawn use `show_problem`
in place of what they would have shown. The signed-in person's `ApiSession` is kept in
Streamlit's session state; only app.py reads it (`current_session`) and hands it to the screens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

import streamlit as st

from api_client import ApiError, ApiSession, SessionExpired
from task_fields import plain

logger = logging.getLogger("tasks_client")

_FEEDBACK = "_feedback"
CLIENT_FAILURE = -1  # the status of an ApiError that stands for a failure inside the client
CLIENT_FAILURE_MESSAGE = (
    "Something went wrong in the client. Your data on the server is safe; "
    "reload the page to continue."
)
SESSION = "api_session"
FLASH_LOGIN = "_login_message"
PROJECT = "_project_id"  # the id of the project the person is working in


def current_session() -> ApiSession | None:
    """The signed-in person's session, or None; read once per run, by app.py."""
    session = st.session_state.get(SESSION)
    return session if isinstance(session, ApiSession) else None


def end_session(message: str | None = None) -> None:
    """Forget the tokens and everything the screens kept for the person; the next run shows
    the login form (with `message`, if any)."""
    state = st.session_state
    # The screens' state (the list's page, an edit with its task and ETag, the open comments,
    # how much history was shown, filters, messages) was this person's: whoever signs in next
    # here, the same person or another, starts on fresh screens.
    for key in list(state.keys()):
        del state[key]
    if message:
        st.session_state[FLASH_LOGIN] = message


# `persist_state` of the value widgets whose values outlive the runs that do not draw them:
# the list's filters, and what the person chose or typed in a form (a new task, a task's edit,
# a project's rename, a comment). Streamlit otherwise forgets the value of a widget a run does
# not draw: an editor left open while the person visited another screen (or another project,
# or a failed read and Retry) came back with every field at its default, and "Save changes"
# erased the task's priority, description, due date, reminder, assignees and labels, saying
# "Saved" (a black-box walk in Chromium, 2026-12-07).
KEPT: Final = "session"


def remember(scope: str, *, error: ApiError | None = None, success: str | None = None) -> None:
    st.session_state.setdefault(_FEEDBACK, {})[scope] = (error, success)


def feedback(scope: str) -> tuple[ApiError | None, str | None]:
    """What the last action under `scope` left to show; shown once."""
    stored = st.session_state.get(_FEEDBACK, {}).pop(scope, None)
    return stored if stored is not None else (None, None)


def act(scope: str, action: Callable[[], Any], success: str | None = None) -> None:
    """Run a button's `action` (from its on_click callback, before the page is redrawn) and
    remember how it went under `scope`, for the redrawn page to show in the right place."""
    try:
        action()
    except SessionExpired as exc:
        end_session(exc.detail)
    except ApiError as exc:
        remember(scope, error=exc)
    except Exception:  # a bug of ours: logged, and a plain message instead of a traceback
        logger.exception("client action failed")
        remember(scope, error=ApiError(CLIENT_FAILURE, CLIENT_FAILURE_MESSAGE))
    else:
        if success is not None:
            remember(scope, success=success)


# The button whose action waits for a confirmation, and the project it was pressed in: a
# question is about one project's member, label or webhook, and is not asked again in another
# (a user's id names the same person's row in every project they are in).
_CONFIRMING = "_confirming"


def ask_first(key: str) -> None:
    """The on_click of a button whose action cannot be undone: its question is drawn next
    (`confirmation`), and only the answer runs the action."""
    st.session_state[_CONFIRMING] = (key, st.session_state.get(PROJECT))


def forget_question() -> None:
    """No question waits any more (answered, cancelled, or the person went elsewhere)."""
    st.session_state.pop(_CONFIRMING, None)


def _confirmed(scope: str, action: Callable[[], Any]) -> None:
    # The confirmation is spent whatever the answer: a refusal is shown, not asked again.
    forget_question()
    act(scope, action)


def confirmation(
    key: str, question: str, *, confirm: str, scope: str, action: Callable[[], Any]
) -> None:
    """Where it is called, the question of the button `key` once it was pressed (`ask_first`):
    `confirm` runs `action` through `act` under `scope`, Cancel forgets it."""
    if st.session_state.get(_CONFIRMING) != (key, st.session_state.get(PROJECT)):
        return
    st.warning(question, icon=":material/warning:")
    confirm_col, cancel_col = st.columns(2)
    confirm_col.button(
        confirm, type="primary", key=f"{key}_confirm", on_click=_confirmed, args=(scope, action)
    )
    cancel_col.button("Cancel", key=f"{key}_cancel", on_click=forget_question)


def field_error(error: ApiError | None, *names: str) -> None:
    """The API's message about one field, drawn right under that field."""
    if error is None:
        return
    for name in names:
        if name in error.field_errors:
            message = error.field_errors[name]
            st.error(message[:1].upper() + message[1:], icon=":material/error:")
            return


ALL_SHOWN_UNDER_FIELDS = "Some values are not valid: see the message under each field."


def describe(error: ApiError, shown_fields: Iterable[str] = ()) -> str:
    """The problem's detail plus any field errors not already drawn under their field, and
    for a refused role (403) the person's role and the one the action needs."""
    shown = set(shown_fields)
    others = [
        f"{name}: {message}" if name else message
        for name, message in error.field_errors.items()
        if name not in shown
    ]
    detail = error.detail
    if error.status == 422 and error.field_errors and not others:
        # Each field's message is under its field already; the API's detail names the
        # fields as a program knows them ("q", "see `errors`").
        detail = ALL_SHOWN_UNDER_FIELDS
    if error.required_role:
        others.append(
            f"Your role in this project is {error.role or 'unknown'}; "
            f"this needs {error.required_role} or above."
        )
    return "\n\n".join([detail, *others])


def show_problem(
    error: ApiError, *, shown_fields: Iterable[str] = (), retry_key: str | None = None
) -> None:
    """A problem as a person should see it: the detail, the wait, or a calm outage notice."""
    if error.unavailable:
        st.warning(
            "The task service is not available right now. Nothing was lost; "
            "please try again in a moment.\n\n"
            f"{error.detail}"
            + (f" (try again in {error.retry_after} s)" if error.retry_after else ""),
            icon=":material/cloud_off:",
        )
        if retry_key is not None and st.button("Retry", key=retry_key):
            st.rerun()
    elif error.status == 429:
        wait = f"{error.retry_after} seconds" if error.retry_after is not None else "a moment"
        st.warning(
            f"Too many requests. Please wait {wait} and try again.\n\n{error.detail}",
            icon=":material/hourglass_top:",
        )
    else:
        st.error(describe(error, shown_fields), icon=":material/error:")


def show_feedback(
    error: ApiError | None,
    success: str | None,
    *,
    shown_fields: Iterable[str] = (),
    retry_key: str | None = None,
) -> None:
    if error is not None:
        show_problem(error, shown_fields=shown_fields, retry_key=retry_key)
    elif success:
        # Messages name what they were about (a title, a project someone else named): shown
        # literally, never as markdown (a link, an image fetched from elsewhere).
        st.success(plain(success), icon=":material/check_circle:")


GONE = (404, 410)  # what the API answers about a task deleted, or out of the person's sight


def task_gone(session: ApiSession, task_id: Any, error: ApiError) -> bool:
    """Whether `error` means the task itself went meanwhile (deleted elsewhere, or no longer
    visible to the person): a 404 about something in it (a comment deleted meanwhile) leaves
    the task readable."""
    if error.status not in GONE:
        return False
    try:
        session.get_task(task_id)
    except ApiError as again:
        return again.status in GONE
    return False


def show_read_error(error: ApiError, *, retry_key: str, shown_fields: Iterable[str] = ()) -> None:
    """A read for the page failed: back to the login form when the session is over,
    otherwise the problem in place of what the read would have shown."""
    if isinstance(error, SessionExpired):
        end_session(error.detail)
        st.rerun()
    if error.unavailable:
        # This notice covers the actions that met the same outage: theirs would be shown,
        # stale, under their forms once the service is back.
        kept = st.session_state.get(_FEEDBACK, {})
        for scope in [
            scope for scope, (failed, _) in kept.items() if failed and failed.unavailable
        ]:
            del kept[scope]
    show_problem(error, shown_fields=shown_fields, retry_key=retry_key)
