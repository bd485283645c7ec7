"""ScriptedModel: replies, tool calls, usage, pace and failures, as the script says."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from threadline.llm import (
    LLMError,
    Message,
    RateLimited,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    Usage,
    get_model,
    price,
)
from threadline.testing import (
    Fail,
    Reply,
    ScriptedModel,
    ScriptedPrices,
    ScriptExhausted,
    ToolUse,
)

HELLO = [Message.user("Hello")]


async def test_each_call_takes_the_next_step() -> None:
    model = ScriptedModel(["First answer.", Reply("Second answer.")])
    first = await model.request(HELLO)
    second = await model.request(HELLO)
    assert (first.text, second.text) == ("First answer.", "Second answer.")
    assert (first.provider, first.model) == ("scripted", "scripted")
    assert model.calls == 2 and model.requests[0].messages == tuple(HELLO)
    with pytest.raises(ScriptExhausted, match="called 3 times; its script has 2 steps"):
        await model.request(HELLO)


async def test_a_looping_script_starts_again() -> None:
    model = ScriptedModel(["a", "b"], loop=True)
    texts = [(await model.request(HELLO)).text for _ in range(3)]
    assert texts == ["a", "b", "a"]


async def test_text_streams_word_by_word_with_the_given_usage() -> None:
    model = ScriptedModel([Reply("one two three", input_tokens=1200, output_tokens=40)])
    events = [e async for e in model.stream(HELLO)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one ", "two ", "three"]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "end_turn"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (1200, 40)


async def test_usage_not_given_is_estimated() -> None:
    response = await ScriptedModel(["A short answer."]).request(HELLO)
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


async def test_a_tool_call_step() -> None:
    model = ScriptedModel([ToolUse("order_status", {"order_id": "A-1"}, id="call_1")])
    events = [e async for e in model.stream(HELLO)]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls == [ToolCallDelta(0, "call_1", "order_status", '{"order_id": "A-1"}')]
    response = await ScriptedModel([Reply("Looking.", tool_call=ToolUse("x"))]).request(HELLO)
    assert response.stop_reason == "tool_use" and response.text == "Looking."
    assert response.tool_calls[0].name == "x" and response.tool_calls[0].id.startswith("call_")


async def test_tokens_per_second_paces_the_stream() -> None:
    model = ScriptedModel([Reply("a b c d e", tokens_per_second=50), "f g h i j"])
    started = time.monotonic()
    await model.request(HELLO)
    paced = time.monotonic() - started
    started = time.monotonic()
    await model.request(HELLO)
    assert paced >= 0.07 and time.monotonic() - started < 0.05


async def test_a_failure_after_some_tokens_keeps_what_streamed() -> None:
    model = ScriptedModel([Fail(RateLimited("slow down"), after_tokens=2, text="one two three")])
    seen: list[str] = []
    with pytest.raises(RateLimited) as caught:
        async for event in model.stream(HELLO):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert seen == ["one ", "two "]
    assert caught.value.partial_text == "one two " and caught.value.provider == "scripted"


async def test_an_error_step_fails_before_any_output() -> None:
    model = ScriptedModel([LLMError("no"), "then fine"])
    with pytest.raises(LLMError, match="no"):
        await model.request(HELLO)
    assert (await model.request(HELLO)).text == "then fine"


async def test_a_named_model_is_a_spec() -> None:
    model = ScriptedModel(["Hi"], name="greeter")
    assert get_model("scripted:greeter") is model
    with pytest.raises(ScriptExhausted, match="'nobody' has no script: make it before"):
        await get_model("scripted:nobody").request(HELLO)


def test_the_price_is_per_million_tokens() -> None:
    ScriptedModel([], name="priced", price=(3.0, 15.0))
    ScriptedModel([], name="free-one")
    overrides, usage = ScriptedPrices(), Usage(input_tokens=1000, output_tokens=100)
    assert price("scripted", "priced", usage, overrides=overrides).total_usd == Decimal("0.0045")
    assert price("scripted", "free-one", usage, overrides=overrides).total_usd == 0
