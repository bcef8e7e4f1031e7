"""The delivery job never contacts a non-public address: the check is on the address it
would connect to, resolved once at send time by a resolver the test controls. Run in a
network namespace with only loopback (scripts/run-isolated-tests.sh), on SQLite (no
PostgreSQL server can be reached from there)."""

from __future__ import annotations

import pytest

from tests.jobs.conftest import Deployment
from tests.jobs.test_webhook_deliveries import _log, _team, _webhook, _work

pytestmark = [
    pytest.mark.isolated_network,
    pytest.mark.parametrize("fresh_url", ["sqlite"], indirect=True),
]


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        ("http://10.0.0.1/hook", None),
        ("http://169.254.169.254/latest/meta-data", None),
        ("http://2130706433/hook", None),  # 127.0.0.1 spelt as a number: allowed here
        ("http://hooks.example.com/hook", "10.1.2.3"),  # public when saved, private now
        ("http://hooks.example.com/hook", "::ffff:192.168.0.1"),
        ("http://hooks.example.com/hook", "100.64.0.1"),
    ],
)
async def test_a_private_destination_is_never_contacted(
    deployment: Deployment, url: str, answer: str | None
) -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:  # noqa: ARG001
        asked.append(host)
        return [answer] if answer else []

    deployment.runtime.resolver = resolver
    owner, project_id = await _team(deployment)
    webhook_id, _ = await _webhook(deployment, project_id, url, ["task.created"])
    await deployment.http.post(
        "/api/v2/tasks",
        json={"title": "Private", "project_id": project_id},
        headers=owner["headers"],
    )
    await _work(deployment)
    first = (await _log(deployment, webhook_id))[0]
    if url == "http://2130706433/hook":
        # WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8 in these tests: allowed, and nothing listens.
        assert first["error"].startswith("connection-failed")
        return
    assert first["status"] == "failed"
    assert first["error"].startswith("blocked-destination")
    assert first["response_status"] is None
    assert asked == ([] if answer is None else ["hooks.example.com"])
