"""`CompiledRoute`: the route class of every router, whose request handling is planned once.

FastAPI answers a request by walking the route's dependency tree afresh: for every parameter
and dependency it inspects the declaration again, validates each parameter on its own, and
looks up caches, scopes and overrides. On the hot routes that machinery cost more than the
database statement (docs/performance.md). `CompiledRoute` keeps everything FastAPI reads from
a declaration (the OpenAPI document, `scope["route"]`, the app's exception handlers, the
response model) and replaces only the per-request work, through FastAPI's hook for it,
`APIRoute.get_route_handler()`. When the route is created, its signature is read once into a
`RequestPlan`:

- **one parser** for what a request carries: the query string (each declared parameter at
  most once, nothing undeclared, valid UTF-8), the declared headers, the path parameters and
  the body (JSON, or form fields), validated together by one pydantic model whose errors have
  FastAPI's locations (`["query", "limit"]`, `["body", "title"]`, ...);
- **the dependencies as a list of calls** in FastAPI's order, each callable once per request
  (as FastAPI caches them), with the source of each argument found in advance: the request,
  the response headers, another dependency's value, a parameter;
- **the answer**: a `Response` the endpoint returns goes out as it is; any other value is
  serialised through the route's `response_model`, as FastAPI does.

A client gets what FastAPI gives for the same declaration, in the same order: a body that is
not valid JSON (422) or not sent as JSON (415), then whatever a dependency raises (401, 429),
then the parameters' own errors (422, all of them at once). tests/api/test_routing.py holds
the two to that. Beyond FastAPI, an undeclared or repeated query parameter, a query string
that is not UTF-8 and a body sent to a route that takes none are refused: 422 items among
the parameters' own, so a request without valid credentials is a 401 whatever its query
parameters (not whatever its body: unreadable JSON is FastAPI's 422 before anything, and
raw bytes that are not UTF-8 in the query are `QueryEncodingMiddleware`'s), and one that has
them is counted against its rate limit first (docs/decisions/0006).

A declaration the plan does not cover (a sync endpoint or dependency, cookies, background
tasks, security scopes, a JSON body in several parts) is refused when the app is built, so a
route never silently behaves differently. `app.dependency_overrides` is not consulted; the
tests bind the app's sessionmaker instead (tests/conftest.py).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import unquote_to_bytes

from fastapi import params
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter, serialize_response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from app.api.messages import NOT_A_FIELD
from app.core.errors import ErrorItem, UnsupportedMediaType, error_item, shown_name
from app.schemas.common import CommaSeparated

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# Where an argument of a dependency or of the endpoint comes from.
_REQUEST, _RESPONSE, _DEPENDENCY, _PARAMETER, _BODY, _FORM_FIELD = range(6)
Source = tuple[int, Any]
Arguments = tuple[tuple[str, Source], ...]

_NO_BODY: Any = object()
_JSON_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UnsupportedDeclaration(TypeError):
    """A route declares something `RequestPlan` does not plan; raised when the app is built."""


@dataclass(frozen=True, slots=True)
class _Call:
    """One dependency: called once per request, its value kept at `slot`."""

    call: Callable[..., Any]
    kind: Literal["coroutine", "context", "class"]
    arguments: Arguments
    slot: int
    # Takes a parameter (or a dependency that does): not called when parameters are invalid.
    needs_parameters: bool
    context: Callable[..., AbstractAsyncContextManager[Any]] | None = None


class RequestPlan:
    """What a route reads from a request and calls to answer it, worked out once."""

    def __init__(self, route: APIRoute) -> None:
        self.route = route
        self._calls: list[_Call] = []
        self._slots: dict[Callable[..., Any], int] = {}
        # Per location: field name -> (annotation, FieldInfo) of the section model.
        self._fields: dict[str, dict[str, Any]] = {"path": {}, "query": {}, "header": {}}
        self._request_names: dict[str, set[str]] = {"path": set(), "query": set(), "header": set()}
        self._list_names: set[str] = set()  # query parameters that name several values
        self._header_names: dict[str, str] = {}  # lower-case name -> the name declared
        self._json_body: Any = None
        self._form_fields: dict[str, Any] = {}
        self._uses_response = False
        dependant = route.dependant
        if not inspect.iscoroutinefunction(dependant.call):
            raise UnsupportedDeclaration(f"{route.path}: the endpoint must be `async def`")
        self._endpoint: Callable[..., Awaitable[Any]] = dependant.call
        self._endpoint_arguments = self._plan(dependant, is_endpoint=True)
        self._has_contexts = any(call.kind == "context" for call in self._calls)
        self._query_names = frozenset(self._request_names["query"])
        self._query_lists = frozenset(self._list_names)
        self._reads_path = bool(self._fields["path"])
        self._body_kind: Literal["json", "form"] | None = (
            "form" if self._form_fields else "json" if self._json_body is not None else None
        )
        self._validator = self._validator_model()
        self._default_response_class = isinstance(route.response_class, DefaultPlaceholder)

    # --- planning --------------------------------------------------------------------------

    def _plan(self, dependant: Dependant, *, is_endpoint: bool = False) -> Arguments:
        """Where each of `dependant`'s arguments comes from; its dependencies are planned first."""
        unsupported = [
            what
            for what, present in (
                ("cookies", dependant.cookie_params),
                ("background tasks", dependant.background_tasks_param_name),
                ("security scopes", dependant.security_scopes_param_name),
                ("websockets", dependant.websocket_param_name),
            )
            if present
        ]
        if unsupported:
            raise UnsupportedDeclaration(f"{self.route.path}: {', '.join(unsupported)}")
        arguments: list[tuple[str, Source]] = []
        for sub_dependant in dependant.dependencies:
            slot = self._plan_dependency(sub_dependant)
            if sub_dependant.name is not None:
                arguments.append((sub_dependant.name, (_DEPENDENCY, slot)))
        for location, fields in (
            ("path", dependant.path_params),
            ("query", dependant.query_params),
            ("header", dependant.header_params),
        ):
            for field in fields:
                self._add_parameter(location, field)
                arguments.append((field.name, (_PARAMETER, (location, field.name))))
        for field in dependant.body_params:
            arguments.append((field.name, self._add_body(field, is_endpoint=is_endpoint)))
        for name in (dependant.request_param_name, dependant.http_connection_param_name):
            if name:
                arguments.append((name, (_REQUEST, None)))
        if dependant.response_param_name:
            self._uses_response = True
            arguments.append((dependant.response_param_name, (_RESPONSE, None)))
        return tuple(arguments)

    def _plan_dependency(self, dependant: Dependant) -> int:
        call = dependant.call
        assert call is not None
        if dependant.use_cache and call in self._slots:
            return self._slots[call]
        arguments = self._plan(dependant)
        kind: Literal["coroutine", "context", "class"]
        context = None
        if inspect.isasyncgenfunction(call):
            if dependant.scope != "function":
                # Closed before the response is sent, so that a failed commit is an error
                # response and not a 2xx for something never stored.
                raise UnsupportedDeclaration(
                    f"{self.route.path}: a dependency with yield needs scope='function'"
                )
            kind, context = "context", asynccontextmanager(call)
        elif inspect.isclass(call):
            kind = "class"  # a form model: constructing it never waits
        elif inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)  # noqa: B004 - an instance with an async __call__
        ):
            kind = "coroutine"
        else:
            raise UnsupportedDeclaration(
                f"{self.route.path}: dependency {call!r} must be async (the request path never "
                "waits for a thread)"
            )
        needs_parameters = any(
            kind_ in (_PARAMETER, _BODY, _FORM_FIELD)
            or (kind_ == _DEPENDENCY and self._calls[where].needs_parameters)
            for _, (kind_, where) in arguments
        )
        slot = len(self._calls)
        self._calls.append(_Call(call, kind, arguments, slot, needs_parameters, context))
        if dependant.use_cache:
            self._slots[call] = slot
        return slot

    def _add_parameter(self, location: str, field: Any) -> None:
        info = field.field_info
        request_name = field.alias
        if (
            location == "header"
            and info.alias is None
            and getattr(info, "convert_underscores", True)
        ):
            request_name = field.name.replace("_", "-")
        known = self._fields[location].get(field.name)
        if known is not None and known[1].alias != request_name:
            raise UnsupportedDeclaration(
                f"{self.route.path}: two {location} parameters {field.name}"
            )
        self._fields[location][field.name] = _section_field(field, request_name)
        self._request_names[location].add(request_name)
        if location == "query" and any(isinstance(m, CommaSeparated) for m in info.metadata):
            self._list_names.add(request_name)
        if location == "header":
            self._header_names[request_name.lower()] = request_name

    def _add_body(self, field: Any, *, is_endpoint: bool) -> Source:
        if isinstance(field.field_info, params.Form):
            self._form_fields[field.name] = _section_field(field, field.alias)
            return (_FORM_FIELD, field.name)
        if self._json_body is not None or not is_endpoint or field.field_info.embed:
            raise UnsupportedDeclaration(f"{self.route.path}: one JSON body, the endpoint's own")
        self._json_body = field
        return (_BODY, None)

    def _validator_model(self) -> type[BaseModel]:
        """One model for everything a request carries: a section per location."""
        sections: dict[str, Any] = {}
        prefix = self.route.unique_id
        for location in ("path", "query", "header"):
            if self._fields[location]:
                sections[location] = (
                    _section_model(f"{prefix}_{location}", self._fields[location]),
                    ...,
                )
        if self._form_fields:
            # A form field the route does not declare is refused, as a JSON body's is.
            form = _section_model(f"{prefix}_form", self._form_fields, extra="forbid")
            sections["body"] = (form, ...)
        elif self._json_body is not None:
            sections["body"] = _section_field(self._json_body, "body")
        model: type[BaseModel] = create_model(f"{prefix}_request", **sections)
        return model

    # --- per request -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The route's ASGI app: the answer, or the app's handler's answer to what it raised.

        Errors are rendered here, by the handlers the app registered (as Starlette's own
        routes do), so that the headers dependencies set (`headers`) go out with them too.
        """
        request = Request(scope, receive, send)
        headers = _DependencyResponse() if self._uses_response else None
        try:
            response = await self.handle(request, headers)
        except Exception as error:
            response = await _handled(request, error)
        if headers is not None:
            _add_missing_headers(response, headers)
        await response(scope, receive, send)

    async def handle_alone(self, request: Request) -> Response:
        """`handle` where FastAPI renders the errors: the headers go out with a success."""
        headers = _DependencyResponse() if self._uses_response else None
        response = await self.handle(request, headers)
        if headers is not None:
            _add_missing_headers(response, headers)
        return response

    async def handle(self, request: Request, headers: Response | None) -> Response:
        """The response to `request`; `headers` is the `Response` a dependency or the endpoint
        may declare to set headers (and a status) of the answer."""
        scope = request.scope
        body = _NO_BODY
        refused: list[ErrorItem] = []
        if self._body_kind is not None:
            _refuse_content_coding(scope)
        if self._body_kind == "json":
            body = await _json_body(request)
        elif self._body_kind == "form":
            body = await _form_body(request)
        elif _carries_body(scope):
            refused = await _unwanted_body(request)
        query, unread = _query_parameters(
            scope["query_string"], self._query_names, self._query_lists
        )
        if self._body_kind == "json" and scope["method"] in _JSON_BODY_METHODS:
            _require_json_media_type(scope)
        values, errors = self._validate(scope, query, body)
        errors += unread + refused
        if self._has_contexts:
            async with AsyncExitStack() as stack:
                return await self._answer(request, headers, values, errors, stack)
        return await self._answer(request, headers, values, errors, None)

    def _validate(
        self, scope: Mapping[str, Any], query: dict[str, str], body: Any
    ) -> tuple[BaseModel | None, list[Any]]:
        carried: dict[str, Any] = {}
        if self._reads_path:
            carried["path"] = scope.get("path_params", {})
        if self._query_names:
            carried["query"] = query
        if self._header_names:
            headers: dict[str, str] = {}
            for raw_name, raw_value in scope["headers"]:
                name = self._header_names.get(raw_name.decode("latin-1"))
                if name is not None and name not in headers:  # the first one, as Starlette
                    headers[name] = raw_value.decode("latin-1")
            carried["header"] = headers
        if body is not _NO_BODY:
            carried["body"] = body
        try:
            return self._validator.model_validate(carried, from_attributes=True), []
        except ValidationError as error:
            return None, error.errors(include_url=False)

    async def _answer(
        self,
        request: Request,
        response: Response | None,
        values: BaseModel | None,
        errors: list[Any],
        stack: AsyncExitStack | None,
    ) -> Response:
        solved: list[Any] = [None] * len(self._calls)
        for planned in self._calls:
            if errors and planned.needs_parameters:
                continue
            kwargs = _arguments(planned.arguments, request, response, values, solved)
            if planned.kind == "coroutine":
                solved[planned.slot] = await planned.call(**kwargs)
            elif planned.kind == "class":
                solved[planned.slot] = planned.call(**kwargs)
            else:
                assert stack is not None
                assert planned.context is not None
                solved[planned.slot] = await stack.enter_async_context(planned.context(**kwargs))
        if errors:
            raise RequestValidationError(errors)
        result = await self._endpoint(
            **_arguments(self._endpoint_arguments, request, response, values, solved)
        )
        if isinstance(result, Response):
            return result
        return await self._serialised(result, response)

    async def _serialised(self, result: Any, response: Response | None) -> Response:
        """A plain return value through the route's response model, as FastAPI answers it."""
        route = self.route
        status_code = route.status_code
        if response is not None and response.status_code:
            status_code = response.status_code
        dump_json = route.response_field is not None and self._default_response_class
        content = await serialize_response(
            field=route.response_field,
            response_content=result,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            dump_json=dump_json,
        )
        if dump_json:
            return Response(content, status_code=status_code or 200, media_type="application/json")
        response_class = route.response_class
        if isinstance(response_class, DefaultPlaceholder):
            response_class = response_class.value
        if status_code is None:  # the class's own default (a redirect's 307)
            return response_class(content)
        return response_class(content, status_code=status_code)


def _arguments(
    arguments: Arguments,
    request: Request,
    response: Response | None,
    values: BaseModel | None,
    solved: list[Any],
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, (kind, where) in arguments:
        if kind == _DEPENDENCY:
            kwargs[name] = solved[where]
        elif kind == _PARAMETER:
            kwargs[name] = getattr(getattr(values, where[0]), where[1])
        elif kind == _BODY:
            kwargs[name] = values.body  # type: ignore[union-attr]
        elif kind == _FORM_FIELD:
            kwargs[name] = getattr(values.body, where)  # type: ignore[union-attr]
        elif kind == _REQUEST:
            kwargs[name] = request
        else:
            kwargs[name] = response
    return kwargs


def _section_field(field: Any, request_name: str) -> tuple[Any, Any]:
    """A parameter as a field of a section model, named as the request names it."""
    info = field.field_info
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    default = ... if info.is_required() else info.get_default(call_default_factory=True)
    return annotation, Field(default, alias=request_name)


def _section_model(
    name: str, fields: dict[str, Any], *, extra: Literal["ignore", "forbid"] = "ignore"
) -> type[BaseModel]:
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(extra=extra), **fields)
    return model


async def _json_body(request: Request) -> Any:
    """The body as FastAPI reads it for a JSON route: parsed when its media type says JSON,
    the bytes otherwise (the 415 check says why), `_NO_BODY` when there is none."""
    try:
        raw = await request.body()
    except HTTPException:
        raise  # the body limit's 413
    except Exception as error:  # the client left, a broken stream
        raise HTTPException(400, "There was an error parsing the body") from error
    if not raw:
        return _NO_BODY
    if not _is_json(request.headers.get("content-type")):
        return raw
    try:
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_object_without_repeated_keys,
        )
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [error_item(["body", error.pos], "Request body is not valid JSON", "json_invalid")]
        ) from None
    except _RepeatedKey as repeated:
        raise RequestValidationError(
            [error_item(["body", shown_name(repeated.key)], "is given twice", "repeated_key")]
        ) from None
    except (ValueError, RecursionError):  # not UTF-8, nested too deeply
        raise HTTPException(400, "There was an error parsing the body") from None


def _carries_body(scope: Mapping[str, Any]) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
            return True
    return False


# What a route that takes no body accepts as one: nothing, or an empty JSON object.
_SAYS_NOTHING = (b"", b"{}")


async def _unwanted_body(request: Request) -> list[ErrorItem]:
    """The 422 items of a body sent to a route that takes none, when it says something: each
    field of a JSON object (the item of an unknown field of a route that takes a body:
    api-v1 section 1, no mass assignment), else one at `body`. Ignored, a `{"project_id": 7}`
    sent with a restore would leave the client believing it was taken. Like every item of
    a 422, they come after the credentials are checked."""
    body = await _json_body(request)
    if body is _NO_BODY or body == {}:
        return []
    if isinstance(body, dict):
        return [
            error_item(["body", shown_name(name)], NOT_A_FIELD, "extra_forbidden") for name in body
        ]
    if isinstance(body, bytes) and body.strip() in _SAYS_NOTHING:
        return []  # sent without a JSON media type, and empty all the same
    return [error_item(["body"], "must be empty: this request takes no body", "no_body_expected")]


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _object_without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it names a key twice: one parser would take the first,
    another (ours, by default) the last. One reading of a request, or none."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return found


async def _form_body(request: Request) -> dict[str, Any]:
    """Form fields as FastAPI reads them: the last of a repeated field, an empty one absent."""
    try:
        form = await request.form()
    except HTTPException:
        raise
    except Exception as error:
        raise HTTPException(400, "There was an error parsing the body") from error
    try:
        items = form.multi_items()
    finally:
        await form.close()
    fields = dict(items)
    if len(fields) != len(items):
        names = [name for name, _ in items]
        repeated = next(name for name in names if names.count(name) > 1)
        raise RequestValidationError(
            [error_item(["body", shown_name(repeated)], "is given twice", "repeated_key")]
        )
    return {name: value for name, value in fields.items() if value != ""}


def _is_json(content_type: str | None) -> bool:
    """JSON by its media type (`application/json`, `application/*+json`), in UTF-8: another
    charset named is not JSON we read (RFC 8259 says JSON is UTF-8)."""
    if not content_type:
        return False
    media_type, *parameters = content_type.split(";")
    media_type = media_type.strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def _refuse_content_coding(scope: Mapping[str, Any]) -> None:
    """A body with a content coding (gzip, ...) is refused (415, RFC 7694), not read as if it
    were plain: the service decodes none."""
    for name, value in scope["headers"]:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise UnsupportedMediaType("Request bodies with a Content-Encoding are not accepted.")


def _require_json_media_type(scope: Mapping[str, Any]) -> None:
    """A body sent to a JSON route must say it is JSON (415, not a vague 422)."""
    content_type = content_length = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and content_length is None:
            content_length = value
        elif name == b"transfer-encoding":
            chunked = True
    if content_type is None:
        if content_length in (None, b"0") and not chunked:
            return  # no body at all: the missing body's 422 says it better
        raise UnsupportedMediaType()
    if not _is_json(content_type):
        raise UnsupportedMediaType()


def _query_parameters(
    raw: bytes, declared: frozenset[str], lists: frozenset[str]
) -> tuple[dict[str, str], list[ErrorItem]]:
    """The query string: each parameter declared by the route and given at most once; one
    that names several values (`lists`) may also be repeated, its values then joined as if
    comma-separated (`status=todo&status=done` is `status=todo,done`: one reading of both).
    And the 422 items of the others: undeclared, repeated, or unreadable.

    Its escapes are decoded as UTF-8, strictly: a name or value that cannot be read is a 422
    like any parameter that cannot be read (Starlette would put replacement characters in).
    `QueryEncodingMiddleware` has refused raw bytes that are not UTF-8 already.
    """
    if not raw:
        return {}, []
    values: dict[str, str] = {}
    problems: list[ErrorItem] = []
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8")
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            problems.append(error_item(["query"], "must be valid UTF-8", "query_invalid"))
            continue
        if name not in declared:
            problems.append(
                error_item(
                    ["query", shown_name(name)], "Unknown query parameter", "extra_forbidden"
                )
            )
        elif name not in values:
            values[name] = value
        elif name in lists:
            values[name] += "," + value
        elif not any(item["loc"] == ["query", name] for item in problems):
            # Otherwise one of them would silently win; lists are comma-separated.
            problems.append(
                error_item(
                    ["query", name],
                    "Repeated query parameter; separate several values with commas",
                    "repeated_parameter",
                )
            )
    return values, problems


class _DependencyResponse(Response):
    """The `Response` a dependency or an endpoint declares to set headers (and a status) of
    the answer, as FastAPI gives it; made without a body, for every request of the route."""

    def __init__(self) -> None:
        self.status_code = None  # type: ignore[assignment]
        self.raw_headers = []
        self.background = None


def _add_missing_headers(response: Response, headers: Response) -> None:
    """`headers`' headers on `response`, unless it carries them already (a 429 does)."""
    if headers.raw_headers:
        present = {name for name, _ in response.raw_headers}
        response.raw_headers.extend(
            (name, value) for name, value in headers.raw_headers if name not in present
        )


async def _handled(request: Request, error: Exception) -> Response:
    """What the app's exception handlers answer to `error`, found as Starlette finds them;
    `error` itself when none handles it (the outer middleware's last-resort 500)."""
    exception_handlers, status_handlers = request.scope.get(
        "starlette.exception_handlers", ({}, {})
    )
    handler = None
    if isinstance(error, HTTPException):
        handler = status_handlers.get(error.status_code)
    if handler is None:
        for error_class in type(error).__mro__:
            handler = exception_handlers.get(error_class)
            if handler is not None:
                break
    if handler is None:
        raise error
    response: Response = await handler(request, error)
    error.__traceback__ = None  # reused exception instances would accumulate tracebacks
    return response


class CompiledRoute(APIRoute):
    """An `APIRoute` whose request handling is planned once (see the module docstring).

    Declare routers with `api_router()`, which makes every route of theirs one.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # FastAPI wrapped `get_route_handler()` in its `request_response`, whose exit stacks
        # the plan does not use (its dependencies with yield close before the answer is
        # sent): the plan answers as the route's ASGI app itself.
        self.app = self.plan

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """As FastAPI matches; a GET route also answers HEAD (RFC 9110 9.3.2), with the
        same headers and no body (Starlette's responses send none for HEAD)."""
        match, child_scope = super().matches(scope)
        if (
            match is Match.PARTIAL
            and scope.get("method") == "HEAD"
            and "GET" in (self.methods or ())
        ):
            return Match.FULL, child_scope
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "HEAD" and "GET" in (self.methods or ()):
            await self.app(scope, receive, send)  # what Route.handle does for its methods
            return
        await super().handle(scope, receive, send)

    def get_route_handler(self) -> Handler:
        """The plan's handler, for FastAPI to wrap where it builds a route's app itself (a
        router given to `include_router`); `api_router`'s routes are served by the plan."""
        self.plan = RequestPlan(self)
        return self.plan.handle_alone


def operation_id(route: APIRoute) -> str:
    """The OpenAPI `operationId` of a route: `<tag>-<endpoint name>` (`tasks-list_tasks`)."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def api_router(prefix: str, tag: str, *, operation_prefix: str = "") -> APIRouter:
    """A router of the API: its routes are `CompiledRoute`s under `prefix`, tagged `tag`.

    Routers are declared with their full prefix and their routes handed to the app as they
    are (`app.main.create_app`), not nested with `include_router`: each level of inclusion
    is matched twice per request in this FastAPI version, about 20 us per level.

    `operation_prefix` sets the operation ids of a router apart from those of another router
    built from the same declarations (the account routes both versions serve:
    `users-read_me` in v1, `v2-users-read_me` in v2).
    """
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        route_class=CompiledRoute,
        generate_unique_id_function=(
            partial(_prefixed_operation_id, operation_prefix) if operation_prefix else operation_id
        ),
    )


def _prefixed_operation_id(operation_prefix: str, route: APIRoute) -> str:
    return f"{operation_prefix}-{operation_id(route)}"
