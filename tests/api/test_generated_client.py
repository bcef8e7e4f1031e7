"""A client generated from the live OpenAPI document works, using only the generated code.

`openapi-python-client` (what a new user of the API would reach for) generates a package from
`/openapi.json`; the test imports it and walks a person's first session: register, log in,
create, list with a cursor, read with the ETag, change with `If-Match`, and a stale tag's
412. Everything is read from the generated models and response objects (headers included),
never from raw JSON.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TEST_PASSWORD

PACKAGE = "tasks_api_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, app: FastAPI) -> Iterator[ModuleType]:
    """The generated package, imported (a fresh one per test module and database)."""
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    document.write_text(json.dumps(app.openapi()), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # The generator formats its output with ruff, which is beside this interpreter.
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # A warning would mean a part of the document the generated client lacks.
    assert "Warning" not in result.stdout, result.stdout
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def part(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


@pytest.fixture
def transport(app: FastAPI, client: httpx.AsyncClient) -> httpx.ASGITransport:
    """Requests to the app in the test's transaction (`client` binds its sessions)."""
    return httpx.ASGITransport(app=app)


async def test_a_first_session_with_the_generated_client(
    generated: ModuleType, transport: httpx.ASGITransport
) -> None:
    models = part(generated, "models")
    users = part(generated, "api.users.users_register_user")
    login = part(generated, "api.auth.auth_login")
    create = part(generated, "api.tasks.tasks_create_task")
    listing = part(generated, "api.tasks.tasks_list_tasks")
    read = part(generated, "api.tasks.tasks_read_task")
    update = part(generated, "api.tasks.tasks_update_task")
    base = {"base_url": "http://generated", "httpx_args": {"transport": transport}}
    anonymous = generated.Client(**base)

    registered = await users.asyncio_detailed(
        client=anonymous,
        body=models.UserCreate(email="gen@example.com", password=TEST_PASSWORD),
    )
    assert registered.status_code == 201
    assert isinstance(registered.parsed, models.UserRead)
    assert registered.headers["location"].endswith(f"/users/{registered.parsed.id}")

    logged_in = await login.asyncio_detailed(
        client=anonymous,
        body=models.BodyAuthLogin(username="gen@example.com", password=TEST_PASSWORD),
    )
    assert logged_in.status_code == 200
    tokens = logged_in.parsed
    assert isinstance(tokens, models.TokenPair)
    assert tokens.token_type == "bearer"
    assert logged_in.headers["cache-control"] == "no-store"
    me = generated.AuthenticatedClient(token=tokens.access_token, **base)

    created = []
    for title in ("first", "second", "third"):
        answer = await create.asyncio_detailed(
            client=me,
            body=models.TaskCreate(title=title, priority=models.TaskCreatePriority.HIGH),
        )
        assert answer.status_code == 201
        assert isinstance(answer.parsed, models.TaskRead)
        assert answer.headers["location"].endswith(f"/tasks/{answer.parsed.id}")
        assert answer.headers["etag"] == f'"{answer.parsed.version}"'
        created.append(answer.parsed)
    assert created[0].created_at.tzinfo is not None  # a datetime, not a string

    seen: list[int] = []
    cursor: Any = generated.types.UNSET
    while True:
        page = await listing.asyncio_detailed(
            client=me,
            limit=2,
            cursor=cursor,
            sort=models.TasksListTasksSort.CREATED_AT_DESC,
            status=[models.TasksListTasksStatusItem.TODO, models.TasksListTasksStatusItem.DONE],
        )
        assert page.status_code == 200
        assert isinstance(page.parsed, models.PageTaskRead)
        seen += [task.id for task in page.parsed.items]
        if not page.parsed.next_cursor:
            assert "link" not in page.headers
            break
        assert 'rel="next"' in page.headers["link"]
        cursor = page.parsed.next_cursor
    assert seen == [task.id for task in reversed(created)]

    task = created[1]
    fetched = await read.asyncio_detailed(task.id, client=me)
    assert fetched.status_code == 200
    etag = fetched.headers["etag"]
    unchanged = await read.asyncio_detailed(task.id, client=me, if_none_match=etag)
    assert unchanged.status_code == 304

    changed = await update.asyncio_detailed(
        task.id,
        client=me,
        body=models.TaskUpdate(title="renamed", status=models.TaskUpdateStatus.DONE),
        if_match=etag,
    )
    assert changed.status_code == 200
    assert isinstance(changed.parsed, models.TaskRead)
    assert (changed.parsed.title, changed.parsed.version) == ("renamed", task.version + 1)
    assert changed.headers["etag"] != etag

    stale = await update.asyncio_detailed(
        task.id, client=me, body=models.TaskUpdate(title="lost update"), if_match=etag
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, models.Problem)
    assert stale.parsed.status == 412
    assert stale.parsed.request_id == stale.headers["x-request-id"]
    again = await read.asyncio_detailed(task.id, client=me)
    assert again.parsed.title == "renamed"


def test_the_generated_package_is_complete(generated: ModuleType) -> None:
    """Every operation of the document has its module (none skipped by the generator)."""
    root = Path(generated.__file__).parent / "api"
    modules = {path.stem for path in root.rglob("*.py") if path.stem != "__init__"}
    assert {
        "users_register_user",
        "users_read_me",
        "users_update_me",
        "users_list_users",
        "users_read_user",
        "users_administer_user",
        "auth_login",
        "auth_refresh_tokens",
        "auth_logout",
        "tasks_create_task",
        "tasks_list_tasks",
        "tasks_read_task",
        "tasks_update_task",
        "tasks_delete_task",
        "tasks_restore_task",
        "operations_healthz",
        "operations_readyz",
        "operations_metrics",
    } <= modules
