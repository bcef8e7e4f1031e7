"""Projects for teams: members at roles, invitations, assignees, labels, comments; the Inbox.

Revision ID: 0005_projects
Revises: 0004_fold_emails
Create Date: 2026-12-06 03:00:00

Every account gets its Inbox project (`projects.inbox_user_id`), with the account as its only
member, an owner; every task moves into its owner's Inbox (`tasks.project_id`), keeping its
id, version and timestamps, so its ETag is the same in v1 and v2. `tasks.owner_id` goes: who
may see a task is who is a member of its project. The listing's walk indexes lead with
project_id instead of owner_id (same names, same walks). `tasks.remind_at` is new.

The downgrade gives each task back an owner: its Inbox's account, or, for a task of a shared
project, that project's owner with the smallest id (v1 has no other place for it); then it
drops what this revision made. Everything v2 added (projects, members, invitations, labels,
comments, assignees) is lost.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_projects"
down_revision: str | None = "0004_fold_emails"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNER_RANK = 5  # app.core.roles.ProjectRole.OWNER when this revision was made
_VIEWS = {"live": "deleted_at IS NULL", "trash": "deleted_at IS NOT NULL"}
# Each walk's columns after the leading column (revision 0003's walks).
_WALKS: dict[str, list[str | sa.TextClause]] = {
    "created": ["created_at", "id", "status", "priority", "due_at"],
    "updated": ["updated_at", "id", "status", "priority", "due_at"],
    "priority": ["priority", "id", "status", "due_at"],
    "due": ["due_at", "id", "status", "priority"],
    "due_desc": [sa.text("due_at DESC NULLS LAST"), sa.text("id DESC"), "status", "priority"],
}
_PG_ONLY_WALKS = {"due_desc"}


def _is_postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _drop_walk_indexes() -> None:
    for view in _VIEWS:
        for walk in _WALKS:
            if walk not in _PG_ONLY_WALKS or _is_postgresql():
                op.drop_index(f"ix_tasks_{view}_{walk}", table_name="tasks")


def _create_walk_indexes(leading: str) -> None:
    for view, where in _VIEWS.items():
        for walk, columns in _WALKS.items():
            if walk not in _PG_ONLY_WALKS or _is_postgresql():
                op.create_index(
                    f"ix_tasks_{view}_{walk}",
                    "tasks",
                    [leading, *columns],
                    postgresql_where=sa.text(where),
                    sqlite_where=sa.text(where),
                )


def _timestamp() -> sa.types.TypeEngine[object]:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("inbox_user_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("deleted_at", _timestamp(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_projects_version_positive")),
        sa.ForeignKeyConstraint(
            ["inbox_user_id"],
            ["users.id"],
            name=op.f("fk_projects_inbox_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("inbox_user_id", name=op.f("uq_projects_inbox_user_id")),
    )
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.SmallInteger(), nullable=False),
        sa.Column("added_at", _timestamp(), nullable=False),
        sa.CheckConstraint("role BETWEEN 1 AND 5", name=op.f("ck_project_members_role_valid")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_project_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_project_members")),
    )
    op.create_index(
        "ix_project_members_user_id", "project_members", ["user_id", "project_id", "role"]
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.SmallInteger(), nullable=False),
        sa.Column("invited_by_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=False),
        sa.CheckConstraint("role BETWEEN 1 AND 5", name=op.f("ck_invitations_role_valid")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_invitations_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["users.id"],
            name=op.f("fk_invitations_invited_by_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
    )
    op.create_index(
        "uq_invitations_project_email", "invitations", ["project_id", "email"], unique=True
    )
    op.create_index("ix_invitations_email", "invitations", ["email"])
    op.create_table(
        "labels",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("color", sa.String(7), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_labels_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
    )
    op.create_index(
        "uq_labels_project_name", "labels", ["project_id", sa.text("lower(name)")], unique=True
    )

    # The Inbox of every account, and the account as its owner.
    op.execute(
        "INSERT INTO projects (name, description, inbox_user_id, created_at, updated_at,"
        " deleted_at, version)"
        " SELECT 'Inbox', NULL, id, created_at, created_at, NULL, 1 FROM users ORDER BY id"
    )
    op.execute(
        "INSERT INTO project_members (project_id, user_id, role, added_at)"
        f" SELECT id, inbox_user_id, {_OWNER_RANK}, created_at FROM projects"
        " WHERE inbox_user_id IS NOT NULL"
    )

    # Every task into its owner's Inbox; owner_id gives way to project_id.
    _drop_walk_indexes()
    op.add_column("tasks", sa.Column("project_id", sa.BigInteger(), nullable=True))
    op.add_column("tasks", sa.Column("remind_at", _timestamp(), nullable=True))
    op.execute(
        "UPDATE tasks SET project_id ="
        " (SELECT projects.id FROM projects WHERE projects.inbox_user_id = tasks.owner_id)"
    )
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("project_id", existing_type=sa.BigInteger(), nullable=False)
        batch.create_foreign_key(
            op.f("fk_tasks_project_id_projects"),
            "projects",
            ["project_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.drop_constraint(op.f("fk_tasks_owner_id_users"), type_="foreignkey")
        batch.drop_column("owner_id")
    _create_walk_indexes("project_id")

    op.create_table(
        "task_assignees",
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_assignees_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_task_assignees_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "user_id", name=op.f("pk_task_assignees")),
    )
    op.create_index("ix_task_assignees_user_id", "task_assignees", ["user_id", "task_id"])
    op.create_table(
        "task_labels",
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("label_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_labels_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["labels.id"],
            name=op.f("fk_task_labels_label_id_labels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "label_id", name=op.f("pk_task_labels")),
    )
    op.create_index("ix_task_labels_label_id", "task_labels", ["label_id", "task_id"])
    op.create_table(
        "comments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_comments_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_comments_author_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
    )
    op.create_index("ix_comments_task_id", "comments", ["task_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_comments_task_id", table_name="comments")
    op.drop_table("comments")
    op.drop_index("ix_task_labels_label_id", table_name="task_labels")
    op.drop_table("task_labels")
    op.drop_index("ix_task_assignees_user_id", table_name="task_assignees")
    op.drop_table("task_assignees")

    _drop_walk_indexes()
    op.add_column("tasks", sa.Column("owner_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE tasks SET owner_id = COALESCE("
        " (SELECT projects.inbox_user_id FROM projects WHERE projects.id = tasks.project_id),"
        " (SELECT min(project_members.user_id) FROM project_members"
        f"  WHERE project_members.project_id = tasks.project_id"
        f"  AND project_members.role = {_OWNER_RANK}))"
    )
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("owner_id", existing_type=sa.BigInteger(), nullable=False)
        batch.create_foreign_key(
            op.f("fk_tasks_owner_id_users"), "users", ["owner_id"], ["id"], ondelete="CASCADE"
        )
        batch.drop_constraint(op.f("fk_tasks_project_id_projects"), type_="foreignkey")
        batch.drop_column("project_id")
        batch.drop_column("remind_at")
    _create_walk_indexes("owner_id")

    op.drop_index("uq_labels_project_name", table_name="labels")
    op.drop_table("labels")
    op.drop_index("ix_invitations_email", table_name="invitations")
    op.drop_index("uq_invitations_project_email", table_name="invitations")
    op.drop_table("invitations")
    op.drop_index("ix_project_members_user_id", table_name="project_members")
    op.drop_table("project_members")
    op.drop_table("projects")
