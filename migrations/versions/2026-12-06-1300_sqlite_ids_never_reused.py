"""SQLite: the ids of projects, invitations, tasks, labels and comments are never handed out
again once their row is deleted (AUTOINCREMENT), as PostgreSQL's identities never are.

Revision ID: 0008_sqlite_ids_never_reused
Revises: 0007_background_work
Create Date: 2026-12-06 13:00:00

Without AUTOINCREMENT SQLite gives a new row the highest id in the table plus one, so after
the newest comment (label, invitation, purged task or project) is deleted, the next one gets
its id, and the change feed, the activity pages and the webhooks' payloads show the new row
as the object of the old one's events (docs/decisions/0035).

Adding AUTOINCREMENT to an `INTEGER PRIMARY KEY` changes no stored byte of the table: the id
is the rowid either way; only the rule for the next rowid changes (it then also stays above
the highest ever used, kept in `sqlite_sequence`). So the table definition is rewritten in
place, through `PRAGMA writable_schema`, as SQLite's own documentation allows for changes that
leave the stored content as it is ("Making Other Kinds Of Table Schema Changes"). A rebuild
(copy, drop, rename) would have to run with foreign keys off, which SQLite allows only
outside a transaction, and a DROP of `tasks` with them on deletes every comment, label and
assignee of every task. Each table's counter starts above the highest id its events still
name, so ids already freed before this revision are not handed out again either.

PostgreSQL's identities never hand out a value twice: nothing to do there.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import Connection, text

revision: str = "0008_sqlite_ids_never_reused"
down_revision: str | None = "0007_background_work"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each table, and where ids of its rows live on after the row is gone (the rows that name a
# project, a task...): its counter starts above all of them.
TABLES = {
    "projects": (
        "SELECT entity_id FROM events WHERE entity = 'project'",
        "SELECT project_id FROM events",
        "SELECT from_project_id FROM events",
        "SELECT project_id FROM notifications",
    ),
    "invitations": ("SELECT entity_id FROM events WHERE entity = 'invitation'",),
    "tasks": (
        "SELECT entity_id FROM events WHERE entity = 'task'",
        "SELECT task_id FROM events",
        "SELECT task_id FROM notifications",
    ),
    "labels": ("SELECT entity_id FROM events WHERE entity = 'label'",),
    "comments": ("SELECT entity_id FROM events WHERE entity = 'comment'",),
}


def _primary_key(table: str, *, autoincrement: bool) -> str:
    return f"CONSTRAINT pk_{table} PRIMARY KEY (id{' AUTOINCREMENT' if autoincrement else ''})"


def _rewrite_definitions(connection: Connection, *, autoincrement: bool) -> None:
    """Each table's CREATE TABLE text with its primary key declared `autoincrement` or not;
    a table already in that form is left alone, so a run cut short can run again."""
    changed: dict[str, str] = {}
    for table in TABLES:
        definition = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": table},
        ).scalar_one()
        old = _primary_key(table, autoincrement=not autoincrement)
        if old not in definition:
            if _primary_key(table, autoincrement=autoincrement) in definition:
                continue
            raise RuntimeError(f"{table}: unexpected definition, not rewritten:\n{definition}")
        changed[table] = definition.replace(old, _primary_key(table, autoincrement=autoincrement))
    if not changed:
        return
    version = connection.execute(text("PRAGMA schema_version")).scalar_one()
    connection.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for table, definition in changed.items():
            connection.execute(
                text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :name"),
                {"sql": definition, "name": table},
            )
        # A new schema version makes every connection (this one too) read the definitions again.
        connection.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        connection.exec_driver_sql("PRAGMA writable_schema = OFF")
    for table in changed:
        # Reads the rewritten definition: a definition SQLite cannot parse fails here, and the
        # migration's transaction takes everything back.
        connection.execute(text(f"SELECT id FROM {table} LIMIT 0"))  # noqa: S608 - our names


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    _rewrite_definitions(connection, autoincrement=True)
    for table, sources in TABLES.items():
        ids = " UNION ALL ".join((f"SELECT id FROM {table}", *sources))
        connection.execute(text("DELETE FROM sqlite_sequence WHERE name = :name"), {"name": table})
        connection.execute(
            text(
                "INSERT INTO sqlite_sequence (name, seq)"
                f" SELECT :name, coalesce(max(id), 0) FROM ({ids}) AS used"  # noqa: S608
            ),
            {"name": table},
        )


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    _rewrite_definitions(connection, autoincrement=False)
    for table in TABLES:
        connection.execute(text("DELETE FROM sqlite_sequence WHERE name = :name"), {"name": table})
