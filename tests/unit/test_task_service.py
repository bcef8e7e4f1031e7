"""`app.services.task`, called directly on a session: the rules below the HTTP layer.

Each test runs on SQLite and on PostgreSQL, inside the harness's rolled-back transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound, PreconditionFailed
from app.models.task import Task, TaskPriority
from app.models.user import User
from app.schemas.task import TaskCreate, TaskUpdate
from app.services import task as task_service
from app.services.task import TaskNotFound
from tests.conftest import UserFactory

EARLIER = datetime(2020, 5, 17, 8, 0, 0, 123456, tzinfo=UTC)


async def row(session: AsyncSession, task_id: int) -> dict[str, Any]:
    """The task's columns as stored, read past the session's identity map."""
    result = await session.execute(select(*Task.__table__.c).where(Task.id == task_id))
    return dict(result.mappings().one())


async def new_task(session: AsyncSession, owner: User, **fields: Any) -> Task:
    return await task_service.create_task(
        session, owner.id, TaskCreate.model_validate({"title": "A task", **fields})
    )


def changes(**fields: Any) -> TaskUpdate:
    return TaskUpdate.model_validate(fields)


@pytest.fixture
async def alice(make_user: UserFactory) -> User:
    return await make_user(email="alice@example.com")


@pytest.fixture
async def bob(make_user: UserFactory) -> User:
    return await make_user(email="bob@example.com")


@pytest.fixture
async def task(session: AsyncSession, alice: User) -> Task:
    return await new_task(session, alice, description="first draft")


class TestCreate:
    async def test_defaults_and_server_fields(self, session: AsyncSession, alice: User) -> None:
        created = await new_task(session, alice)
        stored = await row(session, created.id)
        assert stored["owner_id"] == alice.id
        assert stored["title"] == "A task"
        assert stored["description"] is None
        assert stored["status"] == "todo"
        assert stored["priority"] == TaskPriority.MEDIUM.value
        assert stored["due_at"] is None
        assert stored["completed_at"] is None
        assert stored["deleted_at"] is None
        assert stored["version"] == 1
        assert stored["created_at"] == stored["updated_at"]
        assert stored["created_at"].tzinfo is not None

    async def test_fields_given(self, session: AsyncSession, alice: User) -> None:
        created = await new_task(
            session,
            alice,
            description="details",
            status="in_progress",
            priority="urgent",
            due_at="2026-11-24T11:30:00+02:00",
        )
        stored = await row(session, created.id)
        assert stored["description"] == "details"
        assert stored["status"] == "in_progress"
        assert stored["priority"] == TaskPriority.URGENT.value
        assert stored["due_at"] == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)

    async def test_created_done_is_completed(self, session: AsyncSession, alice: User) -> None:
        created = await new_task(session, alice, status="done")
        stored = await row(session, created.id)
        assert stored["completed_at"] is not None
        assert stored["completed_at"] == stored["created_at"]

    async def test_ids_are_distinct(self, session: AsyncSession, alice: User, bob: User) -> None:
        first = await new_task(session, alice)
        second = await new_task(session, bob)
        assert first.id != second.id


class TestGet:
    async def test_own_live_task(self, session: AsyncSession, alice: User, task: Task) -> None:
        found = await task_service.get_task(session, alice.id, task.id)
        assert found.id == task.id
        assert found.title == "A task"

    async def test_missing_raises_not_found(self, session: AsyncSession, alice: User) -> None:
        with pytest.raises(TaskNotFound):
            await task_service.get_task(session, alice.id, 987_654_321)

    async def test_other_owner_raises_not_found(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        with pytest.raises(NotFound) as raised:
            await task_service.get_task(session, bob.id, task.id)
        assert isinstance(raised.value, TaskNotFound)

    async def test_trashed_raises_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(session, alice.id, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.get_task(session, alice.id, task.id)

    async def test_foreign_and_missing_errors_look_alike(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        with pytest.raises(TaskNotFound) as foreign:
            await task_service.get_task(session, bob.id, task.id)
        with pytest.raises(TaskNotFound) as missing:
            await task_service.get_task(session, bob.id, task.id + 1_000_000)
        assert foreign.value.detail == missing.value.detail
        assert foreign.value.status == missing.value.status == 404


class TestUpdate:
    async def test_change_bumps_version_and_updated_at(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        updated = await task_service.update_task(
            session, alice.id, task.id, changes(title="Renamed", priority="low")
        )
        assert updated.version == 2
        stored = await row(session, task.id)
        assert stored["title"] == "Renamed"
        assert stored["priority"] == TaskPriority.LOW.value
        assert stored["description"] == "first draft"
        assert stored["version"] == 2
        assert stored["created_at"] == before["created_at"]
        assert stored["updated_at"] >= before["updated_at"]

    async def test_every_change_adds_one(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        steps = [
            changes(title="two"),
            changes(status="in_progress"),
            changes(description=None),
            changes(due_at="2030-01-01T00:00:00Z"),
            changes(title="two"),  # same value again is still a change
        ]
        for expected, step in enumerate(steps, start=2):
            updated = await task_service.update_task(session, alice.id, task.id, step)
            assert updated.version == expected
            assert (await row(session, task.id))["version"] == expected

    async def test_empty_update_does_not_bump_version(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        result = await task_service.update_task(session, alice.id, task.id, TaskUpdate())
        assert result.version == 1
        assert await row(session, task.id) == before

    async def test_none_clears_description_and_due_at(
        self, session: AsyncSession, alice: User
    ) -> None:
        created = await new_task(session, alice, description="text", due_at="2030-01-01T00:00:00Z")
        await task_service.update_task(
            session, alice.id, created.id, changes(description=None, due_at=None)
        )
        stored = await row(session, created.id)
        assert stored["description"] is None
        assert stored["due_at"] is None
        assert stored["title"] == "A task"

    async def test_completed_at_follows_status(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.update_task(session, alice.id, task.id, changes(status="done"))
        stored = await row(session, task.id)
        assert stored["completed_at"] is not None
        assert stored["completed_at"] >= stored["created_at"]

        # Marking a done task done again keeps the first completion time.
        await session.execute(update(Task).where(Task.id == task.id).values(completed_at=EARLIER))
        await task_service.update_task(session, alice.id, task.id, changes(status="done"))
        assert (await row(session, task.id))["completed_at"] == EARLIER

        # Other changes to a done task leave it too.
        await task_service.update_task(session, alice.id, task.id, changes(title="still done"))
        assert (await row(session, task.id))["completed_at"] == EARLIER

        # Leaving done clears it.
        await task_service.update_task(session, alice.id, task.id, changes(status="todo"))
        assert (await row(session, task.id))["completed_at"] is None

    async def test_in_progress_does_not_complete(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.update_task(session, alice.id, task.id, changes(status="in_progress"))
        assert (await row(session, task.id))["completed_at"] is None

    async def test_other_owner_raises_not_found_and_nothing_changes(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(session, bob.id, task.id, changes(title="hijacked"))
        with pytest.raises(TaskNotFound):
            await task_service.update_task(session, bob.id, task.id, TaskUpdate())
        assert await row(session, task.id) == before

    async def test_trashed_raises_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(session, alice.id, task.id)
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(session, alice.id, task.id, changes(title="x"))
        assert await row(session, task.id) == before


class TestDeleteAndRestore:
    async def test_delete_trashes_and_bumps_version(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(session, alice.id, task.id)
        stored = await row(session, task.id)
        assert stored["deleted_at"] is not None
        assert stored["version"] == 2
        assert stored["title"] == "A task"

    async def test_delete_twice_raises_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(session, alice.id, task.id)
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.delete_task(session, alice.id, task.id)
        assert await row(session, task.id) == before

    async def test_delete_other_owner_raises_not_found_and_task_stays(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.delete_task(session, bob.id, task.id)
        assert await row(session, task.id) == before

    async def test_restore_clears_deleted_at_and_bumps_version(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(session, alice.id, task.id)
        restored = await task_service.restore_task(session, alice.id, task.id)
        assert restored.deleted_at is None
        assert restored.version == 3
        stored = await row(session, task.id)
        assert stored["deleted_at"] is None
        assert stored["version"] == 3
        assert (await task_service.get_task(session, alice.id, task.id)).id == task.id

    async def test_restore_live_task_is_unchanged(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        restored = await task_service.restore_task(session, alice.id, task.id)
        assert restored.id == task.id
        assert restored.version == 1
        assert await row(session, task.id) == before

    async def test_restore_missing_raises_not_found(
        self, session: AsyncSession, alice: User
    ) -> None:
        with pytest.raises(TaskNotFound):
            await task_service.restore_task(session, alice.id, 987_654_321)

    async def test_restore_other_owner_raises_not_found_and_task_stays_trashed(
        self, session: AsyncSession, alice: User, bob: User, task: Task
    ) -> None:
        await task_service.delete_task(session, alice.id, task.id)
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.restore_task(session, bob.id, task.id)
        assert await row(session, task.id) == before


class TestExpectedVersions:
    async def test_current_version_applies(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        updated = await task_service.update_task(
            session, alice.id, task.id, changes(title="v2"), expected_versions=frozenset({1})
        )
        assert updated.version == 2
        assert (await row(session, task.id))["title"] == "v2"

    async def test_any_of_several_versions_applies(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        updated = await task_service.update_task(
            session, alice.id, task.id, changes(title="v2"), expected_versions=frozenset({7, 1})
        )
        assert updated.version == 2

    @pytest.mark.parametrize("expected", [frozenset({1}), frozenset({3, 4}), frozenset()])
    async def test_stale_update_fails_and_changes_nothing(
        self, session: AsyncSession, alice: User, task: Task, expected: frozenset[int]
    ) -> None:
        await task_service.update_task(session, alice.id, task.id, changes(title="v2"))
        before = await row(session, task.id)
        with pytest.raises(PreconditionFailed):
            await task_service.update_task(
                session, alice.id, task.id, changes(title="lost"), expected_versions=expected
            )
        assert await row(session, task.id) == before

    async def test_stale_empty_update_fails(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(PreconditionFailed):
            await task_service.update_task(
                session, alice.id, task.id, TaskUpdate(), expected_versions=frozenset({2})
            )
        assert await row(session, task.id) == before

    async def test_stale_delete_fails_and_task_stays_live(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.update_task(session, alice.id, task.id, changes(title="v2"))
        before = await row(session, task.id)
        with pytest.raises(PreconditionFailed):
            await task_service.delete_task(
                session, alice.id, task.id, expected_versions=frozenset({1})
            )
        assert await row(session, task.id) == before
        assert before["deleted_at"] is None

    async def test_current_delete_applies(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(session, alice.id, task.id, expected_versions=frozenset({1}))
        assert (await row(session, task.id))["deleted_at"] is not None

    @pytest.mark.parametrize("expected", [frozenset({1}), frozenset({2})])
    async def test_other_owner_is_not_found_never_precondition_failed(
        self, session: AsyncSession, bob: User, task: Task, expected: frozenset[int]
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                session, bob.id, task.id, changes(title="x"), expected_versions=expected
            )
        with pytest.raises(TaskNotFound):
            await task_service.delete_task(session, bob.id, task.id, expected_versions=expected)
        assert await row(session, task.id) == before

    async def test_missing_or_trashed_is_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                session, alice.id, 987_654_321, changes(title="x"), expected_versions=frozenset({1})
            )
        await task_service.delete_task(session, alice.id, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                session, alice.id, task.id, changes(title="x"), expected_versions=frozenset({2})
            )
