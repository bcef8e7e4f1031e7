"""Task rules: who may see and change a task, what a change means, what a miss answers.

v1 and v2 share the statements (`app.db.statements.tasks`) and the rules below; they differ
by scope: v1's tasks are the caller's Inbox's, v2's those of any project in which the caller
has the action's least role (`app.core.roles`). The statements do the work in one round trip
each, with the caller's token checked inside them; when one matches nothing, a second,
read-only statement tells why, and the answer follows from it, in the spec's order: a token
no longer current is a 401, a task not there for this caller a 404 (whether it does not
exist, is in a project they are not a member of, or is in the trash), a role below the
action's a 403 (v2), a task there at another version than `If-Match` named a 412.

A v2 write that touches assignees, labels or the project runs in one transaction: the task
row is locked, the ids of the body are checked against the (target) project with their rows
held, and the links and the task are written, with exactly one new version if anything
changed. Ids in a body that name nothing the caller may use are a 422 pointing at the value:
a project they may not see, a user who is not a member of the task's project (whether or not
the account exists), a label of another project, or an id given twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from app.core.errors import (
    AppError,
    ConcurrentUpdate,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    ValidationFailed,
    error_item,
)
from app.core.roles import Permission, ProjectRole, least_role, role_required
from app.core.security import AccessClaims
from app.db.access import Db
from app.db.base import utcnow
from app.db.statements import outbox as reminders
from app.db.statements import tasks as statements
from app.db.statements.tasks import Completion, TaskDetail, View
from app.models.task import TaskPriority, TaskRecord, TaskStatus
from app.schemas.task import ProjectTaskCreate, ProjectTaskUpdate, TaskCreate, TaskUpdate
from app.services import retries

__all__ = [
    "TaskDetail",
    "TaskNotFound",
    "create_project_task",
    "create_task",
    "delete_project_task",
    "delete_task",
    "get_project_task",
    "get_task",
    "restore_project_task",
    "restore_task",
    "update_project_task",
    "update_task",
]


class TaskNotFound(NotFound):
    default_detail = "Task not found."


def token_revoked() -> Unauthorized:
    return Unauthorized("The access token is invalid or expired.", invalid_token=True)


def _new_values(data: TaskCreate, now: datetime) -> dict[str, Any]:
    """The columns of a new task from its body (a task created done is completed now)."""
    return {
        "title": data.title,
        "description": data.description,
        "status": data.status,
        "priority": TaskPriority.from_label(data.priority).value,
        "due_at": data.due_at,
        "completed_at": now if data.status == TaskStatus.DONE.value else None,
    }


def _field_changes(changes: dict[str, Any]) -> Completion:
    """Turn a body's changed fields into columns (in place), and say what the change does
    to `completed_at`."""
    completion: Completion = None
    if "priority" in changes:
        changes["priority"] = TaskPriority.from_label(changes["priority"]).value
    if "status" in changes:
        # Marking a done task done again keeps the first completion time.
        completion = "keep-first" if changes["status"] == TaskStatus.DONE.value else "clear"
    return completion


def _expected(expected_versions: frozenset[int] | None) -> list[int] | None:
    return sorted(expected_versions) if expected_versions is not None else None


async def create_task(db: Db, caller: AccessClaims, data: TaskCreate) -> TaskRecord:
    now = utcnow()
    created = await statements.insert_task(db, caller, _new_values(data, now), now)
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
    expected = _expected(expected_versions)
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
    completion = _field_changes(changes)

    async def update() -> TaskRecord:
        return await _versioned_update(
            db,
            caller,
            task_id,
            changes,
            completion=completion,
            in_trash=False,
            expected_versions=expected_versions,
        )

    held = await reminders.remind_at_while_done(db, task_id) if _may_reopen(changes) else None
    if held is None:
        return await update()
    async with db.transaction():
        updated = await update()
        await _reminder_after_write(db, task_id, changes, held_while_done=held)
        return updated


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
    """Take a task out of the trash; restoring a live task returns it unchanged. A restore
    that found the task live while a delete of it committed finds it in the trash at the
    read that tells why, and is made again (`retries`): in either order the two give the
    task restored or live, never a 404."""

    async def restore() -> TaskRecord | None:
        restored = await _out_of_the_trash(
            db,
            task_id,
            lambda now: statements.update_task(
                db,
                caller,
                task_id,
                {"deleted_at": None},
                now=now,
                in_trash=True,
                expected_versions=None,
            ),
        )
        return restored if restored is not None else await statements.fetch(db, caller, task_id)

    async def refusal() -> AppError | None:
        # Neither restored nor read live, but there in the trash or live now (a delete, or
        # another restore, committed in between): made again; else not there for the caller.
        current, in_trash = await statements.diagnose(db, caller, task_id, in_trash=True)
        if not current:
            return token_revoked()
        if in_trash is not None:
            return None
        _, live = await statements.diagnose(db, caller, task_id, in_trash=False)
        return TaskNotFound() if live is None else None

    return await retries.made_again_while_allowed(restore, refusal)


# --- v2: tasks in projects, at roles ----------------------------------------------------------

LinkField = Literal["assignee_ids", "label_ids"]


def _least(*permissions: Permission) -> ProjectRole:
    """The least role that holds every one of `permissions`."""
    return max(least_role(permission) for permission in permissions)


class _RefusedByAGoneChange(Exception):  # noqa: N818 (a signal within this module)
    """A write's lock matched nothing, and the read that tells why finds nothing that refuses
    it now: a change that refused it is gone (the project restored, the role given back), and
    the write starts again (`retries`)."""


async def _refusal(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    *,
    least: ProjectRole,
    view: View,
    expected: list[int] | None = None,
) -> AppError | None:
    """Why a v2 statement on a task matched nothing, in the spec's order: 401, 404 (not
    visible), 403 (role), 412 (version); None when nothing refuses it now."""
    current, version, role = await statements.diagnose_role(db, caller, task_id, view=view)
    if not current:
        return token_revoked()
    if role is None:
        return TaskNotFound()
    if role < least:
        return role_required(role, least)
    if version is not None and expected is not None and version not in expected:
        return PreconditionFailed()  # there, but not at a version If-Match named
    return None


async def _why_missed(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    *,
    least: ProjectRole,
    view: View,
    expected: list[int] | None = None,
) -> AppError:
    """`_refusal`, or a 404 when nothing refuses the statement (a read that missed the task
    between two changes)."""
    refusal = await _refusal(db, caller, task_id, least=least, view=view, expected=expected)
    return refusal or TaskNotFound()


def _unusable_project() -> ValidationFailed:
    # The same answer whether the project does not exist, is in the trash, or the caller is
    # not a member: a 422 that reveals nothing more than a 404 would.
    return ValidationFailed(
        errors=[
            error_item(
                ["body", "project_id"],
                "must be the id of a project you are a member of",
                "project_not_found",
            )
        ]
    )


_UNKNOWN_ID = {
    "assignee_ids": ("must be a member of the task's project", "not_a_member"),
    "label_ids": ("must be a label of the task's project", "label_not_found"),
}


def _check_unique(field: LinkField, requested: Sequence[int] | None) -> None:
    """A body naming an id twice is a 422 pointing at each repetition (a set of links has
    each once; a client that sends one twice has a bug we should not hide)."""
    if not requested:
        return
    seen: set[int] = set()
    errors = []
    for index, value in enumerate(requested):
        if value in seen:
            errors.append(error_item(["body", field, index], "must not repeat an id", "duplicate"))
        seen.add(value)
    if errors:
        raise ValidationFailed(errors=errors)


def _check_found(field: LinkField, requested: Sequence[int], found: set[int]) -> None:
    """A 422 pointing at each id of `requested` that is not in `found`."""
    message, kind = _UNKNOWN_ID[field]
    errors = [
        error_item(["body", field, index], message, kind)
        for index, value in enumerate(requested)
        if value not in found
    ]
    if errors:
        raise ValidationFailed(errors=errors)


async def _new_links(
    db: Db,
    field: LinkField,
    project_id: int,
    requested: Sequence[int] | None,
    current: Sequence[int],
    *,
    moving: bool,
) -> set[int]:
    """The links a write leaves on the task (inside its transaction, their rows held):
    the requested ones, which must all be of `project_id`; else, on a move, the current
    assignees who are members of the target and no labels; else the current ones."""
    among = statements.members_among if field == "assignee_ids" else statements.labels_among
    if requested is not None:
        _check_found(field, requested, await among(db, project_id, requested))
        return set(requested)
    if not moving:
        return set(current)
    if field == "label_ids":
        return set()
    return await among(db, project_id, current)


async def get_project_task(db: Db, caller: AccessClaims, task_id: int) -> TaskDetail:
    """A live task of a project the caller may read; TaskNotFound otherwise."""
    least = least_role(Permission.TASK_READ)
    found = await statements.fetch_detail(db, caller, task_id, least)
    if found is not None:
        return found
    raise await _why_missed(db, caller, task_id, least=least, view="live")


async def create_project_task(db: Db, caller: AccessClaims, data: ProjectTaskCreate) -> TaskDetail:
    """A new task in `data.project_id` (the caller's Inbox by default), with its assignees
    (members of that project) and labels (of that project): the caller needs the least role
    of creating (and, with assignees, of assigning) there. A project the caller may not see
    is a 422 on `project_id`; one they may see at a lower role a 403."""
    _check_unique("assignee_ids", data.assignee_ids)
    _check_unique("label_ids", data.label_ids)
    permissions = [Permission.TASK_CREATE]
    if data.assignee_ids:
        permissions.append(Permission.TASK_ASSIGN)
    least = _least(*permissions)
    now = utcnow()
    values = _new_values(data, now) | {"remind_at": data.remind_at}
    links: dict[str, tuple[Any, Any]] = {
        field: ([], sorted(ids))
        for field, ids in (("assignee_ids", data.assignee_ids), ("label_ids", data.label_ids))
        if ids
    }

    async def insert() -> TaskDetail | None:
        if not links:
            # One statement: the insert reads the caller's membership (held until it commits).
            created = await statements.insert_into_project(
                db, caller, data.project_id, values, now, least=least
            )
            return None if created is None else TaskDetail(created, (), ())
        async with db.transaction():
            created = await statements.insert_into_project(
                db, caller, data.project_id, values, now, least=least, links=links
            )
            if created is None:
                return None
            project_id = created.project_id
            assignees = await _new_links(
                db, "assignee_ids", project_id, data.assignee_ids, (), moving=False
            )
            labels = await _new_links(db, "label_ids", project_id, data.label_ids, (), moving=False)
            await statements.relink(
                db, "assignees", created.id, project_id, add=assignees, remove=()
            )
            await statements.relink(db, "labels", created.id, project_id, add=labels, remove=())
        return TaskDetail(created, tuple(sorted(assignees)), tuple(sorted(labels)))

    async def refusal() -> AppError | None:
        return await _why_not_created(db, caller, data.project_id, least)

    return await retries.made_again_while_allowed(insert, refusal)


async def _why_not_created(
    db: Db, caller: AccessClaims, project_id: int | None, least: ProjectRole
) -> AppError | None:
    """Why an insert into the project matched nothing; None when nothing refuses it now (the
    project restored, or the membership back, between the insert and this read)."""
    current, role = await statements.project_role(db, caller, project_id)
    if not current:
        return token_revoked()
    if role is None:
        return _unusable_project()
    if role < least:
        return role_required(role, least)
    return None


async def update_project_task(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    data: ProjectTaskUpdate,
    *,
    expected_versions: frozenset[int] | None = None,
) -> TaskDetail:
    """Change a task's fields, move it to another project, replace its assignees or labels:
    one new version if anything changed, none otherwise."""
    changes = data.model_dump(exclude_unset=True)
    target: int | None = changes.pop("project_id", None)
    assignee_ids: list[int] | None = changes.pop("assignee_ids", None)
    label_ids: list[int] | None = changes.pop("label_ids", None)
    _check_unique("assignee_ids", assignee_ids)
    _check_unique("label_ids", label_ids)
    permissions = [Permission.TASK_UPDATE]
    if target is not None:
        permissions.append(Permission.TASK_MOVE)
    if assignee_ids is not None:
        permissions.append(Permission.TASK_ASSIGN)
    least = _least(*permissions)
    expected = _expected(expected_versions)
    completion = _field_changes(changes)
    if target is None and assignee_ids is None and label_ids is None:
        if not changes:
            # Nothing to change: no new version, but the role and If-Match still apply.
            found = await statements.fetch_detail(db, caller, task_id, least)
            if found is None:
                raise await _why_missed(db, caller, task_id, least=least, view="live")
            if expected is not None and found.task.version not in expected:
                raise PreconditionFailed()
            return found

        async def update() -> TaskDetail:
            return await _versioned_detail_update(
                db, caller, task_id, changes, completion=completion, least=least, expected=expected
            )

        held = await reminders.remind_at_while_done(db, task_id) if _may_reopen(changes) else None
        if "remind_at" not in changes and held is None:
            return await update()
        async with db.transaction():
            updated = await update()
            await _reminder_after_write(db, task_id, changes, held_while_done=held)
            return updated
    for _ in range(retries.ATTEMPTS):
        try:
            return await _update_with_links(
                db,
                caller,
                task_id,
                dict(changes),
                target=target,
                assignee_ids=assignee_ids,
                label_ids=label_ids,
                least=least,
                expected=expected,
                completion=completion,
            )
        except (statements.MovedMeanwhile, _RefusedByAGoneChange):
            continue  # rolled back, nothing written: again (in the task's new project)
    raise ConcurrentUpdate()


async def _update_with_links(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    changes: dict[str, Any],
    *,
    target: int | None,
    assignee_ids: list[int] | None,
    label_ids: list[int] | None,
    least: ProjectRole,
    expected: list[int] | None,
    completion: Completion,
) -> TaskDetail:
    """`update_project_task` with a move or new links, in one transaction: the task locked,
    the body's ids checked against its (target) project, then the links and the task
    written."""
    async with db.transaction():
        current = await statements.lock_detail(db, caller, task_id, least)
        if current is None:
            refusal = await _refusal(
                db, caller, task_id, least=least, view="live", expected=expected
            )
            raise refusal if refusal is not None else _RefusedByAGoneChange()
        source = current.task.project_id
        project_id = source if target is None else target
        moving = project_id != source
        if moving:
            role = await statements.locked_role(db, caller, project_id)
            if role is None:
                raise _unusable_project()
            if role < least:
                raise role_required(role, least)
            changes["project_id"] = project_id
        assignees = await _new_links(
            db, "assignee_ids", project_id, assignee_ids, current.assignee_ids, moving=moving
        )
        labels = await _new_links(
            db, "label_ids", project_id, label_ids, current.label_ids, moving=moving
        )
        if expected is not None and current.task.version not in expected:
            raise PreconditionFailed()
        links: tuple[tuple[Literal["assignees", "labels"], set[int], set[int]], ...] = (
            ("assignees", assignees, set(current.assignee_ids)),
            ("labels", labels, set(current.label_ids)),
        )
        for kind, new, old in links:
            await statements.relink(db, kind, task_id, project_id, add=new - old, remove=old - new)
        links_changed = assignees != set(current.assignee_ids) or labels != set(current.label_ids)
        link_changes = {
            field: (sorted(old_ids), sorted(new_ids))
            for field, old_ids, new_ids in (
                ("assignee_ids", current.assignee_ids, assignees),
                ("label_ids", current.label_ids, labels),
            )
            if set(old_ids) != set(new_ids)
        }
        updated = await statements.update_detail(
            db,
            caller,
            task_id,
            changes,
            least=least,
            now=utcnow(),
            completion=completion,
            in_trash=False,
            expected_versions=None,
            links_changed=links_changed,
            links=link_changes,
        )
        if updated is None:  # the task is locked: only the caller can have changed
            raise await _why_missed(db, caller, task_id, least=least, view="live")
        held = current.task.remind_at if current.task.status == TaskStatus.DONE.value else None
        await _reminder_after_write(db, task_id, changes, held_while_done=held)
    return updated


_Restored = TypeVar("_Restored", TaskRecord, TaskDetail)


async def _out_of_the_trash(
    db: Db, task_id: int, restore: Callable[[datetime], Awaitable[_Restored | None]]
) -> _Restored | None:
    """`restore` (the write that takes the task out of the trash, at the time it is given),
    and in its transaction the reminders that came while the task was in the trash marked
    made (`spend_passed_reminders`): it had none then, and gets none late now."""
    async with db.transaction():
        now = utcnow()
        restored = await restore(now)
        if restored is not None:
            await reminders.spend_passed_reminders(db, now, task_id=task_id)
        return restored


def _may_reopen(changes: dict[str, Any]) -> bool:
    """Whether a write of `changes` takes the task out of `done` if it was."""
    return changes.get("status") not in (None, TaskStatus.DONE.value)


async def _reminder_after_write(
    db: Db, task_id: int, changes: dict[str, Any], *, held_while_done: datetime | None
) -> None:
    """After a write, in its transaction: a new `remind_at` is armed even if it fired before
    (`forget_other_reminders`); a task taken out of `done` (its `remind_at` then:
    `held_while_done`) is not reminded late of that `remind_at` if it passed while the task
    was done (`spend_passed_reminders`; spec api-v2 section 8: a done task gets no reminder),
    unless the same write set another one, which it arms."""
    if "remind_at" in changes:
        await reminders.forget_other_reminders(db, task_id)
    if (
        held_while_done is not None
        and _may_reopen(changes)
        and changes.get("remind_at", held_while_done) == held_while_done
    ):
        await reminders.spend_passed_reminders(db, utcnow(), task_id=task_id)


async def _versioned_detail_update(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    changes: dict[str, Any],
    *,
    completion: Completion = None,
    least: ProjectRole,
    in_trash: bool = False,
    expected: list[int] | None,
) -> TaskDetail:
    """`_versioned_update` in a project where the caller needs `least`: 401, 404, 403 or
    412 when it matched nothing. When the read that tells why finds nothing that refuses it
    (the writer the statement waited for moved the task to another project, which refuses
    it: the caller's role there must be read as it is now, `_in_scope_after_turns` in
    `app.db.statements.tasks`; or a change that refused it is undone by then), it is made
    again (`retries`)."""

    async def update() -> TaskDetail | None:
        if expected == []:  # If-Match naming no strong tag of ours can match nothing
            return None
        return await statements.update_detail(
            db,
            caller,
            task_id,
            changes,
            least=least,
            now=utcnow(),
            completion=completion,
            in_trash=in_trash,
            expected_versions=expected,
        )

    async def refusal() -> AppError | None:
        view: View = "trash" if in_trash else "live"
        return await _refusal(db, caller, task_id, least=least, view=view, expected=expected)

    return await retries.made_again_while_allowed(update, refusal)


async def delete_project_task(
    db: Db,
    caller: AccessClaims,
    task_id: int,
    *,
    expected_versions: frozenset[int] | None = None,
) -> TaskDetail:
    """Move a live task to the trash."""
    return await _versioned_detail_update(
        db,
        caller,
        task_id,
        {"deleted_at": utcnow()},
        least=least_role(Permission.TASK_DELETE),
        expected=_expected(expected_versions),
    )


async def restore_project_task(db: Db, caller: AccessClaims, task_id: int) -> TaskDetail:
    """Take a task out of the trash; restoring a live task returns it unchanged. Both need
    the least role of restoring (a viewer who may read the trash still gets a 403)."""
    least = least_role(Permission.TASK_RESTORE)

    async def restore() -> TaskDetail | None:
        restored = await _out_of_the_trash(
            db,
            task_id,
            lambda now: statements.update_detail(
                db,
                caller,
                task_id,
                {"deleted_at": None},
                least=least,
                now=now,
                in_trash=True,
                expected_versions=None,
            ),
        )
        if restored is not None:
            return restored
        return await statements.fetch_detail(db, caller, task_id, least)

    async def refusal() -> AppError | None:
        # In the trash or not: 404 if the caller may not see it, 403 below the role; else a
        # delete committed between the restore and the read of the live task (`retries`).
        current, _, role = await statements.diagnose_role(db, caller, task_id, view="any")
        if not current:
            return token_revoked()
        if role is None:
            return TaskNotFound()
        return role_required(role, least) if role < least else None

    return await retries.made_again_while_allowed(restore, refusal)
