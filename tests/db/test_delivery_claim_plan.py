"""On PostgreSQL the delivery job's claim reads each webhook's pending attempts on their own
index, so a backlog of messages to one slow receiver is neither read past nor sorted to
reach the other webhooks' attempts (decision 0033, "Slow receivers").

One project has 30 webhooks; the first has 20,000 attempts due (a receiver that answers
slowly, and messages piling up; a kilobyte of payload each), the others a few each, newer.
Claims give each webhook a place in turn (the oldest webhooks' first attempts first), and
the first webhook no more than `IN_FLIGHT_PER_WEBHOOK` while they are in flight. The
statement that chooses them is explained with EXPLAIN (ANALYZE, BUFFERS): no sequential scan of the
delivery log, and a number of buffers bounded by the webhooks and the cap, far below what
the backlog fills.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.access import Db
from app.db.session import create_engine_for, create_sessionmaker
from app.db.statements import deliveries
from app.jobs.deliveries import DELIVERY_BATCH, IN_FLIGHT_PER_WEBHOOK
from tests.conftest import create_database, drop_database, make_settings, run_alembic

WEBHOOKS = 30
BACKLOG = 20_000
OTHERS_EACH = 3
LEASE = timedelta(seconds=15)


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    url = await create_database("postgresql", tmp_path_factory.mktemp("claim"))
    try:
        run_alembic(url)
        engine = create_engine_for(make_settings(url))
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO projects (name, created_at, updated_at, version)"
                    " VALUES ('Hooks', now(), now(), 1)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO webhooks (project_id, url, events, active, created_at,"
                    " updated_at, secret) SELECT 1, 'https://receiver.example/' || n, '[\"*\"]',"
                    " true, now(), now(), 'whsec_x' FROM generate_series(1, :webhooks) n"
                ),
                {"webhooks": WEBHOOKS},
            )
            # The backlog first (older), then a few newer attempts of every other webhook.
            await connection.execute(
                text(
                    "INSERT INTO webhook_deliveries (webhook_id, message_id, type, payload,"
                    " attempt, status, created_at, next_attempt_at)"
                    " SELECT CASE WHEN n <= :backlog THEN 1"
                    "   ELSE 2 + (n - :backlog - 1) % (:webhooks - 1) END,"
                    " 'msg_' || n, 'task.created', repeat('x', 1000), 1, 'pending', now(),"
                    " now() - interval '1 hour' + n * interval '1 ms'"
                    " FROM generate_series(1, :total) n"
                ),
                {
                    "backlog": BACKLOG,
                    "webhooks": WEBHOOKS,
                    "total": BACKLOG + OTHERS_EACH * (WEBHOOKS - 1),
                },
            )
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE webhook_deliveries"))
        yield engine
        await engine.dispose()
    finally:
        await drop_database(url)


async def _claim(engine: AsyncEngine, now: datetime) -> list[int]:
    async with Db.transaction_for(create_sessionmaker(engine)) as db:
        claimed = await deliveries.claim_due(
            db, now, now + LEASE, DELIVERY_BATCH, per_webhook=IN_FLIGHT_PER_WEBHOOK
        )
    return [attempt.webhook_id for attempt in claimed]


async def test_each_webhook_gets_a_place_in_turn_and_the_backlog_up_to_its_cap(
    engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    first = await _claim(engine, now)
    # A place for each of the oldest webhooks' first attempts, the backlog's among them.
    assert len(first) == DELIVERY_BATCH
    assert len(set(first)) == DELIVERY_BATCH
    assert 1 in first
    claimed = list(first)
    while batch := await _claim(engine, now):  # claimed ones stay in flight (leased)
        claimed += batch
    counts = Counter(claimed)
    assert counts.pop(1) == IN_FLIGHT_PER_WEBHOOK  # the backlog's webhook, up to its cap
    assert counts == dict.fromkeys(range(2, WEBHOOKS + 1), OTHERS_EACH)


async def test_the_choice_walks_each_webhooks_index_not_the_backlog(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    chosen = deliveries.choose_due_statement(
        "postgresql", now, now + LEASE, DELIVERY_BATCH, IN_FLIGHT_PER_WEBHOOK
    )
    sql = str(chosen.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with engine.connect() as connection:
        explained = (
            await connection.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"))
        ).scalar_one()
        backlog_pages = (
            await connection.execute(
                text("SELECT relpages FROM pg_class WHERE relname = 'webhook_deliveries'")
            )
        ).scalar_one()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(found for child in node.get("Plans", []) for found in nodes(child))]

    scans = [node for node in nodes(plan) if node.get("Relation Name") == "webhook_deliveries"]
    assert scans
    assert {node["Node Type"] for node in scans} <= {"Index Scan", "Index Only Scan"}
    assert {node["Index Name"] for node in scans} == {"ix_webhook_deliveries_pending_by_webhook"}
    buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert backlog_pages > 2_000  # payloads of a kilobyte, as a task's event gives
    assert buffers < 20 * WEBHOOKS  # a few pages per webhook walked, not the backlog
