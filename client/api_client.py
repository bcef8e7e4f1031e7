"""The client's only door to the API (v2): HTTP over httpx, as any third-party client would use it.

Nothing here knows about Streamlit. `ApiSession` holds one person's tokens and renews the
access token with the refresh token when it has expired (or is about to), so the person never
notices; when renewal fails it raises `SessionExpired`. It also counts the changes it made and
keeps what screens remember for the person, so both end with the sign-in. Every non-2xx answer
becomes an `ApiError` carrying the problem's `detail`, its per-field errors, `Retry-After`, and
for a 403 the person's `role` and the `required_role`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v2"
# A TASKS_API_URL written for an earlier client may name a version: the root is what counts.
_VERSION_SUFFIXES = ("/api/v1", "/api/v2")
TIMEOUT_SECONDS = 10.0
# Renew a little before the access token expires, so a request never races its expiry.
RENEW_MARGIN_SECONDS = 30.0

UNREACHABLE = 0  # the status of an ApiError raised when no HTTP answer came back


def api_base_url() -> str:
    """The API's base URL from TASKS_API_URL, read on every call (tests change it)."""
    url = os.environ.get("TASKS_API_URL", "").strip() or DEFAULT_API_URL
    url = url.rstrip("/")
    for suffix in _VERSION_SUFFIXES:
        url = url.removesuffix(suffix)
    return url + API_PREFIX


class ApiError(Exception):
    """A problem answer (or no answer at all) from the API, ready to show a person."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field_errors: Mapping[str, str] | None = None,
        retry_after: int | None = None,
        role: str | None = None,
        required_role: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field_errors: dict[str, str] = dict(field_errors or {})
        self.retry_after = retry_after
        # A 403 of a project says the person's role there and the least role the action needs.
        self.role = role
        self.required_role = required_role

    @property
    def unavailable(self) -> bool:
        """The API could not be reached or said it cannot serve right now."""
        return self.status in (UNREACHABLE, 502, 503, 504)


class SessionExpired(ApiError):
    """The refresh token was refused: the person has to log in again."""


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


def _field_name(loc: Any) -> str:
    # ["body", "title"] -> "title"; ["query", "due_before"] -> "due_before"; the field is the
    # part after where it was sent, even when more follows (["body", "title", "<union member>"]).
    if isinstance(loc, list) and loc:
        if len(loc) > 1 and loc[0] in ("body", "query", "path", "header", "cookie"):
            return str(loc[1])
        return str(loc[-1])
    return ""


def error_from_response(response: httpx.Response) -> ApiError:
    """Turn a non-2xx response into an ApiError, whatever its body looks like."""
    detail = ""
    field_errors: dict[str, str] = {}
    roles: dict[str, str] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            detail = body["detail"]
        for item in body.get("errors") or []:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                field_errors.setdefault(_field_name(item.get("loc")), item["msg"])
        roles = {
            name: body[name]
            for name in ("role", "required_role")
            if isinstance(body.get(name), str)
        }
    if not detail:
        detail = response.reason_phrase or f"HTTP {response.status_code}"
    return ApiError(
        response.status_code,
        detail,
        field_errors=field_errors,
        retry_after=_retry_after(response),
        role=roles.get("role"),
        required_role=roles.get("required_role"),
    )


_clients: dict[str, httpx.Client] = {}


def _client() -> httpx.Client:
    # One pooled client per API URL: a new httpx.Client costs ~50 ms (it builds an SSL context),
    # and httpx clients are safe to share between Streamlit's session threads.
    base_url = api_base_url()
    client = _clients.get(base_url)
    if client is None:
        client = _clients[base_url] = httpx.Client(base_url=base_url, timeout=TIMEOUT_SECONDS)
    return client


def request(
    method: str,
    path: str,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call; raises ApiError for a non-2xx answer or when the API is unreachable."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        response = _client().request(method, path, headers=all_headers, **kwargs)
    except httpx.TimeoutException as exc:
        raise ApiError(UNREACHABLE, f"The API at {api_base_url()} did not answer in time.") from exc
    except httpx.TransportError as exc:
        raise ApiError(UNREACHABLE, f"Cannot reach the API at {api_base_url()}.") from exc
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


def register(email: str, password: str, full_name: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email, "password": password}
    if full_name:
        body["full_name"] = full_name
    result: dict[str, Any] = request("POST", "/users", json=body).json()
    return result


@dataclass
class ApiSession:
    """One signed-in person's tokens, renewed as needed."""

    access_token: str
    refresh_token: str
    expires_at: float
    email: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    # Successful changes (any call but a GET) made through this session: a screen that keeps
    # what it read compares this number to know the person changed something since.
    writes: int = 0
    # What screens keep for this person between visits (the overview's counts). It lives on
    # the session so that logging out, or another person logging in, forgets it.
    kept: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_token_pair(cls, pair: Mapping[str, Any], email: str = "") -> ApiSession:
        return cls(
            access_token=str(pair["access_token"]),
            refresh_token=str(pair["refresh_token"]),
            expires_at=time.time() + float(pair.get("expires_in") or 0),
            email=email,
        )

    @classmethod
    def log_in(cls, email: str, password: str) -> ApiSession:
        pair = request("POST", "/auth/token", data={"username": email, "password": password}).json()
        session = cls.from_token_pair(pair, email)
        session.user = session.call("GET", "/users/me").json()
        session.email = str(session.user.get("email") or email)
        return session

    def _take_tokens(self, pair: Mapping[str, Any]) -> None:
        renewed = ApiSession.from_token_pair(pair, self.email)
        self.access_token = renewed.access_token
        self.refresh_token = renewed.refresh_token
        self.expires_at = renewed.expires_at

    def renew(self) -> None:
        """Trade the refresh token for a new pair; SessionExpired when it is refused."""
        try:
            pair = request("POST", "/auth/refresh", json={"refresh_token": self.refresh_token})
        except ApiError as exc:
            if exc.status in (400, 401, 403, 422):
                raise SessionExpired(401, "Your session has ended. Please log in again.") from exc
            raise
        self._take_tokens(pair.json())

    def log_in_again(self, password: str) -> None:
        """A new token pair for the same person, in place: a password change ends every
        earlier token of the account (the API's rule), and the screens hold this object."""
        data = {"username": self.email, "password": password}
        self._take_tokens(request("POST", "/auth/token", data=data).json())
        self.me()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated call; renews the access token once if it expired."""
        if time.time() >= self.expires_at - RENEW_MARGIN_SECONDS:
            self.renew()
        response: httpx.Response | None = None
        try:
            response = request(method, path, token=self.access_token, **kwargs)
        except ApiError as exc:
            if exc.status != 401:
                raise
        if response is None:
            # The access token was refused (expired early, or revoked): renew and try once more.
            self.renew()
            response = request(method, path, token=self.access_token, **kwargs)
        if method.upper() != "GET":
            self.writes += 1
        return response

    def log_out(self) -> None:
        """Spend the refresh token on the server; the person is logged out locally anyway."""
        try:
            request("POST", "/auth/logout", json={"refresh_token": self.refresh_token})
        except ApiError:
            pass

    # Typed helpers for the screens.

    def me(self) -> dict[str, Any]:
        self.user = self.call("GET", "/users/me").json()
        return self.user

    def update_me(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        self.user = self.call("PATCH", "/users/me", json=dict(changes)).json()
        return self.user

    def _page(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        page: dict[str, Any] = self.call("GET", path, params=dict(params)).json()
        return page

    def _all(self, path: str, params: Mapping[str, Any], most: int) -> list[dict[str, Any]]:
        """Every item of a paged list, up to `most`, 100 a page."""
        items: list[dict[str, Any]] = []
        query = {**params, "limit": 100}
        while len(items) < most:
            page = self._page(path, query)
            items.extend(page["items"])
            if not page.get("next_cursor"):
                break
            query = {**params, "limit": 100, "cursor": page["next_cursor"]}
        return items[:most]

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call(method, path, **kwargs).json()
        return result

    def roles(self) -> list[dict[str, Any]]:
        """The table of roles (owner first) with their permissions: GET /roles."""
        table: list[dict[str, Any]] = self.call("GET", "/roles").json()
        return table

    def list_tasks(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._page("/tasks", params)

    def create_task(self, body: Mapping[str, Any], idempotency_key: str) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key}
        return self._json("POST", "/tasks", json=dict(body), headers=headers)

    def get_task(self, task_id: Any) -> tuple[dict[str, Any], str]:
        response = self.call("GET", f"/tasks/{task_id}")
        return response.json(), response.headers.get("ETag", "")

    def update_task(
        self, task_id: Any, changes: Mapping[str, Any], etag: str
    ) -> tuple[dict[str, Any], str]:
        headers = {"If-Match": etag} if etag else {}
        response = self.call("PATCH", f"/tasks/{task_id}", json=dict(changes), headers=headers)
        return response.json(), response.headers.get("ETag", "")

    def delete_task(self, task_id: Any) -> None:
        self.call("DELETE", f"/tasks/{task_id}")

    def restore_task(self, task_id: Any) -> dict[str, Any]:
        task: dict[str, Any] = self.call("POST", f"/tasks/{task_id}/restore").json()
        return task

    def list_users(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._page("/users", params)

    def update_user(self, user_id: Any, changes: Mapping[str, Any]) -> dict[str, Any]:
        user: dict[str, Any] = self.call("PATCH", f"/users/{user_id}", json=dict(changes)).json()
        return user

    # Projects (spec section 3).

    def all_projects(self, most: int = 1000) -> list[dict[str, Any]]:
        return self._all("/projects", {}, most)

    def create_project(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/projects", json=dict(body))

    def get_project(self, project_id: Any) -> tuple[dict[str, Any], str]:
        response = self.call("GET", f"/projects/{project_id}")
        return response.json(), response.headers.get("ETag", "")

    def update_project(
        self, project_id: Any, changes: Mapping[str, Any], etag: str
    ) -> dict[str, Any]:
        headers = {"If-Match": etag} if etag else {}
        return self._json("PATCH", f"/projects/{project_id}", json=dict(changes), headers=headers)

    # Members and invitations (section 4).

    def all_members(self, project_id: Any, most: int = 1000) -> list[dict[str, Any]]:
        return self._all(f"/projects/{project_id}/members", {}, most)

    def change_role(self, project_id: Any, user_id: Any, role: str) -> dict[str, Any]:
        path = f"/projects/{project_id}/members/{user_id}"
        return self._json("PATCH", path, json={"role": role})

    def remove_member(self, project_id: Any, user_id: Any) -> None:
        self.call("DELETE", f"/projects/{project_id}/members/{user_id}")

    def invite(self, project_id: Any, email: str, role: str) -> dict[str, Any]:
        path = f"/projects/{project_id}/invitations"
        return self._json("POST", path, json={"email": email, "role": role})

    def project_invitations(self, project_id: Any, most: int = 1000) -> list[dict[str, Any]]:
        return self._all(f"/projects/{project_id}/invitations", {}, most)

    def revoke_invitation(self, project_id: Any, invitation_id: Any) -> None:
        self.call("DELETE", f"/projects/{project_id}/invitations/{invitation_id}")

    def my_invitations(self, most: int = 1000) -> list[dict[str, Any]]:
        return self._all("/invitations", {}, most)

    def accept_invitation(self, invitation_id: Any) -> dict[str, Any]:
        return self._json("POST", f"/invitations/{invitation_id}/accept")

    def decline_invitation(self, invitation_id: Any) -> None:
        self.call("POST", f"/invitations/{invitation_id}/decline")

    # Labels and comments (section 6).

    def all_labels(self, project_id: Any, most: int = 1000) -> list[dict[str, Any]]:
        return self._all(f"/projects/{project_id}/labels", {}, most)

    def create_label(self, project_id: Any, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/projects/{project_id}/labels", json=dict(body))

    def delete_label(self, project_id: Any, label_id: Any) -> None:
        self.call("DELETE", f"/projects/{project_id}/labels/{label_id}")

    def all_comments(self, task_id: Any, most: int = 1000) -> list[dict[str, Any]]:
        return self._all(f"/tasks/{task_id}/comments", {}, most)

    def add_comment(self, task_id: Any, body: str) -> dict[str, Any]:
        return self._json("POST", f"/tasks/{task_id}/comments", json={"body": body})

    def delete_comment(self, task_id: Any, comment_id: Any) -> None:
        self.call("DELETE", f"/tasks/{task_id}/comments/{comment_id}")

    # History (section 7).

    def _activity(self, path: str, most: int) -> tuple[list[dict[str, Any]], bool]:
        """The newest `most` events at `path` (newest first, up to 100 a request), and
        whether older ones are left. Read from the newest each time, so events that
        happened meanwhile are shown and none is skipped."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": min(100, most)}
        while True:
            page = self._page(path, query)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor or len(items) >= most:
                return items[:most], bool(cursor)
            query = {"limit": min(100, most - len(items)), "cursor": cursor}

    def task_activity(self, task_id: Any, most: int) -> tuple[list[dict[str, Any]], bool]:
        return self._activity(f"/tasks/{task_id}/activity", most)

    def project_activity(self, project_id: Any, most: int) -> tuple[list[dict[str, Any]], bool]:
        return self._activity(f"/projects/{project_id}/activity", most)

    # Webhooks (section 9), a project's admins only. A secret is in the answer that made it
    # (creation, rotation) and nowhere else.

    def webhooks(self, project_id: Any, most: int = 100) -> list[dict[str, Any]]:
        return self._all(f"/projects/{project_id}/webhooks", {}, most)

    def create_webhook(
        self, project_id: Any, body: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key}
        path = f"/projects/{project_id}/webhooks"
        return self._json("POST", path, json=dict(body), headers=headers)

    def update_webhook(
        self, project_id: Any, webhook_id: Any, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/projects/{project_id}/webhooks/{webhook_id}"
        return self._json("PATCH", path, json=dict(changes))

    def delete_webhook(self, project_id: Any, webhook_id: Any) -> None:
        self.call("DELETE", f"/projects/{project_id}/webhooks/{webhook_id}")

    def rotate_webhook_secret(self, project_id: Any, webhook_id: Any) -> dict[str, Any]:
        return self._json("POST", f"/projects/{project_id}/webhooks/{webhook_id}/rotate-secret")

    def ping_webhook(self, project_id: Any, webhook_id: Any) -> dict[str, Any]:
        return self._json("POST", f"/projects/{project_id}/webhooks/{webhook_id}/ping")

    def webhook_deliveries(
        self, project_id: Any, webhook_id: Any, *, cursor: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        """One page of the webhook's delivery log, newest attempt first."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._page(f"/projects/{project_id}/webhooks/{webhook_id}/deliveries", params)

    def redeliver(self, project_id: Any, webhook_id: Any, delivery_id: Any) -> dict[str, Any]:
        path = f"/projects/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
        return self._json("POST", path)

    # Notifications (section 8). Every page says how many are unread (`X-Unread-Count`).

    @staticmethod
    def _unread_count(response: httpx.Response) -> int:
        value = response.headers.get("X-Unread-Count", "")
        return int(value) if value.isdigit() else 0

    def notifications(
        self, most: int, *, unread_only: bool = False
    ) -> tuple[list[dict[str, Any]], bool, int]:
        """The newest `most` notifications (only the unread ones with `unread_only`), newest
        first, up to 100 a request; whether older ones are left; how many are unread. Read
        from the newest each time, as the activity is."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": min(100, most), "unread": str(unread_only).lower()}
        while True:
            response = self.call("GET", "/notifications", params=query)
            page = response.json()
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor or len(items) >= most:
                return items[:most], bool(cursor), self._unread_count(response)
            query = {**query, "limit": min(100, most - len(items)), "cursor": cursor}

    def unread_notifications(self) -> int:
        """How many of the person's notifications are unread (one small request)."""
        response = self.call("GET", "/notifications", params={"unread": "true", "limit": 1})
        return self._unread_count(response)

    def mark_notification_read(self, notification_id: Any) -> dict[str, Any]:
        return self._json("POST", f"/notifications/{notification_id}/read")

    def mark_all_notifications_read(self) -> None:
        self.call("POST", "/notifications/read-all")

    # A project's trash and editing one's own comment (sections 3 and 6).

    def deleted_projects(self, most: int = 1000) -> list[dict[str, Any]]:
        """The trashed projects the person owns (the only ones they may restore)."""
        return self._all("/projects", {"deleted": "true"}, most)

    def delete_project(self, project_id: Any) -> None:
        self.call("DELETE", f"/projects/{project_id}")

    def restore_project(self, project_id: Any) -> dict[str, Any]:
        return self._json("POST", f"/projects/{project_id}/restore")

    def update_comment(self, task_id: Any, comment_id: Any, body: str) -> dict[str, Any]:
        path = f"/tasks/{task_id}/comments/{comment_id}"
        return self._json("PATCH", path, json={"body": body})
