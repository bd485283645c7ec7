"""The model stack: metering, a fallback chain and the cache are models wrapping models, with
one signature and one options object; what they tell comes in the stream."""

from __future__ import annotations

import asyncio

import pytest

from threadline.ledger import Capped, Metering, Scope
from threadline.llm import (
    CallOptions,
    Message,
    Model,
    Notice,
    Response,
    StreamEnd,
    TextDelta,
    WrapperModel,
    prices_per_token,
    upper_bound_messages,
)
from threadline.rag import CachedModel, CacheKey, CacheScope, HashEmbedder, SemanticCache
from threadline.router import (
    Fallback,
    FallbackModel,
    ModelPolicy,
    Models,
    RoutedResponse,
    RouteSummary,
)

from ..llm.servers.base import Script
from .conftest import MakeRouter

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

SONNET, MINI = "anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"
PROMPT = [Message.user("What is the answer?")]
FAQ = CacheScope(agent="support", model_policy=SONNET, tenant="acme")


def chain(models: Models) -> FallbackModel:
    return FallbackModel([models.metered(SONNET), models.metered(MINI)], cooldowns=models.cooldowns)


def options(session: str, *context: object) -> CallOptions:
    return CallOptions(context=(Metering(scope=Scope(tenant="acme", session=session)), *context))


async def test_every_layer_is_a_model_with_the_same_two_methods(make_router: MakeRouter) -> None:
    models = make_router()
    cache = SemanticCache(models.ledger.pool, embedder=HashEmbedder(), ledger=models.ledger)
    stack = CachedModel(chain(models), cache)
    layers: list[Model] = [stack, stack.wrapped, models.metered(SONNET)]
    for layer in layers:
        assert isinstance(layer, Model)
        assert layer.spec == SONNET  # a stack answers to the name of what it wraps first
    assert isinstance(stack, WrapperModel) and isinstance(models.metered(MINI), WrapperModel)


async def test_a_fallback_tells_in_the_stream_and_the_answer_is_priced_once(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    models = make_router()
    scripts["anthropic"].reply(error="overloaded")
    scripts["openai"].reply(text="From the fallback.", input_tokens=12, output_tokens=5)
    events = [e async for e in chain(models).stream(PROMPT, options("s1"))]

    notices = [e.event for e in events if isinstance(e, Notice)]
    assert notices[0] == Fallback(SONNET, MINI, "overloaded")
    summary = notices[-1]
    assert isinstance(summary, RouteSummary)
    assert (summary.used_model, summary.provider, summary.attempts) == (MINI, "openai", 2)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "From the fallback."
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.cost_usd is not None and end.cost_usd > 0
    await models.ledger.drain()
    failed, answered = await models.ledger.calls(session_id="s1")
    assert failed["status"] == "error" and answered["cost_usd"] == end.cost_usd


async def test_a_plain_call_stays_plain_at_the_provider_and_its_notices_are_heard(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    models = make_router()
    scripts["anthropic"].reply(error="rate_limited", retry_after="5")
    scripts["openai"].reply(text="Plain.")
    heard: list[object] = []
    answer = await models.request(
        ModelPolicy(SONNET, fallback=[MINI]),
        PROMPT,
        scope=Scope(session="s2"),
        on_event=heard.append,
    )
    assert isinstance(answer, RoutedResponse) and answer.text == "Plain."
    assert answer.provider == "openai" and answer.used_model == MINI
    assert answer.cost_usd is not None and answer.cost_usd > 0
    assert heard == [Fallback(SONNET, MINI, "rate_limited")]
    assert scripts["openai"].last.body.get("stream") in (None, False)  # not a stream


async def test_a_budget_that_affords_less_output_is_told_in_the_stream(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    models = make_router()
    metered = models.metered(MINI)
    rates = prices_per_token("openai", "gpt-4o-mini")
    assert rates is not None
    worst_512 = upper_bound_messages(PROMPT) * rates[0] + 512 * rates[1]
    await models.ledger.budgets.set("session:s3", usd=worst_512)
    scripts["openai"].reply(text="Short.")
    events = [e async for e in metered.stream(PROMPT, options("s3"))]
    (capped,) = [e.event for e in events if isinstance(e, Notice)]
    assert isinstance(capped, Capped) and 500 <= capped.max_tokens <= 512
    assert scripts["openai"].last.body["max_completion_tokens"] == capped.max_tokens


async def test_a_consumer_that_stops_early_ends_the_whole_stack_at_once(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    models = make_router()
    scripts["anthropic"].reply(text="one two three four five six", chunks=6)
    stream = chain(models).stream(PROMPT, options("s4"))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    await models.ledger.drain()
    (row,) = await models.ledger.calls(session_id="s4")  # written now, not when collected
    assert row["status"] == "cancelled"


async def test_the_cache_wraps_a_chain_a_hit_calls_no_model(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    models = make_router()
    cache = SemanticCache(models.ledger.pool, embedder=HashEmbedder(), ledger=models.ledger)
    stack = CachedModel(chain(models), cache)
    scripts["anthropic"].reply(error="server_error")
    scripts["openai"].reply(text="Forty-two.")
    key = CacheKey("What is the answer?", FAQ)
    first = await stack.request(PROMPT, options("s5", key))
    second = await stack.request(PROMPT, options("s6", key))

    assert (first.provider, first.model, first.cached) == ("openai", "gpt-4o-mini", False)
    summary = first.notices[-1].event  # the chain's, passed up through the cache
    assert isinstance(summary, RouteSummary) and summary.used_model == MINI
    assert isinstance(second, Response) and second.cached and second.text == "Forty-two."
    assert (second.provider, second.model) == ("openai", "gpt-4o-mini")  # who made it
    assert second.cost_usd == 0 and first.cost_usd and first.cost_usd > 0
    assert len(scripts["openai"].requests) == 1 and len(scripts["anthropic"].requests) == 1
    await models.ledger.drain()
    (hit,) = await models.ledger.calls(session_id="s6")
    assert (hit["status"], hit["saved_usd"]) == ("cached", first.cost_usd)


async def test_calls_in_parallel_through_one_stack_keep_their_own_options(
    make_router: MakeRouter, scripts: dict[str, Script]
) -> None:
    models = make_router()
    for n in range(4):
        scripts["anthropic"].reply(text=f"Answer {n}.")
    stack = chain(models)
    answers = await asyncio.gather(*(stack.request(PROMPT, options(f"p{n}")) for n in range(4)))
    assert sorted(a.text for a in answers) == [f"Answer {n}." for n in range(4)]
    await models.ledger.drain()
    for n in range(4):
        (row,) = await models.ledger.calls(session_id=f"p{n}")
        assert row["tenant"] == "acme" and row["status"] == "ok"
