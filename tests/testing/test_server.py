"""`threadline_server` and `ChatClient`: a bot answering with a scripted model, over the
session's WebSocket, with its cost in the ledger."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from threadline.llm import RateLimited
from threadline.testing import Fail, Reply, ScriptedModel, ToolUse

from .bots import AGENTS, shop


async def test_an_answer_with_its_model_cost_and_ledger_row(threadline_server) -> None:
    model = ScriptedModel([Reply("Hello!", input_tokens=1000, output_tokens=100)], price=(3, 15))
    async with threadline_server(AGENTS, model=model) as server:
        async with server.client("shop") as chat:
            answer = await chat.send("Hi")
        rows = await server.ledger_rows(chat.session_id)
    assert answer.ok and answer.text == "Hello!"
    assert answer.model == "scripted:scripted" and answer.cost == Decimal("0.0045")
    assert answer.usage["input_tokens"] == 1000 and answer.frames("message.delta")
    assert [(r["input_tokens"], r["output_tokens"], r["cost_usd"]) for r in rows] == [
        (1000, 100, Decimal("0.0045"))
    ]
    assert model.requests[0].messages[-1].content == "Hi"


async def test_a_tool_call_and_its_result(threadline_server) -> None:
    model = ScriptedModel([ToolUse("order_status", {"order_id": "A-1"}), "It shipped yesterday."])
    async with threadline_server(AGENTS, model=model) as server, server.client("shop") as chat:
        answer = await chat.send("Where is A-1?")
    assert answer.text == "It shipped yesterday."
    [call] = answer.tool_calls
    assert (call.name, call.arguments) == ("order_status", {"order_id": "A-1"})
    assert call.result["result"]["status"] == "shipped yesterday"
    assert "shipped yesterday" in model.requests[1].messages[-1].content  # the tool's result


async def test_a_tool_that_asks_first_waits_for_approval(threadline_server) -> None:
    model = ScriptedModel(
        [ToolUse("refund", {"order_id": "A-2"}), "Refunded.", ToolUse("refund"), "Not refunded."]
    )
    async with threadline_server(AGENTS, model=model) as server, server.client("shop") as chat:
        answer = await chat.send("Refund A-2 please")
        assert answer.waiting is not None and answer.waiting["name"] == "refund"
        answer = await chat.approve(answer)
        declined = await chat.send("And again")
        declined = await chat.decline(declined)
    assert answer.ok and answer.text == "Refunded."
    assert answer.tool_calls[0].result["result"] == {"order_id": "A-2", "refunded": True}
    assert declined.text == "Not refunded."
    assert "not approved" in str(declined.tool_calls[0].result)


async def test_a_failure_mid_answer_ends_the_turn_with_an_error(threadline_server) -> None:
    model = ScriptedModel([Fail(RateLimited("slow down"), after_tokens=2, text="one two three")])
    async with threadline_server(AGENTS, model=model) as server, server.client("shop") as chat:
        answer = await chat.send("Hi")
    assert not answer.ok and answer.error is not None and answer.error["retryable"]
    assert answer.error["code"] == "no_model_available"
    [restart] = {f["discarded_text"] for f in answer.frames("message.restart")}
    assert restart == "one two " and answer.streamed == ""  # shown, then taken back


async def test_agents_take_a_scripted_model_or_its_name(threadline_server) -> None:
    direct = dataclasses.replace(shop, name="direct", model=ScriptedModel(["Direct."]))
    ScriptedModel(["By name."], name="named-bot")
    by_name = dataclasses.replace(shop, name="by-name", model="scripted:named-bot")
    async with threadline_server([direct, by_name]) as server:
        async with server.client("direct") as chat:
            assert (await chat.send("Hi")).text == "Direct."
        async with server.client("by-name") as chat:
            assert (await chat.send("Hi")).text == "By name."
