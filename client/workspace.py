"""The project a person is working in, the projects they can switch to, and what their role
there allows them to do.

The controls a role does not allow are hidden, not merely refused: what a role allows comes
from the API itself (`GET /roles`, read once per sign-in and kept on the session) and the
person's role in a project from that project's `my_role`, so the client keeps no table of its
own. The API still decides: a 403 that happens anyway (a role lowered meanwhile) is shown as
any other problem. Nothing here draws anything; app.py draws the switcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api_client import ApiSession

_KEPT_ROLES = "roles"  # its key in ApiSession.kept


@dataclass(frozen=True)
class Roles:
    """GET /roles as data: each role's rank and the permissions it holds."""

    ranks: dict[str, int]
    permissions: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: list[dict[str, Any]]) -> Roles:
        return cls(
            ranks={str(row["role"]): int(row["rank"]) for row in table},
            permissions={
                str(row["role"]): frozenset(str(p) for p in row.get("permissions") or ())
                for row in table
            },
        )

    def rank(self, role: str | None) -> int:
        return self.ranks.get(role or "", 0)

    def allows(self, role: str | None, permission: str) -> bool:
        return permission in self.permissions.get(role or "", frozenset())

    def least(self, permission: str) -> str:
        """The lowest role that holds `permission` ("" if none does)."""
        holders = [role for role in self.highest_first() if self.allows(role, permission)]
        return holders[-1] if holders else ""

    def highest_first(self) -> list[str]:
        return sorted(self.ranks, key=self.ranks.__getitem__, reverse=True)

    @property
    def top(self) -> str:
        return self.highest_first()[0] if self.ranks else ""


def roles_of(session: ApiSession) -> Roles:
    """The roles table, read once per sign-in (it changes only with a new API release)."""
    kept = session.kept.get(_KEPT_ROLES)
    if isinstance(kept, Roles):
        return kept
    roles = Roles.from_table(session.roles())
    session.kept[_KEPT_ROLES] = roles
    return roles


def inbox_first(projects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Inbox, then the others in the API's order (by name)."""
    return sorted(projects, key=lambda project: not project.get("is_inbox"))


@dataclass(frozen=True)
class Workspace:
    """The signed-in session, the person's projects (Inbox first) and the one being worked in."""

    session: ApiSession
    projects: list[dict[str, Any]]
    project: dict[str, Any]
    roles: Roles
    # The project asked for is no longer seen (the person was removed, or it was deleted): this
    # is the Inbox instead, and the person should be told.
    lost_project: bool = False

    @property
    def project_id(self) -> int:
        return int(self.project["id"])

    @property
    def my_role(self) -> str:
        return str(self.project.get("my_role") or "")

    @property
    def is_inbox(self) -> bool:
        return bool(self.project.get("is_inbox"))

    @property
    def me(self) -> int | None:
        user_id = self.session.user.get("id")
        return int(user_id) if user_id is not None else None

    def may(self, permission: str) -> bool:
        """Whether the person's role in the current project allows `permission`."""
        return self.roles.allows(self.my_role, permission)

    def projects_allowing(self, permission: str) -> list[dict[str, Any]]:
        """The person's projects where their role allows `permission` (Inbox first)."""
        return [
            project
            for project in self.projects
            if self.roles.allows(str(project.get("my_role") or ""), permission)
        ]

    def is_owner(self) -> bool:
        return self.my_role == self.roles.top

    def grantable(self) -> list[str]:
        """The roles the person may give: an owner any, others only those below their own."""
        mine = self.roles.rank(self.my_role)
        return [
            role
            for role in self.roles.highest_first()
            if self.is_owner() or self.roles.rank(role) < mine
        ]

    def may_manage(self, member_role: str) -> bool:
        """Whether the person may change or remove a member who has `member_role`: an owner
        anyone, others only members strictly below them (spec section 2)."""
        return self.is_owner() or self.roles.rank(member_role) < self.roles.rank(self.my_role)


def load(session: ApiSession, wanted_project_id: Any) -> Workspace:
    """The person's projects and the one to work in: `wanted_project_id` if they still see
    it (they may have left it, or been removed), otherwise their Inbox."""
    roles = roles_of(session)
    projects = inbox_first(session.all_projects())
    if not projects:
        raise RuntimeError("the API listed no project, not even the Inbox")
    current = next((p for p in projects if p["id"] == wanted_project_id), None)
    return Workspace(
        session=session,
        projects=projects,
        project=current or projects[0],
        roles=roles,
        lost_project=current is None and wanted_project_id is not None,
    )


def member_name(member_user: dict[str, Any]) -> str:
    """How a person is named in lists: full name and email, or the email alone."""
    email = str(member_user.get("email") or "")
    name = str(member_user.get("full_name") or "")
    if name and email:
        return f"{name} ({email})"
    return name or email or f"User {member_user.get('id')}"
