"""Creating once per `Idempotency-Key`: what every creating `POST` does with the header.

A retry with the same key and body gets the first response (`Idempotent-Replayed: true`) and
creates nothing (app/services/idempotency.py, decision 0014); without a key, the creation
runs as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response

from app.api.problems import request_path
from app.core.security import AccessClaims
from app.db.access import Db
from app.services import idempotency
from app.services.idempotency import StoredResponse

# The headers of a creation's response that a replay repeats (Cache-Control: a webhook's
# creation carries its secret, `no-store`, on the first answer and on every replay).
_REPLAYED_HEADERS = ("location", "etag", "cache-control")


async def created_once(
    request: Request,
    db: Db,
    caller: AccessClaims,
    body: dict[str, Any],
    idempotency_key: str | None,
    create: Callable[[Db], Awaitable[Response]],
) -> Response:
    """The response of `create` (a 201, or the 200 of an invitation renewed), done once per
    `Idempotency-Key`: `create` runs on the key's transaction, and its status, body,
    `Location`, `ETag` and `Cache-Control` are kept for a retry."""
    if idempotency_key is None:
        return await create(db)

    async def work(transaction: Db) -> StoredResponse:
        created = await create(transaction)
        headers = {
            name.title() if name != "etag" else "ETag": created.headers[name]
            for name in _REPLAYED_HEADERS
            if name in created.headers
        }
        return StoredResponse(created.status_code, bytes(created.body).decode(), headers)

    request_fingerprint = idempotency.fingerprint("POST", request_path(request.scope), body)
    outcome = await idempotency.do_once(db, caller, idempotency_key, request_fingerprint, work)
    headers = dict(outcome.response.headers)
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        content=outcome.response.body,
        status_code=outcome.response.status,
        headers=headers,
        media_type="application/json",
    )
