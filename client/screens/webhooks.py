"""The current project's webhooks (/webhooks), for its admins: adding one (its signing secret
shown once), the events it receives, a ping, the delivery log with each attempt's status and
error, redelivering a message, a new secret (shown once), disabling and enabling, deleting.

Whether the person may manage webhooks comes from the API's roles table and their role in the
project (`webhook.manage`, workspace.py); for anyone else the screen says who manages them and
draws no control and reads nothing. The API still decides: a refusal it sends (a role lowered
meanwhile) is shown as it comes. The API writes what is to be sent (a ping, a redelivery) and
a worker sends it: the log shows the attempt as pending until then.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from history import moment
from paging import pager, read_page, restart
from task_fields import plain
from ui import (
    act,
    ask_first,
    confirmation,
    feedback,
    field_error,
    remember,
    show_feedback,
    show_read_error,
)
from workspace import Workspace

SCOPE = "webhooks"
ADD_SCOPE = "webhook_add"
PERMISSION = "webhook.manage"
LOG_PAGE_SIZE = 20
ALL_EVENTS = "*"
# The "<entity>.<action>" names a webhook may subscribe to (spec sections 7 and 9); the API
# refuses any other, and says so under the field.
EVENT_NAMES = (
    "project.created",
    "project.updated",
    "project.deleted",
    "project.restored",
    "project.purged",
    "member.joined",
    "member.left",
    "member.removed",
    "member.role_changed",
    "invitation.created",
    "invitation.updated",
    "invitation.deleted",
    "task.created",
    "task.updated",
    "task.moved",
    "task.deleted",
    "task.restored",
    "task.purged",
    "label.created",
    "label.updated",
    "label.deleted",
    "comment.created",
    "comment.updated",
    "comment.deleted",
)
EVENT_CHOICES = (ALL_EVENTS, *EVENT_NAMES)
# The secret just made (creation or rotation): (project id, webhook id, url, secret), kept
# until the person says they copied it; never read back from the API, which shows it once.
_SECRET = "_webhook_secret"
_NEW_KEY = "_new_webhook_idempotency_key"  # (project id, key)
STATUS_LABELS = {
    "pending": "Pending",
    "succeeded": "Delivered",
    "failed": "Failed",
    "abandoned": "Abandoned",
}


def event_label(name: str) -> str:
    return "All events (*)" if name == ALL_EVENTS else name


def _new_key(project_id: int) -> str:
    """The Idempotency-Key of the webhook being added (a new one in another project)."""
    kept = st.session_state.get(_NEW_KEY)
    if not (isinstance(kept, tuple) and kept[0] == project_id):
        kept = st.session_state[_NEW_KEY] = (project_id, uuid.uuid4().hex)
    return str(kept[1])


def _keep_secret(project_id: int, webhook: dict[str, Any]) -> None:
    st.session_state[_SECRET] = (project_id, webhook["id"], webhook["url"], webhook["secret"])


def _forget_secret() -> None:
    st.session_state.pop(_SECRET, None)


def _add(session: ApiSession, project_id: int) -> None:
    state = st.session_state
    body: dict[str, Any] = {
        "url": str(state.get("webhook_url", "")).strip(),
        "events": list(state.get("webhook_events") or []),
        "active": bool(state.get("webhook_active", True)),
    }
    description = str(state.get("webhook_description", "")).strip()
    if description:
        body["description"] = description
    webhook = session.create_webhook(project_id, body, _new_key(project_id))
    state.pop(_NEW_KEY, None)  # the next webhook is another one
    state["webhook_url"] = ""
    state["webhook_description"] = ""
    _keep_secret(project_id, webhook)
    remember(ADD_SCOPE, success=f"Added the webhook to {webhook['url']}.")


def _save_events(session: ApiSession, project_id: int, webhook: dict[str, Any]) -> None:
    events = list(st.session_state.get(f"webhook_events_{webhook['id']}") or [])
    session.update_webhook(project_id, webhook["id"], {"events": events})
    remember(SCOPE, success=f"Saved the events of the webhook to {webhook['url']}.")


def _set_active(
    session: ApiSession, project_id: int, webhook: dict[str, Any], active: bool
) -> None:
    session.update_webhook(project_id, webhook["id"], {"active": active})
    done = "Enabled" if active else "Disabled"
    remember(SCOPE, success=f"{done} the webhook to {webhook['url']}.")


def _ping(session: ApiSession, project_id: int, webhook: dict[str, Any]) -> None:
    session.ping_webhook(project_id, webhook["id"])
    st.session_state[f"webhook_log_{webhook['id']}"] = True  # show where the ping appears
    restart(f"webhook_log_{webhook['id']}")
    remember(
        SCOPE,
        success=f"Ping queued for {webhook['url']}: its delivery shows in the log below.",
    )


def _rotate(session: ApiSession, project_id: int, webhook: dict[str, Any]) -> None:
    rotated = session.rotate_webhook_secret(project_id, webhook["id"])
    _keep_secret(project_id, rotated)
    remember(
        SCOPE,
        success=f"New secret for {webhook['url']}. The previous one still signs for 24 hours.",
    )


def _delete(session: ApiSession, project_id: int, webhook: dict[str, Any]) -> None:
    session.delete_webhook(project_id, webhook["id"])
    kept = st.session_state.get(_SECRET)
    if isinstance(kept, tuple) and kept[1] == webhook["id"]:
        _forget_secret()
    remember(SCOPE, success=f"Deleted the webhook to {webhook['url']} and its delivery log.")


def _redeliver(
    session: ApiSession, project_id: int, webhook: dict[str, Any], delivery: dict[str, Any]
) -> None:
    again = session.redeliver(project_id, webhook["id"], delivery["id"])
    restart(f"webhook_log_{webhook['id']}")
    remember(
        SCOPE,
        success=f"Delivery {delivery['id']} queued again (attempt {again['attempt']}).",
    )


def _in_scope(action: Callable[..., None], *args: Any) -> tuple[str, Callable[[], None]]:
    """A button's on_click args: `act` runs `action` and reports it on this screen."""
    return SCOPE, functools.partial(action, *args)


def render(workspace: Workspace) -> None:
    project = workspace.project
    # What the last action did, first: a refusal (a role lowered meanwhile) is shown even
    # when the screen now has nothing else to offer.
    error, success = feedback(SCOPE)
    show_feedback(error, success)
    if not workspace.may(PERMISSION):
        least = workspace.roles.least(PERMISSION) or "admin"
        st.info(
            f"The webhooks of {plain(str(project['name']))} are managed by its {least}s and "
            f"owners. Your role here is {plain(workspace.my_role or 'unknown')}.",
            icon=":material/lock:",
        )
        return
    st.caption(
        f"Webhooks of **{plain(str(project['name']))}**: each change to the project is sent, "
        "signed, to the URLs below (Standard Webhooks)."
    )
    _shown_secret(workspace.project_id)
    try:
        webhooks = workspace.session.webhooks(workspace.project_id)
    except ApiError as exc:
        show_read_error(exc, retry_key="webhooks_retry")
        return
    if not webhooks:
        st.caption("No webhook yet: add one below.")
    for webhook in webhooks:
        _webhook_row(workspace, webhook)
    _add_form(workspace)


def _shown_secret(project_id: int) -> None:
    kept = st.session_state.get(_SECRET)
    if not (isinstance(kept, tuple) and kept[0] == project_id):
        return
    _, _, url, secret = kept
    with st.container(border=True, key="webhook_secret"):
        st.warning(
            f"The signing secret of the webhook to {plain(str(url))}. Copy it now: it is not "
            "shown again (a new one can be made with “New secret”).",
            icon=":material/key:",
        )
        st.code(str(secret), language=None)
        st.button("I have copied it", key="webhook_secret_done", on_click=_forget_secret)


def _status_line(webhook: dict[str, Any]) -> str:
    if webhook.get("active"):
        return "Active"
    reason = webhook.get("disabled_reason")
    return f"Disabled: {reason}" if reason else "Disabled"


def _webhook_row(workspace: Workspace, webhook: dict[str, Any]) -> None:
    session, project_id = workspace.session, workspace.project_id
    webhook_id = int(webhook["id"])
    events = [str(name) for name in webhook.get("events") or []]
    with st.container(border=True, key=f"webhook_{webhook_id}"):
        st.markdown(f"**{plain(str(webhook['url']))}**  \n{plain(_status_line(webhook))}")
        if webhook.get("description"):
            st.caption(plain(str(webhook["description"])))
        st.caption(
            "Events: "
            + plain(", ".join(event_label(name) for name in events))
            + f" · added {plain(moment(webhook.get('created_at')))}"
        )
        ping_col, rotate_col, toggle_col, delete_col = st.columns(4)
        ping_col.button(
            "Ping",
            key=f"ping_{webhook_id}",
            help="Send a test message now. A disabled webhook is pinged too (and sent "
            "nothing else): try the receiver before enabling it again.",
            on_click=act,
            args=_in_scope(_ping, session, project_id, webhook),
            width="stretch",
        )
        rotate_col.button(
            "New secret",
            key=f"rotate_{webhook_id}",
            on_click=ask_first,
            args=(f"rotate_{webhook_id}",),
            width="stretch",
        )
        active = bool(webhook.get("active"))
        toggle_col.button(
            "Disable" if active else "Enable",
            key=f"toggle_{webhook_id}",
            on_click=act,
            args=_in_scope(_set_active, session, project_id, webhook, not active),
            width="stretch",
        )
        delete_col.button(
            "Delete",
            key=f"delete_{webhook_id}",
            on_click=ask_first,
            args=(f"delete_{webhook_id}",),
            width="stretch",
        )
        scope, rotate = _in_scope(_rotate, session, project_id, webhook)
        confirmation(
            f"rotate_{webhook_id}",
            "Make a new secret? The receiver must take it within 24 hours: until then both "
            "the old and the new one sign.",
            confirm="Make a new secret",
            scope=scope,
            action=rotate,
        )
        scope, delete = _in_scope(_delete, session, project_id, webhook)
        confirmation(
            f"delete_{webhook_id}",
            "Delete this webhook and its delivery log? Nothing more is sent to it.",
            confirm="Delete",
            scope=scope,
            action=delete,
        )
        events_col, save_col = st.columns([4, 1], vertical_alignment="bottom")
        known = [name for name in events if name in EVENT_CHOICES]
        events_col.multiselect(
            "Events",
            EVENT_CHOICES,
            default=known,
            format_func=event_label,
            key=f"webhook_events_{webhook_id}",
        )
        save_col.button(
            "Save events",
            key=f"save_events_{webhook_id}",
            on_click=act,
            args=_in_scope(_save_events, session, project_id, webhook),
            width="stretch",
        )
        if st.toggle("Delivery log", key=f"webhook_log_{webhook_id}"):
            _delivery_log(workspace, webhook)


def _delivery_line(delivery: dict[str, Any]) -> str:
    status = str(delivery.get("status"))
    parts = [
        f"#{delivery['id']}",
        str(delivery.get("type")),
        f"attempt {delivery.get('attempt')}",
        STATUS_LABELS.get(status, status),
    ]
    if delivery.get("response_status") is not None:
        parts.append(f"HTTP {delivery['response_status']}")
    if delivery.get("duration_ms") is not None:
        parts.append(f"{delivery['duration_ms']} ms")
    parts.append(moment(delivery.get("created_at")))
    if status == "pending" and delivery.get("next_attempt_at"):
        parts.append(f"due {moment(delivery['next_attempt_at'])}")
    return " · ".join(parts)


def _delivery_log(workspace: Workspace, webhook: dict[str, Any]) -> None:
    session, project_id = workspace.session, workspace.project_id
    webhook_id = int(webhook["id"])
    scope = f"webhook_log_{webhook_id}"
    try:
        page = read_page(
            scope,
            webhook_id,
            lambda cursor: session.webhook_deliveries(
                project_id, webhook_id, cursor=cursor, limit=LOG_PAGE_SIZE
            ),
        )
    except ApiError as exc:
        show_read_error(exc, retry_key=f"{scope}_retry")
        return
    deliveries = page["items"]
    if not deliveries:
        st.caption("Nothing sent yet. Ping the webhook to try it.")
    for delivery in deliveries:
        delivery_id = int(delivery["id"])
        with st.container(key=f"delivery_{delivery_id}"):
            text_col, button_col = st.columns([6, 1.5], vertical_alignment="center")
            text_col.markdown(plain(_delivery_line(delivery)))
            if delivery.get("error"):
                text_col.caption("Error: " + plain(str(delivery["error"])))
            # Nothing to redeliver while an attempt is pending; events only reach an
            # active webhook (pings any).
            if delivery.get("status") != "pending" and (
                webhook.get("active") or delivery.get("type") == "ping"
            ):
                button_col.button(
                    "Redeliver",
                    key=f"redeliver_{delivery_id}",
                    on_click=act,
                    args=_in_scope(_redeliver, session, project_id, webhook, delivery),
                    width="stretch",
                )
    pager(scope, page.get("next_cursor"))


def _add_form(workspace: Workspace) -> None:
    error, success = feedback(ADD_SCOPE)
    with st.form("webhook_add_form"):
        st.subheader("Add a webhook")
        st.text_input("URL", key="webhook_url", placeholder="https://hooks.example.com/tasks")
        field_error(error, "url")
        st.multiselect(
            "Events",
            EVENT_CHOICES,
            default=[ALL_EVENTS],
            format_func=event_label,
            key="webhook_events",
        )
        field_error(error, "events")
        st.text_input("Description (optional)", key="webhook_description")
        field_error(error, "description")
        st.checkbox("Active", value=True, key="webhook_active")
        st.form_submit_button(
            "Add webhook",
            type="primary",
            key="webhook_add_submit",
            on_click=act,
            args=(ADD_SCOPE, functools.partial(_add, workspace.session, workspace.project_id)),
        )
        show_feedback(error, success, shown_fields=("url", "events", "description"))
