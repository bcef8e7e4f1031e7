"""The Webhooks screen (/webhooks): an admin adds a webhook and sees its secret once, pings it,
reads the delivery log, redelivers, makes a new secret, disables, enables and deletes; a
refusal (a bad URL, a role lowered meanwhile, a webhook deleted meanwhile) is shown where it
belongs; anyone below admin sees no control.

The API runs with WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8, and every URL here is an IP address,
so nothing is looked up in DNS; 127.0.0.1:9 (discard) has nobody listening, so nothing is
received either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import make_url
from streamlit.testing.v1 import AppTest

from tests.client.conftest import (
    Api,
    assert_calm,
    element_after,
    logged_in_app,
    markdown_text,
    open_page,
    start_api,
    successes,
    switch_project,
    unescaped,
)

HOOK_URL = "http://127.0.0.1:9/hook"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The real API, allowing webhooks to loopback (as an operator may), on its own database."""
    yield from start_api(
        tmp_path_factory.mktemp("client-webhooks"), WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8"
    )


def _team(api: Api) -> tuple[str, dict[str, str], dict[str, Any]]:
    email = api.register()
    headers = api.headers(email)
    return email, headers, api.create_project(headers, "Launch")


def _screen(email: str, project_id: int) -> AppTest:
    at = logged_in_app(email)
    switch_project(at, project_id)
    open_page(at, "webhooks")
    assert_calm(at)
    assert at.header[0].value == "Webhooks"
    return at


def _create(api: Api, headers: dict[str, str], project_id: int, **body: Any) -> dict[str, Any]:
    response = api.v2.post(
        f"/projects/{project_id}/webhooks",
        headers=headers,
        json={"url": HOOK_URL, "events": ["*"], **body},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _webhooks(api: Api, headers: dict[str, str], project_id: int) -> list[dict[str, Any]]:
    response = api.v2.get(f"/projects/{project_id}/webhooks", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _deliveries(
    api: Api, headers: dict[str, str], project_id: int, webhook_id: int
) -> list[dict[str, Any]]:
    path = f"/projects/{project_id}/webhooks/{webhook_id}/deliveries"
    response = api.v2.get(path, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _codes(at: AppTest) -> list[str]:
    return [str(element.value) for element in at.code]


def _errors(at: AppTest) -> list[str]:
    return [str(element.value) for element in at.error]


def _button_keys(at: AppTest) -> set[str]:
    return {widget.key for widget in at.button if widget.key}


def test_add_with_the_secret_shown_once_then_ping(use_api: Api) -> None:
    email, owner, project = _team(use_api)
    at = _screen(email, project["id"])
    assert "No webhook yet" in " ".join(str(c.value) for c in at.caption)
    at.text_input(key="webhook_url").input(HOOK_URL)
    at.multiselect(key="webhook_events").set_value(["task.created", "comment.created"])
    at.text_input(key="webhook_description").input("Chat bot")
    at.button(key="webhook_add_submit").click().run()
    assert_calm(at)
    assert successes(at) == [f"Added the webhook to {HOOK_URL}."]
    (webhook,) = _webhooks(use_api, owner, project["id"])
    assert webhook["events"] == ["task.created", "comment.created"]
    assert webhook["description"] == "Chat bot"
    (secret,) = _codes(at)
    assert secret.startswith("whsec_")
    assert at.text_input(key="webhook_url").value == ""

    at.button(key="webhook_secret_done").click().run()
    assert_calm(at)
    assert _codes(at) == []  # shown once: the API never shows it again either
    assert secret not in markdown_text(at)

    at.button(key=f"ping_{webhook['id']}").click().run()
    assert_calm(at)
    assert successes(at)[0].startswith(f"Ping queued for {HOOK_URL}")
    sent = _deliveries(use_api, owner, project["id"], webhook["id"])
    # One ping queued: one first attempt (the delivery job may already have tried it, and
    # written its retry as attempt 2: the receiver at port 9 refuses connections).
    (ping,) = [d for d in sent if d["type"] == "ping" and d["attempt"] == 1]
    assert at.toggle(key=f"webhook_log_{webhook['id']}").value is True
    assert f"#{ping['id']} · ping · attempt 1" in markdown_text(at)


def test_refusals_show_under_their_field(use_api: Api) -> None:
    email, owner, project = _team(use_api)
    at = _screen(email, project["id"])
    at.text_input(key="webhook_url").input("http://10.0.0.1/hook")
    at.button(key="webhook_add_submit").click().run()
    assert_calm(at)
    message = element_after(at, "webhook_url").value
    assert "not a public address" in message  # the API's words (it names no address)
    assert _webhooks(use_api, owner, project["id"]) == []

    at.text_input(key="webhook_url").input(HOOK_URL)
    at.multiselect(key="webhook_events").set_value([])
    at.button(key="webhook_add_submit").click().run()
    assert_calm(at)
    assert "not be empty" in element_after(at, "webhook_events").value
    assert _webhooks(use_api, owner, project["id"]) == []
    assert _codes(at) == []


def test_new_secret_disable_enable_delete(use_api: Api) -> None:
    email, owner, project = _team(use_api)
    webhook = _create(use_api, owner, project["id"])
    at = _screen(email, project["id"])
    assert webhook["secret"] not in markdown_text(at)

    at.button(key=f"rotate_{webhook['id']}").click().run()
    assert _codes(at) == []  # asked first
    at.button(key=f"rotate_{webhook['id']}_confirm").click().run()
    assert_calm(at)
    (secret,) = _codes(at)
    assert secret.startswith("whsec_")
    assert secret != webhook["secret"]
    assert "previous one still signs for 24 hours" in successes(at)[0]

    at.button(key=f"toggle_{webhook['id']}").click().run()
    assert_calm(at)
    assert successes(at) == [f"Disabled the webhook to {HOOK_URL}."]
    assert _webhooks(use_api, owner, project["id"])[0]["active"] is False
    assert "Disabled" in markdown_text(at)
    assert not at.button(key=f"ping_{webhook['id']}").disabled  # pings try the receiver

    at.button(key=f"toggle_{webhook['id']}").click().run()
    assert_calm(at)
    assert _webhooks(use_api, owner, project["id"])[0]["active"] is True

    at.multiselect(key=f"webhook_events_{webhook['id']}").set_value(["task.updated"])
    at.button(key=f"save_events_{webhook['id']}").click().run()
    assert_calm(at)
    assert _webhooks(use_api, owner, project["id"])[0]["events"] == ["task.updated"]

    at.button(key=f"delete_{webhook['id']}").click().run()
    assert len(_webhooks(use_api, owner, project["id"])) == 1  # asked first
    at.button(key=f"delete_{webhook['id']}_cancel").click().run()
    assert len(_webhooks(use_api, owner, project["id"])) == 1
    at.button(key=f"delete_{webhook['id']}").click().run()
    at.button(key=f"delete_{webhook['id']}_confirm").click().run()
    assert_calm(at)
    assert successes(at) == [f"Deleted the webhook to {HOOK_URL} and its delivery log."]
    assert _webhooks(use_api, owner, project["id"]) == []
    assert _codes(at) == []  # the secret of a deleted webhook is forgotten too


def _logged_delivery(api: Api, webhook_id: int, kind: str = "ping") -> int:
    """An attempt as the delivery job logs it (failed, nothing pending after it), written to
    the API's database: the test decides the state, whatever a worker does meanwhile."""
    path = make_url(api.env["DATABASE_URL"]).database
    assert path
    with sqlite3.connect(path) as db:
        cursor = db.execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, message_id, type, payload, "
            "attempt, status, response_status, duration_ms, error, created_at) VALUES "
            "(?, NULL, ?, ?, '{}', 1, 'failed', 500, 12, 'receiver answered 500', "
            "'2026-12-06 08:00:00.000000')",
            (webhook_id, f"msg_client_{webhook_id}", kind),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)


def test_log_shows_errors_and_redelivers(use_api: Api) -> None:
    email, owner, project = _team(use_api)
    webhook = _create(use_api, owner, project["id"])
    delivery_id = _logged_delivery(use_api, webhook["id"])
    at = _screen(email, project["id"])
    at.toggle(key=f"webhook_log_{webhook['id']}").set_value(True).run()
    assert_calm(at)
    text = markdown_text(at)
    assert f"#{delivery_id} · ping · attempt 1 · Failed · HTTP 500 · 12 ms" in text
    captions = " ".join(unescaped(str(c.value)) for c in at.caption)
    assert "Error: receiver answered 500" in captions

    at.button(key=f"redeliver_{delivery_id}").click().run()
    assert_calm(at)
    assert successes(at) == [f"Delivery {delivery_id} queued again (attempt 2)."]
    attempts = [d["attempt"] for d in _deliveries(use_api, owner, project["id"], webhook["id"])]
    assert 2 in attempts

    # Its attempt is pending now (or a worker's retry of it is): redelivering again hurries
    # that one rather than adding another.
    at.button(key=f"redeliver_{delivery_id}").click().run()
    assert_calm(at)
    (message,) = successes(at)
    assert message.startswith(f"Delivery {delivery_id} queued again (attempt ")
    sent = _deliveries(use_api, owner, project["id"], webhook["id"])
    pending = [d for d in sent if d["type"] == "ping" and d["status"] == "pending"]
    assert len(pending) <= 1


def test_redelivering_an_event_to_a_disabled_webhook_is_explained(use_api: Api) -> None:
    email, owner, project = _team(use_api)
    webhook = _create(use_api, owner, project["id"])
    delivery_id = _logged_delivery(use_api, webhook["id"], kind="task.created")
    at = _screen(email, project["id"])
    at.toggle(key=f"webhook_log_{webhook['id']}").set_value(True).run()
    use_api.v2.patch(
        f"/projects/{project['id']}/webhooks/{webhook['id']}",
        headers=owner,
        json={"active": False},
    )
    at.button(key=f"redeliver_{delivery_id}").click().run()
    assert_calm(at)
    (message,) = _errors(at)
    assert "disabled" in message
    # Read again: the webhook is disabled, so its events offer no redelivery now.
    assert f"redeliver_{delivery_id}" not in _button_keys(at)


def test_only_admins_see_controls_and_a_lowered_role_is_explained(use_api: Api) -> None:
    email, owner, project = _team(use_api)
    webhook = _create(use_api, owner, project["id"])
    editor_email = use_api.register()
    use_api.add_member(owner, project["id"], editor_email, "editor")
    admin_email = use_api.register()
    use_api.add_member(owner, project["id"], admin_email, "admin")

    editor = _screen(editor_email, project["id"])
    infos = " ".join(unescaped(str(i.value)) for i in editor.info)
    assert "managed by its admins and owners" in infos
    assert "Your role here is editor" in infos
    assert not any(key.startswith(("ping_", "rotate_", "delete_")) for key in _button_keys(editor))
    assert HOOK_URL not in markdown_text(editor)

    admin = _screen(admin_email, project["id"])
    assert f"ping_{webhook['id']}" in _button_keys(admin)
    admin_id = use_api.user_id(use_api.headers(admin_email))
    use_api.set_role(owner, project["id"], admin_id, "editor")
    admin.button(key=f"ping_{webhook['id']}").click().run()
    assert_calm(admin)
    (message,) = _errors(admin)
    assert "Your role in this project is editor; this needs admin or above." in message
    sent = _deliveries(use_api, owner, project["id"], webhook["id"])
    assert [d for d in sent if d["type"] == "ping"] == []


def test_webhook_deleted_meanwhile_is_a_404_shown(use_api: Api) -> None:
    email, owner, project = _team(use_api)
    webhook = _create(use_api, owner, project["id"])
    at = _screen(email, project["id"])
    at.button(key=f"rotate_{webhook['id']}").click().run()  # asked; deleted before answering
    deleted = use_api.v2.delete(
        f"/projects/{project['id']}/webhooks/{webhook['id']}", headers=owner
    )
    assert deleted.status_code == 204
    at.button(key=f"rotate_{webhook['id']}_confirm").click().run()
    assert_calm(at)
    assert _errors(at) == ["Webhook not found."]
    assert _codes(at) == []
    assert f"rotate_{webhook['id']}" not in _button_keys(at)  # the list is read again
