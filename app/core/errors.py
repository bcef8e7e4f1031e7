"""The one error hierarchy. Services raise these; `app.api.problems` renders them as RFC 9457.

Every class fixes its status, a stable `type` URI and a `title` that is the same for every
problem of that type; `detail` says what went wrong with this request and must be safe to show
to a user (it never repeats what the client sent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "urn:tasks-api:problem:"


def problem_type(slug: str) -> str:
    return PROBLEM_TYPE_PREFIX + slug


class AppError(Exception):
    status: ClassVar[int] = 500
    # Most errors undo the request's writes; a few (revoking a token family on reuse) must
    # keep them, and say so here. The request's session dependency honours it.
    commit_transaction: ClassVar[bool] = False
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"
    default_detail: ClassVar[str] = "The server could not complete the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.headers: dict[str, str] = dict(headers or {})
        self.errors = errors
        super().__init__(self.detail)

    def extensions(self) -> dict[str, Any]:
        """Members this problem adds to RFC 9457's (none but a 422's `errors` by default)."""
        return {}

    @property
    def type(self) -> str:
        return problem_type(self.slug)


class BadRequest(AppError):
    status = 400
    slug = "bad-request"
    title = "Bad request"
    default_detail = "The request could not be understood."


class Unauthorized(AppError):
    status = 401
    slug = "unauthorized"
    title = "Unauthorized"
    default_detail = "Missing or invalid credentials."

    def __init__(self, detail: str | None = None, *, invalid_token: bool = False) -> None:
        # RFC 6750 section 3: a presented-but-bad token says error="invalid_token".
        challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class InvalidCredentials(Unauthorized):
    slug = "invalid-credentials"
    title = "Invalid credentials"
    default_detail = "The email or password is incorrect."


class InvalidRefreshToken(Unauthorized):
    slug = "invalid-refresh-token"
    title = "Invalid refresh token"
    default_detail = "The refresh token is invalid, expired, revoked or already used."


class RefreshTokenReused(InvalidRefreshToken):
    """A spent refresh token came back: its whole family was revoked, and that must stick."""

    commit_transaction = True


class RefreshTokenRevoked(InvalidRefreshToken):
    """The token's family was just revoked (its user is gone or inactive); that must stick."""

    commit_transaction = True


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"
    default_detail = "You are not allowed to do this."


class AccountDisabled(Forbidden):
    slug = "account-disabled"
    title = "Account disabled"
    default_detail = "This account has been deactivated."


class AdminRequired(Forbidden):
    slug = "admin-required"
    title = "Admin role required"
    default_detail = "Only administrators may do this."


class WrongPassword(Forbidden):
    slug = "wrong-password"
    title = "Wrong password"
    default_detail = "The current password is incorrect."


class RoleRequired(Forbidden):
    """A member who may see a project lacks the role an action needs (spec api-v2 section 2):
    the problem names the caller's role and the least role required."""

    slug = "role-required"
    title = "Role required"
    default_detail = "Your role in this project does not allow this."

    def __init__(self, role: str, required_role: str, detail: str | None = None) -> None:
        super().__init__(detail)
        self.role = role
        self.required_role = required_role

    def extensions(self) -> dict[str, Any]:
        return {"role": self.role, "required_role": self.required_role}


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"
    default_detail = "The requested resource was not found."


class MethodNotAllowed(AppError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"
    default_detail = "The method is not allowed for this resource."


class NotAcceptable(AppError):
    status = 406
    slug = "not-acceptable"
    title = "Not acceptable"
    default_detail = "The server cannot produce a response in an accepted media type."


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict"
    default_detail = "The request conflicts with the current state of the resource."


class ConcurrentUpdate(Conflict):
    """The request met a concurrent one and wrote nothing: the database rolled its
    transaction back (a deadlock), or the service gave up on a change that kept moving
    under it (decision 0036). Sending it again most likely goes through."""

    slug = "concurrent-update"
    title = "Concurrent update"
    default_detail = (
        "Another request changed the same data at the same moment and this one was rolled "
        "back: nothing was written. Send it again."
    )

    def __init__(self, detail: str | None = None, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class EmailTaken(Conflict):
    slug = "email-taken"
    title = "Email already registered"
    default_detail = "An account with this email address already exists."


class Gone(AppError):
    status = 410
    slug = "gone"
    title = "Gone"
    default_detail = "The resource is no longer available."


class PreconditionFailed(AppError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"
    default_detail = "The resource has changed since the given entity tag was issued."


class PayloadTooLarge(AppError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"
    default_detail = "The request body is larger than the server accepts."


class UnsupportedMediaType(AppError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"
    default_detail = "The request body must be sent as application/json."


# The most items a 422's `errors` lists: a body of 90,000 unknown fields (under 1 MiB) got a
# problem of 8 MB, one item each. A client fixes the first ones and learns of the rest then.
ERROR_ITEMS_LISTED = 20


class ValidationFailed(AppError):
    status = 422
    slug = "validation-error"
    title = "Validation error"
    default_detail = "The request is not valid; see `errors`."

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        if errors is not None and len(errors) > ERROR_ITEMS_LISTED:
            errors = errors[:ERROR_ITEMS_LISTED]
            detail = (
                f"{detail or self.default_detail} "
                f"Only the first {ERROR_ITEMS_LISTED} errors are listed."
            )
        super().__init__(detail, headers=headers, errors=errors)


class PreconditionRequired(AppError):
    status = 428
    slug = "precondition-required"
    title = "Precondition required"
    default_detail = "This request must be conditional (send If-Match)."


class TooManyRequests(AppError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"
    default_detail = "Too many requests; retry later."


class ServiceUnavailable(AppError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"
    default_detail = "A dependency of the service is unavailable; retry later."

    def __init__(self, detail: str | None = None, *, retry_after_seconds: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class InternalError(AppError):
    """Only ever rendered by the last-resort handler: nothing about the failure leaks."""


# The problem a bare status becomes (Starlette's routing errors, FastAPI's HTTPExceptions), and
# the title an OpenAPI response of that status shows.
ERROR_BY_STATUS: dict[int, type[AppError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    406: NotAcceptable,
    409: Conflict,
    410: Gone,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    428: PreconditionRequired,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


ErrorItem = dict[str, Any]


# A name the client sent (a body field's, a query parameter's) that an error may repeat.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UNKNOWN_NAME = "<unknown>"


def shown_name(name: str) -> str:
    """A name the client sent, repeated back in an error only when it is plain text: never
    markup, sentences or anything longer than a field name could be."""
    return name if _PLAIN_NAME.fullmatch(name) else UNKNOWN_NAME


def error_item(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> ErrorItem:
    """One item of a 422's `errors`, in the shape pydantic reports a field's error: where
    (`loc`), what is wrong in plain words (`msg`), and a stable kind (`type`)."""
    return {"loc": list(loc), "msg": msg, "type": type_}
