"""What the offline demo model says in the demo bots' situations: it answers from the passage
retrieval ranked first, with the lines that answer the question; reads tool arguments from
the message; offers a human when nothing relevant was retrieved; and follows the stage
instructions of an interview without repeating itself."""

from __future__ import annotations

from typing import Any

import pytest

from threadline.llm import DemoModel, Message, Response, ToolDef
from threadline.llm.demo_replies import LABEL, NOT_FOUND
from threadline.tools import tool

ERROR_CODES = """[1] Troubleshooting > Error codes
- Error **E1** means there is no water at the inlet. Check that the feed valve is open.
- Error **E2** means the inlet pressure is too low (below 1 bar).
- Error **E7** means the membrane's output quality is poor: replace the membrane TL-4480.
- Error **E9** means an internal fault. Unplug the unit for 1 minute.
"""
SCHEDULE = """[1] Filters and spare parts > Replacement schedule
Each filter stage wears out at its own pace. Change each filter on this schedule:

| Stage | Part | Replace every |
|---|---|---|
| Sediment pre-filter | TL-4471 | 6 months |
| Carbon block | TL-4472 | 12 months |
"""
TASTE = """[2] Troubleshooting > The water tastes odd
New carbon blocks can give a slight taste for the first day; flush 5 litres. A metallic
taste after that usually means the carbon block TL-4472 is exhausted.
"""
PROMPT = "Answer only from the context below, citing the passages by their [number]."


def context(*passages: str) -> Message:
    return Message.system(PROMPT + "\n\nContext:\n" + "\n".join(passages))


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The city, like Paris.
    """
    return "sunny"


@tool
def lookup_part(code: str) -> dict[str, object]:
    """Look up a part by its code: its name, price and stock.

    Args:
        code: The part code, like TL-4471.
    """
    return {}


@tool
def place_order(code: str, quantity: int = 1) -> dict[str, object]:
    """Order a part for the customer.

    Args:
        code: The part code, like TL-4472.
        quantity: How many to order.
    """
    return {}


TOOLS: list[ToolDef] = [t.definition for t in (get_weather, lookup_part, place_order)]


@pytest.fixture
def demo() -> DemoModel:
    return DemoModel(tokens_per_second=0)


async def call_of(demo: DemoModel, text: str, *before: Message) -> tuple[str, dict[str, Any]]:
    response = await demo.request([*before, Message.user(text)], tools=TOOLS)
    assert response.stop_reason == "tool_use", response.text
    (call,) = response.tool_calls
    return call.name, dict(call.arguments)


async def test_an_error_code_is_answered_with_its_own_line(demo: DemoModel) -> None:
    answer = await demo.request([context(ERROR_CODES), Message.user("What does error E7 mean?")])
    assert answer.text == (
        LABEL + "Error **E7** means the membrane's output quality is poor: replace the membrane "
        "TL-4480. [1]"
    )


async def test_it_answers_from_the_first_passage_even_when_another_shares_more_words(
    demo: DemoModel,
) -> None:
    question = Message.user("How often should I change the carbon block?")
    answer = await demo.request([context(SCHEDULE, TASTE), question])
    assert "Carbon block: part TL-4472, replace every 12 months." in answer.text  # a table row
    assert answer.text.endswith("[1]") and "taste" not in answer.text


async def test_nothing_relevant_retrieved_offers_a_human(demo: DemoModel) -> None:
    for messages in (
        [context(SCHEDULE, TASTE), Message.user("Can I pay with PayPal?")],
        [Message.system(PROMPT + "\n\nContext:\n"), Message.user("How often?")],
    ):
        answer = await demo.request(messages)
        assert answer.text == LABEL + NOT_FOUND
        assert "It covers" not in answer.text


@pytest.mark.parametrize(
    ("text", "city"),
    [
        ("Can you get weather for London?", "London"),
        ("what's the weather like in new york today", "New York"),
        ("Weather in Rio de Janeiro tomorrow?", "Rio de Janeiro"),
        ("London weather, please", "London"),
    ],
)
async def test_the_weather_tool_gets_the_city(demo: DemoModel, text: str, city: str) -> None:
    assert await call_of(demo, text) == ("get_weather", {"city": city})


@pytest.mark.parametrize(
    ("text", "quantity"),
    [
        ("Please place an order for two TL-4472", 2),
        ("I'd like to order 2 of TL-4472", 2),
        ("Can I buy a pair of TL-4472?", 2),
        ("Order TL-4472 x3", 3),
        ("Order half a dozen TL-4472", 6),
    ],
)
async def test_an_order_gets_its_quantity(demo: DemoModel, text: str, quantity: int) -> None:
    assert await call_of(demo, text) == ("place_order", {"code": "TL-4472", "quantity": quantity})


async def test_an_order_without_a_quantity_leaves_the_default(demo: DemoModel) -> None:
    assert await call_of(demo, "Please order TL-4471") == ("place_order", {"code": "TL-4471"})


async def test_a_part_named_in_words_gets_its_code_from_the_context(demo: DemoModel) -> None:
    order = await call_of(demo, "I'd like to order two carbon blocks", context(SCHEDULE))
    assert order == ("place_order", {"code": "TL-4472", "quantity": 2})


async def test_a_follow_up_order_uses_the_part_spoken_of_last(demo: DemoModel) -> None:
    asked = Message.user("Is TL-4471 in stock?")
    lookup = await demo.request([asked], tools=TOOLS)
    assert [(c.name, dict(c.arguments)) for c in lookup.tool_calls] == [
        ("lookup_part", {"code": "TL-4471"})
    ]
    result = Message.tool_result(lookup.tool_calls[0].id, {"result": {"in_stock": 240}})
    reported = await demo.request([asked, lookup.message, result], tools=TOOLS)
    assert reported.text == LABEL + "The lookup_part tool returned: in stock: 240"
    history = [asked, lookup.message, result, reported.message]
    order = await call_of(demo, "Great, please order three of them", *history)
    assert order == ("place_order", {"code": "TL-4471", "quantity": 3})


async def test_no_tool_for_a_question_that_only_shares_a_verb(demo: DemoModel) -> None:
    answer = await demo.request([Message.user("Can I get a longer warranty?")], tools=TOOLS)
    assert not answer.tool_calls


async def test_a_failed_tool_call_is_reported_as_such(demo: DemoModel) -> None:
    order = await demo.request([Message.user("Order two TL-4472")], tools=TOOLS)
    refused = Message.tool_result(order.tool_calls[0].id, {"error": "the call was not approved"})
    answer = await demo.request([Message.user("Order two TL-4472"), order.message, refused])
    assert answer.text == (
        LABEL + "The place_order call did not go through: the call was not approved."
    )


STAGES = """You are a memoir interviewer. Stage: outline.
Propose this outline of their memoir, built from their answers:
1. Beginnings
2. Work

Ask next: Shall we begin with chapter 1?"""
QUESTIONS = """You are a memoir interviewer. Ask one question at a time.
1. Where did you grow up?
2. What was your first job?
"""


async def test_it_follows_the_stage_instructions(demo: DemoModel) -> None:
    history = [Message.system(STAGES), Message.assistant("Where were you born?")]
    answer = await demo.request([*history, Message.user("In Lyon.")])
    assert answer.text == (
        LABEL + "Thank you for sharing that (“In Lyon.”).\n\nHere is what I propose:\n\n"
        "1. Beginnings\n2. Work\n\nShall we begin with chapter 1?"
    )


async def test_the_last_question_is_said_once_and_the_summary_keeps_every_answer(
    demo: DemoModel,
) -> None:
    history = [Message.system(QUESTIONS), Message.user("Hello")]
    said: list[Response] = []
    for answer in ("In Lyon.", "A paper round.", "Nothing more.", "Really nothing."):
        said.append(await demo.request(history))
        history += [said[-1].message, Message.user(answer)]
    said.append(await demo.request(history))
    texts = [r.text for r in said]
    assert texts[0].endswith("Where did you grow up?") and texts[1].endswith("first job?")
    assert "That was my last question" in texts[2]
    assert "(1) In Lyon." in texts[2] and "(2) A paper round." in texts[2]
    assert all("last question" not in t for t in texts[3:])
