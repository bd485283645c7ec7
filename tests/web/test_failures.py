"""No turn ends silently: whatever fails, the session's log gets `message.error` with a stable
code, words for the user and whether a retry can help; the next message is answered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import async_playwright

from threadline import ConfigurationError, Engine
from threadline.agents import Agent, Turn
from threadline.llm import AuthenticationFailed, Overloaded
from threadline.llm.demo import DemoModel
from threadline.router import ModelPolicy
from threadline.sessions import Sessions
from threadline.tools import tool

from .conftest import ChatServer, chat_server
from .test_widget import CHROMIUM_ARGS


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


async def _reply(turn: Turn) -> str | None:
    await turn.reply()
    return None


for _agent in (locked_out, overloaded, broken_tool, flaky_tool):
    _agent.state("start")(_reply)


@buggy.state("start")
async def _bug(turn: Turn) -> str | None:
    raise KeyError("no such field")


FAILING = [locked_out, overloaded, buggy, broken_tool, flaky_tool]


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


@pytest.mark.browser
async def test_the_widget_shows_the_error_and_its_retry_answers(failing_chat: ChatServer) -> None:
    failures_left["lookup"] = 1
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{failing_chat.url}/?agent=flaky_tool")
        await page.click(".bubble")
        await page.fill("textarea", "Can you look up part TL-4471?")
        await page.press("textarea", "Enter")
        error = page.locator(".msg.error[role=alert]")
        await error.wait_for(timeout=10_000)
        assert "tool the assistant used failed" in await error.inner_text()
        await page.wait_for_selector("form button.send")  # not left on "Stop"
        await error.locator("button", has_text="Try again").click()
        answer = page.locator(".msg.assistant", has_text="Sediment pre-filter")
        await answer.wait_for(timeout=10_000)
        await page.wait_for_selector("form button.send")
        assert await error.locator("button").count() == 0  # one retry per failure
        users = await page.eval_on_selector_all(".msg.user", "els => els.map(e => e.textContent)")
        assert users == ["Can you look up part TL-4471?"] * 2
        await browser.close()


async def test_the_ai_sdk_stream_ends_a_failed_turn_with_an_error_chunk(
    failing_chat: ChatServer,
) -> None:
    session = await failing_chat.new_session("locked_out")
    url = f"/v1/sessions/{session['session_id']}/ai-sdk?token={session['token']}"
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}
    chunks: list[Any] = []
    async with (
        asyncio.timeout(20),
        failing_chat.http.stream("POST", url, json={"messages": [message]}) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["type"] == "error" and "not set up correctly" in chunks[-2]["errorText"]
