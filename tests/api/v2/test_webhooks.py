"""`/api/v2/projects/{id}/webhooks` (spec api-v2 section 9, docs/decisions/0033): what an
admin, a lesser member, an outsider and a hostile client get, on SQLite and PostgreSQL.

Host names are resolved by a resolver the test controls (`FakeDns`), never by real DNS: a
name it does not know fails as an unknown name does. Nothing is sent anywhere: the routes only
write what the delivery job will send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.bounds import WEBHOOKS_PER_PROJECT_MAX
from app.core.config import Settings
from app.core.errors import problem_type
from app.core.roles import ProjectRole
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import webhooks as webhook_statements
from app.models.event import Event
from app.models.project import Project, ProjectMember
from app.models.user import User
from app.models.webhook import Webhook, WebhookDelivery
from app.schemas.user import UserCreate
from app.schemas.webhook import EVENT_TYPES
from app.services import user as user_service
from tests.api.conftest import Headers
from tests.api.v2.conftest import V2, Team, add_project
from tests.conftest import BCRYPT_TEST_ROUNDS, TEST_PASSWORD
from tests.support import assert_problem, refused_at_first

WEBHOOK_FIELDS = {"id", "url", "events", "active", "description", "created_at", "disabled_reason"}
DELIVERY_FIELDS = {
    "id",
    "event_id",
    "type",
    "attempt",
    "status",
    "response_status",
    "duration_ms",
    "error",
    "created_at",
    "next_attempt_at",
}
MANAGERS = ("owner", "admin")
LESSER = ("editor", "commenter", "viewer")
PUBLIC_URL = "https://hooks.example.com/tasks"
MALFORMED_IDS = ("abc", "0", "-1", "01", "+1", "1.0", "9" * 20)


@dataclass
class FakeDns:
    """The test's resolver: names it knows answer their addresses, others fail as unknown
    names do. `asked`: the names it was asked, in order."""

    answers: dict[str, list[str]] = field(
        default_factory=lambda: {
            "hooks.example.com": ["93.184.215.14"],
            "other.example.com": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "internal.example.com": ["10.0.0.1"],
            "mixed.example.com": ["93.184.215.14", "192.168.1.20"],
            "localhost": ["127.0.0.1"],
            "metadata.example.com": ["169.254.169.254"],
            "v6local.example.com": ["::1"],
            "mapped.example.com": ["::ffff:10.1.2.3"],
        }
    )
    asked: list[str] = field(default_factory=list)

    async def resolve(self, host: str, port: int) -> list[str]:
        assert 0 < port < 65536
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


@pytest.fixture
async def dns(app: FastAPI) -> AsyncIterator[FakeDns]:
    """Names resolved by a `FakeDns` (the app's `webhook_resolver`), never by real DNS."""
    fake = FakeDns()
    app.state.webhook_resolver = fake.resolve
    try:
        yield fake
    finally:
        del app.state.webhook_resolver


@contextmanager
def allowed_networks_set(app: FastAPI, *networks: str) -> Iterator[None]:
    """WEBHOOK_ALLOWED_NETWORKS as the operator would set it, for the block."""
    original: Settings = app.state.settings
    app.state.settings = original.model_copy(update={"webhook_allowed_networks": list(networks)})
    try:
        yield
    finally:
        app.state.settings = original


def hooks_url(project_id: object) -> str:
    return f"{V2}/projects/{project_id}/webhooks"


def hook_url(project_id: object, webhook_id: object) -> str:
    return f"{hooks_url(project_id)}/{webhook_id}"


def deliveries_url(project_id: object, webhook_id: object) -> str:
    return f"{hook_url(project_id, webhook_id)}/deliveries"


def redeliver_url(project_id: object, webhook_id: object, delivery_id: object) -> str:
    return f"{deliveries_url(project_id, webhook_id)}/{delivery_id}/redeliver"


def comparable(problem: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in problem.items() if key not in {"request_id", "instance"}}


async def create(
    client: httpx.AsyncClient, project_id: int, headers: Headers, **body: object
) -> dict[str, Any]:
    response = await client.post(
        hooks_url(project_id),
        json={"url": PUBLIC_URL, "events": ["task.created"], **body},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def stored(session: AsyncSession, webhook_id: int) -> Webhook | None:
    found: Webhook | None = await session.get(Webhook, webhook_id, populate_existing=True)
    return found


async def webhook_count(session: AsyncSession, project_id: int) -> int:
    found = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.project_id == project_id)
    )
    return int(found or 0)


async def deliveries_of(session: AsyncSession, webhook_id: int) -> list[WebhookDelivery]:
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def add_delivery(
    session: AsyncSession,
    webhook_id: int,
    *,
    status: str = "failed",
    attempt: int = 1,
    message_id: str = "msg_test1",
    event_id: int | None = 7,
    error: str | None = "receiver answered 500",
) -> int:
    """An attempt as the delivery job would have logged it."""
    now = utcnow()
    delivery = WebhookDelivery(
        webhook_id=webhook_id,
        event_id=event_id,
        message_id=message_id,
        type="task.updated",
        payload='{"type":"task.updated","timestamp":"2026-12-06T08:00:00.000Z","data":{}}',
        attempt=attempt,
        status=status,
        response_status=500 if status == "failed" else None,
        duration_ms=42,
        error=error,
        response_body="secret-free body",
        created_at=now,
        next_attempt_at=None if status != "pending" else now,
        # A pending attempt is a retry the job wrote, not yet claimed by a worker.
        attempted_at=None if status == "pending" else now,
    )
    session.add(delivery)
    await session.commit()
    return delivery.id


async def event_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Event)) or 0)


def near(text: str, moment: datetime, seconds: float = 60) -> bool:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return abs((parsed - moment).total_seconds()) < seconds


# --- create ----------------------------------------------------------------------------------


class TestCreate:
    @pytest.mark.usefixtures("dns")
    async def test_a_create_refused_by_a_change_gone_at_once_is_made(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The insert met the project in the trash (or the caller not yet an admin), changed
        by the read that tells why: the webhook is made again and answers 201 (it was a bare
        409 `conflict`)."""
        calls = refused_at_first(monkeypatch, webhook_statements, "insert_webhook")
        created = await create(client, team.project_id, team.headers["admin"])
        assert calls == ["refused", "made"]
        assert await stored(session, created["id"]) is not None

    @pytest.mark.parametrize("who", MANAGERS)
    async def test_admins_create_and_see_the_secret_once(
        self,
        client: httpx.AsyncClient,
        team: Team,
        dns: FakeDns,
        session: AsyncSession,
        who: str,
    ) -> None:
        response = await client.post(
            hooks_url(team.project_id),
            json={
                "url": PUBLIC_URL,
                "events": ["task.created", "comment.created"],
                "description": "Our chat bot",
            },
            headers=team.headers[who],
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == WEBHOOK_FIELDS | {"secret"}
        assert body["url"] == PUBLIC_URL
        assert body["events"] == ["task.created", "comment.created"]
        assert body["active"] is True
        assert body["description"] == "Our chat bot"
        assert body["disabled_reason"] is None
        assert near(body["created_at"], datetime.now(UTC))
        assert body["secret"].startswith("whsec_")
        assert response.headers["location"] == hook_url(team.project_id, body["id"])
        assert response.headers["cache-control"] == "no-store"
        assert dns.asked == ["hooks.example.com"]

        row = await stored(session, body["id"])
        assert row is not None
        assert row.secret == body["secret"]
        assert row.project_id == team.project_id
        again = await client.get(response.headers["location"], headers=team.headers[who])
        assert again.status_code == 200
        assert again.json() == {k: v for k, v in body.items() if k != "secret"}
        assert body["secret"] not in again.text

    @pytest.mark.usefixtures("dns")
    async def test_inactive_and_every_event(self, client: httpx.AsyncClient, team: Team) -> None:
        body = await create(
            client, team.project_id, team.headers["admin"], events=["*"], active=False
        )
        assert body["events"] == ["*"]
        both = await create(
            client, team.project_id, team.headers["admin"], events=["task.moved", "*"]
        )
        assert both["events"] == ["task.moved", "*"]  # as sent: "*" covers the rest anyway
        assert body["active"] is False
        assert body["description"] is None

    @pytest.mark.usefixtures("dns")
    async def test_every_event_name_of_the_history_is_accepted(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        body = await create(client, team.project_id, team.headers["admin"], events=EVENT_TYPES)
        assert body["events"] == list(EVENT_TYPES)
        assert "task.updated" in EVENT_TYPES
        assert "member.role_changed" in EVENT_TYPES
        assert "task.joined" not in EVENT_TYPES

    @pytest.mark.parametrize("who", LESSER)
    async def test_lesser_members_get_403_naming_the_roles(
        self,
        client: httpx.AsyncClient,
        team: Team,
        dns: FakeDns,
        session: AsyncSession,
        who: str,
    ) -> None:
        response = await client.post(
            hooks_url(team.project_id),
            json={"url": PUBLIC_URL, "events": ["*"]},
            headers=team.headers[who],
        )
        body = assert_problem(response, 403)
        assert body["role"] == who
        assert body["required_role"] == "admin"
        assert await webhook_count(session, team.project_id) == 0
        assert dns.asked == []  # nobody below admin makes the server resolve names

    async def test_outsider_gets_the_404_of_an_unknown_project(
        self, client: httpx.AsyncClient, team: Team, dns: FakeDns, session: AsyncSession
    ) -> None:
        body = {"url": PUBLIC_URL, "events": ["*"]}
        outsider = await client.post(
            hooks_url(team.project_id), json=body, headers=team.headers["outsider"]
        )
        unknown = await client.post(hooks_url(2**60), json=body, headers=team.headers["owner"])
        assert comparable(assert_problem(outsider, 404)) == comparable(assert_problem(unknown, 404))
        assert await webhook_count(session, team.project_id) == 0
        assert dns.asked == []

    @pytest.mark.usefixtures("dns")
    async def test_project_in_the_trash_is_404(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        await session.execute(
            update(Project).where(Project.id == team.project_id).values(deleted_at=utcnow())
        )
        await session.commit()
        response = await client.post(
            hooks_url(team.project_id),
            json={"url": PUBLIC_URL, "events": ["*"]},
            headers=team.headers["owner"],
        )
        assert_problem(response, 404)

    async def test_without_token_is_401(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.post(
            hooks_url(team.project_id), json={"url": PUBLIC_URL, "events": ["*"]}
        )
        assert_problem(response, 401)

    @pytest.mark.parametrize(
        ("url", "address"),
        [
            ("http://10.0.0.1/hook", "10.0.0.1"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
            ("http://[::1]/hook", "::1"),
            ("http://127.0.0.1:8080/hook", "127.0.0.1"),
            ("http://2130706433/hook", "127.0.0.1"),  # decimal
            ("http://0x7f000001/hook", "127.0.0.1"),  # hex
            ("http://0177.0.0.1/hook", "127.0.0.1"),  # octal
            ("http://127.1/hook", "127.0.0.1"),  # short form
            ("http://0xA9.0xFE.0xA9.0xFE/", "169.254.169.254"),
            ("http://[::ffff:127.0.0.1]/hook", "127.0.0.1"),  # IPv4-mapped IPv6
            ("http://100.64.0.1/hook", "100.64.0.1"),
            ("http://[fd00::1]/hook", "fd00::1"),  # IPv6 ULA
            ("http://[fe80::1]/hook", "fe80::1"),
            ("http://0.0.0.0/hook", "0.0.0.0"),
            ("https://internal.example.com/hook", "10.0.0.1"),
            ("https://mixed.example.com/hook", "192.168.1.20"),
            ("http://localhost:9000/hook", "127.0.0.1"),
            ("https://metadata.example.com/", "169.254.169.254"),
            ("https://v6local.example.com/", "::1"),
            ("https://mapped.example.com/", "10.1.2.3"),
        ],
    )
    @pytest.mark.usefixtures("dns")
    async def test_non_public_destinations_are_refused_without_naming_them(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        url: str,
        address: str,
    ) -> None:
        """Refused, and the problem names neither the host sent nor the address it is or
        resolves to: it never repeats what the client sent, and any user may own a project,
        so it must not tell what the server's resolver says of internal names."""
        response = await client.post(
            hooks_url(team.project_id),
            json={"url": url, "events": ["*"]},
            headers=team.headers["admin"],
        )
        host = urlsplit(url).hostname
        assert host is not None
        body = assert_problem(response, 422, loc=["body", "url"], absent=[host, address])
        (item,) = body["errors"]
        assert item["type"] == "webhook_url_blocked"
        assert "not a public address" in item["msg"]
        assert await webhook_count(session, team.project_id) == 0

    @pytest.mark.parametrize(
        ("url", "kind"),
        [
            ("ftp://hooks.example.com/", "webhook_url_invalid"),
            ("file:///etc/passwd", "webhook_url_invalid"),
            ("https://user:pw@hooks.example.com/", "webhook_url_invalid"),
            ("hooks.example.com/tasks", "webhook_url_invalid"),
            ("https:///no-host", "webhook_url_invalid"),
            ("https://hooks.example.com:99999/", "webhook_url_invalid"),
            ("https://%31%32%37.0.0.1/", "webhook_url_invalid"),
            ("https://nowhere.example.com/hook", "webhook_url_unresolvable"),
        ],
    )
    @pytest.mark.usefixtures("dns")
    async def test_bad_urls_are_422_saying_why(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        url: str,
        kind: str,
    ) -> None:
        response = await client.post(
            hooks_url(team.project_id),
            json={"url": url, "events": ["*"]},
            headers=team.headers["admin"],
        )
        host = urlsplit(url).hostname
        sent = ["pw", *([host] if host else [])]
        body = assert_problem(response, 422, loc=["body", "url"], absent=sent)
        assert [item["type"] for item in body["errors"]] == [kind]
        assert await webhook_count(session, team.project_id) == 0

    @pytest.mark.usefixtures("dns")
    async def test_allowed_networks_let_private_addresses_in(
        self, client: httpx.AsyncClient, app: FastAPI, team: Team
    ) -> None:
        admin = team.headers["admin"]
        with allowed_networks_set(app, "127.0.0.0/8"):
            body = await create(client, team.project_id, admin, url="http://127.0.0.1:8080/hook")
            assert body["url"] == "http://127.0.0.1:8080/hook"
            named = await create(client, team.project_id, admin, url="http://localhost:8080/h")
            assert named["url"] == "http://localhost:8080/h"
            # Only the networks allowed: 10.x and the metadata address stay refused.
            for url in ("http://10.0.0.1/", "http://169.254.169.254/"):
                response = await client.post(
                    hooks_url(team.project_id), json={"url": url, "events": ["*"]}, headers=admin
                )
                assert_problem(response, 422, loc=["body", "url"])
        # And once the operator allows nothing, 127.0.0.1 is refused again.
        response = await client.post(
            hooks_url(team.project_id),
            json={"url": "http://127.0.0.1:8080/hook", "events": ["*"]},
            headers=admin,
        )
        assert_problem(response, 422, loc=["body", "url"])

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"events": ["*"]}, ["body", "url"]),
            ({"url": PUBLIC_URL}, ["body", "events"]),
            ({"url": PUBLIC_URL, "events": []}, ["body", "events"]),
            ({"url": PUBLIC_URL, "events": "task.created"}, ["body", "events"]),
            ({"url": PUBLIC_URL, "events": ["task.joined"]}, ["body", "events", 0]),
            ({"url": PUBLIC_URL, "events": ["task.created", "bogus"]}, ["body", "events", 1]),
            ({"url": PUBLIC_URL, "events": ["Task.Created"]}, ["body", "events", 0]),
            ({"url": PUBLIC_URL, "events": [7]}, ["body", "events", 0]),
            ({"url": PUBLIC_URL, "events": ["task.created", "task.created"]}, ["body", "events"]),
            ({"url": PUBLIC_URL, "events": ["*"], "active": "yes"}, ["body", "active"]),
            ({"url": PUBLIC_URL, "events": ["*"], "active": None}, ["body", "active"]),
            (
                {"url": PUBLIC_URL, "events": ["*"], "description": "x" * 501},
                ["body", "description"],
            ),
            (
                {"url": PUBLIC_URL, "events": ["*"], "description": "a\u0000b"},
                ["body", "description"],
            ),
            ({"url": None, "events": ["*"]}, ["body", "url"]),
            ({"url": "", "events": ["*"]}, ["body", "url"]),
            ({"url": "https://x.example.com/" + "a" * 2100, "events": ["*"]}, ["body", "url"]),
            ({"url": "https://hooks.example.com/\nx", "events": ["*"]}, ["body", "url"]),
            ({"url": PUBLIC_URL, "events": ["*"], "secret": "whsec_mine"}, ["body", "secret"]),
            ({"url": PUBLIC_URL, "events": ["*"], "project_id": 1}, ["body", "project_id"]),
        ],
    )
    async def test_bad_bodies_are_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        team: Team,
        dns: FakeDns,
        session: AsyncSession,
        body: dict[str, Any],
        loc: list[str | int],
    ) -> None:
        response = await client.post(
            hooks_url(team.project_id), json=body, headers=team.headers["admin"]
        )
        assert_problem(response, 422, loc=loc)
        assert await webhook_count(session, team.project_id) == 0
        assert dns.asked == []

    @pytest.mark.parametrize(
        ("content", "content_type", "status"),
        [
            (b'{"url": "https://hooks.example.com/", "events": ["*"]}', "text/plain", 415),
            (b'{"url": "https://hooks.example.com/", "events": ["*"]}', None, 415),
            (b'{"url": ', "application/json", 422),
            (b"", "application/json", 422),
            (b'["https://hooks.example.com/"]', "application/json", 422),
        ],
    )
    @pytest.mark.usefixtures("dns")
    async def test_bodies_that_are_not_a_json_object(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        content: bytes,
        content_type: str | None,
        status: int,
    ) -> None:
        headers = dict(team.headers["admin"])
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = await client.post(hooks_url(team.project_id), content=content, headers=headers)
        assert_problem(response, status)
        assert await webhook_count(session, team.project_id) == 0

    @pytest.mark.usefixtures("dns")
    async def test_at_most_the_bound_per_project(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        for _ in range(WEBHOOKS_PER_PROJECT_MAX):
            await create(client, team.project_id, team.headers["admin"])
        response = await client.post(
            hooks_url(team.project_id),
            json={"url": PUBLIC_URL, "events": ["*"]},
            headers=team.headers["admin"],
        )
        body = assert_problem(response, 409)
        assert body["type"] == problem_type("webhook-limit-reached")
        assert await webhook_count(session, team.project_id) == WEBHOOKS_PER_PROJECT_MAX
        # Another project has its own allowance.
        other = await add_project(session, {team.user("admin"): _owner()}, name="Other")
        await create(client, other, team.headers["admin"])

    @pytest.mark.usefixtures("dns")
    async def test_idempotency_key_creates_once(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        headers = {**team.headers["admin"], "Idempotency-Key": "hook-1"}
        body = {"url": PUBLIC_URL, "events": ["*"]}
        first = await client.post(hooks_url(team.project_id), json=body, headers=headers)
        again = await client.post(hooks_url(team.project_id), json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert await webhook_count(session, team.project_id) == 1
        # Both carry the secret, so neither may be kept by a cache. Before, the key's
        # responses were rebuilt with Location and ETag only.
        assert first.headers["cache-control"] == again.headers["cache-control"] == "no-store"

    @pytest.mark.usefixtures("dns")
    async def test_no_event_is_recorded(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        before = await event_count(session)
        created = await create(client, team.project_id, team.headers["admin"])
        path = hook_url(team.project_id, created["id"])
        await client.patch(path, json={"description": "x"}, headers=team.headers["admin"])
        await client.post(f"{path}/rotate-secret", headers=team.headers["admin"])
        await client.delete(path, headers=team.headers["admin"])
        assert await event_count(session) == before


def _owner() -> ProjectRole:
    return ProjectRole.OWNER


class TestSecretsStayOut:
    @pytest.mark.usefixtures("dns")
    async def test_secrets_never_reach_the_logs(
        self,
        client: httpx.AsyncClient,
        team: Team,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        # At the service's default LOG_LEVEL (INFO). At DEBUG, aiosqlite logs every SQL
        # parameter, secrets included: app/core/logging.py should keep it at INFO.
        caplog.set_level(logging.INFO)
        created = await create(client, team.project_id, team.headers["admin"])
        path = hook_url(team.project_id, created["id"])
        rotated = await client.post(f"{path}/rotate-secret", headers=team.headers["admin"])
        await client.post(f"{path}/ping", headers=team.headers["admin"])
        await client.patch(path, json={"secret": "x"}, headers=team.headers["admin"])
        logged = caplog.text + "".join(capsys.readouterr())
        assert "whsec_" not in logged
        for secret in (created["secret"], rotated.json()["secret"]):
            assert secret[len("whsec_") :] not in logged


# --- list and read -----------------------------------------------------------------------------


class TestRead:
    @pytest.mark.usefixtures("dns")
    async def test_list_oldest_first_without_secrets(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        made = [
            await create(client, team.project_id, team.headers["admin"], description=f"n{i}")
            for i in range(5)
        ]
        seen: list[dict[str, Any]] = []
        response = await client.get(
            hooks_url(team.project_id), params={"limit": 2}, headers=team.headers["owner"]
        )
        while True:
            assert response.status_code == 200, response.text
            page = response.json()
            for item in page["items"]:
                assert set(item) == WEBHOOK_FIELDS
            assert "whsec_" not in response.text
            seen.extend(page["items"])
            if page["next_cursor"] is None:
                assert "link" not in response.headers
                break
            assert response.headers["link"].endswith('rel="next"')
            response = await client.get(
                hooks_url(team.project_id),
                params={"limit": 2, "cursor": page["next_cursor"]},
                headers=team.headers["owner"],
            )
        assert [item["id"] for item in seen] == [item["id"] for item in made]

    async def test_empty_list(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.get(hooks_url(team.project_id), headers=team.headers["admin"])
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}

    @pytest.mark.parametrize("who", LESSER)
    @pytest.mark.usefixtures("dns")
    async def test_lesser_members_may_not_list_or_read(
        self, client: httpx.AsyncClient, team: Team, who: str
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        for path in (hooks_url(team.project_id), hook_url(team.project_id, created["id"])):
            body = assert_problem(await client.get(path, headers=team.headers[who]), 403)
            assert (body["role"], body["required_role"]) == (who, "admin")

    @pytest.mark.usefixtures("dns")
    async def test_outsider_gets_404(self, client: httpx.AsyncClient, team: Team) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        outsider = team.headers["outsider"]
        listing = await client.get(hooks_url(team.project_id), headers=outsider)
        unknown = await client.get(hooks_url(2**60), headers=outsider)
        assert comparable(assert_problem(listing, 404)) == comparable(assert_problem(unknown, 404))
        assert_problem(
            await client.get(hook_url(team.project_id, created["id"]), headers=outsider), 404
        )

    @pytest.mark.usefixtures("dns")
    async def test_webhook_of_another_project_is_404_under_this_one(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        admin = team.user("admin")
        other = await add_project(session, {admin: _owner()}, name="Other")
        theirs = await create(client, other, team.headers["admin"])
        ours = await create(client, team.project_id, team.headers["admin"])
        wrong = hook_url(team.project_id, theirs["id"])
        unknown = hook_url(team.project_id, 2**60)
        h = team.headers["admin"]
        for method in ("GET", "PATCH", "DELETE"):
            kwargs: dict[str, Any] = {"json": {"description": "x"}} if method == "PATCH" else {}
            first = await client.request(method, wrong, headers=h, **kwargs)
            second = await client.request(method, unknown, headers=h, **kwargs)
            assert comparable(assert_problem(first, 404)) == comparable(assert_problem(second, 404))
        for suffix in ("rotate-secret", "ping"):
            assert_problem(await client.post(f"{wrong}/{suffix}", headers=h), 404)
        assert_problem(await client.get(f"{wrong}/deliveries", headers=h), 404)
        row = await stored(session, theirs["id"])
        assert row is not None
        assert row.description is None
        assert await deliveries_of(session, theirs["id"]) == []
        assert ours["id"] != theirs["id"]

    @pytest.mark.parametrize("bad", MALFORMED_IDS)
    async def test_malformed_ids_are_422(
        self, client: httpx.AsyncClient, team: Team, bad: str
    ) -> None:
        h = team.headers["admin"]
        assert_problem(await client.get(hook_url(team.project_id, bad), headers=h), 422)
        assert_problem(await client.post(redeliver_url(team.project_id, 1, bad), headers=h), 422)

    async def test_bad_cursor_is_422(self, client: httpx.AsyncClient, team: Team) -> None:
        response = await client.get(
            hooks_url(team.project_id), params={"cursor": "abc.def"}, headers=team.headers["admin"]
        )
        assert_problem(response, 422, loc=["query", "cursor"])


# --- update and delete -----------------------------------------------------------------------


class TestUpdate:
    async def test_change_every_field(
        self, client: httpx.AsyncClient, team: Team, dns: FakeDns, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"], description="a")
        path = hook_url(team.project_id, created["id"])
        dns.asked.clear()
        response = await client.patch(
            path,
            json={
                "url": "https://other.example.com/v2",
                "events": ["label.deleted"],
                "description": None,
                "active": False,
            },
            headers=team.headers["owner"],
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == WEBHOOK_FIELDS
        assert body["url"] == "https://other.example.com/v2"
        assert body["events"] == ["label.deleted"]
        assert body["description"] is None
        assert body["active"] is False
        assert dns.asked == ["other.example.com"]
        row = await stored(session, created["id"])
        assert row is not None
        assert row.secret == created["secret"]  # a PATCH never touches the secret
        assert created["secret"] not in response.text

    @pytest.mark.usefixtures("dns")
    async def test_empty_body_changes_nothing(self, client: httpx.AsyncClient, team: Team) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        response = await client.patch(
            hook_url(team.project_id, created["id"]), json={}, headers=team.headers["admin"]
        )
        assert response.status_code == 200
        assert response.json() == {k: v for k, v in created.items() if k != "secret"}

    async def test_same_url_is_not_resolved_again(
        self, client: httpx.AsyncClient, team: Team, dns: FakeDns
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        dns.asked.clear()
        response = await client.patch(
            hook_url(team.project_id, created["id"]),
            json={"url": PUBLIC_URL, "events": ["*"]},
            headers=team.headers["admin"],
        )
        assert response.status_code == 200
        assert dns.asked == []

    @pytest.mark.usefixtures("dns")
    async def test_new_url_is_checked(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        path = hook_url(team.project_id, created["id"])
        for url in ("http://10.0.0.1/", "https://internal.example.com/", "ftp://x.example/"):
            response = await client.patch(
                path, json={"url": url, "description": "changed"}, headers=team.headers["admin"]
            )
            assert_problem(response, 422, loc=["body", "url"])
        row = await stored(session, created["id"])
        assert row is not None
        assert (row.url, row.description) == (PUBLIC_URL, None)  # nothing half-written

    @pytest.mark.usefixtures("dns")
    async def test_enabling_clears_why_it_was_disabled(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        await session.execute(
            update(Webhook)
            .where(Webhook.id == created["id"])
            .values(
                active=False,
                disabled_reason="The receiver answered 410 Gone.",
                failing_since=utcnow() - timedelta(days=6),
            )
        )
        await session.commit()
        path = hook_url(team.project_id, created["id"])
        shown = (await client.get(path, headers=team.headers["admin"])).json()
        assert (shown["active"], shown["disabled_reason"]) == (
            False,
            "The receiver answered 410 Gone.",
        )
        response = await client.patch(path, json={"active": True}, headers=team.headers["admin"])
        assert response.status_code == 200
        assert (response.json()["active"], response.json()["disabled_reason"]) == (True, None)
        row = await stored(session, created["id"])
        assert row is not None
        assert (row.active, row.disabled_reason, row.failing_since) == (True, None, None)

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"url": None}, ["body", "url"]),
            ({"events": None}, ["body", "events"]),
            ({"active": None}, ["body", "active"]),
            ({"events": []}, ["body", "events"]),
            ({"events": ["nope"]}, ["body", "events", 0]),
            ({"active": 1}, ["body", "active"]),
            ({"secret": "whsec_x"}, ["body", "secret"]),
            ({"disabled_reason": None}, ["body", "disabled_reason"]),
        ],
    )
    @pytest.mark.usefixtures("dns")
    async def test_bad_bodies_are_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        body: dict[str, Any],
        loc: list[str | int],
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        response = await client.patch(
            hook_url(team.project_id, created["id"]), json=body, headers=team.headers["admin"]
        )
        assert_problem(response, 422, loc=loc)
        row = await stored(session, created["id"])
        assert row is not None
        assert (row.url, row.events, row.active) == (PUBLIC_URL, ["task.created"], True)

    @pytest.mark.usefixtures("dns")
    async def test_not_json_is_415(self, client: httpx.AsyncClient, team: Team) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        response = await client.patch(
            hook_url(team.project_id, created["id"]),
            content=b'{"active": false}',
            headers={**team.headers["admin"], "Content-Type": "text/plain"},
        )
        assert_problem(response, 415)

    @pytest.mark.parametrize("who", LESSER)
    async def test_lesser_members_get_403_before_the_url_is_resolved(
        self, client: httpx.AsyncClient, team: Team, dns: FakeDns, who: str
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        dns.asked.clear()
        path = hook_url(team.project_id, created["id"])
        body = {"url": "https://other.example.com/"}
        response = await client.patch(path, json=body, headers=team.headers[who])
        problem = assert_problem(response, 403)
        assert (problem["role"], problem["required_role"]) == (who, "admin")
        assert dns.asked == []
        deleted = await client.delete(path, headers=team.headers[who])
        assert_problem(deleted, 403)
        outsider = await client.patch(path, json=body, headers=team.headers["outsider"])
        assert_problem(outsider, 404)
        assert dns.asked == []

    @pytest.mark.usefixtures("dns")
    async def test_delete_takes_the_log_with_it(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        await add_delivery(session, created["id"])
        path = hook_url(team.project_id, created["id"])
        response = await client.delete(path, headers=team.headers["admin"])
        assert response.status_code == 204
        assert response.content == b""
        assert await stored(session, created["id"]) is None
        assert await deliveries_of(session, created["id"]) == []
        assert_problem(await client.get(path, headers=team.headers["admin"]), 404)
        assert_problem(await client.delete(path, headers=team.headers["admin"]), 404)
        assert_problem(await client.delete(path, headers=team.headers["outsider"]), 404)


# --- secrets ----------------------------------------------------------------------------------


class TestRotate:
    @pytest.mark.usefixtures("dns")
    async def test_new_secret_shown_once_old_one_kept_a_day(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        path = hook_url(team.project_id, created["id"])
        response = await client.post(f"{path}/rotate-secret", headers=team.headers["owner"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == WEBHOOK_FIELDS | {"secret"}
        assert body["secret"].startswith("whsec_")
        assert body["secret"] != created["secret"]
        assert response.headers["cache-control"] == "no-store"
        row = await stored(session, created["id"])
        assert row is not None
        assert row.secret == body["secret"]
        assert row.previous_secret == created["secret"]
        assert row.previous_secret_until is not None
        assert near(row.previous_secret_until.isoformat(), utcnow() + timedelta(hours=24))
        listing = await client.get(hooks_url(team.project_id), headers=team.headers["admin"])
        read = await client.get(path, headers=team.headers["admin"])
        for later in (listing, read):
            assert "whsec_" not in later.text

    @pytest.mark.parametrize("who", [*LESSER, "outsider"])
    @pytest.mark.usefixtures("dns")
    async def test_only_admins_rotate(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        who: str,
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        response = await client.post(
            f"{hook_url(team.project_id, created['id'])}/rotate-secret", headers=team.headers[who]
        )
        assert_problem(response, 404 if who == "outsider" else 403)
        row = await stored(session, created["id"])
        assert row is not None
        assert (row.secret, row.previous_secret) == (created["secret"], None)


# --- ping, log, redelivery -------------------------------------------------------------------


class TestDeliveries:
    @pytest.mark.usefixtures("dns")
    async def test_ping_writes_a_pending_attempt_due_now(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        path = hook_url(team.project_id, created["id"])
        response = await client.post(f"{path}/ping", headers=team.headers["admin"])
        assert response.status_code == 202, response.text
        shown = response.json()
        assert set(shown) == DELIVERY_FIELDS
        assert (shown["type"], shown["event_id"], shown["attempt"], shown["status"]) == (
            "ping",
            None,
            1,
            "pending",
        )
        (row,) = await deliveries_of(session, created["id"])
        assert row.id == shown["id"]
        assert row.message_id.startswith("msg_")
        assert len(row.message_id) > 10
        assert row.next_attempt_at is not None
        assert near(row.next_attempt_at.isoformat(), utcnow())
        payload = json.loads(row.payload)
        assert payload["type"] == "ping"
        assert payload["data"] == {"webhook_id": created["id"]}
        assert near(payload["timestamp"], utcnow())
        assert created["secret"] not in row.payload
        # A second ping is another message.
        await client.post(f"{path}/ping", headers=team.headers["admin"])
        first, second = await deliveries_of(session, created["id"])
        assert first.message_id != second.message_id

    @pytest.mark.usefixtures("dns")
    async def test_a_disabled_webhook_is_still_pinged(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        # Pings are how an admin tries the receiver before enabling the webhook again (the
        # delivery job sends a disabled webhook its pings, and nothing else).
        created = await create(client, team.project_id, team.headers["admin"], active=False)
        path = hook_url(team.project_id, created["id"])
        response = await client.post(f"{path}/ping", headers=team.headers["admin"])
        assert response.status_code == 202, response.text
        (row,) = await deliveries_of(session, created["id"])
        assert (row.type, row.status) == ("ping", "pending")
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(status="failed")
        )
        await session.commit()
        again = await client.post(
            redeliver_url(team.project_id, created["id"], row.id), headers=team.headers["admin"]
        )
        assert again.status_code == 202, again.text
        assert again.json()["attempt"] == 2

    @pytest.mark.parametrize("who", [*LESSER, "outsider"])
    @pytest.mark.usefixtures("dns")
    async def test_only_admins_ping_and_read_the_log(
        self,
        client: httpx.AsyncClient,
        team: Team,
        session: AsyncSession,
        who: str,
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        delivery = await add_delivery(session, created["id"])
        path = hook_url(team.project_id, created["id"])
        status = 404 if who == "outsider" else 403
        h = team.headers[who]
        assert_problem(await client.post(f"{path}/ping", headers=h), status)
        assert_problem(await client.get(f"{path}/deliveries", headers=h), status)
        assert_problem(
            await client.post(redeliver_url(team.project_id, created["id"], delivery), headers=h),
            status,
        )
        assert len(await deliveries_of(session, created["id"])) == 1

    @pytest.mark.usefixtures("dns")
    async def test_log_newest_first_in_pages(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        ids = [
            await add_delivery(session, created["id"], message_id=f"msg_{i}", event_id=7 + i)
            for i in range(5)
        ]
        other = await create(client, team.project_id, team.headers["admin"])
        await add_delivery(session, other["id"], message_id="msg_other")
        seen: list[dict[str, Any]] = []
        url = deliveries_url(team.project_id, created["id"])
        response = await client.get(url, params={"limit": 2}, headers=team.headers["admin"])
        while True:
            assert response.status_code == 200, response.text
            page = response.json()
            seen.extend(page["items"])
            assert "secret-free body" not in response.text  # receivers' bodies stay in the db
            if page["next_cursor"] is None:
                break
            response = await client.get(
                url,
                params={"limit": 2, "cursor": page["next_cursor"]},
                headers=team.headers["admin"],
            )
        assert [item["id"] for item in seen] == ids[::-1]
        item = seen[0]
        assert set(item) == DELIVERY_FIELDS
        assert (item["status"], item["response_status"], item["error"]) == (
            "failed",
            500,
            "receiver answered 500",
        )
        assert (item["type"], item["event_id"], item["duration_ms"]) == ("task.updated", 11, 42)
        # A cursor of one webhook's log is no good for another's.
        first = await client.get(url, params={"limit": 2}, headers=team.headers["admin"])
        response = await client.get(
            deliveries_url(team.project_id, other["id"]),
            params={"cursor": first.json()["next_cursor"]},
            headers=team.headers["admin"],
        )
        assert_problem(response, 422, loc=["query", "cursor"])

    @pytest.mark.usefixtures("dns")
    async def test_redeliver_adds_the_next_attempt_of_the_message(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        first = await add_delivery(session, created["id"], status="failed", attempt=1)
        await add_delivery(session, created["id"], status="abandoned", attempt=2)
        response = await client.post(
            redeliver_url(team.project_id, created["id"], first), headers=team.headers["admin"]
        )
        assert response.status_code == 202, response.text
        shown = response.json()
        assert set(shown) == DELIVERY_FIELDS
        assert (shown["attempt"], shown["status"], shown["event_id"]) == (3, "pending", 7)
        rows = await deliveries_of(session, created["id"])
        original, new = rows[0], rows[-1]
        assert new.id == shown["id"]
        assert (new.message_id, new.payload, new.type) == (
            original.message_id,
            original.payload,
            original.type,
        )
        assert new.next_attempt_at is not None
        assert near(new.next_attempt_at.isoformat(), utcnow())
        assert (new.response_status, new.error) == (None, None)
        # While that attempt is pending, redelivering again adds no second one in flight.
        again = await client.post(
            redeliver_url(team.project_id, created["id"], first), headers=team.headers["admin"]
        )
        assert again.status_code == 202, again.text
        assert again.json()["id"] == shown["id"]
        assert len(await deliveries_of(session, created["id"])) == 3

    @pytest.mark.usefixtures("dns")
    async def test_redeliver_hurries_a_waiting_retry(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        # The delivery job logged attempt 1 as failed and wrote attempt 2, due in two hours:
        # "redeliver" (the receiver is fixed) makes that retry due now.
        created = await create(client, team.project_id, team.headers["admin"])
        first = await add_delivery(session, created["id"], status="failed", attempt=1)
        retry = await add_delivery(session, created["id"], status="pending", attempt=2)
        later = utcnow() + timedelta(hours=2)
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == retry).values(next_attempt_at=later)
        )
        await session.commit()
        response = await client.post(
            redeliver_url(team.project_id, created["id"], first), headers=team.headers["admin"]
        )
        assert response.status_code == 202, response.text
        shown = response.json()
        assert (shown["id"], shown["attempt"], shown["status"]) == (retry, 2, "pending")
        assert near(shown["next_attempt_at"], utcnow())
        rows = await deliveries_of(session, created["id"])
        assert [row.attempt for row in rows] == [1, 2]

    @pytest.mark.usefixtures("dns")
    async def test_redeliver_leaves_an_attempt_being_sent_alone(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        # A worker claimed attempt 2 (leased until its answer or the lease's end) and is
        # sending it. Each "redeliver" made it due again, so every worker claimed it once
        # more: a black-box run got 23 copies at once from repeated clicks.
        created = await create(client, team.project_id, team.headers["admin"])
        first = await add_delivery(session, created["id"], status="failed", attempt=1)
        sending = await add_delivery(session, created["id"], status="pending", attempt=2)
        lease_end = utcnow() + timedelta(seconds=60)
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == sending)
            .values(attempted_at=utcnow(), next_attempt_at=lease_end)
        )
        await session.commit()
        for _ in range(3):
            response = await client.post(
                redeliver_url(team.project_id, created["id"], first), headers=team.headers["admin"]
            )
            assert response.status_code == 202, response.text
            shown = response.json()
            assert (shown["id"], shown["attempt"], shown["status"]) == (sending, 2, "pending")
        session.expire_all()
        rows = await deliveries_of(session, created["id"])
        assert [row.attempt for row in rows] == [1, 2]
        assert rows[1].next_attempt_at is not None
        assert near(rows[1].next_attempt_at.isoformat(), lease_end, seconds=1)

    @pytest.mark.usefixtures("dns")
    async def test_redeliver_a_ping(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        path = hook_url(team.project_id, created["id"])
        ping = (await client.post(f"{path}/ping", headers=team.headers["admin"])).json()
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == ping["id"])
            .values(status="succeeded", response_status=204)
        )
        await session.commit()
        response = await client.post(
            redeliver_url(team.project_id, created["id"], ping["id"]),
            headers=team.headers["admin"],
        )
        assert response.status_code == 202
        assert (response.json()["type"], response.json()["attempt"]) == ("ping", 2)

    @pytest.mark.usefixtures("dns")
    async def test_redelivering_an_event_to_a_disabled_webhook_is_409(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"], active=False)
        delivery = await add_delivery(session, created["id"])
        response = await client.post(
            redeliver_url(team.project_id, created["id"], delivery), headers=team.headers["admin"]
        )
        assert assert_problem(response, 409)["type"] == problem_type("webhook-disabled")
        assert len(await deliveries_of(session, created["id"])) == 1

    @pytest.mark.usefixtures("dns")
    async def test_delivery_of_another_webhook_is_404(
        self, client: httpx.AsyncClient, team: Team, session: AsyncSession
    ) -> None:
        ours = await create(client, team.project_id, team.headers["admin"])
        theirs = await create(client, team.project_id, team.headers["admin"])
        delivery = await add_delivery(session, theirs["id"])
        wrong = await client.post(
            redeliver_url(team.project_id, ours["id"], delivery), headers=team.headers["admin"]
        )
        unknown = await client.post(
            redeliver_url(team.project_id, ours["id"], 2**60), headers=team.headers["admin"]
        )
        assert comparable(assert_problem(wrong, 404)) == comparable(assert_problem(unknown, 404))
        assert await deliveries_of(session, ours["id"]) == []
        assert len(await deliveries_of(session, theirs["id"])) == 1
        # And a webhook of another project, with its delivery, under this project's path.
        other = await add_project(session, {team.user("admin"): _owner()}, name="Other")
        elsewhere = await create(client, other, team.headers["admin"])
        far = await add_delivery(session, elsewhere["id"], message_id="msg_far", event_id=8)
        response = await client.post(
            redeliver_url(team.project_id, elsewhere["id"], far), headers=team.headers["admin"]
        )
        assert_problem(response, 404)
        assert len(await deliveries_of(session, elsewhere["id"])) == 1

    @pytest.mark.usefixtures("dns")
    async def test_log_of_an_empty_webhook_and_of_none(
        self, client: httpx.AsyncClient, team: Team
    ) -> None:
        created = await create(client, team.project_id, team.headers["admin"])
        response = await client.get(
            deliveries_url(team.project_id, created["id"]), headers=team.headers["admin"]
        )
        assert response.json() == {"items": [], "next_cursor": None}
        missing = await client.get(
            deliveries_url(team.project_id, 2**60), headers=team.headers["admin"]
        )
        assert_problem(missing, 404)


async def test_roles_table_serves_webhook_manage(client: httpx.AsyncClient, team: Team) -> None:
    response = await client.get(f"{V2}/roles", headers=team.headers["viewer"])
    by_role = {entry["role"]: entry["permissions"] for entry in response.json()}
    assert "webhook.manage" in by_role["owner"]
    assert "webhook.manage" in by_role["admin"]
    for role in LESSER:
        assert "webhook.manage" not in by_role[role]


# --- races (requests that really commit, at once) -----------------------------------------


@dataclass
class Committed:
    """An admin and a project of theirs, committed for real (not in the test's transaction)."""

    project_id: int
    headers: Headers


@pytest.fixture
async def committed(
    app: FastAPI,
    committing_client: httpx.AsyncClient,
    auth_headers: Callable[[User], Headers],
) -> AsyncIterator[Committed]:
    sessions = app.state.sessionmaker
    async with Db.transaction_for(sessions) as db:
        user = await user_service.create_user(
            db,
            UserCreate(email=f"racer-{uuid.uuid4().hex[:8]}@example.com", password=TEST_PASSWORD),
            rounds=BCRYPT_TEST_ROUNDS,
        )
        now = utcnow()
        project = Project(name="Race", created_at=now, updated_at=now, version=1)
        db.session.add(project)
        await db.session.flush()
        db.session.add(
            ProjectMember(
                project_id=project.id, user_id=user.id, role=ProjectRole.ADMIN.value, added_at=now
            )
        )
    try:
        yield Committed(project.id, auth_headers(user))
    finally:
        # Its webhooks and their logs go with it; `committing_client` removes the user.
        async with Db.transaction_for(sessions) as db:
            await db.session.execute(delete(Project).where(Project.id == project.id))


@pytest.mark.usefixtures("dns")
class TestRaces:
    async def test_creations_at_once_never_pass_the_bound(
        self, committing_client: httpx.AsyncClient, committed: Committed
    ) -> None:
        body = {"url": PUBLIC_URL, "events": ["*"]}
        url = hooks_url(committed.project_id)
        for _ in range(WEBHOOKS_PER_PROJECT_MAX - 2):
            response = await committing_client.post(url, json=body, headers=committed.headers)
            assert response.status_code == 201, response.text
        responses = await asyncio.gather(
            *(committing_client.post(url, json=body, headers=committed.headers) for _ in range(5))
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201, 201, 409, 409, 409], [r.text for r in responses]
        listed = await committing_client.get(url, params={"limit": 100}, headers=committed.headers)
        assert len(listed.json()["items"]) == WEBHOOKS_PER_PROJECT_MAX

    async def test_redeliveries_at_once_add_one_attempt(
        self, app: FastAPI, committing_client: httpx.AsyncClient, committed: Committed
    ) -> None:
        created = await committing_client.post(
            hooks_url(committed.project_id),
            json={"url": PUBLIC_URL, "events": ["*"]},
            headers=committed.headers,
        )
        webhook_id = created.json()["id"]
        async with Db.transaction_for(app.state.sessionmaker) as db:
            delivery_id = await add_delivery(db.session, webhook_id, status="succeeded")
        responses = await asyncio.gather(
            *(
                committing_client.post(
                    redeliver_url(committed.project_id, webhook_id, delivery_id),
                    headers=committed.headers,
                )
                for _ in range(4)
            )
        )
        assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
        # The first wrote attempt 2; the others found it pending and left it as it was.
        assert {r.json()["id"] for r in responses} != {delivery_id}
        assert len({r.json()["id"] for r in responses}) == 1
        assert {r.json()["attempt"] for r in responses} == {2}
        log = await committing_client.get(
            deliveries_url(committed.project_id, webhook_id), headers=committed.headers
        )
        assert [item["attempt"] for item in log.json()["items"]] == [2, 1]
