"""Task rules: who may see and change a task, what a change means, what a miss answers.

The statements (`app.db.statements.tasks`) do the work in one round trip each, with the
caller's token checked inside them; when one matches nothing, a second, read-only statement
tells why, and the answer follows from it: a token no longer current is a 401, a task not
there for this caller a 404 (whether it does not exist, is someone else's, or is in the
trash), a task there at another version than `If-Match` named a 412.
"""

from __future__ import annotations

from typing import Any

from app.core.errors import NotFound, PreconditionFailed, Unauthorized
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import tasks as statements
from app.db.statements.tasks import Completion
from app.models.task import TaskPriority, TaskRecord, TaskStatus
from app.schemas.task import TaskCreate, TaskUpdate

__all__ = [
    "TaskNotFound",
    "create_task",
    "delete_task",
    "get_task",
    "restore_task",
    "update_task",
]


class TaskNotFound(NotFound):
    default_detail = "Task not found."


def token_revoked() -> Unauthorized:
    return Unauthorized("The access token is invalid or expired.", invalid_token=True)


async def create_task(db: Db, caller: AccessClaims, data: TaskCreate) -> TaskRecord:
    now = utcnow()
    values = {
        "title": data.title,
        "description": data.description,
        "status": data.status,
        "priority": TaskPriority.from_label(data.priority).value,
        "due_at": data.due_at,
        "completed_at": now if data.status == TaskStatus.DONE.value else None,
    }
    created = await statements.insert_task(db, caller, values, now)
    if created is None:  # the one thing that stops this insert: the caller is not current
        raise token_revoked()
    return created


async def get_task(db: Db, caller: AccessClaims, task_id: int) -> TaskRecord:
    """A live task of the caller; TaskNotFound for missing, trashed or foreign ones."""
    found = await statements.fetch(db, caller, task_id)
    if found is not None:
        return found
    current, _ = await statements.diagnose(db, caller, task_id)
    if not current:
        raise token_revoked()
    raise TaskNotFound()


async def _versioned_update(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    changes: dict[str, Any],
    *,
    completion: Completion = None,
    in_trash: bool,
    expected_versions: frozenset[int] | None,
) -> TaskRecord:
    """Apply `changes` and bump the version (a write that changes nothing keeps it, and
    `updated_at`, as they were); 401, 404 or 412 when that matched nothing."""
    expected = sorted(expected_versions) if expected_versions is not None else None
    if expected != []:  # If-Match naming no strong tag of ours can match nothing
        updated = await statements.update_task(
            db,
            caller,
            task_id,
            changes,
            now=utcnow(),
            completion=completion,
            in_trash=in_trash,
            expected_versions=expected,
        )
        if updated is not None:
            return updated
    current, version = await statements.diagnose(db, caller, task_id, in_trash=in_trash)
    if not current:
        raise token_revoked()
    if version is not None and expected is not None:
        raise PreconditionFailed()  # there, but not at a version If-Match named
    raise TaskNotFound()


async def update_task(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    data: TaskUpdate,
    *,
    expected_versions: frozenset[int] | None = None,
) -> TaskRecord:
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        # Nothing to change: no new version, but the precondition still applies.
        task = await get_task(db, caller, task_id)
        if expected_versions is not None and task.version not in expected_versions:
            raise PreconditionFailed()
        return task
    completion: Completion = None
    if "priority" in changes:
        changes["priority"] = TaskPriority.from_label(changes["priority"]).value
    if "status" in changes:
        # Marking a done task done again keeps the first completion time.
        completion = "keep-first" if changes["status"] == TaskStatus.DONE.value else "clear"
    return await _versioned_update(
        db,
        caller,
        task_id,
        changes,
        completion=completion,
        in_trash=False,
        expected_versions=expected_versions,
    )


async def delete_task(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    *,
    expected_versions: frozenset[int] | None = None,
) -> TaskRecord:
    """Move a live task to the trash."""
    return await _versioned_update(
        db,
        caller,
        task_id,
        {"deleted_at": utcnow()},
        in_trash=False,
        expected_versions=expected_versions,
    )


async def restore_task(db: Db, caller: AccessClaims, task_id: int) -> TaskRecord:
    """Take a task out of the trash; restoring a live task returns it unchanged."""
    try:
        return await _versioned_update(
            db, caller, task_id, {"deleted_at": None}, in_trash=True, expected_versions=None
        )
    except TaskNotFound:
        return await get_task(db, caller, task_id)
