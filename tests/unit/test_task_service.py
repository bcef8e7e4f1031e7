"""`app.services.task`, called directly on a session: the rules below the HTTP layer.

The listing is also called on a `Db` of its own, as the routes call it: on PostgreSQL its
statements then go straight to asyncpg rather than through the session's Core execution.

Each test runs on SQLite and on PostgreSQL, inside the harness's rolled-back transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.core.errors import NotFound, PreconditionFailed, Unauthorized
from app.core.security import AccessClaims
from app.db.access import Db, Statement
from app.db.statements import task_listing as task_listing_statements
from app.models.task import Task, TaskPriority
from app.models.user import User
from app.schemas.task import TaskCreate, TaskUpdate, task_json
from app.services import task as task_service
from app.services import task_listing
from app.services.task import TaskNotFound
from app.services.task_listing import TaskFilters, TaskPage, TaskSort
from tests.conftest import UserFactory
from tests.support import claims_of, inbox_id

EARLIER = datetime(2020, 5, 17, 8, 0, 0, 123456, tzinfo=UTC)


async def row(session: AsyncSession, task_id: int) -> dict[str, Any]:
    """The task's columns as stored, read past the session's identity map."""
    result = await session.execute(select(*Task.__table__.c).where(Task.id == task_id))
    return dict(result.mappings().one())


async def new_task(session: AsyncSession, owner: User, **fields: Any) -> Task:
    return await task_service.create_task(
        Db.in_session(session),
        claims_of(owner),
        TaskCreate.model_validate({"title": "A task", **fields}),
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
        assert stored["project_id"] == await inbox_id(session, alice)
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
        found = await task_service.get_task(Db.in_session(session), claims_of(alice), task.id)
        assert found.id == task.id
        assert found.title == "A task"

    async def test_missing_raises_not_found(self, session: AsyncSession, alice: User) -> None:
        with pytest.raises(TaskNotFound):
            await task_service.get_task(Db.in_session(session), claims_of(alice), 987_654_321)

    async def test_other_owner_raises_not_found(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        with pytest.raises(NotFound) as raised:
            await task_service.get_task(Db.in_session(session), claims_of(bob), task.id)
        assert isinstance(raised.value, TaskNotFound)

    async def test_trashed_raises_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        with pytest.raises(TaskNotFound):
            await task_service.get_task(Db.in_session(session), claims_of(alice), task.id)

    async def test_foreign_and_missing_errors_look_alike(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        with pytest.raises(TaskNotFound) as foreign:
            await task_service.get_task(Db.in_session(session), claims_of(bob), task.id)
        with pytest.raises(TaskNotFound) as missing:
            await task_service.get_task(Db.in_session(session), claims_of(bob), task.id + 1_000_000)
        assert foreign.value.detail == missing.value.detail
        assert foreign.value.status == missing.value.status == 404


class TestUpdate:
    async def test_change_bumps_version_and_updated_at(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        updated = await task_service.update_task(
            Db.in_session(session),
            claims_of(alice),
            task.id,
            changes(title="Renamed", priority="low"),
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
        ]
        for expected, step in enumerate(steps, start=2):
            updated = await task_service.update_task(
                Db.in_session(session), claims_of(alice), task.id, step
            )
            assert updated.version == expected
            assert (await row(session, task.id))["version"] == expected

    async def test_same_values_again_change_nothing(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        """A write of the values the task already holds is no change: no new version, the
        same `updated_at`, nothing stored differently; the task comes back as it is."""
        step = changes(title="two", status="done", due_at="2030-01-01T00:00:00Z")
        await task_service.update_task(Db.in_session(session), claims_of(alice), task.id, step)
        before = await row(session, task.id)
        assert before["version"] == 2
        for again in (
            step,
            changes(title="two"),
            changes(status="done", description="first draft"),
        ):
            result = await task_service.update_task(
                Db.in_session(session), claims_of(alice), task.id, again
            )
            assert result.version == 2
            assert result.updated_at == before["updated_at"]
            assert result.completed_at == before["completed_at"]
            assert await row(session, task.id) == before

    async def test_empty_update_does_not_bump_version(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        result = await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, TaskUpdate()
        )
        assert result.version == 1
        assert await row(session, task.id) == before

    async def test_none_clears_description_and_due_at(
        self, session: AsyncSession, alice: User
    ) -> None:
        created = await new_task(session, alice, description="text", due_at="2030-01-01T00:00:00Z")
        await task_service.update_task(
            Db.in_session(session),
            claims_of(alice),
            created.id,
            changes(description=None, due_at=None),
        )
        stored = await row(session, created.id)
        assert stored["description"] is None
        assert stored["due_at"] is None
        assert stored["title"] == "A task"

    async def test_completed_at_follows_status(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, changes(status="done")
        )
        stored = await row(session, task.id)
        assert stored["completed_at"] is not None
        assert stored["completed_at"] >= stored["created_at"]

        # Marking a done task done again keeps the first completion time.
        await session.execute(update(Task).where(Task.id == task.id).values(completed_at=EARLIER))
        await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, changes(status="done")
        )
        assert (await row(session, task.id))["completed_at"] == EARLIER

        # Other changes to a done task leave it too.
        await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, changes(title="still done")
        )
        assert (await row(session, task.id))["completed_at"] == EARLIER

        # Leaving done clears it.
        await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, changes(status="todo")
        )
        assert (await row(session, task.id))["completed_at"] is None

    async def test_in_progress_does_not_complete(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, changes(status="in_progress")
        )
        assert (await row(session, task.id))["completed_at"] is None

    async def test_other_owner_raises_not_found_and_nothing_changes(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                Db.in_session(session), claims_of(bob), task.id, changes(title="hijacked")
            )
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                Db.in_session(session), claims_of(bob), task.id, TaskUpdate()
            )
        assert await row(session, task.id) == before

    async def test_trashed_raises_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                Db.in_session(session), claims_of(alice), task.id, changes(title="x")
            )
        assert await row(session, task.id) == before


class TestDeleteAndRestore:
    async def test_delete_trashes_and_bumps_version(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        stored = await row(session, task.id)
        assert stored["deleted_at"] is not None
        assert stored["version"] == 2
        assert stored["title"] == "A task"

    async def test_delete_twice_raises_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        assert await row(session, task.id) == before

    async def test_delete_other_owner_raises_not_found_and_task_stays(
        self, session: AsyncSession, bob: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.delete_task(Db.in_session(session), claims_of(bob), task.id)
        assert await row(session, task.id) == before

    async def test_restore_clears_deleted_at_and_bumps_version(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        restored = await task_service.restore_task(
            Db.in_session(session), claims_of(alice), task.id
        )
        assert restored.deleted_at is None
        assert restored.version == 3
        stored = await row(session, task.id)
        assert stored["deleted_at"] is None
        assert stored["version"] == 3
        assert (
            await task_service.get_task(Db.in_session(session), claims_of(alice), task.id)
        ).id == task.id

    async def test_restore_live_task_is_unchanged(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        restored = await task_service.restore_task(
            Db.in_session(session), claims_of(alice), task.id
        )
        assert restored.id == task.id
        assert restored.version == 1
        assert await row(session, task.id) == before

    async def test_restore_missing_raises_not_found(
        self, session: AsyncSession, alice: User
    ) -> None:
        with pytest.raises(TaskNotFound):
            await task_service.restore_task(Db.in_session(session), claims_of(alice), 987_654_321)

    async def test_restore_other_owner_raises_not_found_and_task_stays_trashed(
        self, session: AsyncSession, alice: User, bob: User, task: Task
    ) -> None:
        await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.restore_task(Db.in_session(session), claims_of(bob), task.id)
        assert await row(session, task.id) == before


class TestExpectedVersions:
    async def test_current_version_applies(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        updated = await task_service.update_task(
            Db.in_session(session),
            claims_of(alice),
            task.id,
            changes(title="v2"),
            expected_versions=frozenset({1}),
        )
        assert updated.version == 2
        assert (await row(session, task.id))["title"] == "v2"

    async def test_any_of_several_versions_applies(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        updated = await task_service.update_task(
            Db.in_session(session),
            claims_of(alice),
            task.id,
            changes(title="v2"),
            expected_versions=frozenset({7, 1}),
        )
        assert updated.version == 2

    @pytest.mark.parametrize("expected", [frozenset({1}), frozenset({3, 4}), frozenset()])
    async def test_stale_update_fails_and_changes_nothing(
        self, session: AsyncSession, alice: User, task: Task, expected: frozenset[int]
    ) -> None:
        await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, changes(title="v2")
        )
        before = await row(session, task.id)
        with pytest.raises(PreconditionFailed):
            await task_service.update_task(
                Db.in_session(session),
                claims_of(alice),
                task.id,
                changes(title="lost"),
                expected_versions=expected,
            )
        assert await row(session, task.id) == before

    async def test_stale_empty_update_fails(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(PreconditionFailed):
            await task_service.update_task(
                Db.in_session(session),
                claims_of(alice),
                task.id,
                TaskUpdate(),
                expected_versions=frozenset({2}),
            )
        assert await row(session, task.id) == before

    async def test_stale_delete_fails_and_task_stays_live(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.update_task(
            Db.in_session(session), claims_of(alice), task.id, changes(title="v2")
        )
        before = await row(session, task.id)
        with pytest.raises(PreconditionFailed):
            await task_service.delete_task(
                Db.in_session(session), claims_of(alice), task.id, expected_versions=frozenset({1})
            )
        assert await row(session, task.id) == before
        assert before["deleted_at"] is None

    async def test_current_delete_applies(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        await task_service.delete_task(
            Db.in_session(session), claims_of(alice), task.id, expected_versions=frozenset({1})
        )
        assert (await row(session, task.id))["deleted_at"] is not None

    @pytest.mark.parametrize("expected", [frozenset({1}), frozenset({2})])
    async def test_other_owner_is_not_found_never_precondition_failed(
        self, session: AsyncSession, bob: User, task: Task, expected: frozenset[int]
    ) -> None:
        before = await row(session, task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                Db.in_session(session),
                claims_of(bob),
                task.id,
                changes(title="x"),
                expected_versions=expected,
            )
        with pytest.raises(TaskNotFound):
            await task_service.delete_task(
                Db.in_session(session), claims_of(bob), task.id, expected_versions=expected
            )
        assert await row(session, task.id) == before

    async def test_missing_or_trashed_is_not_found(
        self, session: AsyncSession, alice: User, task: Task
    ) -> None:
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                Db.in_session(session),
                claims_of(alice),
                987_654_321,
                changes(title="x"),
                expected_versions=frozenset({1}),
            )
        await task_service.delete_task(Db.in_session(session), claims_of(alice), task.id)
        with pytest.raises(TaskNotFound):
            await task_service.update_task(
                Db.in_session(session),
                claims_of(alice),
                task.id,
                changes(title="x"),
                expected_versions=frozenset({2}),
            )


# --- listing: statements compiled once per shape ----------------------------------------

CURSOR_KEY = b"service-test-cursor-key-" + b"x" * 8


@pytest.fixture(params=["session", "direct"])
def lister(
    request: pytest.FixtureRequest, session: AsyncSession, connection: AsyncConnection
) -> Db:
    """Where list_tasks runs: inside the session's transaction (through Core), or as the
    routes run it, statement by statement (straight to asyncpg on PostgreSQL)."""
    if request.param == "session":
        return Db.in_session(session)
    return Db(
        async_sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Statement]:
    """The statements list_tasks runs: each a `Statement`, compiled once per shape."""
    statements: list[Statement] = []
    rows = Db.rows

    async def recording(self: Db, statement: Statement, params: dict[str, Any]) -> Any:
        statements.append(statement)
        return await rows(self, statement, params)

    monkeypatch.setattr(Db, "rows", recording)
    return statements


async def list_page(
    db: Db,
    caller: AccessClaims,
    *,
    filters: TaskFilters | None = None,
    sort: str = "-created_at",
    limit: int = 20,
    cursor: str | None = None,
) -> TaskPage:
    return await task_listing.list_tasks(
        db,
        caller,
        filters=filters or TaskFilters(),
        sort=TaskSort.parse(sort),
        limit=limit,
        cursor=cursor,
        cursor_key=CURSOR_KEY,
    )


def ids(page: TaskPage) -> list[int]:
    return [task.id for task in page.items]


async def walk_ids(
    db: Db, caller: AccessClaims, filters: TaskFilters, sort: str, limit: int
) -> list[int]:
    """Every page of a listing, following its cursors."""
    walked: list[int] = []
    cursor = None
    while True:
        page = await list_page(db, caller, filters=filters, sort=sort, limit=limit, cursor=cursor)
        walked += ids(page)
        if page.next_cursor is None:
            return walked
        cursor = page.next_cursor


class TestListingStatements:
    async def test_same_shape_same_statement_other_values(
        self,
        lister: Db,
        session: AsyncSession,
        alice: User,
        bob: User,
        sent: list[Statement],
    ) -> None:
        a1 = await new_task(session, alice, status="todo")
        a2 = await new_task(session, alice, status="done")
        await new_task(session, alice, status="in_progress")
        a4 = await new_task(session, alice, status="todo")
        b1 = await new_task(session, bob, status="done")
        b2 = await new_task(session, bob, status="in_progress")
        await session.commit()
        sent.clear()  # the inserts'

        todo_done = TaskFilters(statuses=("todo", "done"))
        first_alice = await list_page(lister, claims_of(alice), filters=todo_done, limit=2)
        assert ids(first_alice) == [a4.id, a2.id]
        other = TaskFilters(statuses=("in_progress", "done"))
        first_bob = await list_page(lister, claims_of(bob), filters=other, limit=1)
        assert ids(first_bob) == [b2.id]
        assert len(sent) == 2
        assert sent[0] is sent[1]  # other owner, statuses, token: the same statement

        assert first_alice.next_cursor is not None
        assert first_bob.next_cursor is not None
        rest_alice = await list_page(
            lister, claims_of(alice), filters=todo_done, limit=2, cursor=first_alice.next_cursor
        )
        assert ids(rest_alice) == [a1.id]
        assert rest_alice.next_cursor is None
        rest_bob = await list_page(
            lister, claims_of(bob), filters=other, limit=1, cursor=first_bob.next_cursor
        )
        assert ids(rest_bob) == [b1.id]
        assert len(sent) == 4
        assert sent[2] is sent[3]  # after a cursor: other keys and ids, the same statement
        assert sent[2] is not sent[0]
        assert task_listing_statements._list_statement.cache_info().maxsize is not None  # bounded

    async def test_text_is_a_parameter_matched_literally(
        self, lister: Db, session: AsyncSession, alice: User, sent: list[Statement]
    ) -> None:
        percent = await new_task(session, alice, title="Save 50% Off")
        await new_task(session, alice, title="Save 500 off")
        underscore = await new_task(session, alice, title="snake_case", description="ÉTÉ")
        await session.commit()
        sent.clear()
        assert ids(await list_page(lister, claims_of(alice), filters=TaskFilters(q="0% o"))) == [
            percent.id
        ]
        assert ids(await list_page(lister, claims_of(alice), filters=TaskFilters(q="_"))) == [
            underscore.id
        ]
        assert ids(await list_page(lister, claims_of(alice), filters=TaskFilters(q="été"))) == [
            underscore.id
        ]
        assert ids(await list_page(lister, claims_of(alice), filters=TaskFilters(q="\\"))) == []
        # One list statement for every text (an empty page also asks whether the caller is
        # still current: a statement of its own).
        listings = {id(statement) for statement in sent if "ORDER BY" in str(statement.statement)}
        assert len(listings) == 1

    async def test_stale_token_is_unauthorized_current_one_gets_an_empty_page(
        self, lister: Db, alice: User
    ) -> None:
        page = await list_page(lister, claims_of(alice))
        assert page.items == []
        assert page.next_cursor is None
        stale = AccessClaims(alice.id, alice.token_version + 1, 0, 2**40)
        with pytest.raises(Unauthorized):
            await list_page(lister, stale)

    # (priority, due_at) of alice's tasks, in creation order: ties on both, undated ones.
    SPECS = (
        ("high", "2030-01-02T00:00:00Z"),
        ("low", None),
        ("urgent", "2030-01-01T00:00:00Z"),
        ("high", "2030-01-02T00:00:00Z"),
        ("medium", None),
        ("low", "2029-12-31T00:00:00Z"),
        ("urgent", None),
        ("high", "2030-01-05T00:00:00Z"),
        ("low", "2030-01-02T00:00:00Z"),
        ("medium", "2030-01-01T00:00:00Z"),
    )

    @pytest.mark.parametrize(
        ("sort", "filters"),
        [
            ("due_at", TaskFilters()),
            ("-due_at", TaskFilters()),
            ("due_at", TaskFilters(statuses=("todo",))),
            ("priority", TaskFilters(priorities=(1, 3, 4))),
            ("-priority", TaskFilters(priorities=(4, 1, 3))),
            ("-priority", TaskFilters(priorities=(2,))),
        ],
    )
    async def test_walks_across_pieces_list_every_task_once_in_order(
        self,
        lister: Db,
        session: AsyncSession,
        alice: User,
        bob: User,
        sort: str,
        filters: TaskFilters,
    ) -> None:
        """The due_at walk goes from the dated tasks to the undated tail, the priority walk
        from one chosen priority to the next; pages end anywhere in them."""
        created = [
            await new_task(session, alice, priority=priority, due_at=due_at)
            for priority, due_at in self.SPECS
        ]
        for priority, due_at in self.SPECS[:4]:
            await new_task(session, bob, priority=priority, due_at=due_at)
        await session.commit()

        field = sort.lstrip("-")
        descending = sort.startswith("-")
        chosen = [t for t in created if not filters.priorities or t.priority in filters.priorities]
        if field == "due_at":
            dated = sorted((t for t in chosen if t.due_at), key=lambda t: (t.due_at, t.id))
            undated = sorted((t for t in chosen if t.due_at is None), key=lambda t: t.id)
            if descending:
                dated.reverse()
                undated.reverse()
            expected = [t.id for t in dated + undated]
        else:
            ordered = sorted(chosen, key=lambda t: (t.priority, t.id), reverse=descending)
            expected = [t.id for t in ordered]
        assert len(expected) >= 2
        for limit in (1, 2, 3, len(expected), len(expected) + 1):
            assert await walk_ids(lister, claims_of(alice), filters, sort, limit) == expected, limit

    @pytest.mark.parametrize("sort", ["due_at", "-due_at"])
    async def test_first_and_last_instants_are_listed_aware(
        self, lister: Db, session: AsyncSession, alice: User, sort: str
    ) -> None:
        """asyncpg stores these as -infinity and infinity and reads them back naive; a page
        still holds them as aware UTC datetimes, and cursors after them still work."""
        first = await new_task(session, alice, due_at="0001-01-01T00:00:00Z")
        last = await new_task(session, alice, due_at="9999-12-31T23:59:59.999Z")
        # Python's last instant: a request's is kept to the millisecond now, but a due date
        # stored before that may be it.
        last_instant = datetime.max.replace(tzinfo=UTC)
        await session.execute(update(Task).where(Task.id == last.id).values(due_at=last_instant))
        undated = await new_task(session, alice)
        await session.commit()
        dated = [first, last] if sort == "due_at" else [last, first]
        expected = [task.id for task in [*dated, undated]]
        assert await walk_ids(lister, claims_of(alice), TaskFilters(), sort, 1) == expected
        page = await list_page(lister, claims_of(alice), sort=sort)
        due = {first.id: first.due_at, last.id: last_instant, undated.id: None}
        assert [row.due_at for row in page.items] == [due[task.id] for task in [*dated, undated]]
        assert all(row.due_at is not None and row.due_at.tzinfo is UTC for row in page.items[:2])
        shown = {"0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"}
        assert {task_json(row)["due_at"] for row in page.items[:2]} == shown
