"""No turn ends silently: whatever fails, the session's log gets `message.error` with a stable
code, words for the user and whether a retry can help; the next message is answered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from threadline import ConfigurationError, Engine
from threadline.agents import Agent, Turn
from threadline.ledger import Ledger
from threadline.llm import AuthenticationFailed, Overloaded
from threadline.llm.demo import DemoModel
from threadline.router import ModelPolicy
from threadline.sessions import Sessions
from threadline.testing.browser import CHROMIUM_ARGS
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


async def test_a_tool_is_tried_as_often_as_it_says_before_the_turn_fails(
    failing_chat: ChatServer,
) -> None:
    attempts["stubborn"] = 0
    first, _ = await ask(failing_chat, "stubborn_tool", "Can you look up part TL-4471?")
    assert first["code"] == "tool_failed"
    assert attempts["stubborn"] == 2 * 3  # two turns, each: the first try and two retries


# What the person chatting sees, in Chromium, for each kind of failure: words (not the
# error's internals) soon after it happens, the Send button back, and "Try again" only where a
# retry can help.
WIDGET_CASES = [  # one server: "overloaded" last, as its failure cools the demo model down
    ("locked_out", "Hello?", "not set up correctly", False),
    ("buggy", "Hello?", "Something went wrong", False),
    ("broken_tool", "Can you look up part TL-4471?", "tool the assistant used failed", True),
    ("slow_tool", "Can you look up part TL-4471?", "took too long", True),
    ("stubborn_tool", "Can you look up part TL-4471?", "tool the assistant used failed", True),
    ("failing_step", "Where is my order?", "Something went wrong while answering", True),
    ("overloaded", "Hello?", "not answering right now", True),
]


@pytest.mark.browser
async def test_the_widget_tells_each_failure_and_offers_a_retry_where_it_helps(
    failing_chat: ChatServer,
) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for agent, text, words, retryable in WIDGET_CASES:
            page = await browser.new_page()
            await page.goto(f"{failing_chat.url}/?agent={agent}")
            await page.click(".bubble")
            await page.fill("textarea", text)
            await page.press("textarea", "Enter")
            error = page.locator(".msg.error[role=alert]")
            # The failures here happen at once (a tool's 0.3 s timeout aside), so the words
            # must be on screen within 2 s of the message going out.
            await error.wait_for(timeout=2_500)
            assert words in await error.inner_text(), agent
            await page.wait_for_selector("form button.send", timeout=2_000)
            assert await error.locator("button", has_text="Try again").count() == int(retryable)
            await page.close()
        await browser.close()


@pytest.mark.browser
async def test_the_widget_shows_a_stopped_answer_as_stopped(chat: ChatServer) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{chat.url}/?agent=echo")
        await page.click(".bubble")
        await page.fill("textarea", "Tell me a long story " * 20)
        await page.press("textarea", "Enter")
        await page.click("form button.stop")
        await page.wait_for_selector("form button.send", timeout=2_000)
        status = page.locator(".status", has_text="Stopped")
        await status.wait_for(timeout=2_000)
        session_id = await page.evaluate(
            "() => JSON.parse(Object.entries(localStorage).find(([k]) => "
            "k.startsWith('threadline:'))[1]).sessionId"
        )
        events = await chat.sessions.read(session_id, 0)
        assert "message.cancelled" in [e.type for e in events]
        await browser.close()


@pytest.mark.browser
async def test_the_widget_says_when_the_budget_is_used_up(
    chat: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused budget is no failure: the agent's closing message is the answer, the status
    line says why, and the Send button comes back (the session is closed: the next message
    gets the same words, with no model call)."""
    prices = tmp_path / "prices.json"  # so dear that not even the first call fits $0.002
    prices.write_text(
        json.dumps({"demo:threadline-demo": {"input_per_mtok": 900, "output_per_mtok": 900}})
    )
    monkeypatch.setenv("THREADLINE_PRICES", str(prices))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{chat.url}/?agent=thrifty")
        await page.click(".bubble")
        for n in (1, 2):
            await page.fill("textarea", "Tell me more")
            await page.press("textarea", "Enter")
            answer = page.locator(".msg.assistant").nth(n - 1)
            await answer.wait_for(timeout=5_000)
            await page.wait_for_selector("form button.send", timeout=5_000)
            assert "used up its budget" in await answer.inner_text()
        status = page.locator(".status", has_text="reached its budget")
        await status.wait_for(timeout=2_000)
        await browser.close()
    rows = await Ledger(chat.sessions.engine.pool).calls(agent="thrifty")
    assert rows == []  # nothing was bought
