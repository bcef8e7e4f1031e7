"""Two ordinary users, Alice and Bob, with their auth headers: the cast of most API tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.models.user import User
from tests.conftest import UserFactory

Headers = dict[str, str]


@pytest.fixture
async def alice(make_user: UserFactory) -> User:
    return await make_user(email="alice@example.com")


@pytest.fixture
async def bob(make_user: UserFactory) -> User:
    return await make_user(email="bob@example.com")


@pytest.fixture
def alice_h(alice: User, auth_headers: Callable[[User], Headers]) -> Headers:
    return auth_headers(alice)


@pytest.fixture
def bob_h(bob: User, auth_headers: Callable[[User], Headers]) -> Headers:
    return auth_headers(bob)
