"""The load driver of the cluster test (`make cluster-test`), run on the client host by the
orchestrator (tests/cluster/run.py): `python -m tests.cluster.load CONFIG_JSON_PATH`.

It sets up users, a project and a webhook to a receiver of its own, writes
`control_dir/load-started`, then drives a mixed load of virtual users through the load
balancer (sign-ups, logins, refreshes, creates retried under one `Idempotency-Key`, patches
under `If-Match`, list walks, comments, feed reads, reminders, webhooks) until
`control_dir/stop-load` appears, while the orchestrator injects faults. Then it reads
`control_dir/timeline.json`, drains (reminders, webhooks, the feed), runs the cross-host
checks straight against each API host, writes `control_dir/load-result.json` and prints the
figures. Exit status 0 only if every check passed (tests/cluster/load_checks.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.cluster.hosts import say
from tests.cluster.load_checks import (
    CLOSED_WITHOUT_ANSWER,
    CONNECTION_ERROR,
    TIMEOUT,
    Check,
    Received,
    Record,
    Timeline,
    check_creates,
    check_feed,
    check_patches,
    check_reminders,
    check_responses,
    check_webhooks,
)
from tests.cluster.services import LB_ERROR_HEADER

PASSWORD = "cluster load passphrase, not a common one"
TITLE_PREFIX = "load "
VIRTUAL_USERS = 18
MEMBERS = 5  # besides the owner; virtual users share these accounts, each its own login
SHARED_TASKS = 4  # patched concurrently by every virtual user under If-Match
# How long one operation keeps retrying for a definite answer: longer than any fault.
RETRY_FOR_SECONDS = 90.0
# A Retry-After is honoured, but capped: the faults are seconds long.
RETRY_AFTER_CAP = 1.0
RATE_LIMITED_CAP = 5.0
DRAIN_SECONDS = 60.0
# The server sends a reminder within 10 s of remind_at; a little slack for a busy host.
REMINDER_GRACE_SECONDS = 15.0
# A description holds at most 10,000 characters; stop appending before that.
DESCRIPTION_ROOM = 9_000
PROGRESS_SECONDS = 10.0
# The load runs until the orchestrator writes `stop-load`; this long without it, it stops.
STOP_LOAD_GUARD_SECONDS = 600.0
# How often the control directory is looked at for `stop-load`.
POLL_SECONDS = 0.25


def expect(response: httpx.Response | None, *statuses: int) -> httpx.Response:
    """The response of a setup step, which must have succeeded."""
    if response is None or response.status_code not in statuses:
        what = "no answer" if response is None else f"{response.status_code} {response.text[:300]}"
        raise RuntimeError(f"setup step failed: {what}")
    return response


@dataclass(frozen=True)
class Config:
    lb_url: str
    api_urls: list[str]
    receiver_host: str
    receiver_port: int
    seed: int
    control_dir: Path
    login_account_limit: int

    @classmethod
    def read(cls, path: Path) -> Config:
        raw = json.loads(path.read_text())
        return cls(
            lb_url=raw["lb_url"].rstrip("/"),
            api_urls=[url.rstrip("/") for url in raw["api_urls"]],
            receiver_host=raw["receiver_host"],
            receiver_port=int(raw["receiver_port"]),
            seed=int(raw["seed"]),
            control_dir=Path(raw["control_dir"]),
            login_account_limit=int(raw["login_account_limit"]),
        )


@dataclass
class Login:
    """A virtual user's own session: its own refresh-token family."""

    user_id: str
    email: str
    access: str = ""
    refresh: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


class Receiver:
    """The webhook receiver on the client host: keeps every request; answers 503 (with
    Retry-After) to the first attempt of about one message in four, chosen from the
    webhook-id and the seed, so that retries happen; 200 otherwise.

    On the orchestrator's request it holds one delivery open: while `control_dir/hold-from`
    names a sender's address, the next request from it is held (`control_dir/holding` says
    so) until that file is gone, so that the orchestrator can SIGKILL the sender in the
    middle of a job (a delivery it has leased and not yet written down)."""

    def __init__(self, host: str, port: int, seed: int, control_dir: Path) -> None:
        self.received: list[Received] = []
        self.forced = 0
        self.held = 0
        self.secret: str | None = None  # known once the webhook is made
        self.lock = threading.Lock()
        self.seed = seed
        self.hold_from = control_dir / "hold-from"
        self.holding = control_dir / "holding"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.hold(self.client_address[0])
                status = receiver.answer(headers.get("webhook-id", ""))
                try:
                    self.send_response(status)
                    if status == 503:
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    self.wfile.flush()
                except OSError:
                    status = 0  # the sender is gone: it never saw an answer
                # A body shorter than its Content-Length: the sender died in the middle of
                # the request (a worker killed by the faults), and nothing was delivered.
                cut = len(body) < length
                message = Received(time.monotonic(), headers, body, status, cut=cut)
                if receiver.secret is not None and not cut:
                    message.verify(receiver.secret)
                with receiver.lock:
                    receiver.received.append(message)

            def log_message(self, *_args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a sender killed mid-request: nothing to report

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def hold(self, sender: str) -> None:
        """Hold this request while the orchestrator asks for one from `sender` (at most one
        at a time, at most 30 s)."""
        try:
            wanted = self.hold_from.read_text().strip()
        except OSError:
            return
        if wanted != sender:
            return
        with self.lock:
            if self.holding.exists():
                return
            self.holding.write_text(sender)
            self.held += 1
        deadline = time.monotonic() + 30
        while self.hold_from.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.holding.unlink(missing_ok=True)

    def answer(self, webhook_id: str) -> int:
        digest = hashlib.sha256(f"{self.seed}:{webhook_id}".encode()).digest()
        with self.lock:
            first = not any(r.headers.get("webhook-id") == webhook_id for r in self.received)
            if first and digest[0] % 4 == 0:
                self.forced += 1
                return 503
        return 200

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class State:
    """What the load saw, for the checks."""

    project_id: str = ""
    # Ids as the API gave them (JSON), for request bodies: the API types them.
    ids: dict[str, Any] = field(default_factory=dict)
    owner_id: str = ""
    member_ids: list[str] = field(default_factory=list)
    shared_tasks: list[str] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # token -> task id
    create_unknown: set[str] = field(default_factory=set)
    create_rejected: dict[str, int] = field(default_factory=dict)
    replays: int = 0
    longest_create: float = 0.0  # seconds from the first attempt to the definite answer
    # remind_at tasks: task id -> (monotonic due time, acknowledged after it)
    reminders: dict[str, tuple[float, bool]] = field(default_factory=dict)
    reminder_assignees: set[str] = field(default_factory=set)
    patched: dict[str, list[str]] = field(default_factory=dict)
    patch_unknown: dict[str, list[str]] = field(default_factory=dict)
    patch_counters: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # "kind: outcome"
    feed_failures: Counter[str] = field(default_factory=Counter)


class Driver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.records: list[Record] = []
        self.retries: Counter[str] = Counter()
        self.state = State()
        self.stopping = asyncio.Event()
        self.tag = f"{config.seed}-{uuid.uuid4().hex[:8]}"
        self.targets = {url: f"api{n}" for n, url in enumerate(config.api_urls, 1)}
        self.targets[config.lb_url] = "lb"
        # Exceptions in the driver itself (not answers of the service): each one fails a check.
        self.errors: Counter[str] = Counter()
        # Idle connections are dropped early, so that one the balancer has closed meanwhile
        # is not reused (that would look like a connection error of the service).
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, keepalive_expiry=1.0),
        )

    # --- requests -------------------------------------------------------------------

    async def send(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        base: str | None = None,
        login: Login | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """One request, recorded; None when no HTTP answer came."""
        base = base or self.config.lb_url
        all_headers = dict(headers or {})
        if login is not None:
            all_headers |= login.headers
        start = time.monotonic()
        response: httpx.Response | None = None
        status: int | str
        try:
            response = await self.http.request(method, base + path, headers=all_headers, **kwargs)
            status = response.status_code
        except httpx.TimeoutException:
            status = TIMEOUT
        except httpx.RemoteProtocolError as error:
            # A kept-alive connection closed before any byte of an answer: HAProxy's way of
            # saying that the host of a request that was not the first on its connection
            # died (module CLOSED_WITHOUT_ANSWER). On a new connection it answers 503.
            status = (
                CLOSED_WITHOUT_ANSWER
                if "without sending a response" in str(error)
                else CONNECTION_ERROR
            )
            say(
                f"load: {kind} {method} {path} via {self.targets.get(base, base)}: "
                f"{type(error).__name__}: {error}"
            )
        except httpx.TransportError as error:
            status = CONNECTION_ERROR
            say(
                f"load: {kind} {method} {path} via {self.targets.get(base, base)}: "
                f"{type(error).__name__}: {error}"
            )
        self.records.append(
            Record(
                start,
                time.monotonic(),
                kind,
                self.targets.get(base, base),
                status,
                response is not None and "retry-after" in response.headers,
                response is not None and LB_ERROR_HEADER in response.headers,
            )
        )
        return response

    @staticmethod
    def pause(response: httpx.Response | None, attempt: int) -> float:
        if response is not None and "retry-after" in response.headers:
            # A 429 can ask for most of a minute (an account's failed logins): honoured up
            # to a few seconds, so that the virtual user does not hammer nor stall.
            cap = RATE_LIMITED_CAP if response.status_code == 429 else RETRY_AFTER_CAP
            try:
                return min(float(response.headers["retry-after"]), cap)
            except ValueError:
                return cap
        return min(0.1 * 2.0 ** min(attempt, 10), RETRY_AFTER_CAP)

    async def definite(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        login: Login | None = None,
        retry_409: bool = False,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Sends until a definite answer: retried (same request) on no answer, 5xx, 429
        and, with `retry_409`, 409 (an idempotent create still in progress). A 401 logs
        in again once. None if no definite answer came in time."""
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        attempt = 0
        relogged = False
        while True:
            response = await self.send(kind, method, path, login=login, **kwargs)
            if response is not None:
                code = response.status_code
                if code == 401 and login is not None and not relogged:
                    relogged = True
                    await self.login(login)
                    continue
                if code < 500 and code != 429 and not (retry_409 and code == 409):
                    return response
            if time.monotonic() > deadline:
                return None
            self.retries[kind] += 1
            await asyncio.sleep(self.pause(response, attempt))
            attempt += 1

    async def login(self, login: Login, *, kind: str = "login") -> bool:
        response = await self.definite(
            kind, "POST", "/api/v1/auth/token", data={"username": login.email, "password": PASSWORD}
        )
        if response is None or response.status_code != 200:
            self.state.outcomes[f"{kind}: {response.status_code if response else 'unknown'}"] += 1
            return False
        pair = response.json()
        login.access, login.refresh = pair["access_token"], pair["refresh_token"]
        return True

    async def sign_up(self, email: str) -> str | None:
        """A sign-up has no Idempotency-Key: retried with the same body, a 409 means an
        earlier attempt went through (the outcome of that attempt was unknown)."""
        body = {"email": email, "password": PASSWORD, "full_name": email.split("@")[0]}
        attempt = 0
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        while time.monotonic() < deadline:
            response = await self.send("sign-up", "POST", "/api/v1/users", json=body)
            if response is not None and response.status_code == 201:
                self.state.outcomes["sign-up: created"] += 1
                raw = response.json()["id"]
                self.state.ids[str(raw)] = raw
                return str(raw)
            if response is not None and response.status_code == 409 and attempt > 0:
                self.state.outcomes["sign-up: existed after an unknown outcome"] += 1
                return ""
            if response is not None and response.status_code < 500 and response.status_code != 429:
                self.state.outcomes[f"sign-up: {response.status_code}"] += 1
                return None
            self.retries["sign-up"] += 1
            await asyncio.sleep(self.pause(response, attempt))
            attempt += 1
        self.state.outcomes["sign-up: unknown"] += 1
        return None

    async def user(self, email: str) -> Login:
        user_id = await self.sign_up(email)
        if user_id is None:
            raise RuntimeError(f"could not sign up {email}")
        login = Login(user_id, email)
        if not await self.login(login):
            raise RuntimeError(f"could not log in {email}")
        if not user_id:
            me = await self.definite("me", "GET", "/api/v1/users/me", login=login)
            me = expect(me, 200)
            login.user_id = str(me.json()["id"])
            self.state.ids[login.user_id] = me.json()["id"]
        return login

    async def pages(
        self, kind: str, path: str, login: Login, params: dict[str, Any]
    ) -> list[dict[str, Any]] | None:
        """Every item of a cursor-paged list; None if a page could not be read."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page_params = dict(params) | ({"cursor": cursor} if cursor else {})
            response = await self.definite(kind, "GET", path, login=login, params=page_params)
            if response is None or response.status_code != 200:
                return None
            page = response.json()
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    # --- setup ----------------------------------------------------------------------

    async def setup(self, receiver_url: str) -> tuple[Login, list[Login], str]:
        tag = self.tag
        owner = await self.user(f"owner-{tag}@example.com")
        members = [await self.user(f"member{n}-{tag}@example.com") for n in range(MEMBERS)]
        state = self.state
        state.owner_id, state.member_ids = owner.user_id, [m.user_id for m in members]
        project = await self.definite(
            "setup",
            "POST",
            "/api/v2/projects",
            login=owner,
            json={"name": f"Cluster load {tag}"},
            headers={"Idempotency-Key": f"project-{tag}"},
            retry_409=True,
        )
        project = expect(project, 201)
        state.project_id = str(project.json()["id"])
        state.ids[state.project_id] = project.json()["id"]
        for member in members:
            invited = await self.definite(
                "setup",
                "POST",
                f"/api/v2/projects/{state.project_id}/invitations",
                login=owner,
                json={"email": member.email, "role": "editor"},
            )
            invited = expect(invited, 200, 201)
            accepted = await self.definite(
                "setup", "POST", f"/api/v2/invitations/{invited.json()['id']}/accept", login=member
            )
            accepted = expect(accepted, 200)
        hook = await self.definite(
            "setup",
            "POST",
            f"/api/v2/projects/{state.project_id}/webhooks",
            login=owner,
            json={"url": receiver_url, "events": ["task.created", "task.updated"]},
            headers={"Idempotency-Key": f"webhook-{tag}"},
            retry_409=True,
        )
        hook = expect(hook, 201)
        for number in range(SHARED_TASKS):
            shared = await self.definite(
                "setup",
                "POST",
                "/api/v2/tasks",
                login=owner,
                json={"title": f"shared {number} {tag}", "project_id": state.ids[state.project_id]},
                headers={"Idempotency-Key": f"shared-{number}-{tag}"},
                retry_409=True,
            )
            shared = expect(shared, 201)
            state.shared_tasks.append(str(shared.json()["id"]))
        return owner, members, str(hook.json()["secret"])

    # --- the load -------------------------------------------------------------------

    async def create(self, login: Login, rng: random.Random, token: str) -> None:
        state = self.state
        body: dict[str, Any] = {
            "title": TITLE_PREFIX + token,
            "project_id": state.ids[state.project_id],
        }
        remind_in = None
        if rng.random() < 0.3:
            remind_in = rng.uniform(3.0, 8.0)
            assignee = rng.choice(state.member_ids)
            body["remind_at"] = (datetime.now(UTC) + timedelta(seconds=remind_in)).isoformat()
            body["assignee_ids"] = [state.ids[assignee]]
            state.reminder_assignees.add(assignee)
        began = time.monotonic()
        due = began + (remind_in or 0.0)
        response = await self.definite(
            "create",
            "POST",
            "/api/v2/tasks",
            login=login,
            json=body,
            headers={"Idempotency-Key": f"create-{self.tag}-{token}"},
            retry_409=True,
        )
        state.longest_create = max(state.longest_create, time.monotonic() - began)
        if response is None:
            state.create_unknown.add(token)
            return
        if response.status_code != 201:
            state.create_rejected[token] = response.status_code
            return
        task_id = str(response.json()["id"])
        state.created[token] = task_id
        if response.headers.get("idempotent-replayed") == "true":
            state.replays += 1
        if remind_in is not None:
            state.reminders[task_id] = (due, time.monotonic() > due)

    async def patch(self, login: Login, rng: random.Random, token: str) -> None:
        """Appends `token` to a shared task's description under If-Match: on 412 read again
        and retry; on no answer read again and see whether it went through."""
        state = self.state
        task_id = rng.choice(state.shared_tasks)
        path = f"/api/v2/tasks/{task_id}"
        uncertain = False
        for attempt in range(60):
            read = await self.definite("read", "GET", path, login=login)
            if read is None or read.status_code != 200:
                break
            description = read.json()["description"] or ""
            if token in description.split():
                state.patched.setdefault(task_id, []).append(token)
                state.patch_counters["acknowledged_on_reading_after_no_answer"] += 1
                return
            if len(description) > DESCRIPTION_ROOM:
                state.patch_counters["skipped_description_full"] += 1
                return
            response = await self.send(
                "patch",
                "PATCH",
                path,
                login=login,
                headers={"If-Match": read.headers["etag"]},
                json={"description": f"{description} {token}".strip()},
            )
            if response is not None and response.status_code == 200:
                state.patched.setdefault(task_id, []).append(token)
                return
            if response is not None and response.status_code == 412:
                state.patch_counters["answered_412_and_read_again"] += 1
                continue
            if response is not None and response.status_code < 500 and response.status_code != 429:
                state.patch_counters[f"rejected_{response.status_code}"] += 1
                return
            uncertain = uncertain or response is None or response.status_code != 429
            state.patch_counters["no_definite_answer_and_read_again"] += 1
            self.retries["patch"] += 1
            await asyncio.sleep(self.pause(response, attempt))
        if uncertain:
            state.patch_unknown.setdefault(task_id, []).append(token)

    async def comment(self, login: Login, rng: random.Random, token: str) -> None:
        """No Idempotency-Key on comments: not retried; an unknown outcome is recorded."""
        task_id = rng.choice(self.state.shared_tasks + list(self.state.created.values())[-20:])
        response = await self.send(
            "comment",
            "POST",
            f"/api/v2/tasks/{task_id}/comments",
            login=login,
            json={"body": f"comment {token}"},
        )
        outcome = "unknown" if response is None or response.status_code >= 500 else "answered"
        self.state.outcomes[f"comment: {outcome}"] += 1

    async def refresh(self, login: Login) -> None:
        """A refresh token works once: after an unknown outcome it may be spent already,
        and presenting it again would revoke the family; so log in again instead."""
        response = await self.send(
            "refresh", "POST", "/api/v1/auth/refresh", json={"refresh_token": login.refresh}
        )
        if response is not None and response.status_code == 200:
            pair = response.json()
            login.access, login.refresh = pair["access_token"], pair["refresh_token"]
            self.state.outcomes["refresh: new pair"] += 1
            return
        outcome = "unknown" if response is None else str(response.status_code)
        self.state.outcomes[f"refresh: {outcome}, logged in again"] += 1
        await self.login(login)

    async def list_walk(self, login: Login) -> None:
        cursor: str | None = None
        for _ in range(3):
            params: dict[str, Any] = {"project_id": self.state.project_id, "limit": 50}
            if cursor:
                params["cursor"] = cursor
            response = await self.definite(
                "list", "GET", "/api/v2/tasks", login=login, params=params
            )
            if response is None or response.status_code != 200:
                return
            cursor = response.json()["next_cursor"]
            if not cursor:
                return

    async def virtual_user(self, number: int, login: Login, signup_tag: str) -> None:
        rng = random.Random(f"{self.config.seed}-{number}")
        actions = [
            ("create", 30),
            ("patch", 22),
            ("list", 8),
            ("read", 10),
            ("comment", 8),
            ("notifications", 5),
            ("refresh", 6),
            ("login", 3),
            ("sign-up", 3),
        ]
        names = [name for name, _ in actions]
        weights = [weight for _, weight in actions]
        counter = 0
        while not self.stopping.is_set():
            counter += 1
            action = rng.choices(names, weights)[0]
            try:
                await self.act(action, login, rng, f"v{number}.{counter}", signup_tag)
            except Exception as error:  # a bug of the driver: counted, shown, and a failure
                self.errors[f"{action}: {error!r}"[:200]] += 1
            await asyncio.sleep(rng.uniform(0.1, 0.4))

    async def act(
        self, action: str, login: Login, rng: random.Random, token: str, signup_tag: str
    ) -> None:
        if action == "create":
            await self.create(login, rng, token)
        elif action == "patch":
            await self.patch(login, rng, token)
        elif action == "list":
            await self.list_walk(login)
        elif action == "read":
            task_id = rng.choice(self.state.shared_tasks)
            await self.definite("read", "GET", f"/api/v2/tasks/{task_id}", login=login)
        elif action == "comment":
            await self.comment(login, rng, token)
        elif action == "notifications":
            await self.definite(
                "notifications", "GET", "/api/v2/notifications", login=login, params={"limit": 20}
            )
        elif action == "refresh":
            await self.refresh(login)
        elif action == "login":
            await self.login(login)
        else:
            await self.sign_up(f"signup-{signup_tag}-{token}@example.com")

    async def feed(
        self, name: str, login: Login, items: list[dict[str, Any]], done: asyncio.Event
    ) -> None:
        """Walks /api/v2/changes from the start through the whole run, retrying a failed
        read with the same cursor; stops once `done` is set and the feed is read to its end."""
        cursor: str | None = None
        attempt = 0
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            response = await self.send("feed", "GET", "/api/v2/changes", login=login, params=params)
            try:
                page = response.json() if response is not None else None
            except ValueError:
                page = None
            if response is None or response.status_code != 200 or page is None:
                self.state.feed_failures[name] += 1
                if response is not None and response.status_code == 401:
                    await self.login(login)
                await asyncio.sleep(self.pause(response, attempt))
                attempt += 1
                continue
            attempt = 0
            for item in page["items"]:
                item.pop("object", None)
                items.append(item)
            cursor = page["next_cursor"]
            if not page["has_more"]:
                if done.is_set():
                    return
                await asyncio.sleep(0.5)

    # --- after the load -------------------------------------------------------------

    async def reminders_sent(
        self, logins: dict[str, Login]
    ) -> tuple[Counter[str], list[float]] | None:
        sent: Counter[str] = Counter()
        lateness: list[float] = []
        wall_minus_mono = time.time() - time.monotonic()
        for user_id in self.state.reminder_assignees:
            items = await self.pages(
                "notifications", "/api/v2/notifications", logins[user_id], {"limit": 100}
            )
            if items is None:
                return None
            for item in items:
                if item["kind"] == "reminder" and item.get("task"):
                    task_id = str(item["task"]["id"])
                    sent[task_id] += 1
                    if task_id in self.state.reminders:
                        at = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
                        due = self.state.reminders[task_id][0] + wall_minus_mono
                        lateness.append(at.timestamp() - due)
        return sent, lateness

    async def cross_host_refresh(self) -> Check:
        """Log in and refresh on api1; the old refresh token reused on api2 is refused and
        revokes the family: the new one is refused too."""
        name = "a refresh token reused on the other host revokes its family"
        first, second = self.config.api_urls[0], self.config.api_urls[-1]
        login = await self.user(f"refresh-{self.tag}@example.com")
        figures: dict[str, Any] = {}
        pair = await self.send(
            "cross-refresh",
            "POST",
            "/api/v1/auth/token",
            base=first,
            data={"username": login.email, "password": PASSWORD},
        )
        if pair is None or pair.status_code != 200:
            return Check(name, False, figures, f"login on api1: {pair and pair.status_code}")
        old = pair.json()["refresh_token"]
        renewed = await self.send(
            "cross-refresh", "POST", "/api/v1/auth/refresh", base=first, json={"refresh_token": old}
        )
        figures["refresh_on_api1"] = renewed.status_code if renewed else None
        if renewed is None or renewed.status_code != 200:
            return Check(name, False, figures, "the first refresh on api1 failed")
        new = renewed.json()["refresh_token"]
        reused = await self.send(
            "cross-refresh",
            "POST",
            "/api/v1/auth/refresh",
            base=second,
            json={"refresh_token": old},
        )
        figures["old_token_reused_on_api2"] = reused.status_code if reused else None
        after = await self.send(
            "cross-refresh",
            "POST",
            "/api/v1/auth/refresh",
            base=second,
            json={"refresh_token": new},
        )
        figures["new_token_after_the_reuse_on_api2"] = after.status_code if after else None
        ok = reused is not None and reused.status_code == 401
        ok = ok and after is not None and after.status_code == 401
        return Check(name, ok, figures, "" if ok else "expected 401 and then 401")

    async def cross_host_rate_limit(self) -> Check:
        """Failed logins for one account, alternating the two API hosts: exactly the limit
        is answered 401, then 429 with Retry-After: one limit, not one per host."""
        name = "one login rate limit across both API hosts"
        limit = self.config.login_account_limit
        login = await self.user(f"limited-{self.tag}@example.com")
        statuses: list[str] = []
        for attempt in range(2 * limit + 2):
            base = self.config.api_urls[attempt % len(self.config.api_urls)]
            response = await self.send(
                "cross-rate-limit",
                "POST",
                "/api/v1/auth/token",
                base=base,
                data={
                    "username": login.email,
                    "password": "a wrong passphrase entirely " + str(attempt),
                },
            )
            if response is None:
                statuses.append("no answer")
            elif response.status_code == 429:
                statuses.append(
                    "429" if "retry-after" in response.headers else "429 no Retry-After"
                )
            else:
                statuses.append(str(response.status_code))
        expected = ["401"] * limit + ["429"] * (limit + 2)
        figures = {"limit": limit, "answers_alternating_api1_api2": statuses}
        ok = statuses == expected
        return Check(name, ok, figures, "" if ok else f"expected {expected}")


def _progress(driver: Driver, started: float) -> str:
    """One line for the orchestrator's log while the load runs."""
    unavailable = sum(1 for r in driver.records if r.status == 503)
    failed = sum(1 for r in driver.records if isinstance(r.status, str) or r.status >= 500)
    return (
        f"load: +{time.monotonic() - started:.0f}s {len(driver.records)} requests, "
        f"{len(driver.state.created)} creates acknowledged, 503: {unavailable}, "
        f"other failures: {failed - unavailable}"
    )


def _task_events(activity: list[dict[str, Any]]) -> set[str]:
    """The ids of the events the webhook is subscribed to."""
    return {
        str(event["id"])
        for event in activity
        if event["entity"] == "task" and event["action"] in ("created", "updated")
    }


def _event_id(body: bytes) -> str:
    """The event id a delivery carries (unverified: only to know when to stop waiting)."""
    try:
        return str(json.loads(body)["data"]["id"])
    except (ValueError, KeyError, TypeError):
        return ""


async def run(config: Config) -> tuple[list[Check], dict[str, Any]]:
    control = config.control_dir
    receiver_url = f"http://{config.receiver_host}:{config.receiver_port}/hook"
    with Receiver(
        config.receiver_host, config.receiver_port, config.seed, config.control_dir
    ) as receiver:
        driver = Driver(config)
        try:
            return await _run(driver, config, control, receiver, receiver_url)
        finally:
            await driver.http.aclose()


async def _run(
    driver: Driver, config: Config, control: Path, receiver: Receiver, receiver_url: str
) -> tuple[list[Check], dict[str, Any]]:
    state = driver.state
    owner, members, secret = await driver.setup(receiver_url)
    receiver.secret = secret
    accounts = [owner, *members]
    logins_by_user = {login.user_id: login for login in accounts}
    sessions: list[Login] = []
    for number in range(VIRTUAL_USERS):
        account = accounts[number % len(accounts)]
        session = Login(account.user_id, account.email)
        await driver.login(session)
        sessions.append(session)
    feed_done = asyncio.Event()
    feeds: dict[str, list[dict[str, Any]]] = {"owner": [], "a member": []}
    feed_tasks = [
        asyncio.create_task(
            driver.feed(
                "owner",
                Login(owner.user_id, owner.email, owner.access, owner.refresh),
                feeds["owner"],
                feed_done,
            )
        ),
        asyncio.create_task(
            driver.feed(
                "a member",
                Login(members[0].user_id, members[0].email, members[0].access, members[0].refresh),
                feeds["a member"],
                feed_done,
            )
        ),
    ]

    started = time.monotonic()
    (control / "load-started").write_text(repr(started))
    say(f"load: set up (project {state.project_id}), load started")
    users = [
        asyncio.create_task(driver.virtual_user(n, session, f"{driver.tag}-{n}"))
        for n, session in enumerate(sessions)
    ]
    stop = control / "stop-load"
    # Only a guard against an orchestrator that died: it says when the load ends.
    cap = started + STOP_LOAD_GUARD_SECONDS
    next_progress = started + PROGRESS_SECONDS
    while not stop.exists() and time.monotonic() < cap:
        await asyncio.sleep(POLL_SECONDS)
        if time.monotonic() >= next_progress:
            next_progress += PROGRESS_SECONDS
            say(_progress(driver, started))
    driver.stopping.set()
    load_seconds = time.monotonic() - started
    say(f"load: stopping after {load_seconds:.1f}s")
    _, pending = await asyncio.wait(users, timeout=RETRY_FOR_SECONDS + 30)
    for task in pending:
        task.cancel()
    timeline = Timeline.read(control / "timeline.json")

    # Drain: every due reminder sent, every task event delivered, the feeds read on.
    drain_start = time.monotonic()
    last_due = max((due for due, _ in state.reminders.values()), default=drain_start)
    drain_until = max(drain_start + DRAIN_SECONDS, last_due + REMINDER_GRACE_SECONDS)
    activity_path = f"/api/v2/projects/{state.project_id}/activity"
    activity = await driver.pages("drain", activity_path, owner, {"limit": 100}) or []
    sent: Counter[str] = Counter()
    lateness: list[float] = []
    due = {t for t, (_, late) in state.reminders.items() if not late}
    while True:
        # The writes are over: what the project's activity lists now is what the feeds
        # and the webhook must show; re-read in case an earlier read failed.
        if not activity:
            activity = await driver.pages("drain", activity_path, owner, {"limit": 100}) or []
        reminded = await driver.reminders_sent(logins_by_user)
        if reminded is not None:
            sent, lateness = reminded
        delivered = {_event_id(r.body) for r in receiver.snapshot() if 200 <= r.answered < 300}
        seen = {str(i["id"]) for i in feeds["owner"]} & {str(i["id"]) for i in feeds["a member"]}
        complete = (
            bool(activity)
            and all(sent[t] >= 1 for t in due)
            and _task_events(activity) <= delivered
            and {str(e["id"]) for e in activity} <= seen
        )
        if complete or time.monotonic() > drain_until:
            break
        await asyncio.sleep(2.0)
    # A reminder or a message sent twice shows up a little later: give it the time.
    await asyncio.sleep(3.0)
    reminded = await driver.reminders_sent(logins_by_user)
    if reminded is not None:
        sent, lateness = reminded
    drain_seconds = time.monotonic() - drain_start
    feed_done.set()
    await asyncio.wait(feed_tasks, timeout=30)
    for task in feed_tasks:
        task.cancel()
    activity = await driver.pages("final-activity", activity_path, owner, {"limit": 100}) or []
    expected_events = _task_events(activity)

    listed = await driver.pages(
        "final-list", "/api/v2/tasks", owner, {"project_id": state.project_id, "limit": 100}
    )
    final: dict[str, str] = {}
    for task_id in state.shared_tasks:
        response = await driver.definite(
            "final-read", "GET", f"/api/v2/tasks/{task_id}", login=owner
        )
        response = expect(response, 200)
        final[task_id] = response.json()["description"] or ""

    checks = check_responses(driver.records, timeline)
    checks.append(
        check_creates(
            state.created,
            state.create_unknown,
            state.create_rejected,
            state.replays,
            listed or [],
            TITLE_PREFIX,
            state.longest_create,
        )
    )
    if listed is None:
        checks[-1] = Check(checks[-1].name, False, checks[-1].figures, "could not list the tasks")
    checks.append(
        check_patches(state.patched, state.patch_unknown, dict(state.patch_counters), final)
    )
    checks.append(
        check_reminders(
            {t: d for t, (d, late) in state.reminders.items() if not late},
            {t for t, (_, late) in state.reminders.items() if late},
            sent,
            lateness,
        )
    )
    checks.append(
        check_webhooks(
            receiver.snapshot(),
            secret,
            expected_events,
            set(state.created.values()),
            receiver.forced,
        )
    )
    for name, items in feeds.items():
        checks.append(
            check_feed(
                name,
                items,
                state.project_id,
                activity,
                set(state.created.values()),
                state.patched,
                state.feed_failures[name],
            )
        )
    checks.append(await driver.cross_host_refresh())
    checks.append(await driver.cross_host_rate_limit())
    checks.append(
        Check(
            "the driver itself raised no error",
            not driver.errors,
            {"errors": sum(driver.errors.values())},
            "; ".join(f"{n}x {e}" for e, n in driver.errors.most_common(5)),
        )
    )

    by_kind: dict[str, Counter[str]] = {}
    for record in driver.records:
        by_kind.setdefault(record.kind, Counter())[str(record.status)] += 1
    figures: dict[str, Any] = {
        "virtual_users": VIRTUAL_USERS,
        "load_seconds": round(load_seconds, 1),
        "drain_seconds": round(drain_seconds, 1),
        "deliveries_held_open_for_a_kill": receiver.held,
        "requests": len(driver.records),
        "requests_by_kind_and_status": {
            k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())
        },
        "retries_by_kind": dict(sorted(driver.retries.items())),
        "outcomes": dict(sorted(state.outcomes.items())),
        "faults": [
            {"name": n, "at": round(s - started, 2), "seconds": round(e - s, 2)}
            for n, s, e in (timeline.faults if timeline else [])
        ],
    }
    return checks, figures


def report(checks: list[Check], figures: dict[str, Any]) -> str:
    lines = ["", "=== cluster load: figures ==="]
    for key, value in figures.items():
        if isinstance(value, dict) and value:
            lines.append(f"{key}:")
            lines += [f"    {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    lines.append("=== cluster load: checks ===")
    for check in checks:
        lines.append(f"[{'PASS' if check.ok else 'FAIL'}] {check.name}")
        for key, value in check.figures.items():
            lines.append(f"        {key}: {value}")
        if check.detail:
            lines.append(f"        -> {check.detail}")
    passed = sum(1 for check in checks if check.ok)
    lines.append(f"=== {passed}/{len(checks)} checks passed ===")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m tests.cluster.load CONFIG_JSON_PATH\n")
        return 2
    config = Config.read(Path(argv[1]))
    result_path = config.control_dir / "load-result.json"
    try:
        checks, figures = asyncio.run(run(config))
    except Exception as error:  # the orchestrator reads a result whatever happened
        checks = [Check("the load driver ran to its end", False, {}, repr(error))]
        figures = {}
        result_path.write_text(
            json.dumps({"ok": False, "checks": [c.as_json() for c in checks], "figures": figures})
        )
        raise
    ok = all(check.ok for check in checks)
    result_path.write_text(
        json.dumps(
            {"ok": ok, "checks": [c.as_json() for c in checks], "figures": figures}, indent=2
        )
    )
    say(report(checks, figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
