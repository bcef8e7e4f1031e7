"""A team for the v2 tests: one shared project with a member at each role, and an outsider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.roles import ProjectRole
from app.db.base import utcnow
from app.models.project import Project, ProjectMember
from app.models.user import User
from tests.api.conftest import Headers
from tests.conftest import UserFactory

V2 = "/api/v2"


@dataclass
class Team:
    project_id: int
    users: dict[str, User]  # by role label, and "outsider"
    headers: dict[str, Headers]  # the same keys

    def user(self, who: str) -> User:
        return self.users[who]


async def add_project(
    session: AsyncSession, members: dict[User, ProjectRole], name: str = "Launch"
) -> int:
    """A shared project with `members` at their roles, straight in the database."""
    now = utcnow()
    project = Project(name=name, created_at=now, updated_at=now, version=1)
    session.add(project)
    await session.flush()
    for user, role in members.items():
        session.add(
            ProjectMember(project_id=project.id, user_id=user.id, role=role.value, added_at=now)
        )
    await session.commit()
    return project.id


@pytest.fixture
async def team(
    make_user: UserFactory,
    session: AsyncSession,
    auth_headers: Callable[[User], Headers],
) -> Team:
    users: dict[str, User] = {}
    for role in sorted(ProjectRole, reverse=True):
        users[role.label] = await make_user(
            email=f"{role.label}@example.com", full_name=role.label.title()
        )
    users["outsider"] = await make_user(email="outsider@example.com", full_name="Outsider")
    project_id = await add_project(
        session, {users[role.label]: role for role in ProjectRole}, name="Launch"
    )
    return Team(project_id, users, {who: auth_headers(user) for who, user in users.items()})
