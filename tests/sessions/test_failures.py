"""No turn ends silently: whatever fails, the session's log gets `message.error` with a stable
code, words for the user and whether a retry can help; the next message is answered. (What
the widget and the AI SDK stream make of it: tests/web/test_failures.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from threadline import ConfigurationError, Engine
from threadline.agents import Agent, Turn
from threadline.llm import AuthenticationFailed, Overloaded
from threadline.llm.demo import DemoModel
from threadline.router import ModelPolicy
from threadline.sessions import Sessions
from threadline.tools import tool

from ..chat_server import ChatServer, chat_server


def _demo(**options: Any) -> ModelPolicy:
    return ModelPolicy(DemoModel("threadline-demo", tokens_per_second=0, **options))


locked_out = Agent(
    name="locked_out", model=_demo(fail_with=AuthenticationFailed("401: invalid x-api-key"))
)
overloaded = Agent(name="overloaded", model=_demo(fail_with=Overloaded("529 overloaded")))
buggy = Agent(name="buggy", model="demo:threadline-demo")


@tool
def explode(code: str) -> str:
    """Look up a part by its code."""
    raise RuntimeError(f"database password 'hunter2' rejected for {code}")


broken_tool = Agent(name="broken_tool", model="demo:threadline-demo", tools=[explode])
failures_left = {"lookup": 0}


@tool
def lookup(code: str) -> dict[str, str]:
    """Look up a part by its code."""
    if failures_left["lookup"] > 0:
        failures_left["lookup"] -= 1
        raise ConnectionError("parts service unreachable")
    return {"code": code, "name": "Sediment pre-filter"}


flaky_tool = Agent(name="flaky_tool", model="demo:threadline-demo", tools=[lookup])
attempts = {"stubborn": 0}


@tool(timeout=0.3)
async def lookup_slowly(code: str) -> str:
    """Look up a part by its code."""
    await asyncio.sleep(30)
    return code


@tool(retries=2)
def lookup_stubbornly(code: str) -> str:
    """Look up a part by its code."""
    attempts["stubborn"] += 1
    raise ConnectionError("parts service unreachable")


slow_tool = Agent(name="slow_tool", model="demo:threadline-demo", tools=[lookup_slowly])
stubborn_tool = Agent(name="stubborn_tool", model="demo:threadline-demo", tools=[lookup_stubbornly])
failing_step = Agent(name="failing_step", model="demo:threadline-demo")


@failing_step.state("start")
async def _failing_step(turn: Turn) -> str | None:
    def fetch_order() -> str:
        raise ConnectionError("orders service unreachable")

    assert turn.ctx is not None
    await turn.ctx.step(fetch_order, retries=1)
    return None


async def _reply(turn: Turn) -> str | None:
    await turn.reply()
    return None


for _agent in (locked_out, overloaded, broken_tool, flaky_tool, slow_tool, stubborn_tool):
    _agent.state("start")(_reply)


@buggy.state("start")
async def _bug(turn: Turn) -> str | None:
    raise KeyError("no such field")


FAILING = [
    locked_out,
    overloaded,
    buggy,
    broken_tool,
    flaky_tool,
    slow_tool,
    stubborn_tool,
    failing_step,
]


async def ask(chat: ChatServer, agent: str, text: str) -> list[dict[str, Any]]:
    """Two messages in one session: how each turn ended."""
    async with chat.connect(await chat.new_session(agent)) as ws:
        await ws.recv()  # session.state
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        ends: list[dict[str, Any]] = []
        for n in (1, 2):
            await ws.send(json.dumps({"type": "message.send", "client_id": f"m{n}", "text": text}))
            frame: dict[str, Any] = {}
            while frame.get("type") not in ("message.end", "message.error"):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            ends.append(frame)
    return ends


@pytest.fixture
async def failing_chat(database_url: str) -> AsyncIterator[ChatServer]:
    async with chat_server(database_url, FAILING) as chat:
        yield chat


@pytest.mark.parametrize(
    ("agent", "text", "code", "retryable"),
    [
        ("locked_out", "Hello?", "authentication_failed", False),
        ("overloaded", "Hello?", "no_model_available", True),
        ("buggy", "Hello?", "internal", False),
        ("broken_tool", "Can you look up part TL-4471?", "tool_failed", True),
        ("slow_tool", "Can you look up part TL-4471?", "tool_timeout", True),
        ("stubborn_tool", "Can you look up part TL-4471?", "tool_failed", True),
        ("failing_step", "Where is my order?", "step_failed", True),
    ],
)
async def test_a_failed_turn_ends_with_an_error_the_user_can_read(
    failing_chat: ChatServer, agent: str, text: str, code: str, retryable: bool
) -> None:
    first, second = await ask(failing_chat, agent, text)
    for end in (first, second):  # the session goes on: the next message gets its own end
        assert end["type"] == "message.error", end
        assert (end["code"], end["retryable"]) == (code, retryable)
        assert end["message"] and end["turn_id"]
        for secret in ("hunter2", "x-api-key", "KeyError", "529"):
            assert secret not in end["message"]  # internals go to the log, not the user
    assert first["turn_id"] != second["turn_id"]


async def test_agents_whose_provider_cannot_be_used_are_refused_at_start(
    database_url: str,
) -> None:
    lost = Agent(name="lost", model="nosuch:model-1")
    with pytest.raises(ConfigurationError, match="agent 'lost' uses 'nosuch:model-1'"):
        Sessions(Engine(database_url), [lost])


async def test_a_tool_is_tried_as_often_as_it_says_before_the_turn_fails(
    failing_chat: ChatServer,
) -> None:
    attempts["stubborn"] = 0
    first, _ = await ask(failing_chat, "stubborn_tool", "Can you look up part TL-4471?")
    assert first["code"] == "tool_failed"
    assert attempts["stubborn"] == 2 * 3  # two turns, each: the first try and two retries
