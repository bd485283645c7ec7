"""The report functions the dashboard and the metrics read (each layer's own SQL: sessions,
ledger, engine), on a real database with rows of known sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from threadline.engine.reports import run_counts
from threadline.ledger.reports import call_totals, session_costs, usage_totals
from threadline.sessions.reports import feedback_by_agent, recent_sessions

CALL = """
INSERT INTO threadline.llm_calls (session_id, provider, requested_model, model, status,
    input_tokens, output_tokens, cost_usd, saved_usd, priced, latency_ms, fallback_reason, at)
VALUES ($1, 'demo', 'm', 'm', $2, $3, $4, $5::numeric, $6, $5::numeric IS NOT NULL, 1, $7, $8)
"""
LONG_AGO = datetime.now(UTC) - timedelta(days=3)


async def session(conn: asyncpg.Connection, id: str, agent: str, updated: datetime) -> None:
    await conn.execute(
        "INSERT INTO threadline.sessions (id, agent, state, updated_at) VALUES ($1, $2, 's', $3)",
        id,
        agent,
        updated,
    )


async def message(conn: asyncpg.Connection, session_id: str, seq: int, turn_id: str) -> None:
    await conn.execute(
        "INSERT INTO threadline.session_messages (session_id, seq, role, content, turn_id) "
        "VALUES ($1, $2, 'assistant', 'answer', $3)",
        session_id,
        seq,
        turn_id,
    )


async def rating(
    conn: asyncpg.Connection, session_id: str, turn_id: str, agent: str, n: int
) -> None:
    await conn.execute(
        "INSERT INTO threadline.session_feedback (session_id, turn_id, rating, agent) "
        "VALUES ($1, $2, $3, $4)",
        session_id,
        turn_id,
        n,
        agent,
    )


async def call(
    conn: asyncpg.Connection,
    session_id: str | None,
    cost: str | None,
    *,
    status: str = "ok",
    tokens: tuple[int, int] = (10, 20),
    saved: str = "0",
    fallback: str | None = None,
    at: datetime | None = None,
) -> None:
    price = Decimal(cost) if cost is not None else None
    when = at or datetime.now(UTC)
    await conn.execute(CALL, session_id, status, *tokens, price, Decimal(saved), fallback, when)


async def test_sessions_are_listed_latest_first_with_their_messages_thumbs_down_and_cost(
    conn: asyncpg.Connection,
) -> None:
    now = datetime.now(UTC)
    await session(conn, "old", "faq", now - timedelta(hours=1))
    await session(conn, "new", "memoir", now)
    await session(conn, "unpriced", "faq", now - timedelta(hours=2))
    for seq, turn in enumerate(("t1", "t2", "t3"), 1):
        await message(conn, "new", seq, turn)
    await rating(conn, "new", "t1", "memoir", -1)
    await rating(conn, "new", "t2", "memoir", -1)
    await rating(conn, "new", "t3", "memoir", 1)
    await call(conn, "new", "0.25")
    await call(conn, "new", "0.5", status="cached")
    await call(conn, "new", None, status="error")
    await call(conn, "unpriced", None)
    await call(conn, None, "7")  # no session's

    found = await recent_sessions(conn)
    assert [s.id for s in found] == ["new", "old", "unpriced"]
    new, old, unpriced = found
    assert (new.agent, new.messages, new.thumbs_down, new.cost) == ("memoir", 3, 2, Decimal("0.75"))
    assert (old.messages, old.thumbs_down, old.cost) == (0, 0, Decimal(0))
    assert unpriced.cost == Decimal(0)  # calls without a price count as nothing
    assert [s.id for s in await recent_sessions(conn, limit=1)] == ["new"]
    assert await session_costs(conn, ["new", "nobody"]) == {"new": Decimal("0.75")}


async def test_feedback_is_counted_per_agent(conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    await session(conn, "a", "memoir", now)
    await session(conn, "b", "faq", now)
    await rating(conn, "a", "t1", "memoir", 1)
    await rating(conn, "a", "t2", "memoir", -1)
    await rating(conn, "b", "t1", "faq", 1)
    await rating(conn, "b", "t2", "faq", 1)
    counts = [(f.agent, f.up, f.down) for f in await feedback_by_agent(conn)]
    assert counts == [("faq", 2, 0), ("memoir", 1, 1)]


async def test_ledger_totals_sum_every_call(conn: asyncpg.Connection) -> None:
    none = await call_totals(conn)  # an empty ledger: zeros
    assert (none.calls, none.cost, none.today, none.fallbacks) == (0, Decimal(0), Decimal(0), 0)
    empty = await usage_totals(conn)
    assert (empty.input_tokens, empty.spend, empty.cache_hits) == (0, Decimal(0), 0)
    await call(conn, "s", "1.5", tokens=(100, 200), at=LONG_AGO)
    await call(conn, "s", "0.25", tokens=(10, 20), fallback="overloaded")
    await call(conn, "s", "0", status="cached", tokens=(5, 5), saved="0.4")
    await call(conn, None, None, status="error", tokens=(0, 0))

    totals = await call_totals(conn)
    assert (totals.calls, totals.cached, totals.errors, totals.fallbacks) == (4, 1, 1, 1)
    assert (totals.cost, totals.saved, totals.today) == (
        Decimal("1.75"),
        Decimal("0.4"),
        Decimal("0.25"),
    )
    usage = await usage_totals(conn)
    assert (usage.input_tokens, usage.output_tokens) == (110, 220)  # cache hits left out
    assert (usage.spend, usage.today, usage.cache_hits) == (Decimal("1.75"), Decimal("0.25"), 1)


async def test_runs_are_counted_by_status_for_one_workflow_and_pending_per_queue(
    conn: asyncpg.Connection,
) -> None:
    runs = [
        ("r1", "turn", "succeeded", "turns"),
        ("r2", "turn", "succeeded", "turns"),
        ("r3", "turn", "pending", "turns"),
        ("r4", "other", "pending", "default"),
        ("r5", "other", "failed", "default"),
    ]
    for id, workflow, status, queue in runs:
        await conn.execute(
            "INSERT INTO threadline.runs (id, workflow, app_version, status, input, queue) "
            "VALUES ($1, $2, 'v', $3, '{}', $4)",
            id,
            workflow,
            status,
            queue,
        )
    counts = await run_counts(conn, "turn")
    assert counts.by_status == {"succeeded": 2, "pending": 1}
    assert counts.pending == {"turns": 1, "default": 1}
    assert (await run_counts(conn, "none")).by_status == {}
