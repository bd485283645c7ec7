"""200 calls at once against a $0.50 budget: strict reservations never let spend pass it."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from threadline.ledger import BudgetExceeded, Scope
from threadline.llm import Message, prices_per_token, upper_bound_messages
from threadline.router import ModelPolicy

from ..llm.servers.base import Script
from .conftest import MakeRouter

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

SONNET = "anthropic:claude-sonnet-4-5"
LIMIT = Decimal("0.50")
# About 800 tokens of English; the provider reports 800 in and 200-300 out (~$0.006 on Sonnet).
PROMPT = [Message.user("Please classify this transaction and explain why. " * 64)]


async def test_strict_reservations_hold_a_budget_under_200_concurrent_calls(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    router = make_router(budget_wait=30.0)
    for n in range(200):
        scripts["anthropic"].reply(input_tokens=800, output_tokens=200 + n % 100, delay=0.01)
    budgets, ledger = router.ledger.budgets, router.ledger
    await budgets.set("tenant:acme", usd=LIMIT)
    await budgets.set("user:*", usd="0.20")  # overlapping limits: each call holds two counters
    async with ledger.pool.acquire() as conn:
        deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        deadlocks_before = await conn.fetchval(deadlocks)

    async def call(n: int) -> bool:
        try:
            scope = Scope(tenant="acme", user=f"u{n % 3}")
            await router.request(ModelPolicy(SONNET), PROMPT, scope=scope, max_tokens=512)
        except BudgetExceeded:
            return False
        return True

    answered = sum(await asyncio.gather(*(call(n) for n in range(200))))
    rows = await ledger.calls(tenant="acme")
    recorded = sum(r["cost_usd"] for r in rows)
    states = {s.scope: s for s in await budgets.list() if s.scope != "user:*"}
    assert recorded <= LIMIT and len(rows) == answered
    assert states["tenant:acme"].spent_usd == recorded and states["tenant:acme"].calls == answered
    for user in ("u0", "u1", "u2"):
        state = states[f"user:{user}"]
        mine = sum(r["cost_usd"] for r in rows if r["user_id"] == user)
        assert state.spent_usd == mine <= Decimal("0.20") and state.reserved_usd == 0
    # The money left is less than the smallest call needs: nothing was refused in vain.
    rates = prices_per_token("anthropic", "claude-sonnet-4-5")
    assert rates is not None
    smallest = upper_bound_messages(PROMPT) * rates[0] + 256 * rates[1]
    assert LIMIT - recorded < smallest
    assert 60 <= answered < 200
    async with ledger.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM threadline.budget_reservations") == 0
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        assert await conn.fetchval(deadlocks) == deadlocks_before
