"""Project roles and the least role of every action: the one table of who may do what.

The statements compare ranks in their `WHERE` (`project_members.role >= :least`), the
services name the permission an action needs, and `GET /api/v2/roles` serves the same table
so that clients can hide what a person may not do (spec api-v2 section 2).
"""

from __future__ import annotations

import enum

from app.core.errors import RoleRequired


class ProjectRole(enum.IntEnum):
    """A member's role, stored as its rank: a higher rank holds every permission of a lower."""

    VIEWER = 1
    COMMENTER = 2
    EDITOR = 3
    ADMIN = 4
    OWNER = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> ProjectRole:
        return cls[label.upper()]


class Permission(enum.StrEnum):
    """A stable `thing.verb` name of an action on a project or what it holds."""

    PROJECT_READ = "project.read"
    TASK_READ = "task.read"
    LABEL_READ = "label.read"
    MEMBER_READ = "member.read"
    COMMENT_READ = "comment.read"
    ACTIVITY_READ = "activity.read"

    COMMENT_CREATE = "comment.create"
    COMMENT_UPDATE_OWN = "comment.update_own"
    COMMENT_DELETE_OWN = "comment.delete_own"

    TASK_CREATE = "task.create"
    TASK_UPDATE = "task.update"
    TASK_MOVE = "task.move"
    TASK_DELETE = "task.delete"
    TASK_RESTORE = "task.restore"
    TASK_ASSIGN = "task.assign"
    LABEL_CREATE = "label.create"
    LABEL_UPDATE = "label.update"
    LABEL_DELETE = "label.delete"

    PROJECT_UPDATE = "project.update"
    INVITATION_CREATE = "invitation.create"
    INVITATION_READ = "invitation.read"
    INVITATION_DELETE = "invitation.delete"
    MEMBER_UPDATE = "member.update"
    MEMBER_DELETE = "member.delete"
    COMMENT_DELETE_ANY = "comment.delete_any"
    WEBHOOK_MANAGE = "webhook.manage"

    PROJECT_DELETE = "project.delete"
    PROJECT_RESTORE = "project.restore"


_VIEWER, _COMMENTER, _EDITOR, _ADMIN, _OWNER = (
    ProjectRole.VIEWER,
    ProjectRole.COMMENTER,
    ProjectRole.EDITOR,
    ProjectRole.ADMIN,
    ProjectRole.OWNER,
)

LEAST_ROLE: dict[Permission, ProjectRole] = {
    Permission.PROJECT_READ: _VIEWER,
    Permission.TASK_READ: _VIEWER,
    Permission.LABEL_READ: _VIEWER,
    Permission.MEMBER_READ: _VIEWER,
    Permission.COMMENT_READ: _VIEWER,
    Permission.ACTIVITY_READ: _VIEWER,
    Permission.COMMENT_CREATE: _COMMENTER,
    Permission.COMMENT_UPDATE_OWN: _COMMENTER,
    Permission.COMMENT_DELETE_OWN: _COMMENTER,
    Permission.TASK_CREATE: _EDITOR,
    Permission.TASK_UPDATE: _EDITOR,
    Permission.TASK_MOVE: _EDITOR,
    Permission.TASK_DELETE: _EDITOR,
    Permission.TASK_RESTORE: _EDITOR,
    Permission.TASK_ASSIGN: _EDITOR,
    Permission.LABEL_CREATE: _EDITOR,
    Permission.LABEL_UPDATE: _EDITOR,
    Permission.LABEL_DELETE: _EDITOR,
    Permission.PROJECT_UPDATE: _ADMIN,
    Permission.INVITATION_CREATE: _ADMIN,
    Permission.INVITATION_READ: _ADMIN,
    Permission.INVITATION_DELETE: _ADMIN,
    Permission.MEMBER_UPDATE: _ADMIN,
    Permission.MEMBER_DELETE: _ADMIN,
    Permission.COMMENT_DELETE_ANY: _ADMIN,
    Permission.WEBHOOK_MANAGE: _ADMIN,
    Permission.PROJECT_DELETE: _OWNER,
    Permission.PROJECT_RESTORE: _OWNER,
}
if set(LEAST_ROLE) != set(Permission):
    raise RuntimeError("every permission needs its least role")


def least_role(permission: Permission) -> ProjectRole:
    return LEAST_ROLE[permission]


def permissions_of(role: ProjectRole) -> list[str]:
    """Every permission `role` holds, in the table's order."""
    return [permission.value for permission, least in LEAST_ROLE.items() if role >= least]


def roles_table() -> list[dict[str, object]]:
    """`GET /api/v2/roles`: from owner to viewer, each with its rank and permissions."""
    return [
        {"role": role.label, "rank": int(role), "permissions": permissions_of(role)}
        for role in sorted(ProjectRole, reverse=True)
    ]


def role_required(role: int, least: ProjectRole) -> RoleRequired:
    """The 403 of a member whose role (a rank) is below `least`, naming both roles."""
    return RoleRequired(ProjectRole(role).label, least.label)
