"""When the budget cannot pay for a model's full `max_tokens`, the router calls the stronger
model with fewer tokens, down to the floor (`min_output_tokens`), and says so (`Capped`);
below the floor it moves on to the cheaper model."""

from __future__ import annotations

from decimal import Decimal

import pytest

from threadline.ledger import Scope
from threadline.llm import Message, prices_per_token, upper_bound_messages
from threadline.router import Capped, Fallback, ModelPolicy, RouterEvent

from ..llm.servers.base import Script
from .conftest import MakeRouter

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

SONNET, HAIKU = "anthropic:claude-sonnet-4-5", "anthropic:claude-haiku-4-5"
POLICY = ModelPolicy(SONNET, fallback=[HAIKU])
PROMPT = [Message.system("Be brief."), Message.user("Summarise the quarterly report.")]


def worst(spec: str, output_tokens: int) -> Decimal:
    provider, _, name = spec.partition(":")
    rates = prices_per_token(provider, name)
    assert rates is not None
    return upper_bound_messages(PROMPT) * rates[0] + output_tokens * rates[1]


async def test_a_stronger_model_gets_fewer_tokens_down_to_the_floor_then_a_cheaper_one(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    heard: list[RouterEvent] = []
    router = make_router()
    router.on_event = heard.append
    budgets = router.ledger.budgets
    scripts["anthropic"].default.input_tokens, scripts["anthropic"].default.output_tokens = 30, 20
    await budgets.set("tenant:some", usd=worst(SONNET, 300))  # Sonnet with 300 tokens
    await budgets.set("tenant:less", usd=worst(SONNET, 200))  # under the floor: Haiku

    some = await router.request(POLICY, PROMPT, scope=Scope(tenant="some"), max_tokens=1024)
    assert (some.used_model, some.max_tokens, some.fallbacks) == (SONNET, 300, ())
    assert scripts["anthropic"].last.body["max_tokens"] == 300
    assert heard == [Capped(SONNET, 300, 1024)]
    assert heard[0].to_json() == {"model": SONNET, "max_tokens": 300, "requested_max_tokens": 1024}

    heard.clear()
    less = await router.request(POLICY, PROMPT, scope=Scope(tenant="less"), max_tokens=1024)
    assert less.used_model == HAIKU and less.fallbacks == (Fallback(SONNET, HAIKU, "budget"),)
    # The same money buys Haiku more tokens than Sonnet (each costs a third), still capped.
    haiku_rates = prices_per_token("anthropic", "claude-haiku-4-5")
    assert haiku_rates is not None
    affordable = int((worst(SONNET, 200) - worst(HAIKU, 0)) / haiku_rates[1])
    assert 256 <= affordable < 1024
    assert less.max_tokens == scripts["anthropic"].last.body["max_tokens"] == affordable
    assert heard[:2] == [Fallback(SONNET, HAIKU, "budget"), Capped(HAIKU, affordable, 1024)]

    await router.ledger.drain()
    for row in await router.ledger.calls():
        assert row["cost_usd"] <= row["reserved_usd"]


async def test_nothing_is_capped_when_the_budget_affords_the_full_answer(
    make_router: MakeRouter,
) -> None:
    heard: list[RouterEvent] = []
    router = make_router()
    router.on_event = heard.append
    await router.ledger.budgets.set("tenant:rich", usd=worst(SONNET, 1024) * 2)
    rich = await router.request(POLICY, PROMPT, scope=Scope(tenant="rich"), max_tokens=1024)
    assert (rich.used_model, rich.max_tokens) == (SONNET, 1024)
    assert not [e for e in heard if isinstance(e, Capped)]
