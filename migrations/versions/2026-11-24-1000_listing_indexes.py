"""Listing indexes: one per keyset walk and view, trigram indexes for the text search.

Revision ID: 0003_listing_indexes
Revises: 0002_idempotency_keys
Create Date: 2026-11-24 10:00:00

The walk indexes become partial (live tasks, trashed tasks) and carry the filter columns
behind the walk; `(owner_id, status, created_at, id)` goes, its filter being checked inside
every walk now. On PostgreSQL, `pg_trgm` and a GIN trigram index on title and on description
serve `q`, and those two columns get finer statistics (a 1,000-entry histogram). See
docs/decisions/0016-listing-indexes.md.

The indexes are built with a plain CREATE INDEX inside the migration's transaction, which
blocks writes to `tasks` while they build (seconds per 100,000 tasks, the description's
trigram index being the slowest).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_listing_indexes"
down_revision: str | None = "0002_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VIEWS = {"live": "deleted_at IS NULL", "trash": "deleted_at IS NOT NULL"}

# Each walk's columns after owner_id: its order, then the filter columns it checks.
_WALKS: dict[str, list[str | sa.TextClause]] = {
    "created": ["created_at", "id", "status", "priority", "due_at"],
    "updated": ["updated_at", "id", "status", "priority", "due_at"],
    "priority": ["priority", "id", "status", "due_at"],
    "due": ["due_at", "id", "status", "priority"],
    # PostgreSQL only: SQLite's CREATE INDEX cannot say NULLS LAST.
    "due_desc": [sa.text("due_at DESC NULLS LAST"), sa.text("id DESC"), "status", "priority"],
}
_PG_ONLY_WALKS = {"due_desc"}
_TRIGRAM_COLUMNS = ("title", "description")
_TEXT_STATISTICS = 1000

# Revision 0001's indexes, for the downgrade.
_OLD_INDEXES: dict[str, list[str]] = {
    "ix_tasks_owner_created": ["owner_id", "created_at", "id"],
    "ix_tasks_owner_updated": ["owner_id", "updated_at", "id"],
    "ix_tasks_owner_status": ["owner_id", "status", "created_at", "id"],
    "ix_tasks_owner_priority": ["owner_id", "priority", "id"],
    "ix_tasks_owner_due": ["owner_id", "due_at", "id"],
}


def _is_postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _walk_indexes() -> list[tuple[str, list[str | sa.TextClause], str]]:
    """(name, columns, partial predicate) of every walk index this database gets."""
    return [
        (f"ix_tasks_{view}_{walk}", ["owner_id", *columns], where)
        for view, where in _VIEWS.items()
        for walk, columns in _WALKS.items()
        if walk not in _PG_ONLY_WALKS or _is_postgresql()
    ]


def upgrade() -> None:
    for name, columns, where in _walk_indexes():
        op.create_index(
            name,
            "tasks",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )
    for name in _OLD_INDEXES:
        op.drop_index(name, table_name="tasks")
    if _is_postgresql():
        op.drop_index("ix_tasks_owner_due_desc", table_name="tasks")
        # A trusted extension since PostgreSQL 13: the database's owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for column in _TRIGRAM_COLUMNS:
            op.create_index(
                f"ix_tasks_{column}_trgm",
                "tasks",
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            )
            # How many rows contain a text is estimated from the column's histogram; with
            # 100 entries, a rare text found in one of them is taken for 1 % of the rows,
            # and PostgreSQL walks the owner's whole list looking for it (see 0016).
            op.execute(f"ALTER TABLE tasks ALTER COLUMN {column} SET STATISTICS {_TEXT_STATISTICS}")


def downgrade() -> None:
    if _is_postgresql():
        for column in _TRIGRAM_COLUMNS:
            op.execute(f"ALTER TABLE tasks ALTER COLUMN {column} SET STATISTICS -1")
            op.drop_index(f"ix_tasks_{column}_trgm", table_name="tasks")
        # Not CASCADE: if something else in this database uses pg_trgm, this fails instead
        # of dropping it.
        op.execute("DROP EXTENSION IF EXISTS pg_trgm")
    for name, columns in _OLD_INDEXES.items():
        op.create_index(name, "tasks", columns)
    if _is_postgresql():
        op.create_index(
            "ix_tasks_owner_due_desc",
            "tasks",
            ["owner_id", sa.text("due_at DESC NULLS LAST"), sa.text("id DESC")],
        )
    for name, _columns, _where in _walk_indexes():
        op.drop_index(name, table_name="tasks")
