"""The offline demo model: deterministic, useful, paced, and scriptable to fail."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal

import pytest

from threadline.llm import (
    DemoFailure,
    DemoModel,
    Message,
    Overloaded,
    RateLimited,
    ResponseBuilder,
    StreamEnd,
    StreamInterrupted,
    TextDelta,
    ToolDef,
    Usage,
    UsageEvent,
    estimate_messages,
    estimate_tokens,
    get_model,
    price,
)
from threadline.llm.demo_replies import LABEL, NOT_FOUND

INTERVIEW = """You are a warm memoir interviewer. Ask one question at a time.
Questions:
1. Where did you grow up?
2. Who was your closest friend as a child?
3. What was your first job?
"""
SUPPORT = """You are a support agent. Answer only from the context and cite it.
Context:
[returns] Items can be returned within 30 days of delivery. Refunds go to the original card.
[shipping] Standard shipping takes 3 to 5 business days. Express shipping arrives the next day.
[warranty] Every pump has a two-year warranty against manufacturing defects.
"""
TOOLS = [
    ToolDef(
        "lookup_part",
        "Look up a part.",
        {
            "type": "object",
            "properties": {"part_code": {"type": "string"}},
            "required": ["part_code"],
        },
    ),
    ToolDef(
        "place_order",
        "Order parts.",
        {
            "type": "object",
            "properties": {"part_code": {"type": "string"}, "quantity": {"type": "integer"}},
            "required": ["part_code", "quantity"],
        },
    ),
]


@pytest.fixture
def demo() -> DemoModel:
    return DemoModel(tokens_per_second=0)


async def stream_text(model: DemoModel, messages: list[Message], **kwargs: object) -> str:
    builder = ResponseBuilder("demo", model.name)
    async for event in model.stream(messages, **kwargs):  # type: ignore[arg-type]
        builder.add(event)
    return builder.build().text


async def test_interview_acknowledges_and_asks_the_next_unasked_question(demo: DemoModel) -> None:
    history = [Message.system(INTERVIEW), Message.user("Hello, I'm ready to start.")]
    first = await demo.request(history)
    assert first.text == f"{LABEL}Welcome! Let's begin. Where did you grow up?"

    history += [first.message, Message.user("In Lyon, in a flat above my parents' bakery.")]
    second = await demo.request(history)
    assert second.text.startswith(LABEL + "Thank you for sharing that")
    assert "In Lyon, in a flat above my parents'" in second.text
    assert second.text.endswith("Who was your closest friend as a child?")

    history += [second.message, Message.user("Marie, from next door.")]
    history += [(await demo.request(history)).message, Message.user("A paper round at twelve.")]
    last = await demo.request(history)
    assert "last question" in last.text
    assert "Lyon" in last.text and "Marie" in last.text and "paper round" in last.text


async def test_answers_from_context_with_citations(demo: DemoModel) -> None:
    answer = await demo.request(
        [Message.system(SUPPORT), Message.user("How fast is express shipping?")]
    )
    assert answer.text == LABEL + "Express shipping arrives the next day. [shipping]"

    pumps = await demo.request(
        [Message.system(SUPPORT), Message.user("Is my pump under warranty?")]
    )
    assert "two-year warranty" in pumps.text and "[warranty]" in pumps.text

    unknown = await demo.request([Message.system(SUPPORT), Message.user("Do you sell bicycles?")])
    assert unknown.text == LABEL + NOT_FOUND  # no list of what it covers: a human is offered


async def test_answers_from_markdown_sections_and_user_supplied_context(demo: DemoModel) -> None:
    faq = "# Store FAQ\n\n## Opening hours\nOpen 9am to 6pm, Monday to Saturday.\n\n"
    faq += "## Parking\nFree parking is available behind the store."
    parking = await demo.request([Message.system(faq), Message.user("Where can I park?")])
    assert parking.text.endswith("Free parking is available behind the store. [Parking]")

    inline = "When were the pyramids built?\nContext:\nThe Great Pyramid was built around 2560 BC."
    built = await demo.request([Message.user(inline)])
    assert "around 2560 BC. [1]" in built.text


async def test_otherwise_a_short_summary(demo: DemoModel) -> None:
    reply = await demo.request(
        [Message.user("I want to plan a spring trip to Kyoto for the blossoms")]
    )
    assert reply.text.startswith(LABEL + "You said: “I want to plan a spring trip")
    assert "kyoto" in reply.text and "blossom" in reply.text
    assert reply.stop_reason == "end_turn"


async def test_tool_calls_are_deterministic_and_results_are_reported(demo: DemoModel) -> None:
    ask = [Message.user("Is part AB-1234 in stock?")]
    lookup = await demo.request(ask, tools=TOOLS)
    assert lookup.stop_reason == "tool_use"
    assert [(c.id, c.name, dict(c.arguments)) for c in lookup.tool_calls] == [
        ("demo_call_1", "lookup_part", {"part_code": "AB-1234"})
    ]
    order = await demo.request(
        [Message.user("Please place an order for 3 of AB-1234")], tools=TOOLS
    )
    assert [(c.name, dict(c.arguments)) for c in order.tool_calls] == [
        ("place_order", {"part_code": "AB-1234", "quantity": 3})
    ]
    history = [*ask, lookup.message, Message.tool_result("demo_call_1", {"in_stock": 12})]
    result = await demo.request(history, tools=TOOLS)
    assert result.text == LABEL + "The lookup_part tool returned: in stock: 12"
    assert not result.tool_calls
    no_tool = await demo.request([Message.user("Hello there")], tools=TOOLS)
    assert not no_tool.tool_calls


async def test_streams_the_same_answer_word_by_word(demo: DemoModel) -> None:
    messages = [Message.system(SUPPORT), Message.user("How long do refunds take to return?")]
    plain = await demo.request(messages)
    events = [event async for event in demo.stream(messages)]
    assert isinstance(events[0], UsageEvent)
    assert isinstance(events[-1], StreamEnd)
    words = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(words) == len(plain.text.split())
    assert "".join(words) == plain.text
    assert events[-1].usage == plain.usage
    assert plain == await demo.request(messages), "deterministic"


async def test_usage_comes_from_the_token_estimates_and_costs_nothing(demo: DemoModel) -> None:
    messages = [Message.user("Tell me about the weather in Paris in April")]
    reply = await demo.request(messages)
    assert reply.usage == Usage(estimate_messages(messages), estimate_tokens(reply.text))
    assert price("demo", reply.model, reply.usage).total_usd == Decimal(0)
    assert (reply.provider, reply.model) == ("demo", "threadline-demo")


async def test_max_tokens_and_stop_sequences(demo: DemoModel) -> None:
    messages = [Message.user("I want to plan a spring trip to Kyoto for the blossoms")]
    short = await demo.request(messages, max_tokens=5)
    assert short.stop_reason == "max_tokens"
    assert 0 < estimate_tokens(short.text) <= 5
    assert await stream_text(demo, messages, max_tokens=5) == short.text
    stopped = await demo.request(messages, stop=["Key words"])
    assert stopped.stop_reason == "stop_sequence" and "Key words" not in stopped.text


async def test_streams_at_the_configured_pace() -> None:
    messages = [Message.user("one two three four five six seven eight nine ten")]
    fast = DemoModel(tokens_per_second=0)
    words = len((await fast.request(messages)).text.split())
    paced = DemoModel(tokens_per_second=100)
    started = time.monotonic()
    text = await stream_text(paced, messages)
    elapsed = time.monotonic() - started
    assert len(text.split()) == words > 10
    assert elapsed >= (words - 1) / 100 * 0.9
    assert elapsed < 5


async def test_a_paced_word_says_when_it_was_due_however_late_it_is_read() -> None:
    messages = [Message.user("one two three four five six seven eight nine ten")]
    paced = DemoModel(tokens_per_second=50)
    before = time.time()
    stamps: list[tuple[float, float]] = []  # (due, read)
    async for event in paced.stream(messages):
        if isinstance(event, TextDelta):
            assert event.at is not None
            stamps.append((event.at, time.time()))
            if len(stamps) == 3:
                await asyncio.sleep(0.2)  # a busy consumer: the next words are read late
    dues = [due for due, _ in stamps]
    assert before <= dues[0] <= before + 0.05
    assert all(abs((b - a) - 1 / 50) < 1e-6 for a, b in itertools.pairwise(dues))
    assert all(due <= read for due, read in stamps)
    assert stamps[3][1] - stamps[3][0] > 0.1  # read late, due on time: the lateness shows


async def test_scripted_failures() -> None:
    model = get_model(
        "demo:threadline-demo",
        tokens_per_second=0,
        fail_with=[
            RateLimited("slow down", retry_after=3),
            None,
            DemoFailure(StreamInterrupted("cut"), after_words=3),
        ],
    )
    assert isinstance(model, DemoModel)
    messages = [Message.user("alpha beta gamma delta epsilon zeta")]
    with pytest.raises(RateLimited) as limited:
        await model.request(messages)
    assert limited.value.retry_after == 3 and limited.value.provider == "demo"
    assert (await model.request(messages)).text.startswith(LABEL)
    received: list[str] = []
    with pytest.raises(StreamInterrupted) as cut:
        async for event in model.stream(messages):
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert len(received) == 3
    assert cut.value.partial_text == "".join(received)
    assert (await model.request(messages)).text.startswith(LABEL), "script exhausted: succeed"
    assert model.calls == 4

    always = DemoModel(fail_with=Overloaded("busy"))
    for _ in range(2):
        with pytest.raises(Overloaded):
            await always.request(messages)
