"""Contract fuzzing: Schemathesis against the OpenAPI document, on PostgreSQL (issue 4).

Every operation of `/openapi.json` is fuzzed in-process with all of Schemathesis' checks, in
positive and negative mode, through the examples, coverage and fuzzing phases
(`test_operations`), and then as stateful workflows that follow the links Schemathesis infers
between operations (`test_stateful`). The app is the real one (`create_app`) with rate limits
off, on a freshly migrated PostgreSQL database that is dropped afterwards; authenticated
operations get the bearer token of a real admin, and a second, ordinary user exists for the
admin operations to act on.

PostgreSQL only: SQLite would hide what the fuzzer is best at finding (NUL bytes, integer
overflow, negative LIMIT; see the security notes, section 6). When it is unreachable the test
is skipped, loudly, except with CI=true, where that is a failure (as for every other test).

Deterministic as far as Schemathesis allows: a fixed seed for every operation and stateful
suite, and no example database (the stateful phase still draws some of its choices between
links from true randomness). The run is sized for `make test` (about 3 minutes on two idle
cores); `make fuzz` runs it longer through the environment:

    FUZZ_MAX_EXAMPLES           examples per operation in the fuzzing phase (default 100)
    FUZZ_STATEFUL_SUITES        stateful suites, each with its own seed (default 10)
    FUZZ_STATEFUL_MAX_EXAMPLES  scenarios per stateful suite (default 40)
    FUZZ_SEED                   the seed (default fixed)

What is configured rather than left at Schemathesis' defaults, and why, is said where it is
done: `CONFIG`, and the hooks below it. Nothing is excluded: every operation, check and
phase runs. Two of them have little to work with so far: the examples phase sends the
document's examples, and it has none yet; `object_level_authorization` compares identities,
and needs several configured (`[auth.wfc]` with peers) where this run has one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import EnsureResourceAvailability, UseAfterFree
from schemathesis.python import asgi as schemathesis_asgi
from starlette.types import Receive, Scope, Send

from app.core.bounds import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from app.core.passwords import password_problem
from app.core.security import create_access_token
from app.db.access import Db
from app.db.session import create_engine_for, create_sessionmaker
from app.main import create_app
from app.models.user import Role
from app.schemas.user import UserCreate
from app.services import user as user_service
from tests.conftest import (
    BCRYPT_TEST_ROUNDS,
    TEST_PASSWORD,
    create_database,
    drop_database,
    make_settings,
    run_alembic,
)

SEED = int(os.environ.get("FUZZ_SEED", "20261124"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "100"))
STATEFUL_SUITES = int(os.environ.get("FUZZ_STATEFUL_SUITES", "10"))
STATEFUL_MAX_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_MAX_EXAMPLES", "40"))
TOKEN_MINUTES = 24 * 60  # the access token must outlive the longest `make fuzz`
ADMIN_EMAIL = "fuzz-admin@example.com"
USER_EMAIL = "fuzz-user@example.com"

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            # Positive and negative data (the library default, spelled out as the notes advise).
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            # Nothing replayed from earlier runs: the same seed gives the same run, in CI too.
            "database": "none",
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True},
        },
        # Failures print what was sent; these are throwaway test credentials.
        "output": {"sanitization": {"enabled": False}},
        "checks": {
            # All checks are on by default but this one, which needs a limit. The app answers in
            # milliseconds in-process; 10 s only catches a hang (pool exhaustion waits 5 s).
            "max_response_time": 10.0,
            # Schemathesis' default list plus 412: `If-Match` is a plain string in OpenAPI, and a
            # well-formed tag that is not the task's current one is a 412 by contract, as a
            # missing task is a 404 (already on the list). A generated tag cannot know the
            # version, so valid data meets 412 as it meets 404.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
            },
        },
    }
)


class DeferredApp:
    """The ASGI app under test, attached by the `fuzz_target` fixture.

    Pytest collects one test per operation, so the schema must be loaded at import time;
    the app needs its database, which only a fixture creates. (`schemathesis.pytest.
    from_fixture` would defer the schema instead, but it fails on pytest 9.2, which has no
    `Node._nodeid` any more.) The OpenAPI document does not depend on the database.
    """

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "requests are only sent once `fuzz_target` has set the app"
        await self.app(scope, receive, send)


TARGET = DeferredApp()
# For the document and the signing key only: the fixture's app gets the real database.
_SETTINGS = make_settings("sqlite://")
schema = schemathesis.openapi.from_dict(create_app(_SETTINGS).openapi(), config=CONFIG)
schema.app = TARGET  # as `schemathesis.openapi.from_asgi` does after loading

# The admin's access token. The coverage phase builds its cases (and asks for credentials)
# when pytest collects the tests, before any fixture, so the token is made now: the admin is
# the first account of a new database, and the fixture checks that it is this one.
ADMIN_ID, ADMIN_TOKEN_VERSION = 1, 1
ADMIN_TOKEN, _ = create_access_token(
    user_id=ADMIN_ID,
    token_version=ADMIN_TOKEN_VERSION,
    key=_SETTINGS.signing_key,
    expire_minutes=TOKEN_MINUTES,
)


@schema.auth()
class AdminBearerToken:
    """A real admin's access token on every request (operations without security ignore it).

    Schemathesis also sends requests without it and with a broken one (`ignored_auth`,
    `missing_required_header`), which must be 401s.
    """

    def get(self, _case: schemathesis.Case, _context: schemathesis.AuthContext) -> str:
        return ADMIN_TOKEN

    def set(self, case: schemathesis.Case, data: str, _context: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


def _sent_admin_token(case: schemathesis.Case) -> bool:
    return bool(case.headers) and case.headers.get("Authorization") == f"Bearer {ADMIN_TOKEN}"


def _requires_auth(case: schemathesis.Case) -> bool:
    return "security" in case.operation.definition.raw


@schemathesis.check
def admin_token_accepted(
    _ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """The admin's token stays valid all run long (nothing the fuzzer can do ends it).

    A 401 to it would mean the run had lost its credentials, and every check that follows
    would prove nothing: 401 is an accepted answer to valid data.
    """
    if response.status_code == 401 and _requires_auth(case) and _sent_admin_token(case):
        raise AssertionError("The admin's valid access token was refused")


# The service refuses the special-use domains of RFC 6761 (`.test`, `.invalid`, ...), which
# Schemathesis' own `email` generator uses; this one draws the same shapes elsewhere.
# Negative cases still come from the standard `email` format check.
_LABEL = string.ascii_lowercase + string.digits
schemathesis.openapi.format(
    "email",
    st.builds(
        "{}@{}.{}".format,
        st.text(_LABEL + "!#$%&'*+-/=?^_`{|}~", min_size=1, max_size=10),
        st.text(_LABEL, min_size=1, max_size=8),
        st.sampled_from(["com", "org", "net", "io", "dev", "example"]),
    ),
)

# Positive data in four places is adjusted before it is sent, each time for a rule that
# JSON Schema cannot state (OpenAPI states every rule it can; see app/schemas/common.py):
#
# - A refresh token the server never issued can only be a 401, so rotation and logout would
#   never succeed. A positive refresh or logout that does not carry a token issued earlier in
#   the run (followed along a link) gets the refresh token of a new login of the user, and
#   its links are then followed too. A spent token is left alone (a 401 by contract).
# - A new `password` must not be on the list of common passwords, nor repeat one unit, nor run
#   through consecutive characters (NIST SP 800-63B-4). The coverage phase sends the length
#   bounds as "000...0", which the policy refuses; such a password is replaced by a strong one
#   of the same length. Negative cases (too short, too long, not a string) are sent as drawn.
# - `cursor` must be a `next_cursor` this server signed for the same user, filters and sort;
#   anything else is a 422. Positive cases leave it out; negative ones still send garbage.
# - An `Idempotency-Key` reused with another request (body or path) is a 422 by contract, and
#   Schemathesis reuses short keys across cases. The key is made specific to the path and the
#   body, so a retry of the same request still replays the first response.
# - v2's `project_id` and `label_id` filters, and the `project_id`, `assignee_ids` and
#   `label_ids` of a task's body, must name a project, member or label the caller may see
#   (spec api-v2 section 5; anything else is a 422), as a cursor must be one of ours: positive
#   cases leave them out.
# - An id in the query (v2's `assignee`) has one spelling, `10`, as in a path; JSON Schema's
#   `integer` admits `10.0`, which Schemathesis then sends as such. Positive cases send whole
#   floats as integers.
# The account routes are served under both versions (spec api-v2), and adjusted alike.
_VERSIONS = ("/api/v1", "/api/v2")
_REFRESH_TOKEN_OPERATIONS = {
    ("POST", f"{version}/auth/{name}") for version in _VERSIONS for name in ("refresh", "logout")
}
_NEW_PASSWORD_OPERATIONS = {
    (method, f"{version}/users{path}")
    for version in _VERSIONS
    for method, path in (("POST", ""), ("PATCH", "/me"))
}
_NAMES_THAT_MUST_EXIST = ("cursor", "project_id", "label_id")
_IDS_THAT_MUST_EXIST = ("project_id", "assignee_ids", "label_ids")
_STRONG_PASSWORD = "".join(
    random.Random(SEED).choices(string.ascii_letters + string.digits + "!#%&*-_", k=128)
)
assert all(
    password_problem(_STRONG_PASSWORD[:length]) is None
    for length in range(PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH + 1)
)


_LOGIN = "/api/v1/auth/token"
_TOKEN_ISSUERS = {
    f"{version}/auth/{name}" for version in _VERSIONS for name in ("token", "refresh")
}
_ISSUED_REFRESH_TOKENS: set[str] = set()


def _issued_refresh_token() -> str | None:
    """The refresh token of a new login of the user (None if the fuzzer deactivated them)."""
    with schemathesis_asgi.get_client(TARGET) as client:
        response = client.post(_LOGIN, data={"username": USER_EMAIL, "password": TEST_PASSWORD})
    if response.status_code != 200:
        return None
    token: str = response.json()["refresh_token"]
    _ISSUED_REFRESH_TOKENS.add(token)
    return token


async def _public_dns(host: str, port: int) -> list[str]:  # noqa: ARG001 - a Resolver
    """Every name resolves to one public address (the fuzz run's webhook URLs)."""
    return ["93.184.215.14"]


@schemathesis.hook  # Schemathesis takes `before_call` hooks only globally
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
) -> None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    operation = (case.method.upper(), case.operation.path)
    if operation in _REFRESH_TOKEN_OPERATIONS and isinstance(case.body, dict):
        if case.body.get("refresh_token") not in _ISSUED_REFRESH_TOKENS:
            token = _issued_refresh_token()
            if token is not None:
                case.body["refresh_token"] = token
    if operation in _NEW_PASSWORD_OPERATIONS and isinstance(case.body, dict):
        password = case.body.get("password")
        if isinstance(password, str) and password_problem(password) is not None:
            case.body["password"] = _STRONG_PASSWORD[: len(password)]
    if "/webhooks" in case.operation.path and isinstance(case.body, dict) and "url" in case.body:
        # A generated URL names no receiver; a valid one is what positive data means here.
        case.body["url"] = "https://hooks.example.com/fuzz"
    for name in _NAMES_THAT_MUST_EXIST:
        if case.query and name in case.query:
            del case.query[name]
    if case.operation.path.startswith("/api/v2/tasks") and isinstance(case.body, dict):
        for name in _IDS_THAT_MUST_EXIST:
            case.body.pop(name, None)
    for name, value in (case.query or {}).items():
        if isinstance(value, float) and value.is_integer():
            case.query[name] = int(value)
    key = case.headers.get("Idempotency-Key") if case.headers else None
    if isinstance(key, str):
        request = [case.operation.path, case.path_parameters, case.body]
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode())
        case.headers["Idempotency-Key"] = f"{key[:200]}.{digest.hexdigest()[:16]}"


# `use_after_free` expects a 404 for a task after its DELETE. Here DELETE moves a task to the
# trash and `POST .../restore` brings it back (contract section 3), which the check does not
# know; only its reports about a task whose latest change was a restore are dropped.
_TASKS = {f"{version}/tasks/{{task_id}}" for version in _VERSIONS}
_RESTORES = {f"{version}/tasks/{{task_id}}/restore" for version in _VERSIONS}
_TRASHED: dict[str, bool] = {}
# `ensure_resource_availability` expects what a creation names to be there at once. A creation
# replayed by its `Idempotency-Key` returns the first response (decision 0014), naming what
# the first request created, which the run may have deleted since; only its reports about
# such a replay are dropped.
_REPLAYED_LOCATIONS: set[str] = set()
_AUTHENTICATED_RESPONSES: list[str] = []
_AUTHENTICATED_SUCCESSES: list[str] = []


@schema.hook
def after_call(
    context: schemathesis.HookContext, case: schemathesis.Case, response: schemathesis.Response
) -> None:
    if response.status_code == 200 and case.operation.path in _TOKEN_ISSUERS:
        _ISSUED_REFRESH_TOKENS.add(response.json()["refresh_token"])
    if _requires_auth(case):
        _AUTHENTICATED_RESPONSES.append(case.operation.label)
        if 200 <= response.status_code < 300 and _sent_admin_token(case):
            _AUTHENTICATED_SUCCESSES.append(case.operation.label)
    headers = {name.lower(): values for name, values in response.headers.items()}
    if headers.get("idempotent-replayed") == ["true"]:
        _REPLAYED_LOCATIONS.update(headers.get("location", []))
    if 200 <= response.status_code < 300:
        task_id = str(case.path_parameters.get("task_id") if case.path_parameters else None)
        if case.operation.path in _TASKS and case.method.upper() == "DELETE":
            _TRASHED[task_id] = True
        elif case.operation.path in _RESTORES:
            _TRASHED[task_id] = False


@schema.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: Any,
    case: schemathesis.Case,
    response: schemathesis.Response,
) -> bool:
    if isinstance(failure, UseAfterFree) and case.operation.path in _TASKS:
        task_id = str(case.path_parameters.get("task_id") if case.path_parameters else None)
        return _TRASHED.get(task_id, True)
    if isinstance(failure, EnsureResourceAvailability):
        return case.formatted_path not in _REPLAYED_LOCATIONS
    return True


@pytest.fixture(scope="module")
async def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DeferredApp]:
    """The app on a new, migrated PostgreSQL database with an admin and a user; dropped after."""
    url = await create_database("postgresql", tmp_path_factory.mktemp("fuzz"))
    try:
        run_alembic(url)
        settings = make_settings(
            url, rate_limit_enabled=False, access_token_expire_minutes=TOKEN_MINUTES
        )
        engine = create_engine_for(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                db = Db.in_session(session)
                admin = await user_service.create_user(
                    db,
                    UserCreate(email=ADMIN_EMAIL, password=TEST_PASSWORD),
                    rounds=BCRYPT_TEST_ROUNDS,
                    role=Role.ADMIN,
                )
                await user_service.create_user(
                    db,
                    UserCreate(email=USER_EMAIL, password=TEST_PASSWORD),
                    rounds=BCRYPT_TEST_ROUNDS,
                )
                await session.commit()
        finally:
            await engine.dispose()
        assert (admin.id, admin.token_version) == (ADMIN_ID, ADMIN_TOKEN_VERSION)
        assert settings.signing_key == _SETTINGS.signing_key
        TARGET.app = create_app(settings)
        # Webhook URLs are resolved by the service when saved: never by real DNS here.
        TARGET.app.state.webhook_resolver = _public_dns
        yield TARGET
    finally:
        # Schemathesis runs the app's lifespan in its own event loop thread; end it (and
        # so the app's connection pool) before the database goes.
        schemathesis_asgi.shutdown_lifespans()
        TARGET.app = None
        await drop_database(url)


@schema.parametrize()
def test_operations(case: schemathesis.Case, fuzz_target: DeferredApp) -> None:
    """Examples, coverage and fuzzing phases, positive and negative, for one operation."""
    case.call_and_validate()


class APIWorkflows(schema.as_state_machine()):  # type: ignore[misc]
    """Stateful phase: chains of calls along the links between operations."""

    failures: list[BaseException] = []

    def validate_response(
        self,
        response: schemathesis.Response,
        case: schemathesis.Case,
        additional_checks: Any = None,
        **kwargs: Any,
    ) -> None:
        try:
            super().validate_response(response, case, additional_checks, **kwargs)
        except FailureGroup as failure:
            APIWorkflows.failures.append(failure)
            raise


def test_stateful(fuzz_target: DeferredApp) -> None:
    """Stateful phase, in suites with their own seeds.

    Hypothesis cannot replay a scenario against a database that later scenarios have changed;
    when it notices (`Flaky`), the suite ends, as in Schemathesis' own engine, and the next
    suite carries on. A failure the replay did not reproduce is reported all the same.
    """
    settings = hypothesis.settings(
        schema.config.get_hypothesis_settings(phase="stateful"),
        max_examples=STATEFUL_MAX_EXAMPLES,
        phases=[hypothesis.Phase.generate],  # shrinking replays too
        # As Schemathesis' engine: scenarios against a live API are slow and often filtered.
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    APIWorkflows.failures.clear()
    for suite in range(STATEFUL_SUITES):
        try:
            hypothesis.seed(SEED + suite)(APIWorkflows).run(settings=settings)
        except hypothesis.errors.Flaky:
            if APIWorkflows.failures:
                raise APIWorkflows.failures[0] from None


def test_credentials_were_used() -> None:
    """The runs above reached past authentication; they would pass, proving little, if not."""
    if not _AUTHENTICATED_RESPONSES:
        pytest.skip("no operation that requires authentication was fuzzed")
    assert _AUTHENTICATED_SUCCESSES, "no operation that requires authentication answered 2xx"
