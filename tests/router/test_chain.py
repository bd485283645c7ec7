"""Which model of the chain answers: the best one the budget affords, whose window holds the
prompt; each decision on the ledger row and as an event."""

from __future__ import annotations

from decimal import Decimal

import pytest

from threadline.ledger import BudgetExceeded, Scope
from threadline.llm import ContextWindowExceeded, Message, prices_per_token, upper_bound_messages
from threadline.router import Fallback, ModelPolicy, RouterEvent

from ..llm.servers.base import Script
from .conftest import PRICES, MakeRouter, models_asked

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

SONNET, HAIKU, LLAMA = (
    "anthropic:claude-sonnet-4-5",
    "anthropic:claude-haiku-4-5",
    "ollama:llama3.2",
)
POLICY = ModelPolicy(SONNET, fallback=[HAIKU, LLAMA])
PROMPT = [Message.system("Be brief."), Message.user("Summarise the quarterly report.")]


def worst(spec: str, output_tokens: int) -> Decimal:
    """What the router reserves for PROMPT on `spec` with this many output tokens (strict)."""
    provider, _, name = spec.partition(":")
    rates = prices_per_token(provider, name, overrides=PRICES)
    assert rates is not None
    return upper_bound_messages(PROMPT) * rates[0] + output_tokens * rates[1]


async def test_the_chain_steps_down_as_the_money_runs_out(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    heard: list[RouterEvent] = []
    router = make_router()
    router.on_event = heard.append
    budgets = router.ledger.budgets
    # Enough for Sonnet at 1024 tokens; then for Haiku, not Sonnet even at 256; then for the
    # local model only; then for nothing.
    haiku_limit = (worst(HAIKU, 256) + worst(SONNET, 256)) / 2
    limits = {
        "rich": worst(SONNET, 1024) * 2,
        "modest": haiku_limit,
        "poor": worst(HAIKU, 256) * Decimal("0.9"),
        "broke": worst(LLAMA, 256) * Decimal("0.9"),
    }
    for tenant, limit in limits.items():
        await budgets.set(f"tenant:{tenant}", usd=limit)
    for script in (scripts["anthropic"], scripts["ollama"]):
        script.default.input_tokens, script.default.output_tokens = 30, 20

    rich = await router.request(POLICY, PROMPT, scope=Scope(tenant="rich"))
    assert (rich.used_model, rich.max_tokens, rich.fallbacks) == (SONNET, 1024, ())
    modest = await router.request(POLICY, PROMPT, scope=Scope(tenant="modest"))
    haiku_rates = prices_per_token("anthropic", "claude-haiku-4-5")
    assert haiku_rates is not None
    affordable = int((haiku_limit - worst(HAIKU, 0)) / haiku_rates[1])
    assert 256 <= affordable < 1024
    assert (modest.used_model, modest.max_tokens) == (HAIKU, affordable)
    assert modest.fallbacks == (Fallback(SONNET, HAIKU, "budget"),)
    poor = await router.request(POLICY, PROMPT, scope=Scope(tenant="poor"))
    assert (poor.used_model, poor.max_tokens) == (LLAMA, 1024)
    assert [f.reason for f in poor.fallbacks] == ["budget", "budget"]
    with pytest.raises(BudgetExceeded) as caught:
        await router.request(POLICY, PROMPT, scope=Scope(tenant="broke"))
    error = caught.value
    assert (error.scope, error.limit_usd, error.spent_usd) == ("tenant:broke", limits["broke"], 0)
    assert error.needed_usd == worst(LLAMA, 256).quantize(Decimal("1e-10"))
    assert error.model == LLAMA

    # What the providers were asked, and what the ledger says about each call.
    assert models_asked(scripts["anthropic"]) == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert [r.body["max_tokens"] for r in scripts["anthropic"].requests] == [1024, affordable]
    assert len(scripts["ollama"].requests) == 1
    rows = await router.ledger.calls()
    assert [
        (r["tenant"], r["requested_model"], r["model"], r["fallback_reason"]) for r in rows
    ] == [
        ("rich", SONNET, "claude-sonnet-4-5", None),
        ("modest", SONNET, "claude-haiku-4-5", "budget"),
        ("poor", SONNET, "llama3.2", "budget"),
    ]
    assert all(r["attempt"] == 1 and r["cost_usd"] <= r["reserved_usd"] for r in rows)
    for tenant in ("rich", "modest", "poor"):
        (state,) = [s for s in await budgets.get(f"tenant:{tenant}") if s.period == "total"]
        (row,) = [r for r in rows if r["tenant"] == tenant]
        assert (state.spent_usd, state.reserved_usd) == (row["cost_usd"], 0)
    assert [e.to_json() for e in heard if isinstance(e, Fallback)] == [
        {"from": SONNET, "to": HAIKU, "reason": "budget"},
        {"from": SONNET, "to": HAIKU, "reason": "budget"},
        {"from": HAIKU, "to": LLAMA, "reason": "budget"},
        {"from": SONNET, "to": HAIKU, "reason": "budget"},
        {"from": HAIKU, "to": LLAMA, "reason": "budget"},
    ]


async def test_a_model_whose_window_is_too_small_is_skipped(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    router = make_router()
    long_prompt = [Message.user("word " * 5000)]  # ~6,250 tokens: more than Ollama's 4,096
    answer = await router.request(ModelPolicy(LLAMA, fallback=[HAIKU]), long_prompt)
    assert answer.used_model == HAIKU
    assert answer.fallbacks == (Fallback(LLAMA, HAIKU, "context_window"),)
    assert scripts["ollama"].requests == []
    (row,) = await router.ledger.calls()
    assert (row["model"], row["fallback_reason"]) == ("claude-haiku-4-5", "context_window")
    with pytest.raises(ContextWindowExceeded):
        await router.request(ModelPolicy(LLAMA), long_prompt)
