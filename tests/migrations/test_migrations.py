"""Alembic migrations on a new database of each backend: up, model parity, down, up again."""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, TableClause, column, insert, inspect, select, table, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import SchemaItem

import app.models  # noqa: F401 - registers every table on Base.metadata
from app.api.conditional import etag_for
from app.core.roles import ProjectRole
from app.core.security import create_access_token
from app.db.base import Base, UTCDateTime, utcnow
from app.db.session import create_engine_for
from app.main import create_app
from app.models.user import User
from app.models.webhook import Webhook
from app.schemas.user import normalize_email
from tests.conftest import create_database, make_settings, run_alembic

APP_TABLES = {
    "users",
    "tasks",
    "refresh_tokens",
    "idempotency_keys",
    "projects",
    "project_members",
    "invitations",
    "labels",
    "task_labels",
    "task_assignees",
    "comments",
    "events",
    "event_retention",
    "notifications",
    "sent_reminders",
    "webhooks",
    "webhook_deliveries",
    "outbox_cursors",
}


@pytest.fixture
async def engine(fresh_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine_for(make_settings(fresh_url))
    try:
        yield engine
    finally:
        await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names)


def _include_object(dialect: str) -> Any:
    """Mirror migrations/env.py: an index the models create only on another dialect is not
    missing here."""

    def include(
        obj: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        if type_ == "index" and not reflected and ddl_if is not None and ddl_if.dialect:
            return bool(ddl_if.dialect == dialect)
        return True

    return include


def _schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_object": _include_object(connection.dialect.name),
        },
    )
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes such as lower(email); SQLAlchemy says so
        # with a warning and Alembic then leaves that index out of the comparison.
        warnings.filterwarnings("ignore", message=r".*expression-based index.*")
        diff: list[Any] = compare_metadata(context, Base.metadata)
    return diff


def user_row(email: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "email": email,
        "password_hash": "x",
        "role": "user",
        "is_active": True,
        "token_version": 1,
        "created_at": now,
        "updated_at": now,
    }


class TestMigrations:
    async def test_upgrade_head_creates_tables(self, fresh_url: str, engine: AsyncEngine) -> None:
        assert await table_names(engine) == set()
        run_alembic(fresh_url)
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}
        async with engine.connect() as connection:
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == "0014_delivery_log_retention"

    async def test_the_outbox_starts_after_the_events_already_there(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        """Events written before 0007 are history: the jobs' cursor starts after them."""
        run_alembic(fresh_url, "0006_events")
        async with engine.begin() as connection:
            for entity_id in (1, 2):
                await connection.execute(
                    text(
                        "INSERT INTO events (at, actor_id, project_id, entity, entity_id, "
                        "action, changes) VALUES (:at, 1, 1, 'task', :id, 'created', '{}')"
                    ),
                    {"at": datetime.now(UTC), "id": entity_id},
                )
            newest = (
                await connection.execute(
                    text("SELECT xid, id FROM events ORDER BY xid DESC, id DESC LIMIT 1")
                )
            ).one()
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            cursor = (
                await connection.execute(text("SELECT name, xid, id FROM outbox_cursors"))
            ).all()
        assert [tuple(row) for row in cursor] == [("outbox", newest[0], newest[1])]

    async def test_the_job_engine_has_its_own_schema_on_postgresql(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        """procrastinate's tables arrive with 0007, in the schema `procrastinate`, and leave
        with its downgrade (nothing of them in `public`)."""
        if engine.dialect.name != "postgresql":
            pytest.skip("the job engine's tables exist on PostgreSQL only")
        query = text(
            "SELECT table_schema, count(*) FROM information_schema.tables "
            "WHERE table_name LIKE 'procrastinate%' GROUP BY table_schema"
        )
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            assert dict((await connection.execute(query)).all()) == {"procrastinate": 4}
        run_alembic(fresh_url, "0006_events", down=True)
        async with engine.connect() as connection:
            assert dict((await connection.execute(query)).all()) == {}
            schemas = await connection.scalar(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = 'procrastinate'")
            )
        assert schemas == 0
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            assert dict((await connection.execute(query)).all()) == {"procrastinate": 4}

    async def test_email_unique_without_regard_to_case(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            await connection.execute(insert(User).values(user_row("Mixed@Example.com")))
            await connection.commit()
            with pytest.raises(IntegrityError):
                await connection.execute(insert(User).values(user_row("mixed@EXAMPLE.com")))
            await connection.rollback()
            await connection.execute(insert(User).values(user_row("other@example.com")))
            await connection.commit()
            count = await connection.scalar(text("SELECT count(*) FROM users"))
        assert count == 2

    async def test_email_index_exists(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                sql = await connection.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'uq_users_email_lower'")
                )
            else:
                sql = await connection.scalar(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_users_email_lower'")
                )
        assert sql is not None
        assert "UNIQUE" in sql.upper()
        assert "loweremail" in re.sub(r"[()\s]|::text", "", sql.lower())

    async def test_models_match_migrated_schema(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            diff = await connection.run_sync(_schema_diff)
        assert diff == []

    async def test_comparison_sees_differences(self, engine: AsyncEngine) -> None:
        # The parity check below is not vacuous: against an empty database it reports every
        # table as missing.
        async with engine.connect() as connection:
            diff = await connection.run_sync(_schema_diff)
        added = {item[1].name for item in diff if item[0] == "add_table"}
        assert added == APP_TABLES

    async def test_downgrade_to_base_and_upgrade_again(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            await connection.execute(insert(User).values(user_row("keep@example.com")))
            await connection.commit()

        run_alembic(fresh_url, "base", down=True)
        assert await table_names(engine) <= {"alembic_version"}
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                leftover_indexes = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'"
                    )
                )
            else:
                leftover_indexes = await connection.scalar(
                    text(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name <> 'alembic_version'"
                    )
                )
        assert leftover_indexes == 0

        run_alembic(fresh_url)
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM users")) == 0
            diff = await connection.run_sync(_schema_diff)
        assert diff == []

    async def test_upgrade_head_twice_is_a_no_op(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        run_alembic(fresh_url)
        assert await table_names(engine) == APP_TABLES | {"alembic_version"}

    async def test_postgres_only_index(self, fresh_url: str, engine: AsyncEngine) -> None:
        run_alembic(fresh_url)
        async with engine.connect() as connection:
            indexes = await connection.run_sync(
                lambda sync: {index["name"] for index in inspect(sync).get_indexes("tasks")}
            )
            dialect = connection.dialect.name
        walks = {
            f"ix_tasks_{view}_{walk}"
            for view in ("live", "trash")
            for walk in ("created", "updated", "priority", "due")
        }
        postgres_only = {
            "ix_tasks_live_due_desc",
            "ix_tasks_trash_due_desc",
            "ix_tasks_title_trgm",
            "ix_tasks_description_trgm",
        }
        assert walks <= indexes
        assert indexes & postgres_only == (postgres_only if dialect == "postgresql" else set())


# Addresses as the code before revision 0004 stored them (trimmed, lower-cased, nothing more),
# by id, and what each one is after the upgrade.
_STORED_BEFORE_0004 = {
    1: "ｋim@example.com",  # full-width k
    2: "kim2@example.com",  # already in normal form ...
    3: "ｋim2@example.com",  # ... so this one, its double, cannot have it
    4: "ｋim3@example.com",  # two doubles, neither in normal form: the oldest gets it
    5: "ｋｉm3@example.com",
    6: "straße@example.com",  # case folding: ß is ss
    7: "plain@example.com",
    8: "Mixed@Example.com",  # inserted without the API's normalisation
    9: "kim4\u3164@example.com",  # a Hangul filler, invisible (default-ignorable)
}
_AFTER_0004 = {
    1: "kim@example.com",
    2: "kim2@example.com",
    3: "ｋim2@example.com",
    4: "kim3@example.com",
    5: "ｋｉm3@example.com",
    6: "strasse@example.com",
    7: "plain@example.com",
    8: "mixed@example.com",
    9: "kim4@example.com",
}


class TestEmailFolding:
    """Revision 0004 rewrites the addresses registered before emails were folded, so that
    their accounts can still log in (a login folds what is typed)."""

    async def emails(self, engine: AsyncEngine) -> dict[int, str]:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT id, email FROM users ORDER BY id"))
            return {row.id: row.email for row in rows}

    async def stored_before_0004(self, url: str, engine: AsyncEngine) -> None:
        """The database at revision 0003, holding `_STORED_BEFORE_0004`'s addresses."""
        run_alembic(url, "0003_listing_indexes")
        async with engine.connect() as connection:
            for user_id, email in _STORED_BEFORE_0004.items():
                await connection.execute(insert(User).values(id=user_id, **user_row(email)))
            await connection.commit()

    async def test_upgrade_folds_addresses_and_leaves_doubles(
        self, fresh_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
    ) -> None:
        await self.stored_before_0004(fresh_url, engine)

        with caplog.at_level("WARNING"):
            run_alembic(fresh_url)

        assert await self.emails(engine) == _AFTER_0004
        # What the migration wrote is what registration and login now produce.
        for user_id in (1, 2, 4, 6, 7, 8, 9):
            assert normalize_email(_AFTER_0004[user_id]) == _AFTER_0004[user_id]
            assert normalize_email(_STORED_BEFORE_0004[user_id]) == _AFTER_0004[user_id]
        # The accounts that keep their address are named for the operator (by id only).
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("Ids: 3, 5" in message for message in warnings), warnings
        assert not any("example.com" in message for message in warnings)

    async def test_downgrade_keeps_the_folded_addresses(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        await self.stored_before_0004(fresh_url, engine)
        run_alembic(fresh_url)
        run_alembic(fresh_url, "0003_listing_indexes", down=True)
        assert await self.emails(engine) == _AFTER_0004
        run_alembic(fresh_url)
        assert await self.emails(engine) == _AFTER_0004


# --- revision 0005 on a database that holds v1's data ------------------------------------

_V2_TABLES = {
    "projects",
    "project_members",
    "invitations",
    "labels",
    "task_labels",
    "task_assignees",
    "comments",
    "events",
    "event_retention",
    "notifications",
    "sent_reminders",
    "webhooks",
    "webhook_deliveries",
    "outbox_cursors",
}
_TASK_FIELDS = (
    "id",
    "title",
    "description",
    "status",
    "priority",
    "due_at",
    "created_at",
    "updated_at",
    "completed_at",
    "deleted_at",
    "version",
)
_AT = datetime(2026, 11, 1, 9, 30, 15, 123456, tzinfo=UTC)


def _tasks_at(*extra: str) -> TableClause:
    """`tasks` as this test reads and writes it, timestamps typed as the app stores them."""
    timestamps = {"due_at", "created_at", "updated_at", "completed_at", "deleted_at"}
    return table(
        "tasks",
        *(
            column(name, UTCDateTime()) if name in timestamps else column(name)
            for name in (*_TASK_FIELDS, *extra)
        ),
    )


def _v1_tasks() -> dict[int, dict[str, Any]]:
    """Tasks of three of four accounts, ids interleaved between owners, at many versions,
    some trashed, some done; by id, with their owner."""
    tasks: dict[int, dict[str, Any]] = {}
    owners = [1, 2, 1, 3, 3, 1, 2, 2, 1, 3]
    versions = [1, 2, 7, 1, 1000, 3, 1, 41, 2, 5]
    for position, (owner, version) in enumerate(zip(owners, versions, strict=True)):
        task_id = position + 1
        done = position % 3 == 0
        created = _AT + timedelta(hours=position)
        tasks[task_id] = {
            "owner_id": owner,
            "id": task_id,
            "title": f"task {task_id} of {owner}",
            "description": None if position % 2 else "a description",
            "status": "done" if done else "todo",
            "priority": position % 4 + 1,
            "due_at": created + timedelta(days=3) if position % 2 else None,
            "created_at": created,
            "updated_at": created + timedelta(minutes=version, microseconds=position),
            "completed_at": created + timedelta(minutes=1) if done else None,
            "deleted_at": created + timedelta(days=1) if task_id in {3, 5, 8} else None,
            "version": version,
        }
    return tasks


class TestProjectsOnV1Data:
    """Revision 0005 on a database of v1 accounts and tasks: every account gets its Inbox, and
    every task goes into its owner's Inbox as it was (spec api-v2 section 1); the downgrade
    gives each task back its owner."""

    USERS = (1, 2, 3, 4)  # 3 is deactivated, 4 has no tasks

    async def v1_database(self, url: str, engine: AsyncEngine) -> dict[int, dict[str, Any]]:
        run_alembic(url, "0004_fold_emails")
        tasks = _v1_tasks()
        async with engine.connect() as connection:
            for user_id in self.USERS:
                row = {**user_row(f"user{user_id}@example.com"), "is_active": user_id != 3}
                await connection.execute(insert(User).values(id=user_id, **row))
            await connection.execute(insert(_tasks_at("owner_id")), list(tasks.values()))
            await connection.commit()
        return tasks

    async def read_tasks(self, engine: AsyncEngine, *extra: str) -> dict[int, dict[str, Any]]:
        tasks = _tasks_at(*extra)
        async with engine.connect() as connection:
            rows = (await connection.execute(select(tasks).order_by(tasks.c.id))).mappings()
            return {row["id"]: dict(row) for row in rows}

    async def inboxes(self, engine: AsyncEngine) -> dict[int, int]:
        """Each account's Inbox project id, checking that it has exactly one, named Inbox,
        live, at version 1, with the account as its only member, an owner."""
        async with engine.connect() as connection:
            projects = (
                await connection.execute(
                    text(
                        "SELECT id, name, inbox_user_id, deleted_at, version FROM projects"
                        " ORDER BY id"
                    )
                )
            ).all()
            members = (
                await connection.execute(
                    text("SELECT project_id, user_id, role FROM project_members")
                )
            ).all()
        inbox_users = [project.inbox_user_id for project in projects]
        assert sorted(inbox_users) == list(self.USERS)  # one each, and nothing else
        for project in projects:
            assert (project.name, project.deleted_at, project.version) == ("Inbox", None, 1)
        assert sorted((m.project_id, m.user_id, m.role) for m in members) == sorted(
            (project.id, project.inbox_user_id, ProjectRole.OWNER.value) for project in projects
        )
        return {project.inbox_user_id: project.id for project in projects}

    async def test_every_task_lands_in_its_owners_inbox_unchanged(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        before = await self.v1_database(fresh_url, engine)

        run_alembic(fresh_url)

        inbox = await self.inboxes(engine)
        after = await self.read_tasks(engine, "project_id", "remind_at")
        assert set(after) == set(before)
        for task_id, task in before.items():
            moved = after[task_id]
            assert moved["project_id"] == inbox[task["owner_id"]], task_id
            assert moved["remind_at"] is None
            for field in _TASK_FIELDS:
                assert moved[field] == task[field], (task_id, field)
            assert etag_for(moved["version"]) == etag_for(task["version"])

    async def test_v1_serves_each_owner_their_own_tasks_with_the_same_etags(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        before = await self.v1_database(fresh_url, engine)
        run_alembic(fresh_url)
        settings = make_settings(fresh_url)
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            for owner in (1, 2, 4):  # 3 is deactivated: its tokens are refused
                token, _ = create_access_token(
                    user_id=owner, token_version=1, key=settings.signing_key, expire_minutes=5
                )
                headers = {"Authorization": f"Bearer {token}"}
                for task_id, task in before.items():
                    response = await client.get(f"/api/v1/tasks/{task_id}", headers=headers)
                    if task["owner_id"] != owner or task["deleted_at"] is not None:
                        assert response.status_code == 404, (owner, task_id)
                        continue
                    assert response.status_code == 200, response.text
                    assert response.headers["etag"] == etag_for(task["version"])
                    assert response.json()["version"] == task["version"]
                for deleted in ("false", "true"):
                    listed = await client.get(
                        f"/api/v1/tasks?deleted={deleted}&limit=100", headers=headers
                    )
                    assert listed.status_code == 200, listed.text
                    assert {item["id"] for item in listed.json()["items"]} == {
                        task_id
                        for task_id, task in before.items()
                        if task["owner_id"] == owner
                        and (task["deleted_at"] is not None) == (deleted == "true")
                    }

    async def test_downgrade_gives_tasks_their_owners_back_and_upgrade_again(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        before = await self.v1_database(fresh_url, engine)
        run_alembic(fresh_url)

        run_alembic(fresh_url, "0004_fold_emails", down=True)

        assert await table_names(engine) == (APP_TABLES - _V2_TABLES) | {"alembic_version"}
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {column["name"] for column in inspect(sync).get_columns("tasks")}
            )
        assert columns == {*_TASK_FIELDS, "owner_id"}
        assert await self.read_tasks(engine, "owner_id") == before

        run_alembic(fresh_url)

        inbox = await self.inboxes(engine)
        after = await self.read_tasks(engine, "project_id")
        assert {task_id: task["project_id"] for task_id, task in after.items()} == {
            task_id: inbox[task["owner_id"]] for task_id, task in before.items()
        }
        for task_id, task in before.items():
            assert {field: after[task_id][field] for field in _TASK_FIELDS} == {
                field: task[field] for field in _TASK_FIELDS
            }


# --- revision 0008: ids outlive their rows ------------------------------------------------


class TestIdsNeverReused:
    """Events, notifications and webhook payloads go on naming a project, task, comment,
    label or invitation after its row is deleted: a new row must never get that id again,
    on SQLite (revision 0008's AUTOINCREMENT) as on PostgreSQL (identities)."""

    TABLES = ("projects", "invitations", "tasks", "labels", "comments")

    async def insert(self, engine: AsyncEngine, table_name: str, **values: Any) -> int:
        table_ = Base.metadata.tables[table_name]
        async with engine.connect() as connection:
            inserted = await connection.execute(insert(table_).values(**values))
            await connection.commit()
        assert inserted.inserted_primary_key is not None
        return int(inserted.inserted_primary_key[0])

    async def delete(self, engine: AsyncEngine, table_name: str, row_id: int) -> None:
        async with engine.connect() as connection:
            await connection.execute(text(f"DELETE FROM {table_name} WHERE id = {row_id}"))
            await connection.commit()

    async def one_of_each(self, engine: AsyncEngine, user_id: int) -> dict[str, int]:
        """A new row of each table (a project, and the rest in it), by table."""
        now = utcnow()
        project = await self.insert(
            engine, "projects", name="p", created_at=now, updated_at=now, version=1
        )
        task = await self.insert(
            engine,
            "tasks",
            project_id=project,
            title="t",
            status="todo",
            priority=2,
            created_at=now,
            updated_at=now,
            version=1,
        )
        return {
            "projects": project,
            "tasks": task,
            "comments": await self.insert(
                engine, "comments", task_id=task, author_id=user_id, body="c"
            ),
            "labels": await self.insert(
                engine, "labels", project_id=project, name=f"l{task}", color="#112233"
            ),
            "invitations": await self.insert(
                engine,
                "invitations",
                project_id=project,
                email=f"i{task}@example.com",
                role=ProjectRole.EDITOR.value,
                invited_by_id=user_id,
                expires_at=now + timedelta(days=1),
            ),
        }

    async def delete_all(self, engine: AsyncEngine, rows: dict[str, int]) -> None:
        for table_name in reversed(self.TABLES):  # children first
            await self.delete(engine, table_name, rows[table_name])

    async def test_a_deleted_rows_id_is_not_handed_out_again(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        run_alembic(fresh_url, "0007_background_work")
        user_id = await self.insert(engine, "users", **user_row("owner@example.com"))
        kept = await self.one_of_each(engine, user_id)
        newest = await self.one_of_each(engine, user_id)

        run_alembic(fresh_url)

        # The newest rows of each table, made before the revision, then the next ones.
        await self.delete_all(engine, newest)
        after = await self.one_of_each(engine, user_id)
        await self.delete_all(engine, after)
        again = await self.one_of_each(engine, user_id)
        for table_name in self.TABLES:
            assert kept[table_name] < newest[table_name] < after[table_name], table_name
            assert after[table_name] < again[table_name], table_name

    # Each place where a deleted row's id lives on, as (table, where, entity): the migration
    # must start the table's counter above the id named there.
    NAMED_BY = (
        ("projects", "events.entity_id", "project"),
        ("projects", "events.project_id", "task"),
        ("projects", "events.from_project_id", "task"),
        ("projects", "notifications.project_id", None),
        ("tasks", "events.entity_id", "task"),
        ("tasks", "events.task_id", "comment"),
        ("tasks", "notifications.task_id", None),
        ("comments", "events.entity_id", "comment"),
        ("labels", "events.entity_id", "label"),
        ("invitations", "events.entity_id", "invitation"),
    )

    @pytest.mark.parametrize(("table_name", "where", "entity"), NAMED_BY)
    async def test_an_id_named_only_after_its_row_is_gone_is_not_handed_out_again(
        self, tmp_path: Path, table_name: str, where: str, entity: str | None
    ) -> None:
        """Rows deleted before the revision, each newest of its table, whose id only one
        place still names (SQLite: PostgreSQL's identities never hand a value out twice)."""
        url = await create_database("sqlite", tmp_path)
        run_alembic(url, "0007_background_work")
        engine = create_engine_for(make_settings(url))
        try:
            user_id = await self.insert(engine, "users", **user_row("owner@example.com"))
            kept = await self.one_of_each(engine, user_id)
            gone = await self.one_of_each(engine, user_id)
            named = gone[table_name]
            if where.startswith("notifications."):
                await self.insert(
                    engine,
                    "notifications",
                    user_id=user_id,
                    kind="assigned",
                    message="m",
                    dedupe_key="named",
                    **{where.split(".")[1]: named},
                )
            else:
                column = where.split(".")[1]
                event = {
                    "project_id": kept["projects"],
                    "entity_id": kept[f"{entity}s"],
                    "task_id": kept["tasks"],
                    column: named,
                }
                await self.insert(
                    engine,
                    "events",
                    at=utcnow(),
                    actor_id=user_id,
                    entity=entity,
                    action="deleted",
                    changes={},
                    **event,
                )
            await self.delete_all(engine, gone)

            run_alembic(url)

            after = await self.one_of_each(engine, user_id)
        finally:
            await engine.dispose()
        assert after[table_name] > named

    async def test_the_tables_keep_autoincrement_on_sqlite(self, tmp_path: Path) -> None:
        """Every table the models declare IDS_NEVER_REUSED has it in the migrated SQLite
        schema (a later batch migration that rebuilt one without it would fail here; Alembic
        does not carry the option over by itself). PostgreSQL's identities need nothing."""
        url = await create_database("sqlite", tmp_path)
        run_alembic(url)
        engine = create_engine_for(make_settings(url))
        declared = {
            name
            for name, table_ in Base.metadata.tables.items()
            if table_.dialect_options["sqlite"]["autoincrement"]
        }
        assert declared == {*self.TABLES, "events"}
        try:
            async with engine.connect() as connection:
                definitions: dict[str, str] = dict(
                    (
                        await connection.execute(
                            text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                        )
                    ).all()
                )
        finally:
            await engine.dispose()
        for name in declared:
            assert "AUTOINCREMENT" in definitions[name], definitions[name]


class TestWebhookActivePeriods:
    """Revision 0013 adds when each webhook was last enabled and disabled, and keeps every
    delivery of the log both ways: a rebuild of `webhooks` on SQLite (foreign keys on) had
    deleted them all through their ON DELETE CASCADE."""

    insert = TestIdsNeverReused.insert

    async def deliveries(self, engine: AsyncEngine) -> list[tuple[Any, ...]]:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT message_id, status FROM webhook_deliveries ORDER BY id")
            )
            return [tuple(row) for row in rows]

    async def test_the_delivery_log_stays_and_periods_are_filled(
        self, fresh_url: str, engine: AsyncEngine
    ) -> None:
        run_alembic(fresh_url, "0012_periodic_deferrals_in_order")
        now = utcnow()
        project = await self.insert(
            engine, "projects", name="p", created_at=now, updated_at=now, version=1
        )
        hooks = {
            active: await self.insert(
                engine,
                "webhooks",
                project_id=project,
                url="https://receiver.example/",
                events=["*"],
                active=active,
                created_at=now - timedelta(days=2),
                updated_at=now - timedelta(days=1),
                secret="whsec_x",
            )
            for active in (True, False)
        }
        for message, status in (("msg_sent", "succeeded"), ("msg_waiting", "pending")):
            await self.insert(
                engine,
                "webhook_deliveries",
                webhook_id=hooks[True],
                message_id=message,
                type="task.created",
                payload="{}",
                attempt=1,
                status=status,
                created_at=now,
                next_attempt_at=now if status == "pending" else None,
            )
        kept = [("msg_sent", "succeeded"), ("msg_waiting", "pending")]

        run_alembic(fresh_url)
        assert await self.deliveries(engine) == kept
        async with engine.connect() as connection:
            periods = dict(
                (
                    await connection.execute(
                        select(Webhook.active, Webhook.active_until).where(
                            Webhook.active_from.is_(None)
                        )
                    )
                ).all()
            )
        assert periods == {True: None, False: now - timedelta(days=1)}

        run_alembic(fresh_url, "0012_periodic_deferrals_in_order", down=True)
        assert await self.deliveries(engine) == kept


async def test_downgrading_task_creators_keeps_the_tasks_comments(
    fresh_url: str, engine: AsyncEngine
) -> None:
    """Revision 0011's downgrade rebuilt `tasks` on SQLite with foreign keys on: every
    comment (and assignee, and label link) went with it."""
    run_alembic(fresh_url, "0011_task_creators")
    ids = TestIdsNeverReused()
    user_id = await ids.insert(engine, "users", **user_row("author@example.com"))
    rows = await ids.one_of_each(engine, user_id)

    run_alembic(fresh_url, "0010_mail_sending", down=True)

    async with engine.connect() as connection:
        comments = (await connection.execute(text("SELECT id FROM comments"))).scalars().all()
    assert comments == [rows["comments"]]
