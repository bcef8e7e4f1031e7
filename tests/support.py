"""Assertions shared by the API tests: what every problem response must look like."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.config import Settings
from app.core.errors import RoleRequired, problem_type
from app.core.security import AccessClaims
from app.db.base import utcnow
from app.models.project import Project
from app.models.task import Task
from app.models.user import User

PROBLEM = "application/problem+json"
# Every field of a task object (section 3), and every supported sort of the listing.
TASK_FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "priority",
    "due_at",
    "created_at",
    "updated_at",
    "completed_at",
    "deleted_at",
    "version",
}
SORTS = (
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "due_at",
    "-due_at",
    "priority",
    "-priority",
)
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}
ROLE_REQUIRED_TYPE = problem_type(RoleRequired.slug)
_LEAKS = ("Traceback", 'File "', "/work/", '.py"', "sqlalchemy", "SELECT ", "asyncpg")


def assert_problem(
    response: httpx.Response,
    status: int,
    *,
    loc: Sequence[str | int] | None = None,
    absent: Iterable[str] = (),
) -> dict[str, Any]:
    """An RFC 9457 problem exactly as section 1 of the contract describes it.

    Checks the media type, every field (and no others), `status` and `request_id` against
    the response, `instance` against the request path, the shape of `errors` on a 422 (and
    that it names `loc`, when given), that nothing internal leaks, and that none of
    `absent` (values the client sent) is echoed in any spelling.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    extensions = {"errors"} if status == 422 else set()
    if status == 403 and body.get("type") == ROLE_REQUIRED_TYPE:
        extensions = {"role", "required_role"}  # spec api-v2 section 2
    assert set(body) == PROBLEM_FIELDS | extensions, body
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["instance"] == response.request.url.path
    assert body["type"] == "about:blank" or re.match(r"^[a-z][a-z0-9+.-]*:", body["type"])
    for field in ("type", "title", "detail", "instance", "request_id"):
        assert isinstance(body[field], str)
        assert body[field]
    for leak in _LEAKS:
        assert leak not in response.text, f"problem leaks {leak!r}"
    if status == 422:
        errors = body["errors"]
        assert isinstance(errors, list)
        assert errors
        for item in errors:
            assert set(item) == {"loc", "msg", "type"}
            assert isinstance(item["loc"], list)
            assert isinstance(item["msg"], str)
            assert isinstance(item["type"], str)
        if loc is not None:
            assert list(loc) in [item["loc"] for item in errors], errors
    # The request id is random hex; leave it out so a short value cannot match it by chance.
    text = json.dumps({key: value for key, value in body.items() if key != "request_id"})
    for value in absent:
        for spelling in (value, json.dumps(value)[1:-1]):
            assert spelling not in text, f"problem echoes {value!r}"
    return body


def claims_of(user: User) -> AccessClaims:
    """The claims of a current access token of `user` (for calling services directly)."""
    return AccessClaims(user.id, user.token_version, 0, 2**40)


Receive = Callable[[], Awaitable[dict[str, Any]]]


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call_asgi(
    app: Any,
    method: str,
    path: str,
    *,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    receive: Receive = _no_body,
) -> tuple[int, dict[str, str], bytes]:
    """One request straight through ASGI, for what no HTTP client library would send (raw
    query bytes, a `receive` that fails): status, headers, body."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    response_headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], response_headers, body


async def inbox_id(session: Any, user: User) -> int:
    """The id of `user`'s Inbox project (where v1's tasks live)."""
    found = await session.scalar(select(Project.id).where(Project.inbox_user_id == user.id))
    assert found is not None
    return int(found)


@asynccontextmanager
async def client_of_app(
    settings: Settings, connection: AsyncConnection
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app built with `settings` (its lifespan run) and a client on it whose requests share
    the test's rolled-back transaction, as the `client` fixture's do: for a test that needs
    settings of its own (rate limits, the v1 deprecation)."""
    from app.main import create_app
    from tests.conftest import bound_sessionmaker

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.sessionmaker = bound_sessionmaker(connection)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


def refused_at_first(monkeypatch: Any, module: Any, name: str) -> list[str]:
    """Make the write statement `module.name` match nothing at its first call, as when a
    change that committed meanwhile refused it (a project in the trash, a membership gone),
    then run as it is: the write is then made again (app/services/retries.py). The calls,
    as they come ("refused", "made")."""
    write = getattr(module, name)
    calls: list[str] = []

    async def refused_then_made(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            calls.append("refused")
            return None
        calls.append("made")
        return await write(*args, **kwargs)

    monkeypatch.setattr(module, name, refused_then_made)
    return calls


def written_before_first_call(
    monkeypatch: Any, module: Any, name: str, session: Any, write: Any
) -> list[int]:
    """Make the read `module.name` first run `write` (an UPDATE as another request writes
    it, its event aside) in `session`, as when that request commits just before the read;
    the rows it wrote."""
    read = getattr(module, name)
    written: list[int] = []

    async def after_the_write(*args: Any, **kwargs: Any) -> Any:
        if not written:
            written.append((await session.execute(write)).rowcount)
        return await read(*args, **kwargs)

    monkeypatch.setattr(module, name, after_the_write)
    return written


def trash(task_id: int) -> Any:
    """A task to the trash, as a delete writes it."""
    return (
        update(Task).where(Task.id == task_id).values(deleted_at=utcnow(), version=Task.version + 1)
    )


def forged(signed: str) -> str:
    """`signed` (a cursor: base64url parts joined by dots) with one character of its first
    part changed: a change its signature must refuse. Not one at its end, where the last
    character may carry bits the decoding ignores, so that changing it can give back the same
    bytes (a test that forged a cursor's last two characters passed them off as valid about
    once in 256 runs)."""
    first = signed.split(".")[0]
    index = len(first) // 2
    return signed[:index] + ("A" if signed[index] != "A" else "B") + signed[index + 1 :]
