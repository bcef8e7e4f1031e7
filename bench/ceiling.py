"""The ceiling: the benchmarked endpoints as a bare ASGI callable on asyncpg.

No framework, no ORM, no validation library on the request path: one function per route,
hand-written SQL through an asyncpg pool, orjson out. It is served exactly as the service is
(`make serve APP=bench.ceiling:app`: same uvicorn flags, same number of workers) and answers
the requests `make bench` sends with what the service would send:

- the same verification of the bearer token (`app.core.security.decode_access_token`), and
  the same check that it is still current (user active, same token version), folded into
  each statement as the service does;
- the same statements as the service, as PostgreSQL's statement log shows them: one per
  request (keyset list with the same filters, ILIKE search under `plan_cache_mode =
  force_custom_plan`, cursor condition; get by id and owner; `INSERT ... SELECT ... WHERE
  EXISTS ... RETURNING`; versioned `UPDATE ... RETURNING` that keeps the version of a
  task it does not change), and the same second statement when one matched nothing (401,
  404 or 412);
- the same JSON (field order, `Z` timestamps with milliseconds, priority labels), the same
  signed cursors (`app.core.pagination`, same key), the same `ETag`, `Location`, `Link`,
  `X-Request-ID` and `Cache-Control` headers;
- login: the same `SELECT` by `lower(email)`, the same bcrypt verification in a worker thread
  (anyio, as the service), the same refresh-token `INSERT` and access-token encoding.

What it leaves out is what a ceiling should: no middleware, no dependency injection, no
pydantic, no metrics, no per-request log line, no rate limiting (the bench disables it in the
service too), no transaction around login's statements, no reset of a connection returned to
the pool, and only the validation the benchmark's requests need. It implements only the
routes and parameters `make bench` uses (list with `status`, `priority`, `q`, `limit`,
`cursor` on the default sort; get; create; patch with `If-Match`; login). Not for production.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
import asyncpg
import orjson

from app.api.conditional import AnyVersion, etag_for, if_match_versions, if_none_match_hits
from app.core.bounds import CURSOR_MAX_LENGTH, PASSWORD_MAX_LENGTH
from app.core.config import get_settings
from app.core.pagination import (
    CursorPosition,
    InvalidCursor,
    binding_digest,
    decode_cursor,
    encode_cursor,
)
from app.core.security import (
    AccessClaims,
    InvalidToken,
    create_access_token,
    decode_access_token,
    derive_key,
    dummy_hash,
    new_refresh_token,
    normalize_password,
    verify_password,
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

SETTINGS = get_settings()
SIGNING_KEY = SETTINGS.signing_key
CURSOR_KEY = derive_key(SIGNING_KEY, "task-cursor")
API = "/api/v1"

STATUSES = ("todo", "in_progress", "done")
PRIORITY_LABELS = {1: "low", 2: "medium", 3: "high", 4: "urgent"}
PRIORITY_RANKS = {label: rank for rank, label in PRIORITY_LABELS.items()}
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# --- SQL: the statements the service sends (see PostgreSQL's log with log_statement=all) ---

USER_COLUMNS = (
    "users.id, users.email, users.full_name, users.password_hash, users.role, "
    "users.is_active, users.token_version, users.created_at, users.updated_at"
)
TASK_COLUMNS = (
    "tasks.id, tasks.owner_id, tasks.title, tasks.description, tasks.status, tasks.priority, "
    "tasks.due_at, tasks.created_at, tasks.updated_at, tasks.completed_at, tasks.deleted_at, "
    "tasks.version"
)
USER_BY_EMAIL = f"SELECT {USER_COLUMNS} \nFROM users \nWHERE lower(users.email) = $1::VARCHAR"


def _authorized(user: int, token_version: int) -> str:
    """The caller's token is current (the service folds this into every task statement)."""
    return (
        f"EXISTS (SELECT * \nFROM users \nWHERE users.id = ${user}::BIGINT AND users.is_active "
        f"AND users.token_version = ${token_version}::INTEGER)"
    )


GET_TASK = (
    f"SELECT {TASK_COLUMNS} \nFROM tasks \nWHERE tasks.id = $1::BIGINT "
    f"AND tasks.owner_id = $2::BIGINT AND tasks.deleted_at IS NULL AND ({_authorized(2, 3)})"
)
# Only when a statement matched nothing: is the caller current, and is the task there?
DIAGNOSIS = (
    f"SELECT {_authorized(1, 2)} AS authorized, (SELECT tasks.version \nFROM tasks \n"
    "WHERE tasks.id = $3::BIGINT AND tasks.owner_id = $1::BIGINT AND tasks.deleted_at IS NULL) "
    "AS version"
)
CALLER = f"SELECT {_authorized(1, 2)} AS authorized"
_TS = "TIMESTAMP WITH TIME ZONE"
INSERT_TASK = (
    "INSERT INTO tasks (owner_id, title, description, status, priority, due_at, created_at, "
    "updated_at, completed_at, deleted_at, version) SELECT $1::BIGINT AS anon_1, "
    "$2::VARCHAR AS anon_2, $3::VARCHAR AS anon_3, $4::VARCHAR AS anon_4, "
    f"$5::SMALLINT AS anon_5, $6::{_TS} AS anon_6, $7::{_TS} AS anon_7, $7::{_TS} AS anon_8, "
    f"$8::{_TS} AS anon_9, $9::{_TS} AS anon_10, $10::INTEGER AS anon_11 \n"
    f"WHERE {_authorized(1, 11)} RETURNING {TASK_COLUMNS}"
)
INSERT_REFRESH_TOKEN = (
    "INSERT INTO refresh_tokens (user_id, token_hash, family_id, parent_id, created_at, "
    "expires_at, family_expires_at, used_at, revoked_at) VALUES ($1::BIGINT, $2::VARCHAR, "
    "$3::VARCHAR, $4::BIGINT, $5::TIMESTAMP WITH TIME ZONE, $6::TIMESTAMP WITH TIME ZONE, "
    "$7::TIMESTAMP WITH TIME ZONE, $8::TIMESTAMP WITH TIME ZONE, "
    "$9::TIMESTAMP WITH TIME ZONE) RETURNING refresh_tokens.id"
)
# Column order of SET, as SQLAlchemy renders it (table order), with the SQL type of each.
_PATCH_COLUMNS = (
    ("title", "VARCHAR"),
    ("description", "VARCHAR"),
    ("status", "VARCHAR"),
    ("priority", "SMALLINT"),
    ("due_at", "TIMESTAMP WITH TIME ZONE"),
)

_state: dict[str, Any] = {}


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, slug: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.slug = status, title, detail, slug


def _unauthorized() -> Problem:
    return Problem(401, "Unauthorized", "The access token is invalid or expired.", "unauthorized")


def _not_found() -> Problem:
    return Problem(404, "Not found", "Task not found.", "not-found")


def _invalid(detail: str) -> Problem:
    return Problem(422, "Validation error", detail, "validation-error")


# --- plumbing ---------------------------------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _task(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "title": row[2],
        "description": row[3],
        "status": row[4],
        "priority": PRIORITY_LABELS[row[5]],
        "due_at": _ts(row[6]),
        "created_at": _ts(row[7]),
        "updated_at": _ts(row[8]),
        "completed_at": _ts(row[9]),
        "deleted_at": _ts(row[10]),
        "version": row[11],
    }


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers,
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", content_type),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _invalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _invalid("The body must be a JSON object.")
    return data


def _title(value: Any) -> str:
    if not isinstance(value, str) or _CONTROL.search(value):
        raise _invalid("title must be a string without control characters")
    title: str = value.strip()
    if not 1 <= len(title) <= 200:
        raise _invalid("title must be 1 to 200 characters after trimming")
    return title


def _optional_text(value: Any, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 10_000):
        raise _invalid(f"{name} must be a string of at most 10000 characters or null")
    return value


def _timestamp(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _invalid(f"{name} must be an RFC 3339 timestamp with an offset")
    return parsed.astimezone(UTC)


def _choice(value: Any, allowed: tuple[str, ...] | dict[str, int], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _invalid(f"{name} must be one of {', '.join(allowed)}")
    return value


def _caller(scope: Scope) -> AccessClaims:
    """The bearer token's claims, verified as the service does; the users table is checked
    inside each statement."""
    authorization = _header(scope, b"authorization")
    if authorization is None or authorization[:7].lower() != "bearer ":
        raise _unauthorized()
    try:
        return decode_access_token(authorization[7:].strip(), key=SIGNING_KEY)
    except InvalidToken:
        raise _unauthorized() from None


async def _diagnose(conn: Any, caller: AccessClaims, task_id: int) -> int | None:
    """The task's version (None: not there for this caller); 401 if the caller is not current."""
    found = await conn.fetchrow(DIAGNOSIS, caller.user_id, caller.token_version, task_id)
    if not found["authorized"]:
        raise _unauthorized()
    version: int | None = found["version"]
    return version


def _task_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 2**63 - 1:
        raise _invalid("task_id must be an integer between 1 and 2^63 - 1")
    return int(raw)


# --- routes -----------------------------------------------------------------------------


async def list_tasks(scope: Scope, conn: Any, caller: AccessClaims) -> tuple[int, bytes, Headers]:
    user_id = caller.user_id
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    params = dict(query)
    if len(params) != len(query) or not params.keys() <= {
        "status",
        "priority",
        "q",
        "limit",
        "cursor",
        "sort",
    }:
        raise _invalid("Unknown or repeated query parameter (the ceiling serves a subset)")
    if params.get("sort", "-created_at") != "-created_at":
        raise _invalid("The ceiling serves the default sort only")
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise _invalid("limit must be an integer") from None
    if not 1 <= limit <= 100:
        raise _invalid("limit must be between 1 and 100")
    statuses: tuple[str, ...] = ()
    if "status" in params:
        statuses = tuple(
            dict.fromkeys(
                _choice(s.strip(), STATUSES, "status") for s in params["status"].split(",")
            )
        )
    priorities: tuple[int, ...] = ()
    if "priority" in params:
        labels = (
            _choice(p.strip(), PRIORITY_RANKS, "priority") for p in params["priority"].split(",")
        )
        priorities = tuple(PRIORITY_RANKS[label] for label in dict.fromkeys(labels))
    q = params.get("q")
    if q is not None and not 1 <= len(q) <= 200:
        raise _invalid("q must be 1 to 200 characters")
    binding = binding_digest(
        user=user_id,
        filters={
            "status": sorted(statuses),
            "priority": sorted(priorities),
            "due_before": None,
            "due_after": None,
            "q": q,
            "deleted": False,
        },
        sort="-created_at",
    )
    # owner, [status IN], [priority IN], [text], caller current, [cursor] ORDER BY ... LIMIT
    args: list[Any] = [user_id]
    where = ["tasks.owner_id = $1::BIGINT AND tasks.deleted_at IS NULL"]
    if statuses:
        first = len(args) + 1
        args += statuses
        marks = ", ".join(f"${n}::VARCHAR" for n in range(first, len(args) + 1))
        where.append(f"tasks.status IN ({marks})")
    if priorities:
        first = len(args) + 1
        args += priorities
        marks = ", ".join(f"${n}::SMALLINT" for n in range(first, len(args) + 1))
        where.append(f"tasks.priority IN ({marks})")
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [f"%{escaped}%", f"%{escaped}%"]
        where.append(
            f"(tasks.title ILIKE ${len(args) - 1}::VARCHAR ESCAPE '\\' "
            f"OR tasks.description ILIKE ${len(args)}::VARCHAR ESCAPE '\\')"
        )
    args += [user_id, caller.token_version]
    where.append(f"({_authorized(len(args) - 1, len(args))})")
    cursor = params.get("cursor")
    if cursor is not None:
        if len(cursor) > CURSOR_MAX_LENGTH:
            raise _invalid("The cursor is not valid for this query.")
        try:
            position = decode_cursor(cursor, binding=binding, key=CURSOR_KEY)
            key = datetime.fromisoformat(position.key)
        except (InvalidCursor, TypeError, ValueError):
            raise _invalid("The cursor is not valid for this query.") from None
        if key.tzinfo is None:
            raise _invalid("The cursor is not valid for this query.")
        args += [key, position.last_id]
        where.append(
            f"(tasks.created_at, tasks.id) < (${len(args) - 1}::{_TS}, ${len(args)}::INTEGER)"
        )
    args.append(limit + 1)
    sql = (
        f"SELECT {TASK_COLUMNS} \nFROM tasks \nWHERE {' AND '.join(where)} "
        f"ORDER BY tasks.created_at DESC, tasks.id DESC \n LIMIT ${len(args)}::INTEGER"
    )
    if q:
        # As the service: a plan for this very text (trigram indexes or the owner's walk),
        # never a prepared statement's generic plan.
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows = await conn.fetch(sql, *args)
    else:
        rows = await conn.fetch(sql, *args)
    if not rows and not await conn.fetchval(CALLER, user_id, caller.token_version):
        raise _unauthorized()  # an empty page, or a token no longer current
    next_cursor = None
    headers: Headers = []
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            CursorPosition(last[7].isoformat(), last[0]), binding=binding, key=CURSOR_KEY
        )
        # As Starlette's include_query_params: the cursor replaces any old one, at the end.
        next_query = urlencode(
            [(k, v) for k, v in query if k != "cursor"] + [("cursor", next_cursor)]
        )
        headers.append((b"link", f'<{scope["path"]}?{next_query}>; rel="next"'.encode()))
    body = orjson.dumps({"items": [_task(row) for row in rows], "next_cursor": next_cursor})
    return 200, body, headers


async def get_task(
    scope: Scope, conn: Any, caller: AccessClaims, task_id: int
) -> tuple[int, bytes, Headers]:
    row = await conn.fetchrow(GET_TASK, task_id, caller.user_id, caller.token_version)
    if row is None:
        await _diagnose(conn, caller, task_id)
        raise _not_found()
    etag = etag_for(row[11]).encode()
    if if_none_match_hits(_header(scope, b"if-none-match"), row[11]):
        return 304, b"", [(b"etag", etag)]
    return 200, orjson.dumps(_task(row)), [(b"etag", etag)]


async def create_task(conn: Any, caller: AccessClaims, body: bytes) -> tuple[int, bytes, Headers]:
    data = _parse_json_object(body)
    if not data.keys() <= {"title", "description", "status", "priority", "due_at"}:
        raise _invalid("Unknown field")
    if "title" not in data:
        raise _invalid("title is required")
    title = _title(data["title"])
    description = _optional_text(data.get("description"), "description")
    status = _choice(data.get("status", "todo"), STATUSES, "status")
    priority = PRIORITY_RANKS[_choice(data.get("priority", "medium"), PRIORITY_RANKS, "priority")]
    due_at = _timestamp(data.get("due_at"), "due_at")
    now = datetime.now(UTC)
    completed_at = now if status == "done" else None
    row = await conn.fetchrow(
        INSERT_TASK,
        caller.user_id,
        title,
        description,
        status,
        priority,
        due_at,
        now,
        completed_at,
        None,
        1,
        caller.token_version,
    )
    if row is None:  # the one thing that stops the insert: the caller is not current
        raise _unauthorized()
    task_id = row[0]
    headers = [(b"location", f"{API}/tasks/{task_id}".encode()), (b"etag", etag_for(1).encode())]
    return 201, orjson.dumps(_task(row)), headers


async def update_task(
    scope: Scope, conn: Any, caller: AccessClaims, task_id: int, body: bytes
) -> tuple[int, bytes, Headers]:
    data = _parse_json_object(body)
    if not data.keys() <= {"title", "description", "status", "priority", "due_at"}:
        raise _invalid("Unknown field")
    header = _header(scope, b"if-match")
    versions = if_match_versions(header)
    expected = None if versions is None or isinstance(versions, AnyVersion) else versions
    values: dict[str, Any] = {}
    if "title" in data:
        values["title"] = _title(data["title"])
    if "description" in data:
        values["description"] = _optional_text(data["description"], "description")
    if "status" in data:
        values["status"] = _choice(data["status"], STATUSES, "status")
    if "priority" in data:
        values["priority"] = PRIORITY_RANKS[_choice(data["priority"], PRIORITY_RANKS, "priority")]
    if "due_at" in data:
        values["due_at"] = _timestamp(data["due_at"], "due_at")
    if not values:
        status, task_body, headers = await get_task(scope, conn, caller, task_id)
        current = orjson.loads(task_body)["version"]
        if expected is not None and current not in expected:
            raise Problem(412, "Precondition failed", "The task has changed.", "precondition")
        return status, task_body, headers
    now = datetime.now(UTC)
    # SET in table column order, as SQLAlchemy renders the service's UPDATE: the fields, then
    # updated_at, completed_at and version, each kept as it was when no field changes.
    args: list[Any] = []
    sets = []
    distinct = []
    for column, sql_type in _PATCH_COLUMNS:
        if column in values:
            args.append(values[column])
            sets.append(f"{column}=${len(args)}::{sql_type}")
            distinct.append(f"tasks.{column} IS DISTINCT FROM ${len(args)}::{sql_type}")
    changed = f"({' OR '.join(distinct)})"
    args.append(now)
    stamp = f"${len(args)}::TIMESTAMP WITH TIME ZONE"
    sets.append(f"updated_at=CASE WHEN {changed} THEN {stamp} ELSE tasks.updated_at END")
    if values.get("status") == "done":
        # Keep the first completion time when a done task is marked done again.
        sets.append(
            f"completed_at=CASE WHEN {changed} THEN coalesce(tasks.completed_at, {stamp}) "
            "ELSE tasks.completed_at END"
        )
    elif "status" in values:
        sets.append(f"completed_at=CASE WHEN {changed} THEN NULL ELSE tasks.completed_at END")
    args += [1, 0]
    sets.append(
        f"version=(tasks.version + CASE WHEN {changed} THEN ${len(args) - 1}::INTEGER "
        f"ELSE ${len(args)}::INTEGER END)"
    )
    args += [task_id, caller.user_id]
    owner = len(args)
    where = (
        f"tasks.id = ${owner - 1}::BIGINT AND tasks.owner_id = ${owner}::BIGINT "
        "AND tasks.deleted_at IS NULL"
    )
    if expected:
        first = len(args) + 1
        args += sorted(expected)
        where += (
            f" AND tasks.version IN ({', '.join(f'${n}' for n in range(first, len(args) + 1))})"
        )
    args.append(caller.token_version)
    where += f" AND ({_authorized(owner, len(args))})"
    sql = f"UPDATE tasks SET {', '.join(sets)} WHERE {where} RETURNING {TASK_COLUMNS}"
    # If-Match naming no strong tag of ours can match nothing: no write is even tried.
    row = await conn.fetchrow(sql, *args) if expected != frozenset() else None
    if row is None:
        current = await _diagnose(conn, caller, task_id)
        if current is not None and expected is not None:
            raise Problem(412, "Precondition failed", "The task has changed.", "precondition")
        raise _not_found()
    return 200, orjson.dumps(_task(row)), [(b"etag", etag_for(row[11]).encode())]


async def login(body: bytes) -> tuple[int, bytes, Headers]:
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        raise _invalid("username and password are required")
    rounds = SETTINGS.bcrypt_rounds
    invalid = Problem(401, "Unauthorized", "Incorrect email or password.", "invalid-credentials")
    if len(normalize_password(password)) > PASSWORD_MAX_LENGTH or "\x00" in password:
        await anyio.to_thread.run_sync(verify_password, "", dummy_hash(rounds))
        raise invalid
    pool = _state["pool"]
    user = await pool.fetchrow(USER_BY_EMAIL, username.strip().lower())
    if user is None:
        await anyio.to_thread.run_sync(verify_password, password, dummy_hash(rounds))
        raise invalid
    if not await anyio.to_thread.run_sync(verify_password, password, user["password_hash"]):
        raise invalid
    if not user["is_active"]:
        raise Problem(403, "Forbidden", "This account is deactivated.", "account-disabled")
    access_token, expires_in = create_access_token(
        user_id=user["id"],
        token_version=user["token_version"],
        key=SIGNING_KEY,
        expire_minutes=SETTINGS.access_token_expire_minutes,
    )
    refresh_token, digest = new_refresh_token()
    now = datetime.now(UTC)
    family_expires_at = now + timedelta(days=SETTINGS.refresh_token_expire_days)
    expires_at = min(family_expires_at, now + timedelta(days=SETTINGS.refresh_token_idle_days))
    await pool.fetchval(
        INSERT_REFRESH_TOKEN,
        user["id"],
        digest,
        uuid.uuid4().hex,
        None,
        now,
        expires_at,
        family_expires_at,
        None,
        None,
    )
    body = orjson.dumps(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "refresh_token": refresh_token,
        }
    )
    return 200, body, [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


async def _route(scope: Scope, receive: Receive) -> tuple[int, bytes, Headers]:
    path: str = scope["path"]
    method: str = scope["method"]
    if path == "/healthz" and method == "GET":
        return 200, b'{"status":"ok"}', []
    if path == f"{API}/auth/token" and method == "POST":
        return await login(await _body(receive))
    if path == f"{API}/tasks" or path.startswith(f"{API}/tasks/"):
        task_id = None
        if path != f"{API}/tasks":
            task_id = _task_id(path[len(API) + 7 :])
        body = await _body(receive) if method in {"POST", "PATCH"} else b""
        caller = _caller(scope)
        async with _state["pool"].acquire() as conn:
            if task_id is None and method == "GET":
                return await list_tasks(scope, conn, caller)
            if task_id is None and method == "POST":
                return await create_task(conn, caller, body)
            if task_id is not None and method == "GET":
                return await get_task(scope, conn, caller, task_id)
            if task_id is not None and method == "PATCH":
                return await update_task(scope, conn, caller, task_id, body)
        raise Problem(405, "Method not allowed", "Not served by the ceiling.", "method")
    raise Problem(404, "Not found", "Not served by the ceiling.", "not-found")


async def _no_reset(_conn: Any) -> None:
    """Connections go back to the pool as they are: no statement here changes session state,
    so asyncpg's default reset (one more round trip per request) is skipped."""


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                dsn = SETTINGS.sqlalchemy_url.set(drivername="postgresql")
                _state["pool"] = await asyncpg.create_pool(
                    dsn.render_as_string(hide_password=False),
                    # As the service's pool: at most pool size + overflow connections.
                    min_size=0,
                    max_size=SETTINGS.db_pool_size + SETTINGS.db_max_overflow,
                    max_inactive_connection_lifetime=float(
                        os.environ.get("CEILING_POOL_IDLE_SECONDS", "10")
                    ),
                    reset=_no_reset,
                    timeout=SETTINGS.db_connect_timeout_seconds,
                    command_timeout=30,
                    server_settings={"jit": "off", "application_name": "tasks-api-ceiling"},
                )
            except Exception as exc:  # reported to uvicorn, which exits
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            pool = _state.pop("pool", None)
            if pool is not None:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    client_id = _header(scope, b"x-request-id")
    request_id = (
        client_id
        if client_id is not None and _CLIENT_REQUEST_ID.fullmatch(client_id)
        else uuid.uuid4().hex
    )
    request_header = (b"x-request-id", request_id.encode("ascii"))
    try:
        status, body, headers = await _route(scope, receive)
    except Problem as problem:
        body = orjson.dumps(
            {
                "type": f"urn:tasks-api:problem:{problem.slug}",
                "title": problem.title,
                "status": problem.status,
                "detail": problem.detail,
                "instance": scope["path"],
                "request_id": request_id,
            }
        )
        extra = [(b"www-authenticate", b"Bearer")] if problem.status == 401 else []
        await _respond(
            send, problem.status, body, [*extra, request_header], b"application/problem+json"
        )
        return
    await _respond(send, status, body, [*headers, request_header])
