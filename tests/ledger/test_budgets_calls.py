"""Budgets on real calls through `LLM` (one model, the OpenAI SDK against its test server):
reservation and settlement, a per-call cap, daily limits, and estimate mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from threadline import Engine, db
from threadline.engine.engine import engine_of
from threadline.ledger import Budget, BudgetExceeded, BudgetNotice, Ledger, Scope
from threadline.ledger.estimates import Calibration, prompt_bytes
from threadline.ledger.limits import Counter, counters_for, today
from threadline.llm import Message, price, prices_per_token, upper_bound_messages
from threadline.llm.pricing import PriceOverrides
from threadline.router import Models

from ..helpers import until
from ..llm.servers.base import ProviderServer, Script

MINI = "openai:gpt-4o-mini"
PROMPT = [Message.user("Classify: coffee at the corner shop.")]


@pytest.fixture
def api(servers: dict[str, ProviderServer]) -> Script:
    servers["openai"].script.reset()
    return servers["openai"].script


@pytest.fixture
async def llm(database_url: str, servers: dict[str, ProviderServer]) -> AsyncIterator[Models]:
    async with Engine(database_url, worker=False) as engine:
        ledger = Ledger(engine.pool, overrides=PriceOverrides({}))
        options = {"api_key": "k", "base_url": servers["openai"].url + "/v1"}
        llm = Models(ledger, model_options={"openai": options})
        yield llm
        await llm.aclose()
        await ledger.close()


def rates() -> tuple[Decimal, Decimal]:
    found = prices_per_token("openai", "gpt-4o-mini")
    assert found is not None
    return found


async def test_a_call_reserves_its_worst_case_and_settles_its_cost(
    llm: Models, api: Script
) -> None:
    budgets = llm.ledger.budgets
    await budgets.set("tenant:acme", usd="0.00035")
    api.reply(input_tokens=15, output_tokens=400)
    answer = await llm.request(MINI, PROMPT, scope=Scope(tenant="acme"), max_tokens=500)
    await llm.ledger.drain()
    (row,) = await llm.ledger.calls(tenant="acme")
    (state,) = await budgets.get("tenant:acme")
    assert (state.spent_usd, state.reserved_usd, state.calls) == (row["cost_usd"], 0, 1)
    cost = price("openai", "gpt-4o-mini", answer.usage).total_usd
    assert row["cost_usd"] == cost < row["reserved_usd"]
    assert row["input_bytes"] == prompt_bytes(PROMPT)
    # What is left affords fewer than 256 output tokens (the default minimum): refused, unasked.
    with pytest.raises(BudgetExceeded) as caught:
        await llm.request(MINI, PROMPT, scope=Scope(tenant="acme"), max_tokens=2000)
    assert (caught.value.scope, caught.value.spent_usd) == ("tenant:acme", cost)
    assert len(api.requests) == 1
    with pytest.raises(BudgetExceeded):  # streaming outside a workflow is held to it too
        async for _ in llm.stream(MINI, PROMPT, scope=Scope(tenant="acme"), max_tokens=2000):
            pass
    small = llm.stream(MINI, PROMPT, scope=Scope(tenant="acme"), max_tokens=100)
    assert [e async for e in small] and api.last.body["max_completion_tokens"] == 100
    await llm.ledger.drain()
    (state,) = await budgets.get("tenant:acme")
    assert state.calls == 2 and state.reserved_usd == 0


async def test_a_budget_passed_to_a_call_caps_it(llm: Models, api: Script) -> None:
    inputs, outputs = rates()
    fixed = upper_bound_messages(PROMPT) * inputs  # strict: the input's upper bound
    cap = fixed + 400 * outputs
    await llm.request(MINI, PROMPT, budget=Budget(usd=cap), max_tokens=4000)
    assert api.last.body["max_completion_tokens"] == 400  # lowered to what the cap affords
    with pytest.raises(BudgetExceeded) as caught:
        await llm.request(MINI, PROMPT, budget=Budget(usd=fixed + 100 * outputs))
    assert (caught.value.scope, caught.value.limit_usd) == ("call", fixed + 100 * outputs)
    assert len(api.requests) == 1


async def test_daily_limits_count_in_todays_bucket_for_each_key(llm: Models, api: Script) -> None:
    await llm.ledger.budgets.set("user:*", usd="0.01", period="daily")
    for user in ("ann", "bob", "ann"):
        await llm.request(MINI, PROMPT, scope=Scope(user=user), max_tokens=100)
    await llm.ledger.drain()
    states = {(s.scope, s.bucket): s for s in await llm.ledger.budgets.list(kind="user")}
    assert set(states) == {("user:*", today()), ("user:ann", today()), ("user:bob", today())}
    assert (states["user:ann", today()].calls, states["user:bob", today()].calls) == (2, 1)
    assert states["user:ann", today()].limit_usd == Decimal("0.01")


async def test_estimate_mode_learns_bytes_per_token_and_reports_overshoot(
    llm: Models, api: Script
) -> None:
    heard: list[BudgetNotice] = []
    llm.ledger.budgets.on_notice(heard.append)
    llm.ledger.budgets.calibration = Calibration(llm.ledger.pool, ttl=0)
    await llm.ledger.budgets.set("session:s1", usd="0.0005")
    # The provider counts far more input tokens than bytes / 4 suggests (say, a dense script).
    api.reply(input_tokens=4000, output_tokens=10)
    await llm.request(MINI, PROMPT, scope=Scope(session="s1"), max_tokens=10, mode="estimate")
    await llm.ledger.drain()
    (row,) = await llm.ledger.calls(session_id="s1")
    assert row["cost_usd"] > row["reserved_usd"]  # an estimate is not a bound...
    (state,) = await llm.ledger.budgets.get("session:s1")
    overshoot = row["cost_usd"] - row["reserved_usd"]
    assert state.overshoot_usd == overshoot and state.spent_usd > state.limit_usd  # type: ignore[operator]
    assert [(n.kind, n.threshold) for n in heard] == [
        ("budget.update", 50),
        ("budget.update", 80),
        ("budget.update", 100),
        ("budget.overshoot", None),
    ]
    assert heard[-1].overshoot_usd == overshoot  # ...and what it missed by is reported
    learned = await llm.ledger.budgets.calibration.bytes_per_token("openai", "gpt-4o-mini")
    assert learned == pytest.approx(prompt_bytes(PROMPT) / 4000)
    model = llm.model(MINI)
    assert await llm.ledger.budgets.calibration.estimate(model, PROMPT) == 4000


async def test_calls_under_no_limit_skip_the_database_and_limits_set_elsewhere_apply(
    llm: Models, api: Script, database_url: str
) -> None:
    budgets = llm.ledger.budgets
    index = budgets.limit_index()
    assert index is not None
    acme, other = counters_for(Scope(tenant="acme")), counters_for(Scope(tenant="beta"))
    await until(lambda: index.unlimited(other))  # loaded in the background at first use
    declared = [Counter("tenant", "beta", "total", "total", Decimal(1))]
    assert not index.unlimited(counters_for(Scope(tenant="beta"), declared=declared))
    api.reply(input_tokens=15, output_tokens=40)
    await llm.request(MINI, PROMPT, scope=Scope(tenant="acme"), max_tokens=500)
    async with llm.ledger.pool.acquire() as conn:  # admitted without a reservation
        assert await conn.fetchval("SELECT count(*) FROM threadline.budget_holders") == 0
    # Another process sets a limit: its notification reaches this one, and the next call
    # is held to it.
    async with Engine(database_url, worker=False) as elsewhere:
        await Ledger(elsewhere.pool).budgets.set("tenant:*", usd=0)
    await until(lambda: not index.unlimited(acme))
    with pytest.raises(BudgetExceeded):
        await llm.request(MINI, PROMPT, scope=Scope(tenant="acme"), max_tokens=500)
    assert len(api.requests) == 1
    await budgets.remove("tenant:*")
    await until(lambda: index.unlimited(acme))
    await budgets.set("tenant:acme", usd=0)  # this process's own change counts at once
    assert not index.unlimited(acme)
    await until(lambda: index.unlimited(other))  # its notification came back: reloaded
    assert not index.unlimited(acme)


async def test_a_lost_listener_forgets_the_limits_until_it_hears_again(
    llm: Models, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = llm.ledger.budgets.limit_index()
    engine = engine_of(llm.ledger.pool)
    assert index is not None and engine is not None and engine._listener is not None
    acme = counters_for(Scope(tenant="acme"))
    await until(lambda: index.unlimited(acme))
    # Hold the engine's reconnection until told: it stays deaf meanwhile.
    hearing, connect = asyncio.Event(), db.connect

    async def held(url: str, **kw: Any) -> asyncpg.Connection:
        await hearing.wait()
        return await connect(url, **kw)

    async with Engine(database_url, worker=False) as elsewhere, elsewhere.pool.acquire() as conn:
        monkeypatch.setattr(db, "connect", held)
        await conn.execute("SELECT pg_terminate_backend($1)", engine._listener.get_server_pid())
        await until(lambda: not engine.listening)
        assert not index.unlimited(acme)  # deaf: not known, so asked of the database
        await Ledger(elsewhere.pool).budgets.set("tenant:acme", usd=0)  # its NOTIFY is missed
        assert not index.unlimited(acme)  # and no load happens while deaf
    hearing.set()
    await until(lambda: engine.listening)
    await until(lambda: index.unlimited(counters_for(Scope(tenant="beta"))))
    assert not index.unlimited(acme)  # reloaded after the reconnection: the change is known
