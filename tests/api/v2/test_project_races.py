"""Races on projects, members and invitations (issue 13), with real commits.

Every request goes through `committing_client`: each runs on its own pooled connection and
really commits, so `asyncio.gather` makes them race as real clients would (on SQLite they
queue on the write lock; on PostgreSQL they contend on row locks). Each race runs several
times, on SQLite and on PostgreSQL. What a user would notice:
- two owners demoting each other (or both leaving) at once: never both; the project keeps an
  owner whatever the interleaving;
- two owners renaming the project with the same ETag: one 200, one 412;
- one invitation accepted by several requests at once: one membership, the others 404;
- one address invited by several requests at once: one invitation, one 201 and the others
  the 200 of inviting a pending address again (never a 409).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.v2.conftest import V2
from tests.conftest import TEST_PASSWORD

TRIALS = 4
ACCEPTS = 4


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str
    headers: dict[str, str]


async def register(client: httpx.AsyncClient, label: str) -> Account:
    """A new committed user, signed in over HTTP."""
    email = f"{label}-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(
        "/api/v1/users", json={"email": email, "password": TEST_PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    token = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": TEST_PASSWORD}
    )
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return Account(registered.json()["id"], email, headers)


@pytest.fixture
async def racing(
    committing_client: httpx.AsyncClient, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """`committing_client`, and the shared projects its tests made removed afterwards (their
    members and invitations go with them; the accounts and Inboxes with its own cleanup)."""
    try:
        yield committing_client
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM projects WHERE inbox_user_id IS NULL"))


async def join(
    client: httpx.AsyncClient, admin: Account, project_id: int, member: Account, role: str
) -> None:
    """`member` joins the project at `role`, invited by `admin`."""
    invited = await client.post(
        f"{V2}/projects/{project_id}/invitations",
        json={"email": member.email, "role": role},
        headers=admin.headers,
    )
    assert invited.status_code == 201, invited.text
    accepted = await client.post(
        f"{V2}/invitations/{invited.json()['id']}/accept", headers=member.headers
    )
    assert accepted.status_code == 200, accepted.text


async def shared_project(client: httpx.AsyncClient, owner: Account, *others: Account) -> int:
    """A project of `owner` with `others` as owners too, joined by invitation."""
    created = await client.post(f"{V2}/projects", json={"name": "Race"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    project_id: int = created.json()["id"]
    for other in others:
        await join(client, owner, project_id, other, "owner")
    return project_id


async def roles(client: httpx.AsyncClient, project_id: int, headers: dict[str, str]) -> list[str]:
    response = await client.get(f"{V2}/projects/{project_id}/members", headers=headers)
    assert response.status_code == 200, response.text
    return [member["role"] for member in response.json()["items"]]


def outcome(responses: list[httpx.Response]) -> list[int]:
    return sorted(response.status_code for response in responses)


class TestOwnersActingOnEachOther:
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_demoting_each_other_never_both(
        self, racing: httpx.AsyncClient, trial: int
    ) -> None:
        one = await register(racing, f"demote-one-{trial}")
        two = await register(racing, f"demote-two-{trial}")
        project_id = await shared_project(racing, one, two)

        responses = list(
            await asyncio.gather(
                racing.patch(
                    f"{V2}/projects/{project_id}/members/{two.id}",
                    json={"role": "admin"},
                    headers=one.headers,
                ),
                racing.patch(
                    f"{V2}/projects/{project_id}/members/{one.id}",
                    json={"role": "admin"},
                    headers=two.headers,
                ),
            )
        )

        # The loser is an admin by the time its change is judged: touching an owner is 403.
        assert outcome(responses) == [200, 403], [(r.status_code, r.text) for r in responses]
        loser = responses[0] if responses[0].status_code == 403 else responses[1]
        assert (loser.json()["role"], loser.json()["required_role"]) == ("admin", "owner")
        assert sorted(await roles(racing, project_id, one.headers)) == ["admin", "owner"]

    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_leaving_or_stepping_down_at_once_keeps_an_owner(
        self, racing: httpx.AsyncClient, trial: int
    ) -> None:
        one = await register(racing, f"leave-one-{trial}")
        two = await register(racing, f"leave-two-{trial}")
        three = await register(racing, f"leave-three-{trial}")
        project_id = await shared_project(racing, one, two, three)
        members = f"{V2}/projects/{project_id}/members"

        responses = list(
            await asyncio.gather(
                racing.delete(f"{members}/{one.id}", headers=one.headers),
                racing.patch(f"{members}/{two.id}", json={"role": "viewer"}, headers=two.headers),
                racing.delete(f"{members}/{three.id}", headers=three.headers),
            )
        )

        # Two of the three go through; whichever comes last finds itself the last owner.
        assert outcome(responses) in ([200, 204, 409], [204, 204, 409]), [
            (r.status_code, r.text) for r in responses
        ]
        remaining: list[str] = []
        for account in (one, two, three):
            listed = await racing.get(members, headers=account.headers)
            if listed.status_code == 200:
                remaining = [m["role"] for m in listed.json()["items"]]
        assert remaining.count("owner") == 1, remaining


class TestOneEtagTwoWriters:
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_one_200_one_412(self, racing: httpx.AsyncClient, trial: int) -> None:
        one = await register(racing, f"etag-one-{trial}")
        two = await register(racing, f"etag-two-{trial}")
        project_id = await shared_project(racing, one, two)
        url = f"{V2}/projects/{project_id}"
        tag = (await racing.get(url, headers=one.headers)).headers["etag"]

        responses = list(
            await asyncio.gather(
                racing.patch(url, json={"name": "one"}, headers={**one.headers, "If-Match": tag}),
                racing.patch(url, json={"name": "two"}, headers={**two.headers, "If-Match": tag}),
            )
        )

        assert outcome(responses) == [200, 412], [(r.status_code, r.text) for r in responses]
        winner: dict[str, Any] = next(r for r in responses if r.status_code == 200).json()
        now = (await racing.get(url, headers=two.headers)).json()
        assert (now["name"], now["version"]) == (winner["name"], 2)


class TestConcurrentAccepts:
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_one_membership(self, racing: httpx.AsyncClient, trial: int) -> None:
        owner = await register(racing, f"accept-owner-{trial}")
        guest = await register(racing, f"accept-guest-{trial}")
        project_id = await shared_project(racing, owner)
        invited = await racing.post(
            f"{V2}/projects/{project_id}/invitations",
            json={"email": guest.email, "role": "editor"},
            headers=owner.headers,
        )
        accept = f"{V2}/invitations/{invited.json()['id']}/accept"

        responses = list(
            await asyncio.gather(
                *(racing.post(accept, headers=guest.headers) for _ in range(ACCEPTS))
            )
        )

        assert outcome(responses) == [200] + [404] * (ACCEPTS - 1), [
            (r.status_code, r.text) for r in responses
        ]
        assert sorted(await roles(racing, project_id, guest.headers)) == ["editor", "owner"]


INVITES = 4


class TestConcurrentInvitations:
    @pytest.mark.parametrize("trial", range(TRIALS))
    async def test_one_invitation_one_201(self, racing: httpx.AsyncClient, trial: int) -> None:
        owner = await register(racing, f"invite-owner-{trial}")
        project_id = await shared_project(racing, owner)
        invitations = f"{V2}/projects/{project_id}/invitations"
        address = f"invitee-{uuid.uuid4().hex[:8]}@example.com"

        responses = list(
            await asyncio.gather(
                *(
                    racing.post(
                        invitations,
                        json={"email": address, "role": "viewer"},
                        headers=owner.headers,
                    )
                    for _ in range(INVITES)
                )
            )
        )

        assert outcome(responses) == [200] * (INVITES - 1) + [201], [
            (r.status_code, r.text) for r in responses
        ]
        assert len({r.json()["id"] for r in responses}) == 1
        pending = (await racing.get(invitations, headers=owner.headers)).json()["items"]
        assert [i["email"] for i in pending] == [address]
